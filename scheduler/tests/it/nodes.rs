//! Volunteer nodes and what they earn: the cooperative fund's share, credit for time online,
//! payouts, offline detection, pool sizes, rate limits and the activity log. Each test that
//! touches the database runs on SQLite and on PostgreSQL.

use std::time::Duration;

use helio_runner::agent::{Client, ClientError};
use helio_scheduler::ledger::{self, Kind};
use helio_scheduler::service::{self, Config};
use helio_scheduler::store::{Enrollment, Role, Store};
use helio_sdk::wire::{self, RegisterRunner, ReportStatus, RunnerKey};
use helio_sdk::{Blake3Hash, DETERMINISM_PROFILE, Outcome, RunReport, Tier};
use reqwest::StatusCode;
use sqlx::Connection;

use super::grid::{
    Db, TestGrid, drop_database, fresh_database, hashchain_batch, lie, lie_with, rogue,
    rogue_with_slots, run_health_check,
};

pub(super) fn registration(key: &RunnerKey, owner: &str) -> RegisterRunner {
    RegisterRunner {
        public_key: key.public_hex(),
        owner: owner.into(),
        tier: Tier::Cpu,
        slots: 2,
        cores: 2,
        memory_bytes: 1 << 30,
        fuel_per_second: 1_000_000_000,
        profile: DETERMINISM_PROFILE.into(),
        location: None,
        green_energy: None,
        owner_key: None,
        endorsement: None,
        invite: None,
    }
    .endorsed_by(&super::grid::owner_key(owner))
}

/// Registrations from one test address, with no limit on new owners.
fn anywhere() -> Enrollment {
    Enrollment {
        admission: helio_scheduler::owners::Admission::Open {
            per_address_per_day: u32::MAX,
        },
        address: "test".into(),
    }
}

pub(super) fn new_key() -> RunnerKey {
    let mut secret = [0u8; 32];
    getrandom::fill(&mut secret).unwrap();
    RunnerKey::from_secret(secret)
}

/// A store on a fresh database with the tests' settings and `adjust`'s, no service running
/// (so that the test alone decides what time it is).
async fn bare_store(
    db: Db,
    adjust: impl FnOnce(&mut Config),
) -> (Store, Config, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::new(dir.path().join("data"));
    config.database = fresh_database(db).await;
    config.api.heartbeat_seconds = 1;
    adjust(&mut config);
    (service::open_store(&config).await.unwrap(), config, dir)
}

/// Runs one statement on the test's database, for what no API does on demand.
async fn execute(config: &Config, sql: &str) {
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(&config.database_url())
        .await
        .unwrap();
    sqlx::query(sql).execute(&mut conn).await.unwrap();
}

/// Every runner, as `GET /v1/runners` lists them.
pub async fn runner_list(url: &str) -> Vec<wire::RunnerInfo> {
    reqwest::get(format!("{url}/v1/runners"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// A runner's activity log, newest first, read with an admin token.
async fn runner_events(url: &str, admin: &str, id: &str) -> Vec<serde_json::Value> {
    let body: serde_json::Value = reqwest::Client::new()
        .get(format!("{url}/v1/runners/{id}/events"))
        .bearer_auth(admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    body["events"].as_array().unwrap().clone()
}

/// An admin token for `grid`.
async fn admin_token(grid: &TestGrid) -> String {
    service::open_store(&grid.config)
        .await
        .unwrap()
        .create_token(Role::Admin, "ops")
        .await
        .unwrap()
}

/// Time online is credited once, at the policy's rate, for spans no longer than the
/// offline limit, never to a flagged runner; balances at the threshold are paid out once,
/// even by two rounds at the same moment; the ledger verifies throughout.
async fn time_online_is_credited_and_balances_paid_once(db: Db) {
    // 3.6 credits an hour: one micro-credit a millisecond.
    let (store, config, _dir) = bare_store(db, |c| {
        c.policy.uptime_micro_per_hour = 3_600_000;
        c.policy.uptime_min_ms = 1_000;
    })
    .await;
    let t0 = 1_700_000_000_000;
    let (alice, bob, mallory) = (new_key(), new_key(), new_key());
    for (key, owner) in [(&alice, "alice"), (&bob, "bob"), (&mallory, "mallory")] {
        store
            .register_runner(&registration(key, owner), &anywhere(), t0)
            .await
            .unwrap();
    }
    let touch = |key: &RunnerKey, at: i64| {
        let store = store.clone();
        let id = key.runner_id();
        async move {
            let runner = store.runner(&id).await.unwrap().unwrap();
            store.touch(&runner, at).await.unwrap();
        }
    };
    // Alice is heard from every two seconds: 4 s online.
    touch(&alice, t0 + 2_000).await;
    touch(&alice, t0 + 4_000).await;
    // Bob for 2 s, then silent for 8 s: longer than the offline limit (three 1 s
    // heartbeats), so those 8 s are not time online.
    touch(&bob, t0 + 2_000).await;
    touch(&bob, t0 + 10_000).await;
    // Mallory is online as long as Alice, but flagged.
    touch(&mallory, t0 + 2_000).await;
    touch(&mallory, t0 + 4_000).await;
    execute(
        &config,
        &format!(
            "UPDATE runners SET disagreements = 1 WHERE id = '{}'",
            mallory.runner_id()
        ),
    )
    .await;
    // A touch at an earlier time than the last (a request that took a while) adds nothing.
    touch(&alice, t0 + 3_000).await;

    assert_eq!(store.credit_uptime(t0 + 20_000).await.unwrap(), 2);
    assert_eq!(
        store.credit_uptime(t0 + 21_000).await.unwrap(),
        0,
        "nothing new"
    );
    let owners = store.credits("owner").await.unwrap();
    let earned = |owner: &str| {
        owners
            .iter()
            .find(|r| r.key == owner)
            .map_or(0, |r| r.micro_credits)
    };
    assert_eq!(earned("alice"), 4_000);
    assert_eq!(earned("bob"), 2_000);
    assert_eq!(earned("mallory"), 0);
    let events = store.runner_events(&alice.runner_id(), 10).await.unwrap();
    assert_eq!(events[0].event, "uptime credit", "{events:?}");
    assert!(events[0].detail.contains("4 s online"), "{events:?}");
    assert_eq!(events.last().unwrap().event, "registered");
    let first = &events.last().unwrap().detail;
    assert!(first.ends_with("owner admitted (open)"), "{first}");

    // Only Alice reaches the threshold.
    let paid = store.pay_out(3_000, t0 + 30_000).await.unwrap();
    assert_eq!(paid.len(), 1, "{paid:?}");
    assert_eq!(
        (paid[0].owner.as_str(), paid[0].micro_credits),
        ("alice", 4_000)
    );
    assert!(store.pay_out(3_000, t0 + 31_000).await.unwrap().is_empty());

    // Bob's next second online brings him to 3_000; two rounds at once pay him once.
    touch(&bob, t0 + 11_000).await;
    assert_eq!(store.credit_uptime(t0 + 40_000).await.unwrap(), 1);
    let (a, b) = tokio::join!(
        store.pay_out(3_000, t0 + 50_000),
        store.pay_out(3_000, t0 + 50_000)
    );
    let rounds = [a.unwrap(), b.unwrap()];
    let bob_paid: Vec<_> = rounds.iter().flatten().collect();
    assert_eq!(bob_paid.len(), 1, "{rounds:?}");
    assert_eq!(
        (bob_paid[0].owner.as_str(), bob_paid[0].micro_credits),
        ("bob", 3_000)
    );

    let owners = store.credits("owner").await.unwrap();
    for row in &owners {
        assert_eq!(row.paid, row.micro_credits, "{row:?}: everything paid");
    }
    let payouts = store.payouts().await.unwrap();
    assert_eq!(payouts.len(), 2);
    let (entries, len, head) = store.ledger().await.unwrap();
    ledger::verify_anchored(&entries, len, &head).unwrap();
    let kinds: Vec<Kind> = entries.iter().map(|e| e.credit.kind).collect();
    assert_eq!(
        kinds,
        [
            Kind::Uptime,
            Kind::Uptime,
            Kind::Payout,
            Kind::Uptime,
            Kind::Payout
        ]
    );
    drop(store);
    drop_database(&config).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn time_online_is_credited_and_balances_paid_once_sqlite() {
    time_online_is_credited_and_balances_paid_once(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn time_online_is_credited_and_balances_paid_once_postgres() {
    time_online_is_credited_and_balances_paid_once(Db::Postgres).await;
}

/// Every task credit is split with the cooperative fund: the two parts add up to the
/// task's credit exactly, the fund's entries sit beside the runners' in the chain, and no
/// runner may register under the fund's name.
async fn the_cooperative_fund_gets_its_share(db: Db) {
    let grid = TestGrid::start_with(db, |c| c.policy.cooperative_share = 0.25).await;
    let n = 10;
    let manifest = hashchain_batch(grid.dir.path(), n, 10, 60);
    let batch = grid.submit(&manifest).await;
    for owner in ["ann", "bob"] {
        let runner = rogue_with_slots(&grid.url, owner, 16).await;
        let leases = runner.lease(16).await.unwrap();
        assert_eq!(leases.len(), n as usize);
        let reports = leases.iter().map(|l| lie(&runner, l)).collect();
        for ack in runner.report(reports).await.unwrap() {
            assert!(
                matches!(ack.status, ReportStatus::Recorded | ReportStatus::Accepted),
                "{ack:?}"
            );
        }
    }
    let each = ledger::micro_credits(4242, 2.0);
    let (own, fund) = ledger::split(each, 0.25);
    assert_eq!(fund, each / 4, "the fund's share is rounded down");
    assert_eq!(own + fund, each);

    let results = grid.submitter().results(&batch).await.unwrap();
    for task in &results.tasks {
        assert_eq!(task.state, "accepted");
        assert_eq!(task.agreeing.len(), 2, "the fund is not an agreeing runner");
        assert_eq!(task.micro_credits, 2 * each, "{}", task.task);
    }
    let status = grid.submitter().status(&batch).await.unwrap();
    assert_eq!(status.micro_credits, 2 * n as u64 * each);
    let owners = grid.submitter().credits("owner").await.unwrap().rows;
    let row = |owner: &str| owners.iter().find(|r| r.key == owner).unwrap().clone();
    assert_eq!(row("cooperative").micro_credits, 2 * n as u64 * fund);
    assert_eq!(row("ann").micro_credits, n as u64 * own);
    assert_eq!(row("bob").micro_credits, n as u64 * own);
    assert_eq!(row("ann").tasks, n as u64);
    let runners = grid.submitter().credits("runner").await.unwrap().rows;
    assert_eq!(runners.len(), 2, "the fund is no runner: {runners:?}");

    let store = service::open_store(&grid.config).await.unwrap();
    let (entries, len, head) = store.ledger().await.unwrap();
    ledger::verify_anchored(&entries, len, &head).unwrap();
    assert_eq!(entries.len(), 4 * n as usize);
    for pair in entries.chunks(2) {
        assert_eq!(pair[0].credit.kind, Kind::Task);
        assert_eq!(pair[1].credit.kind, Kind::Fund);
        assert_eq!(pair[1].credit.owner, "cooperative");
        assert_eq!(
            (&pair[0].credit.task, &pair[0].credit.runner),
            (&pair[1].credit.task, &pair[1].credit.runner)
        );
    }
    drop(store);

    let impostor = Client::new(&grid.url, new_key());
    let err = impostor
        .register(&registration(impostor.key(), "cooperative"))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ClientError::Refused { status: 409, error, .. } if error.contains("cooperative fund")),
        "{err}"
    );
    grid.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cooperative_fund_gets_its_share_sqlite() {
    the_cooperative_fund_gets_its_share(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cooperative_fund_gets_its_share_postgres() {
    the_cooperative_fund_gets_its_share(Db::Postgres).await;
}

/// A runner silent for three heartbeats is marked offline and its leases go to other
/// runners at once, long before their deadlines, with no mark against it; heard from again,
/// it is online again, and its old leases stay gone.
async fn a_silent_runner_goes_offline_and_its_leases_go_to_others(db: Db) {
    // Leases last a minute beyond the task's wall time: only offline detection can free
    // them within this test.
    let grid = TestGrid::start(db, 60_000).await;
    let manifest = hashchain_batch(grid.dir.path(), 2, 10, 60);
    let batch = grid.submit(&manifest).await;
    let ghost = rogue(&grid.url, "ghost").await;
    let taken = ghost.lease(2).await.unwrap();
    assert_eq!(taken.len(), 2);
    let admin = admin_token(&grid).await;
    let events = |id: String| {
        let (url, admin) = (grid.url.clone(), admin.clone());
        async move { runner_events(&url, &admin, &id).await }
    };
    let online = || {
        let url = format!("{}/metrics", grid.url);
        async move {
            let text = reqwest::get(url).await.unwrap().text().await.unwrap();
            text.lines()
                .find_map(|l| l.strip_prefix("helio_runners_online{tier=\"cpu\"} "))
                .unwrap_or_else(|| panic!("no online gauge for cpu: {text}"))
                .to_string()
        }
    };
    assert_eq!(online().await, "1");
    // Wait for the offline mark: three 1 s heartbeats and the loop's half second.
    let start = std::time::Instant::now();
    let offline = loop {
        let list = events(ghost.runner_id()).await;
        if let Some(e) = list.iter().find(|e| e["event"] == "offline") {
            break e.clone();
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "never marked offline: {list:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        offline["detail"]
            .as_str()
            .unwrap()
            .contains("2 leased tasks"),
        "{offline}"
    );
    let runners = runner_list(&grid.url).await;
    let info = runners.iter().find(|r| r.id == ghost.runner_id()).unwrap();
    assert!(!info.online);
    assert_eq!(info.missed_deadlines, 0, "going offline is no offence");
    assert_eq!(online().await, "0");
    // Another runner gets both tasks' replicas now.
    let other = rogue(&grid.url, "other").await;
    assert_eq!(other.lease(2).await.unwrap().len(), 2);
    let status = grid.submitter().status(&batch).await.unwrap();
    assert_eq!(status.running, 2);

    // The ghost returns: online again; its old leases are gone, its old results refused.
    ghost.heartbeat().await.unwrap();
    let list = events(ghost.runner_id()).await;
    assert_eq!(list[0]["event"], "online", "{list:?}");
    let late = ghost.report(vec![lie(&ghost, &taken[0])]).await.unwrap();
    assert_eq!(late[0].status, ReportStatus::Refused, "{late:?}");
    let runners = runner_list(&grid.url).await;
    assert!(
        runners
            .iter()
            .find(|r| r.id == ghost.runner_id())
            .unwrap()
            .online
    );
    grid.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_runner_goes_offline_and_its_leases_go_to_others_sqlite() {
    a_silent_runner_goes_offline_and_its_leases_go_to_others(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_runner_goes_offline_and_its_leases_go_to_others_postgres() {
    a_silent_runner_goes_offline_and_its_leases_go_to_others(Db::Postgres).await;
}

/// A signed request, as a runner sends it, so that the test sees status and headers.
pub(super) async fn signed(
    http: &reqwest::Client,
    url: &str,
    key: &RunnerKey,
    path: &str,
    body: &serde_json::Value,
) -> reqwest::Response {
    let body = serde_json::to_vec(body).unwrap();
    let time = helio_scheduler::store::now_ms();
    let message = wire::request_message("POST", path, time, &body);
    http.post(format!("{url}{path}"))
        .header(wire::RUNNER_HEADER, key.runner_id())
        .header(wire::TIME_HEADER, time.to_string())
        .header(wire::SIGNATURE_HEADER, key.sign(&message))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap()
}

pub(super) async fn error(response: reqwest::Response) -> (StatusCode, Option<String>, String) {
    let status = response.status();
    let retry = response
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_string());
    let body: serde_json::Value = response.json().await.unwrap();
    (status, retry, body["error"].as_str().unwrap().to_string())
}

/// Ids are parsed where they come in: a lease id of 0 names neither a task nor a health
/// check, and a batch id has one form; each is refused with a reason, not looked up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ids_that_name_nothing_are_refused_at_the_edge() {
    let grid = TestGrid::start_with(Db::Sqlite, |_| {}).await;
    let http = reqwest::Client::new();
    let key = new_key();
    let body = serde_json::to_value(registration(&key, "alice")).unwrap();
    let registered = signed(&http, &grid.url, &key, "/v1/runners", &body).await;
    assert_eq!(registered.status(), StatusCode::OK);
    let report = serde_json::json!({ "results": [{
        "task_id": 0,
        "report": RunReport::new(Outcome::Exited { exit_code: 0 }, 1, Blake3Hash::of(b""), Vec::new(), 1),
        "signature": "00",
    }] });
    for (path, body) in [
        ("/v1/results", report),
        (
            "/v1/leases/return",
            serde_json::json!({ "task_ids": [3, 0] }),
        ),
    ] {
        let (status, _, msg) = error(signed(&http, &grid.url, &key, path, &body).await).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {msg}");
        assert!(msg.contains("task_id 0 names no lease"), "{path}: {msg}");
    }
    // A runner id that is no runner id is refused as such, in a header or a path.
    let forged = http
        .post(format!("{}/v1/heartbeat", grid.url))
        .header(wire::RUNNER_HEADER, "r-../../admin")
        .body("{}")
        .send()
        .await
        .unwrap();
    let (status, _, msg) = error(forged).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{msg}");
    assert!(msg.contains("is not a runner id"), "{msg}");
    let admin = service::open_store(&grid.config)
        .await
        .unwrap()
        .create_token(Role::Admin, "ops")
        .await
        .unwrap();
    let events = http
        .get(format!("{}/v1/runners/alice/events", grid.url))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    let (status, _, msg) = error(events).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{msg}");
    assert!(msg.contains("is not a runner id"), "{msg}");
    for path in ["/v1/batches/b-NOTHEX", "/v1/batches/12/results"] {
        let response = http
            .get(format!("{}{path}", grid.url))
            .bearer_auth(&grid.token)
            .send()
            .await
            .unwrap();
        let (status, _, msg) = error(response).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {msg}");
        assert!(msg.contains("is not a batch id"), "{path}: {msg}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runners_are_validated_pooled_rate_limited_and_audited() {
    let grid = TestGrid::start_with(Db::Sqlite, |c| {
        c.api.max_runners.insert(Tier::Cpu, 2);
        c.api.runner_rate = 2.0;
    })
    .await;
    let http = reqwest::Client::new();
    let url = grid.url.clone();
    let register = async |key: &RunnerKey, reg: &RegisterRunner| {
        let body = serde_json::to_value(reg).unwrap();
        signed(&http, &url, key, "/v1/runners", &body).await
    };

    // What a runner says about itself is checked.
    let a = new_key();
    for (location, green, says) in [
        (Some("x".repeat(65)), None, "location must be 1 to 64"),
        (Some("eu\nwest".to_string()), None, "printable"),
        (Some(String::new()), None, "location must be 1 to 64"),
        (None, Some(1.5), "green_energy"),
        (None, Some(f64::NAN), "green_energy"),
    ] {
        let reg = RegisterRunner {
            location: location.clone(),
            green_energy: green,
            ..registration(&a, "alice")
        };
        // NaN is no JSON number: send it as a string, which is refused just the same.
        let response = if green.is_some_and(f64::is_nan) {
            let mut body = serde_json::to_value(&reg).unwrap();
            body["green_energy"] = "NaN".into();
            signed(&http, &url, &a, "/v1/runners", &body).await
        } else {
            register(&a, &reg).await
        };
        let (status, _, msg) = error(response).await;
        assert_eq!(
            status,
            StatusCode::BAD_REQUEST,
            "{location:?} {green:?}: {msg}"
        );
        assert!(msg.contains(says), "{msg}");
    }

    // The cpu pool holds two runners.
    let reg_a = RegisterRunner {
        location: Some("Lagos, NG".into()),
        green_energy: Some(0.8),
        ..registration(&a, "alice")
    };
    assert_eq!(register(&a, &reg_a).await.status(), StatusCode::OK);
    let b = new_key();
    assert_eq!(
        register(&b, &registration(&b, "bob")).await.status(),
        StatusCode::OK
    );
    let c = new_key();
    let (status, retry, msg) = error(register(&c, &registration(&c, "carol")).await).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{msg}");
    assert!(msg.contains("cpu pool is full"), "{msg}");
    assert!(retry.is_some(), "a full pool says when to try again");
    // A runner already in the pool may register again.
    assert_eq!(register(&a, &reg_a).await.status(), StatusCode::OK);
    let runners: Vec<wire::RunnerInfo> = reqwest::get(format!("{url}/v1/runners"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let info = runners.iter().find(|r| r.id == a.runner_id()).unwrap();
    assert_eq!(info.location, "Lagos, NG");
    assert_eq!(info.green_energy, Some(0.8));
    assert_eq!(runners.len(), 2);

    // Two requests a second, four at once: a runner that asks faster is told to wait.
    let mut served = 0;
    let refused = loop {
        let response = signed(&http, &url, &b, "/v1/heartbeat", &serde_json::json!({})).await;
        if response.status() == StatusCode::OK {
            served += 1;
            assert!(served <= 6, "never limited");
            continue;
        }
        break error(response).await;
    };
    assert!(served >= 4, "the burst of four was cut short at {served}");
    assert_eq!(refused.0, StatusCode::TOO_MANY_REQUESTS, "{}", refused.2);
    assert!(refused.2.contains("requests a second"), "{}", refused.2);
    assert_eq!(refused.1.as_deref(), Some("1"));
    // Another runner is not held back by it.
    let response = signed(&http, &url, &a, "/v1/heartbeat", &serde_json::json!({})).await;
    assert_eq!(response.status(), StatusCode::OK);

    // The activity log is for operators.
    let store = service::open_store(&grid.config).await.unwrap();
    let admin = store.create_token(Role::Admin, "ops").await.unwrap();
    let path = format!("{url}/v1/runners/{}/events", a.runner_id());
    let (status, _, _) = error(
        http.get(&path)
            .bearer_auth(&grid.token)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let log: serde_json::Value = http
        .get(&path)
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let names: Vec<&str> = log["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["registered again", "registered"]);
    assert!(
        log["events"][1]["detail"]
            .as_str()
            .unwrap()
            .contains("in Lagos, NG, 80% green energy"),
        "{log}"
    );
    let (status, _, msg) = error(
        http.get(format!("{path}?limit=0"))
            .bearer_auth(&admin)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{msg}");
    let (status, _, _) = error(
        http.get(format!("{url}/v1/runners/r-0000000000000000/events"))
            .bearer_auth(&admin)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Payouts: operators pay, anyone may see what was paid.
    let (status, _, _) = error(
        http.post(format!("{url}/v1/payouts"))
            .bearer_auth(&grid.token)
            .body(r#"{"threshold": 0}"#)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _, msg) = error(
        http.post(format!("{url}/v1/payouts"))
            .bearer_auth(&admin)
            .body(r#"{"threshold": -1}"#)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(msg.contains("threshold"), "{msg}");
    let paid: serde_json::Value = http
        .post(format!("{url}/v1/payouts"))
        .bearer_auth(&admin)
        .body(r#"{"threshold": 0}"#)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        paid["payouts"],
        serde_json::json!([]),
        "nobody earned anything"
    );
    let csv = reqwest::get(format!("{url}/v1/payouts.csv"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(csv, "seq,owner,micro_credits,credits,at_ms\n");
    drop(store);
    grid.stop().await;
}

/// A database a version-1 scheduler left, with a runner and two credits, is brought to the
/// current schema without losing either: the old entries keep their hashes, the chain still
/// verifies, and new entries of other kinds follow them.
async fn a_version_1_database_is_upgraded_without_loss(db: Db) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::new(dir.path().join("data"));
    config.database = fresh_database(db).await;
    std::fs::create_dir_all(&config.data_dir).unwrap();
    let url = match &config.database {
        Some(url) => url.clone(),
        None => config.database_url(),
    };
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(&url).await.unwrap();
    let v1 = include_str!("../../migrations/0001_grid.sql");
    sqlx::raw_sql(v1).execute(&mut conn).await.unwrap();
    sqlx::raw_sql(&format!(
        "CREATE TABLE schema_migrations (version BIGINT PRIMARY KEY, name TEXT NOT NULL, \
         checksum TEXT NOT NULL, applied_ms BIGINT NOT NULL); \
         INSERT INTO schema_migrations VALUES (1, 'grid', '{}', 0);",
        helio_sdk::Blake3Hash::of(v1.as_bytes())
    ))
    .execute(&mut conn)
    .await
    .unwrap();
    let key = new_key();
    sqlx::raw_sql(&format!(
        "INSERT INTO runners (id, public_key, owner, tier, slots, cores, memory_bytes, \
         fuel_per_second, profile, registered_ms, last_seen_ms, agreements) VALUES \
         ('{}', '{}', 'alice', 0, 2, 2, 0, 1, '{DETERMINISM_PROFILE}', 5, 5, 2)",
        key.runner_id(),
        key.public_hex()
    ))
    .execute(&mut conn)
    .await
    .unwrap();
    let mut old = ledger::Ledger::new();
    for task in ["t1", "t2"] {
        let entry = old
            .append(ledger::Credit {
                kind: Kind::Task,
                batch: "b-1".into(),
                task: task.into(),
                runner: key.runner_id(),
                owner: "alice".into(),
                digest: helio_sdk::Blake3Hash::of(task.as_bytes()),
                fuel: 2_000_000,
                micro_credits: 2_000,
            })
            .unwrap()
            .clone();
        let c = &entry.credit;
        sqlx::raw_sql(&format!(
            "INSERT INTO ledger VALUES ({}, '{}', '{}', '{}', '{}', '{}', {}, {}, '{}', '{}', 7)",
            entry.seq,
            c.batch,
            c.task,
            c.runner,
            c.owner,
            c.digest,
            c.fuel,
            c.micro_credits,
            entry.prev,
            entry.hash
        ))
        .execute(&mut conn)
        .await
        .unwrap();
    }
    let head = old.entries().last().unwrap().hash;
    sqlx::raw_sql(&format!(
        "UPDATE ledger_head SET len = 2, head = '{head}' WHERE id = 1"
    ))
    .execute(&mut conn)
    .await
    .unwrap();
    drop(conn);

    let store = service::open_store(&config).await.unwrap();
    let (entries, len, anchored) = store.ledger().await.unwrap();
    assert_eq!(entries, old.entries());
    ledger::verify_anchored(&entries, len, &anchored).unwrap();
    let runner = store.runner(&key.runner_id()).await.unwrap().unwrap();
    assert_eq!(runner.owner, "alice");
    assert_eq!(runner.reputation.agreements, 2);
    assert_eq!((runner.uptime_ms, runner.location.as_str()), (0, ""));
    // The upgraded ledger takes entries of the new kinds, after the old ones.
    let paid = store.pay_out(1, 1_000).await.unwrap();
    assert_eq!(paid.len(), 1);
    assert_eq!((paid[0].seq, paid[0].micro_credits), (2, 4_000));
    let (entries, len, anchored) = store.ledger().await.unwrap();
    ledger::verify_anchored(&entries, len, &anchored).unwrap();
    drop(store);
    // The old list of applied migrations is now sqlx's, every migration in it once.
    let mut conn = sqlx::AnyConnection::connect(&url).await.unwrap();
    let versions: Vec<i64> =
        sqlx::query_scalar("SELECT version FROM _sqlx_migrations ORDER BY version")
            .fetch_all(&mut conn)
            .await
            .unwrap();
    let files = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations"))
        .unwrap()
        .count() as i64;
    assert_eq!(versions, (1..=files).collect::<Vec<_>>());
    let old_table = sqlx::query("SELECT 1 FROM schema_migrations")
        .fetch_optional(&mut conn)
        .await;
    assert!(old_table.is_err(), "schema_migrations is still there");
    // A schema newer than this scheduler knows is refused, saying so.
    sqlx::query("INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) VALUES (9999, 'later', TRUE, $1, 0)")
        .bind(vec![0u8; 48])
        .execute(&mut conn)
        .await
        .unwrap();
    drop(conn);
    let refused = service::open_store(&config).await.err().expect("refused");
    assert!(
        refused
            .to_string()
            .contains("newer than this scheduler knows"),
        "{refused}"
    );
    drop_database(&config).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_1_database_is_upgraded_without_loss_sqlite() {
    a_version_1_database_is_upgraded_without_loss(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_1_database_is_upgraded_without_loss_postgres() {
    a_version_1_database_is_upgraded_without_loss(Db::Postgres).await;
}

/// A runner is cold until it passes a health check: its first lease is the check, it gets
/// nothing while the check runs, a pass in a report brings work in the same answer, a wrong
/// digest keeps it cold and makes it wait, and registering again makes it cold again.
async fn cold_runners_pass_a_health_check_before_they_get_work(db: Db) {
    let grid = TestGrid::start(db, 60_000).await;
    let manifest = hashchain_batch(grid.dir.path(), 3, 10, 60);
    grid.submit(&manifest).await;
    let join = |owner: &'static str| {
        let url = grid.url.clone();
        async move {
            let client = Client::new(&url, new_key());
            client
                .register(&registration(client.key(), owner))
                .await
                .unwrap();
            client
        }
    };
    let honest = join("honest").await;
    let (check, output) = run_health_check(&honest).await;
    assert!(output.report.outcome.is_success());
    assert!(
        honest.lease(2).await.unwrap().is_empty(),
        "no task while the check runs"
    );
    let report = honest.result(&check, &output.report);
    let (acks, leases) = honest
        .report_and_lease(vec![report.clone()], 2)
        .await
        .unwrap();
    assert_eq!(acks[0].status, ReportStatus::Accepted, "{acks:?}");
    assert_eq!(acks[0].micro_credits, 0, "a check earns nothing");
    assert_eq!(leases.len(), 2, "passed: tasks in the same answer");
    assert!(
        leases
            .iter()
            .all(|l| l.task_id > 0 && l.batch != check.batch)
    );
    let again = honest.report(vec![report]).await.unwrap();
    assert_eq!(again[0].status, ReportStatus::Duplicate, "{again:?}");

    // A runner whose machine computes something else: its check fails, it gets no task.
    let broken = join("broken").await;
    let (bad_check, bad_output) = run_health_check(&broken).await;
    let mut wrong = bad_output.stdout.clone();
    wrong[0] ^= 1;
    let lie = lie_with(&broken, &bad_check, bad_output.report.fuel_consumed, &wrong);
    let acks = broken.report(vec![lie]).await.unwrap();
    assert_eq!(acks[0].status, ReportStatus::Disagreed, "{acks:?}");
    let error = acks[0].error.as_deref().unwrap();
    assert!(error.contains("health check failed"), "{error}");
    assert!(
        error.contains(&output.report.outcome.name().to_string()),
        "{error}"
    );
    assert!(
        broken.lease(2).await.unwrap().is_empty(),
        "a failed runner waits"
    );
    // Nor may it report another runner's check.
    let stolen = broken
        .report(vec![broken.result(&check, &output.report)])
        .await
        .unwrap();
    assert_eq!(stolen[0].status, ReportStatus::Refused, "{stolen:?}");
    // Nor a check id that names nothing (the most negative id has no negation): the
    // request is refused whole, before anything in it is looked up.
    let mut forged = broken.result(&bad_check, &bad_output.report);
    forged.task_id = i64::MIN;
    let refused = broken.report(vec![forged]).await.unwrap_err();
    assert!(
        matches!(&refused, ClientError::Refused { status: 400, error, .. } if error.contains("names no lease")),
        "{refused}"
    );

    let runners = runner_list(&grid.url).await;
    let info = |id: String| runners.iter().find(|r| r.id == id).unwrap().clone();
    assert!(info(honest.runner_id()).warm);
    assert_eq!(info(honest.runner_id()).checks_failed, 0);
    assert!(!info(broken.runner_id()).warm);
    assert_eq!(info(broken.runner_id()).checks_failed, 1);
    assert_eq!(
        info(broken.runner_id()).disagreements,
        0,
        "a check is not a task"
    );
    let admin = admin_token(&grid).await;
    let events = runner_events(&grid.url, &admin, &broken.runner_id()).await;
    let newest = &events[0];
    assert_eq!(newest["event"], "health check failed", "{events:?}");
    assert!(
        newest["detail"]
            .as_str()
            .unwrap()
            .contains("next check in 60 s"),
        "{newest}"
    );

    // Registering again (a restart) makes the honest runner cold: a new check, another seed.
    honest
        .register(&registration(honest.key(), "honest"))
        .await
        .unwrap();
    let (recheck, reoutput) = run_health_check(&honest).await;
    assert_ne!(recheck.task_id, check.task_id);
    assert_ne!(recheck.manifest.seed, check.manifest.seed);
    assert_ne!(reoutput.report.digest, output.report.digest);
    grid.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cold_runners_pass_a_health_check_before_they_get_work_sqlite() {
    cold_runners_pass_a_health_check_before_they_get_work(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cold_runners_pass_a_health_check_before_they_get_work_postgres() {
    cold_runners_pass_a_health_check_before_they_get_work(Db::Postgres).await;
}

/// The health checks' timing, with the test's own clock: a check not reported by its
/// deadline is replaced, each failure in a row doubles the wait for the next, a pass resets
/// it, and going offline makes a runner cold.
async fn health_checks_expire_back_off_and_go_cold_offline(db: Db) {
    let (store, _config, _dir) = bare_store(db, |_| {}).await;
    let t0 = 1_700_000_000_000;
    let key = new_key();
    store
        .register_runner(&registration(&key, "alice"), &anywhere(), t0)
        .await
        .unwrap();
    let runner = store.runner(&key.runner_id()).await.unwrap().unwrap();
    assert!(!runner.warm);
    let lease = |at: i64| {
        let (store, runner) = (store.clone(), runner.clone());
        async move { store.lease(&runner, 2, at, 1_000).await.unwrap() }
    };
    let first = lease(t0).await;
    assert_eq!(first.len(), 1);
    assert!(
        lease(first[0].deadline_ms).await.is_empty(),
        "running until its deadline"
    );
    let second = lease(first[0].deadline_ms + 1).await;
    assert_eq!(
        second.len(),
        1,
        "an unreported check is replaced after its deadline"
    );
    assert_ne!(second[0].task_id, first[0].task_id);
    let expired = store
        .health_check(check_id(&first[0]))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(expired.state, "expired");

    let (right, wrong) = (Blake3Hash::of(b"right"), Blake3Hash::of(b"wrong"));
    let mut check = second;
    let mut at = check[0].deadline_ms - 1;
    // Three failures in a row: waits of 1, 2 and 4 minutes.
    for (failed, wait) in [(1u64, 60_000), (2, 120_000), (3, 240_000)] {
        let id = check_id(&check[0]);
        assert!(
            store
                .finish_check(id, &runner.id, &wrong, &right, at)
                .await
                .unwrap()
        );
        assert!(
            !store
                .finish_check(id, &runner.id, &right, &right, at)
                .await
                .unwrap(),
            "a finished check takes no second result"
        );
        let record = store.runner(&runner.id).await.unwrap().unwrap();
        assert_eq!((record.warm, record.checks_failed), (false, failed));
        assert!(lease(at + wait - 1).await.is_empty(), "waits {wait} ms");
        check = lease(at + wait).await;
        assert_eq!(check.len(), 1, "a new check after {wait} ms");
        at += wait;
    }
    assert!(
        store
            .finish_check(check_id(&check[0]), "r-someoneelse", &right, &right, at)
            .await
            .is_ok_and(|recorded| !recorded),
        "another runner's check"
    );
    assert!(
        store
            .finish_check(check_id(&check[0]), &runner.id, &right, &right, at)
            .await
            .unwrap()
    );
    let record = store.runner(&runner.id).await.unwrap().unwrap();
    assert_eq!((record.warm, record.checks_failed), (true, 0));
    assert!(
        lease(at).await.is_empty(),
        "warm, and no batch: nothing to lease"
    );

    // Silent past the offline limit: offline, cold, and its next lease is a check again.
    store.touch(&record, at).await.unwrap();
    let marked = store.mark_offline(at + 10_000).await.unwrap();
    assert_eq!(marked, vec![runner.id.clone()]);
    assert!(!store.runner(&runner.id).await.unwrap().unwrap().warm);
    let back = lease(at + 10_001).await;
    assert_eq!(back.len(), 1);
    assert!(back[0].task_id < 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_checks_expire_back_off_and_go_cold_offline_sqlite() {
    health_checks_expire_back_off_and_go_cold_offline(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_checks_expire_back_off_and_go_cold_offline_postgres() {
    health_checks_expire_back_off_and_go_cold_offline(Db::Postgres).await;
}

/// The health check a lease is of.
fn check_id(lease: &helio_sdk::wire::Lease) -> helio_sdk::ids::CheckId {
    match helio_sdk::ids::LeaseId::from_wire(lease.task_id) {
        Ok(helio_sdk::ids::LeaseId::Check(id)) => id,
        other => panic!("not a health check's lease: {other:?}"),
    }
}
