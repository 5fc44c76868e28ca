//! Long polling: a runner with free slots and nothing to do waits at the scheduler and is
//! woken when work appears (a batch submitted, a lease handed back), on the scheduler it
//! asked or, sharing PostgreSQL, another; the wait ends when the scheduler shuts down; a
//! waiting request leases nothing.

use std::time::Duration;

use helio_runner::agent::{self, Client, Stop};
use helio_scheduler::service;
use helio_sdk::wire::{self, BatchStatus, MAX_LEASE_WAIT_MS};

use super::grid::{Db, TestGrid, hashchain_batch, rogue};

/// Longer than any wait below takes when it is woken, shorter than the longest wait: a
/// request that outlives it was not woken.
const WOKEN_WITHIN: Duration = Duration::from_secs(20);

/// Asks for up to `max` tasks, waiting as long as the scheduler allows.
fn wait_for_work(runner: &Client, max: u32) -> tokio::task::JoinHandle<wire::Leases> {
    let runner = runner.clone();
    tokio::spawn(async move { runner.lease_or_wait(max, MAX_LEASE_WAIT_MS).await.unwrap() })
}

/// The lease requests waiting at the scheduler at `url`, as `/metrics` shows them.
async fn waiting(url: &str) -> u64 {
    let text = reqwest::get(format!("{url}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("helio_lease_waits "))
        .unwrap_or_else(|| panic!("no lease_waits gauge: {text}"))
        .parse()
        .unwrap()
}

/// Waits until `n` lease requests wait at `url`.
async fn until_waiting(url: &str, n: u64) {
    let start = std::time::Instant::now();
    while waiting(url).await != n {
        assert!(start.elapsed() < WOKEN_WITHIN, "{n} requests never waited");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The answer to a waiting request, which must come before [`WOKEN_WITHIN`].
async fn woken(request: tokio::task::JoinHandle<wire::Leases>) -> wire::Leases {
    tokio::time::timeout(WOKEN_WITHIN, request)
        .await
        .expect("the waiting request was not woken")
        .unwrap()
}

/// A grid where nothing but the test ends a lease: no runner goes offline (which hands
/// its leases back) while the test runs.
async fn quiet_grid(db: Db) -> TestGrid {
    TestGrid::start_with(db, |c| {
        c.api.lease_grace_ms = 60_000;
        c.api.heartbeat_seconds = 60;
    })
    .await
}

async fn an_idle_runner_is_woken_by_a_submission_and_a_hand_back(db: Db) {
    let grid = quiet_grid(db).await;
    let ann = rogue(&grid.url, "ann").await;

    // Nothing to do: the request waits, and takes nothing when it is woken.
    let request = wait_for_work(&ann, 2);
    until_waiting(&grid.url, 1).await;
    let batch = grid
        .submit(&hashchain_batch(grid.dir.path(), 1, 10, 60))
        .await;
    let answer = woken(request).await;
    assert!(answer.waited, "{answer:?}");
    assert!(answer.leases.is_empty(), "a woken request leases nothing");
    assert_eq!(waiting(&grid.url).await, 0);
    let status = grid.submitter().status(&batch).await.unwrap();
    assert_eq!((status.pending, status.running), (1, 0), "{status:?}");

    // Asked again, there is work: the answer comes at once, without a wait (one replica:
    // a runner never holds two of a task).
    let answer = ann.lease_or_wait(2, MAX_LEASE_WAIT_MS).await.unwrap();
    assert_eq!(answer.leases.len(), 1, "{answer:?}");
    assert!(!answer.waited);
    let bob = rogue(&grid.url, "bob").await;
    assert_eq!(bob.lease(2).await.unwrap().len(), 1);

    // Both replicas are out: Carl waits, until Ann hands hers back.
    let carl = rogue(&grid.url, "carl").await;
    let request = wait_for_work(&carl, 2);
    until_waiting(&grid.url, 1).await;
    ann.give_back(vec![answer.leases[0].task_id]).await.unwrap();
    let woke = woken(request).await;
    assert!(woke.waited && woke.leases.is_empty(), "{woke:?}");
    let handed = carl.lease(2).await.unwrap();
    assert_eq!(handed.len(), 1, "{handed:?}");
    assert_eq!(handed[0].task_id, answer.leases[0].task_id);

    // A scheduler shutting down ends every wait at once, and says it did not wait.
    let request = wait_for_work(&ann, 1);
    until_waiting(&grid.url, 1).await;
    let url = grid.url.clone();
    tokio::time::timeout(WOKEN_WITHIN, grid.stop())
        .await
        .expect("a waiting request held the shutdown up");
    let answer = woken(request).await;
    assert!(!answer.waited && answer.leases.is_empty(), "{answer:?}");
    assert!(reqwest::get(format!("{url}/health")).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_runner_is_woken_by_a_submission_and_a_hand_back_sqlite() {
    an_idle_runner_is_woken_by_a_submission_and_a_hand_back(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_runner_is_woken_by_a_submission_and_a_hand_back_postgres() {
    an_idle_runner_is_woken_by_a_submission_and_a_hand_back(Db::Postgres).await;
}

/// Two schedulers sharing one PostgreSQL: a runner waiting at one is woken by a batch
/// submitted to the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runner_waiting_at_one_scheduler_is_woken_by_a_batch_submitted_to_another() {
    let first = quiet_grid(Db::Postgres).await;
    let second_dir = tempfile::tempdir().unwrap();
    let mut config = first.config.clone();
    config.data_dir = second_dir.path().join("data");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let second = service::start(config, async {
        let _ = stopped.await;
    })
    .await
    .unwrap();
    let second_url = format!("http://{}", second.addr);

    let ann = rogue(&first.url, "ann").await;
    let request = wait_for_work(&ann, 2);
    until_waiting(&first.url, 1).await;
    let submitter = helio_cli::grid::Grid::new(&second_url, &first.token);
    let manifest = hashchain_batch(first.dir.path(), 2, 10, 60);
    submitter.submit(manifest.to_str().unwrap()).await.unwrap();
    let answer = woken(request).await;
    assert!(answer.waited && answer.leases.is_empty(), "{answer:?}");
    assert_eq!(ann.lease(2).await.unwrap().len(), 2);

    let _ = stop.send(());
    second.task.await.unwrap().unwrap();
    first.stop().await;
}

/// Runners started after a batch is submitted get to work as soon as their health checks
/// pass, although each asks for work (and, finding none while its check runs, waits) before
/// it is warm: the check's report takes the tasks. The batch finishes well before a runner's
/// wait would end, which is when it would finish if only a bell could bring work.
async fn runners_that_join_a_running_batch_work_once_their_check_passes(db: Db) {
    let grid = quiet_grid(db).await;
    let batch = grid
        .submit(&hashchain_batch(grid.dir.path(), 4, 10, 60))
        .await;
    let runners: Vec<_> = ["ann", "bob"].iter().map(|o| grid.runner(o, 2)).collect();
    let within = Duration::from_millis(u64::from(agent::LEASE_WAIT_MS) * 3 / 4);
    tokio::time::timeout(within, grid.wait_for(&batch, BatchStatus::done))
        .await
        .unwrap_or_else(|_| panic!("the batch was not done within {within:?}"));
    for (stop, task) in runners {
        stop.send(Stop::Drain).unwrap();
        assert_eq!(task.await.unwrap().unwrap().reported, 4);
    }
    grid.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runners_that_join_a_running_batch_work_once_their_check_passes_sqlite() {
    runners_that_join_a_running_batch_work_once_their_check_passes(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runners_that_join_a_running_batch_work_once_their_check_passes_postgres() {
    runners_that_join_a_running_batch_work_once_their_check_passes(Db::Postgres).await;
}

/// On PostgreSQL a lease passes over tasks another transaction has locked; a request that
/// found nothing that way does not wait for a bell (the locker may commit without ringing),
/// it answers at once and the runner asks again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_that_passed_over_locked_work_does_not_wait() {
    use sqlx::Connection;
    let grid = quiet_grid(Db::Postgres).await;
    let ann = rogue(&grid.url, "ann").await;
    grid.submit(&hashchain_batch(grid.dir.path(), 1, 10, 60))
        .await;
    let url = grid.config.database.clone().unwrap();
    let mut locker = sqlx::PgConnection::connect(&url).await.unwrap();
    let mut tx = locker.begin().await.unwrap();
    sqlx::query("SELECT id FROM tasks FOR UPDATE")
        .fetch_all(&mut *tx)
        .await
        .unwrap();
    let answer = woken(wait_for_work(&ann, 2)).await;
    assert!(!answer.waited && answer.leases.is_empty(), "{answer:?}");
    tx.rollback().await.unwrap();
    assert_eq!(ann.lease(2).await.unwrap().len(), 1);
    grid.stop().await;
}

/// A lease request as schedulers older than long polling read it: `max` only, and a field
/// they do not know refused.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct LeaseRequestBeforeWaits {
    max: u32,
}

/// A runner of this version against a scheduler older than long polling: the scheduler
/// refuses `wait_ms`, so the runner asks again without it at once, and no longer sends it.
/// The stand-in answers `/v1/leases` as such a scheduler did, in its error format.
#[tokio::test]
async fn a_scheduler_that_does_not_know_wait_ms_is_asked_without_it() {
    use axum::http::StatusCode;
    use std::sync::{Arc, Mutex};

    let bodies = Arc::new(Mutex::new(Vec::<String>::new()));
    let seen = bodies.clone();
    let app = axum::Router::new().route(
        "/v1/leases",
        axum::routing::post(move |body: axum::body::Bytes| {
            let seen = seen.clone();
            async move {
                seen.lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&body).into_owned());
                match serde_json::from_slice::<LeaseRequestBeforeWaits>(&body) {
                    Ok(_) => (StatusCode::OK, r#"{"leases":[]}"#.to_string()),
                    Err(e) => (
                        StatusCode::BAD_REQUEST,
                        serde_json::json!({ "error": format!("request body: {e}") }).to_string(),
                    ),
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let runner = Client::new(&url, helio_sdk::wire::RunnerKey::from_secret([7; 32]));
    for _ in 0..2 {
        let answer = runner.lease_or_wait(4, MAX_LEASE_WAIT_MS).await.unwrap();
        assert!(answer.leases.is_empty());
        assert!(
            !answer.waited,
            "a scheduler that does not wait said it waited"
        );
    }
    let bodies = bodies.lock().unwrap().clone();
    let asked_to_wait: Vec<bool> = bodies.iter().map(|b| b.contains("wait_ms")).collect();
    assert_eq!(
        asked_to_wait,
        [true, false, false],
        "refused once with wait_ms, then asked without it: {bodies:?}"
    );
}
