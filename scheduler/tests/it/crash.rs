//! The scheduler process killed with SIGKILL in the middle of a batch and started again on
//! the same data directory: no task lost, no credit granted twice, the ledger verifies.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use helio_cli::grid::Grid;
use helio_scheduler::service::Config;
use helio_sdk::wire::BatchStatus;

use super::grid::{check_batch, hashchain_batch, runner};

fn scheduler() -> Command {
    Command::new(env!("CARGO_BIN_EXE_scheduler"))
}

/// Starts `scheduler serve` and returns it with the URL it printed first.
fn serve(data: &std::path::Path, listen: &str) -> (Child, String) {
    let mut child = scheduler()
        .args(["serve", "--listen", listen, "--lease-grace-seconds", "3"])
        .args(["--upload-wait-seconds", "2", "--data-dir"])
        .arg(data)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line.trim().to_string();
    assert!(url.starts_with("http://127.0.0.1:"), "first line: {line:?}");
    (child, url)
}

async fn wait_until(grid: &Grid, batch: &str, done: impl Fn(&BatchStatus) -> bool) {
    let start = Instant::now();
    loop {
        if let Ok(status) = grid.status(batch).await
            && done(&status)
        {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "the batch stalled"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduler_killed_mid_batch_loses_nothing_and_credits_nothing_twice() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let token = scheduler()
        .args(["token", "create", "--role", "submitter", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(token.status.success(), "{token:?}");
    let token = String::from_utf8(token.stdout).unwrap().trim().to_string();

    let (mut child, url) = serve(&data, "127.0.0.1:0");
    let submitter = Grid::new(&url, &token);
    let (n, rounds) = (30, 3000);
    let manifest = hashchain_batch(dir.path(), n, rounds, 30);
    let batch = submitter
        .submit(manifest.to_str().unwrap())
        .await
        .unwrap()
        .batch;
    let runners: Vec<_> = ["alice", "bob", "carol"]
        .iter()
        .map(|o| runner(&url, dir.path(), o, 2))
        .collect();
    wait_until(&submitter, &batch, |s| s.succeeded >= 5).await;
    child.kill().unwrap();
    child.wait().unwrap();
    let before = submitter.status(&batch).await;
    assert!(before.is_err(), "the scheduler still answers after SIGKILL");

    // Started again on the same address, the runners find it again by themselves.
    let listen = url.trim_start_matches("http://").to_string();
    let (mut child, url2) = serve(&data, &listen);
    assert_eq!(url, url2);
    wait_until(&submitter, &batch, BatchStatus::done).await;
    for (stop, task) in runners {
        stop.send(helio_runner::agent::Stop::Drain).unwrap();
        task.await.unwrap().unwrap();
    }
    let mut config = Config::new(data.clone());
    config.database = None;
    check_batch(&submitter, &config, dir.path(), &batch, n, rounds).await;
    child.kill().unwrap();
    child.wait().unwrap();
    let verify = scheduler()
        .args(["ledger", "verify", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(verify.status.success(), "{verify:?}");
    assert!(String::from_utf8_lossy(&verify.stdout).starts_with("ledger verified"));

    // An edited entry is caught.
    {
        use sqlx::Connection;
        let url = format!("sqlite://{}", data.join("scheduler.db").display());
        let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
        sqlx::query("UPDATE ledger SET micro_credits = micro_credits + 1 WHERE seq = 3")
            .execute(&mut conn)
            .await
            .unwrap();
    }
    let verify = scheduler()
        .args(["ledger", "verify", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    assert_eq!(verify.status.code(), Some(1), "{verify:?}");
    assert!(String::from_utf8_lossy(&verify.stdout).contains("ledger entry 3"));
}
