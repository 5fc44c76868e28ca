//! The API's answers to bad requests: who may do what, and errors that name the problem.

use helio_scheduler::service;
use helio_scheduler::store::Role;
use reqwest::StatusCode;

use super::grid::{Db, TestGrid, hashchain_batch};

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

    // A manifest whose module was never uploaded names the blob.
    let manifest = hashchain_batch(grid.dir.path(), 2, 10, 5);
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

    // The OpenAPI document describes every route the server has.
    let doc: serde_json::Value = http
        .get(url("/v1/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let source = include_str!("../../src/api/mod.rs");
    for line in source
        .lines()
        .filter(|l| l.trim_start().starts_with(".route(\""))
    {
        let path = line.split('"').nth(1).unwrap();
        assert!(
            doc["paths"].get(path).is_some(),
            "{path} is not in openapi.json"
        );
    }
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
