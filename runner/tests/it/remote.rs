//! `runner exec` reads what the job contract allows: a module and inputs over `http(s)://`
//! (and `s3://`, through the same reader as `helio`), and a manifest there too, with
//! relative URIs beside it; every hash still checked.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;

use helio_test_guests as g;
use serde_json::{Value, json};

use super::check::{runner, task};

/// Serves the files under `root` on a loopback port, one request per connection, counting
/// nothing and caching nothing; a missing file is 404. Returns the base URL.
fn http_server(root: PathBuf) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let mut lines = BufReader::new(stream.try_clone().unwrap()).lines();
            let request = lines.next().and_then(Result::ok).unwrap_or_default();
            // The headers end at the first empty line.
            for line in lines.by_ref() {
                if line.map_or(true, |l| l.is_empty()) {
                    break;
                }
            }
            let name = request
                .split(' ')
                .nth(1)
                .unwrap_or("/")
                .trim_start_matches('/');
            let (status, body) = match std::fs::read(root.join(name)) {
                Ok(body) => ("200 OK", body),
                Err(_) => ("404 Not Found", Vec::new()),
            };
            let head = format!(
                "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(head.as_bytes());
            if !request.starts_with("HEAD") {
                let _ = stream.write_all(&body);
            }
        }
    });
    url
}

/// `runner exec --json --no-cache MANIFEST`: its exit status and what it printed.
fn exec(manifest: &str) -> (i32, Value) {
    let out = runner()
        .args(["exec", "--json", "--no-cache", manifest])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let json = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "no JSON ({e}): {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap(), json)
}

#[test]
fn a_task_runs_from_http_the_same_as_from_files() {
    let t = task(g::HELLO)
        .input("name.txt", b"Ada")
        .output("greeting.txt", 100);
    let local = t.exec();
    assert_eq!(local.status, 0, "{:#}", local.json);
    let url = http_server(t.dir.path().to_path_buf());

    // A local manifest naming its module and input by URL.
    let mut manifest = t.manifest.clone();
    manifest["module"]["uri"] = json!(format!("{url}/module.wasm"));
    manifest["inputs"][0]["uri"] = json!(format!("{url}/name.txt"));
    let path = t.dir.path().join("by-url.json");
    std::fs::write(&path, manifest.to_string()).unwrap();
    let (status, by_url) = exec(path.to_str().unwrap());
    assert_eq!(status, 0, "{by_url:#}");
    assert_eq!(by_url["digest"], local.json["digest"]);

    // The manifest itself over HTTP, its relative URIs beside it.
    t.manifest_path();
    let (status, remote) = exec(&format!("{url}/task.json"));
    assert_eq!(status, 0, "{remote:#}");
    assert_eq!(remote["digest"], local.json["digest"]);
    assert_eq!(remote["fuel_consumed"], local.json["fuel_consumed"]);

    // Hashes are checked whatever the source; a missing object is named.
    let mut wrong = manifest.clone();
    wrong["inputs"][0]["blake3"] = json!(super::check::hash(b"Bob"));
    std::fs::write(&path, wrong.to_string()).unwrap();
    let (status, refused) = exec(path.to_str().unwrap());
    assert_eq!((status, refused["outcome"].as_str()), (2, Some("rejected")));
    assert!(
        refused["error"].as_str().unwrap().contains("BLAKE3"),
        "{refused:#}"
    );
    let (status, missing) = exec(&format!("{url}/nowhere.json"));
    assert_eq!(status, 2, "{missing:#}");
    let said = missing["error"].as_str().unwrap();
    assert!(said.contains("nowhere.json"), "{said}");
}
