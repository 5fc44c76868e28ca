//! `scheduler serve --tls-cert --tls-key`: HTTPS with rustls.

use std::process::{Command, Stdio};

use super::grid::{Db, TestGrid};

/// A self-signed certificate for `localhost`, written into `dir`: (certificate, key) paths
/// and the certificate's PEM.
fn certificate(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf, String) {
    let made = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let pem = made.cert.pem();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, &pem).unwrap();
    std::fs::write(&key, made.signing_key.serialize_pem()).unwrap();
    (cert, key, pem)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scheduler_serves_https_with_its_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key, pem) = certificate(dir.path());
    let grid =
        TestGrid::start_with(Db::Sqlite, |c| c.tls = Some((cert.clone(), key.clone()))).await;
    let port = grid.url.rsplit(':').next().unwrap().to_string();
    let trusting = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(pem.as_bytes()).unwrap()])
        .build()
        .unwrap();
    let health = trusting
        .get(format!("https://localhost:{port}/health"))
        .send()
        .await
        .unwrap();
    assert!(health.status().is_success(), "{health:?}");
    // A submitter's request over it, with its token.
    let credits = trusting
        .get(format!(
            "https://localhost:{port}/v1/batches/b-0123456789abcdef"
        ))
        .bearer_auth(&grid.token)
        .send()
        .await
        .unwrap();
    assert_eq!(credits.status(), reqwest::StatusCode::NOT_FOUND);
    // Plain HTTP on the same port gets no answer, and a client that does not trust the
    // certificate refuses it.
    assert!(
        reqwest::get(format!("http://localhost:{port}/health"))
            .await
            .is_err()
    );
    let wary = reqwest::Client::builder()
        .tls_certs_only([])
        .build()
        .unwrap();
    assert!(
        wary.get(format!("https://localhost:{port}/health"))
            .send()
            .await
            .is_err()
    );
}

#[test]
fn serve_says_https_and_refuses_a_key_without_its_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key, _) = certificate(dir.path());
    let out = Command::new(env!("CARGO_BIN_EXE_scheduler"))
        .args(["serve", "--listen", "127.0.0.1:0", "--tls-key"])
        .arg(&key)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--tls-cert"), "{err}");
    // A certificate that is not one: refused at start, naming the file.
    std::fs::write(dir.path().join("bad.pem"), "not a certificate").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_scheduler"))
        .args(["serve", "--listen", "127.0.0.1:0", "--tls-cert"])
        .arg(dir.path().join("bad.pem"))
        .arg("--tls-key")
        .arg(&key)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .stdout(Stdio::piped())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.pem"), "{err}");
    // With both, its first line is an https:// URL.
    let mut child = Command::new(env!("CARGO_BIN_EXE_scheduler"))
        .args(["serve", "--listen", "127.0.0.1:0", "--tls-cert"])
        .arg(&cert)
        .arg("--tls-key")
        .arg(&key)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert!(line.starts_with("https://127.0.0.1:"), "{line:?}");
}
