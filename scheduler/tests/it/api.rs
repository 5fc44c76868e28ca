//! The API's answers to bad requests: who may do what, and errors that name the problem.

use helio_scheduler::service;
use helio_scheduler::store::Role;
use reqwest::StatusCode;

use super::grid::{Db, TestGrid, hashchain_batch};

/// A module of `n` empty functions, encoded by hand.
fn many_functions(n: u32) -> Vec<u8> {
    fn leb(mut v: u32, out: &mut Vec<u8>) {
        loop {
            let byte = (v & 0x7f) as u8;
            v >>= 7;
            out.push(if v == 0 { byte } else { byte | 0x80 });
            if v == 0 {
                break;
            }
        }
    }
    fn section(id: u8, body: Vec<u8>, out: &mut Vec<u8>) {
        out.push(id);
        leb(body.len() as u32, out);
        out.extend(body);
    }
    let mut m = b"\0asm\x01\0\0\0".to_vec();
    section(1, vec![1, 0x60, 0, 0], &mut m);
    let mut functions = Vec::new();
    leb(n, &mut functions);
    functions.extend(std::iter::repeat_n(0u8, n as usize));
    section(3, functions, &mut m);
    let mut code = Vec::new();
    leb(n, &mut code);
    for _ in 0..n {
        code.extend([2, 0, 0x0b]);
    }
    section(10, code, &mut m);
    m
}

async fn error(response: reqwest::Response) -> (StatusCode, String) {
    let status = response.status();
    let body: serde_json::Value = response.json().await.unwrap();
    (status, body["error"].as_str().unwrap().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_are_authenticated_authorized_and_checked() {
    let grid = TestGrid::start(Db::Sqlite, 30_000).await;
    let http = reqwest::Client::new();
    let url = |p: &str| format!("{}{p}", grid.url);

    let (status, msg) = error(
        http.post(url("/v1/batches"))
            .body("{}")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(msg.contains("Authorization"), "{msg}");
    let (status, _) = error(
        http.get(url("/v1/batches/b-1"))
            .bearer_auth("helio_nonsense")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // A submitter may not read the whole ledger; an admin may.
    let (status, msg) = error(
        http.get(url("/v1/ledger"))
            .bearer_auth(&grid.token)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(msg.contains("admin"), "{msg}");
    let admin = service::open_store(&grid.config)
        .await
        .unwrap()
        .create_token(Role::Admin, "ops")
        .await
        .unwrap();
    let ledger: serde_json::Value = http
        .get(url("/v1/ledger"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ledger["verified"], true);

    // Runner endpoints need a registered runner's signature.
    let (status, msg) = error(
        http.post(url("/v1/leases"))
            .body("{\"max\":1}")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(msg.contains("x-helio-runner"), "{msg}");

    // A bad manifest: every problem, named.
    let bad = serde_json::json!({ "schema_version": 2, "batch": "x", "tasks": [] });
    let (status, msg) = error(
        http.post(url("/v1/batches"))
            .bearer_auth(&grid.token)
            .json(&bad)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(msg.contains("schema_version"), "{msg}");

    // A target no replicas could reach would leave the whole batch to the scheduler's own
    // sandbox: refused, before any blob is looked for, naming what would do.
    let manifest = hashchain_batch(grid.dir.path(), 2, 10, 5);
    let mut strict: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&manifest).unwrap()).unwrap();
    strict["redundancy"] = serde_json::json!({ "replicas": 1, "quorum": 1, "max_replicas": 2 });
    strict["target_error"] = serde_json::json!(1e-15);
    let (status, msg) = error(
        http.post(url("/v1/batches"))
            .bearer_auth(&grid.token)
            .json(&strict)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(msg.contains("raise max_replicas to 4"), "{msg}");

    // A manifest whose module was never uploaded names the blob.
    let text = std::fs::read(&manifest).unwrap();
    let (status, msg) = error(
        http.post(url("/v1/batches"))
            .bearer_auth(&grid.token)
            .body(text)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT);
    let module = helio_sdk::Blake3Hash::of(&helio_jobs::bytes(helio_jobs::HASHCHAIN));
    assert!(msg.contains(&module.to_string()), "{msg}");

    // A blob whose bytes do not hash to its name is refused.
    let (status, msg) = error(
        http.put(url(&format!("/v1/blobs/{module}")))
            .bearer_auth(&grid.token)
            .body("not the module")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(msg.contains("hash to"), "{msg}");

    // A module no runner would compile (past the contract's compile bounds) is refused at
    // submission, naming the task and the bound, not handed back by every runner later.
    let bomb = many_functions(60_000);
    let bomb_hash = helio_sdk::Blake3Hash::of(&bomb);
    let put = http
        .put(url(&format!("/v1/blobs/{bomb_hash}")))
        .bearer_auth(&grid.token)
        .body(bomb)
        .send()
        .await
        .unwrap();
    assert!(put.status().is_success(), "{}", put.status());
    let batch = serde_json::json!({
        "schema_version": 1,
        "batch": "bomb",
        "defaults": { "module": { "uri": "bomb.wasm", "blake3": bomb_hash.to_string() },
                      "limits": { "fuel": 1000 } },
        "tasks": [{ "name": "t1" }]
    });
    let (status, msg) = error(
        http.post(url("/v1/batches"))
            .bearer_auth(&grid.token)
            .json(&batch)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        msg.contains("\"t1\"") && msg.contains("defines 60000 functions"),
        "{msg}"
    );

    let health: serde_json::Value = http
        .get(url("/health"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["status"], "ok");
    let metrics = http
        .get(url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("helio_tasks{phase=\"open\"} 0"),
        "{metrics}"
    );
    grid.stop().await;
}

/// A token may expire, and may be revoked: then it is refused with a 401 that says which;
/// `scheduler token list` shows tokens by the start of their hash (never the token), and
/// `token revoke` takes that id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_expire_and_are_revoked() {
    let grid = TestGrid::start(Db::Sqlite, 30_000).await;
    let http = reqwest::Client::new();
    let status_of = |token: String| {
        let request = http
            .get(format!("{}/v1/batches/b-0123456789abcdef", grid.url))
            .bearer_auth(token);
        async move { request.send().await.unwrap() }
    };
    let store = service::open_store(&grid.config).await.unwrap();
    let now = helio_scheduler::store::now_ms();
    let lapsed = store
        .create_token_until(Role::Submitter, "lapsed", Some(now - 1_000))
        .await
        .unwrap();
    let (status, msg) = error(status_of(lapsed).await).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(msg.contains("expired"), "{msg}");
    let later = store
        .create_token_until(Role::Submitter, "later", Some(now + 3_600_000))
        .await
        .unwrap();
    // Valid: past authentication, the batch is merely unknown.
    assert_eq!(
        status_of(later.clone()).await.status(),
        StatusCode::NOT_FOUND
    );

    // The command line: list, then revoke by id.
    let scheduler = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_scheduler"))
            .args(args)
            .arg("--data-dir")
            .arg(&grid.config.data_dir)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let (ok, listed, _) = scheduler(&["token", "list", "--json"]);
    assert!(ok);
    let tokens: Vec<serde_json::Value> = serde_json::from_str(&listed).unwrap();
    assert!(!listed.contains(&later), "a token is never shown: {listed}");
    let id = tokens
        .iter()
        .find(|t| t["name"] == "later")
        .and_then(|t| t["id"].as_str())
        .unwrap()
        .to_string();
    assert!(
        tokens
            .iter()
            .any(|t| t["name"] == "lapsed" && t["expires_ms"].is_i64())
    );
    let (ok, _, err) = scheduler(&["token", "revoke", "zz"]);
    assert!(!ok && err.contains("not a token id"), "{err}");
    let (ok, said, err) = scheduler(&["token", "revoke", &id]);
    assert!(ok, "{err}");
    assert!(said.contains(&id) && said.contains("later"), "{said}");
    let (status, msg) = error(status_of(later).await).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(msg.contains("revoked"), "{msg}");
    // The other tokens still work.
    assert_eq!(
        status_of(grid.token.clone()).await.status(),
        StatusCode::NOT_FOUND
    );
    let (ok, table, _) = scheduler(&["token", "list"]);
    assert!(
        ok && table.contains(&id) && table.contains("ago"),
        "{table}"
    );
}

/// A submitter steers its batches with `helio`: submit with a priority and a deadline,
/// list them, pause, resume, change, cancel; another submitter may not touch them, an admin
/// may; bad requests are refused naming what is wrong.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submitters_steer_their_batches_with_helio() {
    let grid = TestGrid::start(Db::Sqlite, 30_000).await;
    let store = service::open_store(&grid.config).await.unwrap();
    let other = store
        .create_token(Role::Submitter, "someone-else")
        .await
        .unwrap();
    let admin = store.create_token(Role::Admin, "operator").await.unwrap();
    let manifest = hashchain_batch(grid.dir.path(), 3, 10, 60);
    let helio = |token: &str, args: &[&str]| {
        let out = std::process::Command::new(super::s3::workspace_binary("helio"))
            .args(args)
            .env("HELIO_SCHEDULER", &grid.url)
            .env("HELIO_TOKEN", token)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let json = |text: &str| -> serde_json::Value { serde_json::from_str(text).unwrap() };

    let (code, _, err) = helio(
        &grid.token,
        &["submit", manifest.to_str().unwrap(), "--deadline", "6x"],
    );
    assert_eq!(code, Some(2));
    assert!(err.contains("the unit must be s, m, h or d"), "{err}");
    let (code, out, err) = helio(
        &grid.token,
        &[
            "submit",
            manifest.to_str().unwrap(),
            "--priority",
            "-2",
            "--deadline",
            "2h",
            "--json",
        ],
    );
    assert_eq!(code, Some(0), "{err}");
    let batch = json(out.lines().next().unwrap())["batch"]
        .as_str()
        .unwrap()
        .to_string();

    let (code, out, _) = helio(&grid.token, &["status", "--json"]);
    assert_eq!(code, Some(0));
    let listed = json(&out);
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
    let b = &listed[0];
    assert_eq!(
        (b["batch"].as_str(), b["priority"].as_i64()),
        (Some(batch.as_str()), Some(-2))
    );
    let left_ms = b["deadline_ms"].as_i64().unwrap() - helio_scheduler::store::now_ms();
    assert!((7_000_000..=7_200_000).contains(&left_ms), "{left_ms}");
    // Someone else's list is empty, and it may not steer this batch.
    let (_, out, _) = helio(&other, &["status", "--json"]);
    assert_eq!(json(&out), serde_json::json!([]));
    let (code, _, err) = helio(&other, &["cancel", &batch]);
    assert_eq!(code, Some(4));
    assert!(err.contains("only it or an admin may steer it"), "{err}");
    let (code, _, err) = helio(&other, &["status", "--all"]);
    assert_eq!(code, Some(4));
    assert!(err.contains("only an admin token"), "{err}");
    let (code, out, _) = helio(&admin, &["status", "--all", "--json"]);
    assert_eq!((code, json(&out).as_array().unwrap().len()), (Some(0), 1));

    let (code, out, _) = helio(&grid.token, &["pause", &batch, "--json"]);
    assert_eq!(
        (code, json(&out)["state"].as_str()),
        (Some(0), Some("paused"))
    );
    let (_, out, _) = helio(&grid.token, &["status"]);
    assert!(out.contains("paused"), "{out}");
    let (code, out, _) = helio(&admin, &["resume", &batch, "--json"]);
    assert_eq!(
        (code, json(&out)["state"].as_str()),
        (Some(0), Some("active"))
    );
    let (code, _, err) = helio(&grid.token, &["set", &batch]);
    assert_eq!(code, Some(2));
    assert!(
        err.contains("--priority, --deadline or --no-deadline"),
        "{err}"
    );
    let (code, out, err) = helio(
        &grid.token,
        &["set", &batch, "--priority", "7", "--no-deadline", "--json"],
    );
    assert_eq!(code, Some(0), "{err}");
    let changed = json(&out);
    assert_eq!(changed["priority"], 7);
    assert!(changed.get("deadline_ms").is_none(), "{changed}");

    let (code, out, _) = helio(&grid.token, &["cancel", &batch]);
    assert_eq!(code, Some(0));
    assert!(out.contains("3 cancelled (cancelled by test)"), "{out}");
    let (code, out, _) = helio(&grid.token, &["status", &batch]);
    assert_eq!(code, Some(7), "a cancelled batch's status exits 7: {out}");
    let (code, _, err) = helio(&grid.token, &["resume", &batch]);
    assert_eq!(code, Some(4));
    assert!(err.contains("is cancelled"), "{err}");

    // Straight over HTTP: an unknown query parameter and a contradictory change.
    let http = reqwest::Client::new();
    let (status, msg) = error(
        http.post(format!("{}/v1/batches?priority=high", grid.url))
            .bearer_auth(&grid.token)
            .body("{}")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(msg.contains("priority"), "{msg}");
    let (status, msg) = error(
        http.patch(format!("{}/v1/batches/{batch}", grid.url))
            .bearer_auth(&grid.token)
            .body(r#"{"deadline_ms": 5, "no_deadline": true}"#)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(msg.contains("give one"), "{msg}");
    grid.stop().await;
}
