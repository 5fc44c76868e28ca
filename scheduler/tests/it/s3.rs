//! Batches from object storage, as a CI pipeline runs them: the manifest and the objects it
//! names under an `s3://` prefix, `helio submit s3://… --wait`, `helio results --out s3://…`,
//! against a real S3-compatible server on loopback (moto in server mode: `HELIO_TEST_S3`
//! names a running one, else each test starts `moto_server`, which `.ci/run` installs).

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use helio_runner::agent::Stop;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStoreExt, PutPayload};

use super::grid::{Db, TestGrid, chain, hashchain_batch};

/// An S3-compatible server on loopback.
struct S3Server {
    endpoint: String,
    child: Option<Child>,
}

impl Drop for S3Server {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn s3_server() -> S3Server {
    if let Ok(endpoint) = std::env::var("HELIO_TEST_S3") {
        return S3Server {
            endpoint,
            child: None,
        };
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new("moto_server")
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot start moto_server: {e} (pip install 'moto[server]'; .ci/run does)")
        });
    let server = S3Server {
        endpoint: format!("http://127.0.0.1:{port}"),
        child: Some(child),
    };
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "moto_server did not listen on port {port}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    server
}

impl S3Server {
    /// A fresh bucket, and a client for it.
    async fn bucket(&self) -> (String, AmazonS3) {
        let mut suffix = [0u8; 6];
        getrandom::fill(&mut suffix).unwrap();
        let bucket = format!("helio-{}", helio_sdk::wire::to_hex(&suffix));
        let status = reqwest::Client::new()
            .put(format!("{}/{bucket}", self.endpoint))
            .send()
            .await
            .unwrap()
            .status();
        assert!(status.is_success(), "creating bucket {bucket}: {status}");
        let store = AmazonS3Builder::new()
            .with_endpoint(&self.endpoint)
            .with_allow_http(true)
            .with_bucket_name(&bucket)
            .with_region("us-east-1")
            .with_access_key_id("helio-test")
            .with_secret_access_key("helio-test")
            .build()
            .unwrap();
        (bucket, store)
    }

    /// `helio ARGS` with this server as its S3 endpoint, and nothing of the user's AWS
    /// settings.
    fn helio(&self, args: &[&str], extra_env: &[(&str, &str)]) -> Output {
        let mut command = Command::new(helio_binary());
        command.args(args);
        for (k, _) in std::env::vars() {
            if k.starts_with("AWS_") {
                command.env_remove(k);
            }
        }
        command
            .env("HOME", std::env::temp_dir().join("helio-no-home"))
            .env("AWS_ENDPOINT_URL", &self.endpoint)
            .env("AWS_ACCESS_KEY_ID", "helio-test")
            .env("AWS_SECRET_ACCESS_KEY", "helio-test")
            .env("AWS_REGION", "us-east-1");
        for (k, v) in extra_env {
            command.env(k, v);
        }
        command.output().unwrap()
    }
}

/// The `helio` binary `cargo test --workspace` builds beside this test.
fn helio_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let helio = exe
        .parent()
        .and_then(|deps| deps.parent())
        .unwrap()
        .join(format!("helio{}", std::env::consts::EXE_SUFFIX));
    assert!(
        helio.exists(),
        "{} is missing: run the workspace's tests (cargo test --workspace), which build it",
        helio.display()
    );
    helio
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

async fn upload(store: &AmazonS3, key: &str, bytes: Vec<u8>) {
    store
        .put(&ObjectPath::from(key), PutPayload::from(bytes))
        .await
        .unwrap();
}

async fn download(store: &AmazonS3, key: &str) -> Vec<u8> {
    store
        .get(&ObjectPath::from(key))
        .await
        .unwrap_or_else(|e| panic!("{key}: {e}"))
        .bytes()
        .await
        .unwrap()
        .to_vec()
}

/// A batch under `s3://bucket/run-42/` whose module is named relative to the manifest runs
/// through consensus, and its results land under `s3://bucket/run-42/results/`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_from_s3_runs_to_results_in_s3() {
    let s3 = s3_server();
    let (bucket, store) = s3.bucket().await;
    let grid = TestGrid::start(Db::Sqlite, 30_000).await;
    let (n, rounds) = (6, 50);
    let local = hashchain_batch(grid.dir.path(), n, rounds, 60);
    upload(&store, "run-42/batch.json", std::fs::read(&local).unwrap()).await;
    let module = std::fs::read(grid.dir.path().join("hashchain.wasm")).unwrap();
    upload(&store, "run-42/hashchain.wasm", module).await;
    let manifest = format!("s3://{bucket}/run-42/batch.json");

    let checked = s3.helio(&["validate", &manifest], &[]);
    assert!(checked.status.success(), "{}", text(&checked.stdout));

    let runners: Vec<_> = ["alice", "bob"].iter().map(|o| grid.runner(o, 2)).collect();
    let remote = ["--scheduler", &grid.url, "--token", &grid.token];
    let submit = [&["submit", manifest.as_str(), "--wait"][..], &remote[..]].concat();
    let submitted = s3.helio(&submit, &[]);
    assert_eq!(
        submitted.status.code(),
        Some(0),
        "{}",
        text(&submitted.stderr)
    );
    let batch = text(&submitted.stdout).lines().next().unwrap().to_string();
    for (stop, task) in runners {
        stop.send(Stop::Drain).unwrap();
        task.await.unwrap().unwrap();
    }

    let out = format!("s3://{bucket}/run-42/results/");
    let results = [
        &["results", batch.as_str(), "--out", out.as_str(), "--json"][..],
        &remote[..],
    ]
    .concat();
    let written = s3.helio(&results, &[]);
    assert_eq!(written.status.code(), Some(0), "{}", text(&written.stderr));
    let printed: serde_json::Value = serde_json::from_slice(&written.stdout).unwrap();
    let stored: serde_json::Value =
        serde_json::from_slice(&download(&store, "run-42/results/results.json").await).unwrap();
    assert_eq!(printed, stored);
    let tasks = stored["tasks"].as_array().unwrap();
    assert_eq!(tasks.len(), n as usize);
    for (i, task) in tasks.iter().enumerate() {
        let name = task["task"].as_str().unwrap();
        assert_eq!(task["result"]["outcome"], "exited", "{task}");
        assert_eq!(task["result"]["exit_code"], 0, "{task}");
        assert_eq!(task["agreeing"].as_array().unwrap().len(), 2, "{task}");
        let digest = download(&store, &format!("run-42/results/{name}/digest.txt")).await;
        assert_eq!(text(&digest).trim(), chain([i as u8; 32], rounds), "{name}");
    }

    // The same manifest again is the same batch.
    let again = s3.helio(
        &[&["submit", manifest.as_str()][..], &remote[..]].concat(),
        &[],
    );
    assert_eq!(again.status.code(), Some(0), "{}", text(&again.stderr));
    assert_eq!(text(&again.stdout).trim(), batch);
    assert!(text(&again.stderr).contains("already submitted"));
    grid.stop().await;
}

/// A missing object and a hash mismatch are the manifest's fault (exit status 2); a store
/// that cannot be reached or refuses access is the storage's (6). Each error names the
/// object.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_errors_name_the_object_and_exit_distinctly() {
    let s3 = s3_server();
    let (bucket, store) = s3.bucket().await;
    let grid = TestGrid::start(Db::Sqlite, 30_000).await;
    let local = hashchain_batch(grid.dir.path(), 2, 10, 60);
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&local).unwrap()).unwrap();
    upload(
        &store,
        "run/batch.json",
        serde_json::to_vec(&manifest).unwrap(),
    )
    .await;
    let remote = [
        "--scheduler",
        grid.url.as_str(),
        "--token",
        grid.token.as_str(),
    ];
    let submit = |uri: String, env: &[(&str, &str)]| {
        s3.helio(&[&["submit", uri.as_str()][..], &remote[..]].concat(), env)
    };
    let uri = format!("s3://{bucket}/run/batch.json");

    // The module was never uploaded.
    let missing = submit(uri.clone(), &[]);
    assert_eq!(missing.status.code(), Some(2), "{}", text(&missing.stderr));
    let object = format!("s3://{bucket}/run/hashchain.wasm");
    assert!(
        text(&missing.stderr).contains(&format!("module: {object} does not exist")),
        "{}",
        text(&missing.stderr)
    );

    // Bytes that are not the module the manifest names.
    upload(&store, "run/hashchain.wasm", b"not the module".to_vec()).await;
    let mismatch = submit(uri.clone(), &[]);
    assert_eq!(
        mismatch.status.code(),
        Some(2),
        "{}",
        text(&mismatch.stderr)
    );
    let said = text(&mismatch.stderr);
    assert!(
        said.contains("BLAKE3 mismatch") && said.contains(&object),
        "{said}"
    );

    // No manifest at all.
    let nothing = submit(format!("s3://{bucket}/run/nothing.json"), &[]);
    assert_eq!(nothing.status.code(), Some(2));
    assert!(
        text(&nothing.stderr).contains(&format!("s3://{bucket}/run/nothing.json")),
        "{}",
        text(&nothing.stderr)
    );

    // Unsigned requests (no credentials): the store refuses them.
    let denied = submit(uri.clone(), &[("AWS_SKIP_SIGNATURE", "true")]);
    assert_eq!(denied.status.code(), Some(6), "{}", text(&denied.stderr));
    let said = text(&denied.stderr);
    assert!(
        said.contains("access denied") && said.contains(&uri),
        "{said}"
    );

    // Nothing listens at the endpoint: retried briefly, then reported.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let away = submit(uri.clone(), &[("AWS_ENDPOINT_URL", dead.as_str())]);
    assert_eq!(away.status.code(), Some(6), "{}", text(&away.stderr));
    assert!(text(&away.stderr).contains(&uri), "{}", text(&away.stderr));

    grid.stop().await;
}
