//! The binaries as a service manager runs them: the runner's `--json` events on standard
//! output, settings files, and a clean stop on SIGTERM.

use std::process::{Command, Stdio};

use helio_sdk::wire::BatchStatus;
use serde_json::Value;

use super::grid::{Db, TestGrid, check_finished, hashchain_batch};
use super::s3::workspace_binary;

/// Sends SIGTERM to process `pid`, as a service manager stops a service.
fn sigterm(pid: u32) {
    let sent = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_runner_binary_prints_json_events_and_stops_cleanly_on_sigterm() {
    let grid = TestGrid::start(Db::Sqlite, 30_000).await;
    let (n, rounds) = (6, 300);
    let manifest = hashchain_batch(grid.dir.path(), n, rounds, 60);
    let batch = grid.submit(&manifest).await;
    let runner = workspace_binary("runner");
    let start = |owner: &str| {
        let dir = grid.dir.path().join("cli-runners").join(owner);
        Command::new(&runner)
            .args([
                "--scheduler",
                &grid.url,
                "--owner",
                owner,
                "--slots",
                "2",
                "--json",
            ])
            .arg("--state-dir")
            .arg(dir.join("state"))
            .env("XDG_CACHE_HOME", dir.join("cache"))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let runners = [start("alice"), start("bob")];
    grid.wait_for(&batch, BatchStatus::done).await;
    // `runner status` reads what the running runner keeps in its state directory.
    let status = |owner: &str| {
        let out = Command::new(&runner)
            .args(["status", "--json", "--state-dir"])
            .arg(
                grid.dir
                    .path()
                    .join("cli-runners")
                    .join(owner)
                    .join("state"),
            )
            .output()
            .unwrap();
        let value: Value = serde_json::from_slice(&out.stdout).unwrap();
        (out.status.code(), value)
    };
    let (code, alive) = status("alice");
    assert_eq!(code, Some(0), "{alive}");
    assert_eq!(
        (alive["alive"].as_bool(), alive["owner"].as_str()),
        (Some(true), Some("alice"))
    );
    assert_eq!(alive["slots"], 2);
    for r in &runners {
        sigterm(r.id());
    }
    let credits = check_finished(&grid, &batch, n, rounds).await;
    let by_owner = grid.submitter().credits("owner").await.unwrap();
    // The server's CSV is the one `helio credits --csv` prints, and reads back through the
    // csv crate to the same rows as the JSON.
    let served = reqwest::get(format!("{}/v1/credits.csv?by=owner", grid.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(served, by_owner.to_csv());
    let read = helio_sdk::wire::Credits::from_csv(&served).unwrap();
    assert_eq!(read.by, "owner");
    let keyed = |rows: &[helio_sdk::wire::CreditRow]| -> Vec<(String, u64, u64, u64, u64)> {
        rows.iter()
            .map(|r| (r.key.clone(), r.tasks, r.fuel, r.micro_credits, r.paid))
            .collect()
    };
    assert_eq!(keyed(&read.rows), keyed(&by_owner.rows));
    assert_eq!(read.rows.len(), 2, "{served}");
    for (owner, r) in ["alice", "bob"].iter().zip(runners) {
        let out = tokio::task::spawn_blocking(move || r.wait_with_output())
            .await
            .unwrap()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{owner}: {:?}\n{stderr}", out.status);
        let events: Vec<Value> = String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
            .collect();
        let kinds: Vec<&str> = events
            .iter()
            .map(|e| e["event"].as_str().unwrap())
            .collect();
        // A first start makes the owner key, and says where it is kept.
        assert_eq!(kinds[..2], ["notice", "joined"], "{kinds:?}");
        let notice = events[0]["message"].as_str().unwrap();
        assert!(notice.contains("made owner key"), "{notice}");
        assert!(notice.contains("state/owner.key"), "{notice}");
        assert_eq!(kinds.last(), Some(&"session"), "{kinds:?}");
        // Stopped: the status says so, with the session's own figures.
        let (code, stopped) = status(owner);
        let session = events.last().unwrap();
        assert_eq!(code, Some(1), "{stopped}");
        assert_eq!(stopped["alive"], false);
        assert!(stopped["stopped_ms"].is_i64(), "{stopped}");
        assert_eq!(stopped["reported"], session["reported"]);
        assert_eq!(stopped["accepted"], session["accepted"]);
        assert!(stopped["running"].as_array().unwrap().is_empty());
        assert_eq!(events[1]["owner"], *owner);
        let runner_id = events[1]["runner"].as_str().unwrap();
        let started = kinds.iter().filter(|k| **k == "started").count();
        let finished: Vec<&Value> = events.iter().filter(|e| e["event"] == "finished").collect();
        // A new runner's first lease is its health check, which it passes.
        let checks: Vec<&Value> = events
            .iter()
            .filter(|e| e["event"] == "health_check")
            .collect();
        assert_eq!(checks.len(), 1, "{kinds:?}");
        assert_eq!(checks[0]["result"], "accepted", "{}", checks[0]);
        let first_start = kinds.iter().position(|k| *k == "started").unwrap();
        let check_at = kinds.iter().position(|k| *k == "health_check").unwrap();
        let first_task = kinds.iter().position(|k| *k == "finished").unwrap();
        assert!(first_start < check_at && check_at < first_task, "{kinds:?}");
        assert_eq!(started, finished.len() + 1, "{kinds:?}");
        assert!(!finished.is_empty());
        for f in &finished {
            let slot = f["slot"].as_u64().unwrap();
            assert!((1..=2).contains(&slot), "{f}");
            assert_eq!(f["outcome"], "exited", "{f}");
        }
        // What it says it earned is what the ledger holds for it: credits granted when it
        // reported, and those granted when another runner agreed later, which the heartbeat
        // brings.
        let session = events.last().unwrap();
        let earned = session["micro_credits"].as_u64().unwrap();
        assert_eq!(credits.get(runner_id).copied(), Some(earned));
        let at_report: u64 = finished
            .iter()
            .map(|f| f["micro_credits"].as_u64().unwrap())
            .sum();
        assert!(at_report <= earned, "{at_report} > {earned}");
        let news: Vec<&Value> = events.iter().filter(|e| e["event"] == "credits").collect();
        assert_eq!(
            news.last().unwrap()["session_micro_credits"].as_u64(),
            Some(earned)
        );
        let row = by_owner.rows.iter().find(|r| r.key == *owner).unwrap();
        assert_eq!(row.micro_credits, earned);
        assert_eq!(
            session["accepted"].as_u64().unwrap(),
            finished
                .iter()
                .filter(|f| f["result"] == "accepted")
                .count() as u64
        );
        // JSON on standard output, nothing for people on standard error.
        assert!(stderr.trim().is_empty(), "{stderr}");
    }
    grid.stop().await;
}

/// A runner started outside the hours its volunteer allows takes no work, not even its
/// health check, says why, and stops cleanly; its CPU cap sets its slots.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runner_outside_its_hours_takes_no_work_and_its_cpu_cap_sets_its_slots() {
    let grid = TestGrid::start(Db::Sqlite, 30_000).await;
    let batch = grid
        .submit(&hashchain_batch(grid.dir.path(), 2, 50, 60))
        .await;
    // A window that opens two hours from now, local time.
    let date = Command::new("date").arg("+%H").output().unwrap();
    let hour: u32 = String::from_utf8(date.stdout)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let window = format!("{:02}:00-{:02}:00", (hour + 2) % 24, (hour + 3) % 24);
    let dir = grid.dir.path().join("night-runner");
    let runner = workspace_binary("runner");
    let child = Command::new(&runner)
        .args(["--scheduler", &grid.url, "--owner", "night", "--json"])
        .args(["--cpu-limit", "50", "--hours", &window])
        .arg("--state-dir")
        .arg(dir.join("state"))
        .env("XDG_CACHE_HOME", dir.join("cache"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status = || {
        let out = Command::new(&runner)
            .args(["status", "--json", "--state-dir"])
            .arg(dir.join("state"))
            .output()
            .unwrap();
        serde_json::from_slice::<Value>(&out.stdout).unwrap_or(Value::Null)
    };
    let mut tries = 0;
    let held = loop {
        tries += 1;
        assert!(tries < 300, "the runner never said it holds its work");
        let now = status();
        if now["last"]
            .as_str()
            .is_some_and(|l| l.contains("work held"))
        {
            break now;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert!(
        held["last"].as_str().unwrap().contains("outside the hours"),
        "{held}"
    );
    // Held for a while with work queued, it takes none.
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    let progress = grid.submitter().status(&batch).await.unwrap();
    assert_eq!((progress.running, progress.pending), (0, 2), "{progress:?}");
    sigterm(child.id());
    let out = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let events: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(
        !events.iter().any(|e| e["event"] == "started"),
        "{events:?}"
    );
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
    let joined = events.iter().find(|e| e["event"] == "joined").unwrap();
    assert_eq!(
        joined["slots"].as_u64(),
        Some(u64::from(
            helio_runner::controls::share(Some(50), cores, None).slots
        )),
        "{joined}"
    );
    grid.stop().await;
}

#[test]
fn quiet_and_json_do_not_go_together() {
    let out = Command::new(workspace_binary("runner"))
        .args([
            "--scheduler",
            "http://127.0.0.1:9",
            "--owner",
            "x",
            "--quiet",
            "--json",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--quiet") && stderr.contains("--json"),
        "{stderr}"
    );
}

/// `runner owner create` makes an owner key once and never replaces it; `show` prints the
/// same id; a runner started with `--owner-key` registers under it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_owner_key_is_made_once_and_runners_join_under_it() {
    let grid = TestGrid::start(Db::Sqlite, 30_000).await;
    let key = grid.dir.path().join("keys").join("ada.key");
    let owner = |args: &[&str]| {
        Command::new(workspace_binary("runner"))
            .arg("owner")
            .args(args)
            .arg("--key")
            .arg(&key)
            .output()
            .unwrap()
    };
    let made = owner(&["create"]);
    assert!(made.status.success(), "{made:?}");
    let made = String::from_utf8(made.stdout).unwrap();
    let id = made
        .lines()
        .find_map(|l| l.strip_prefix("owner key id: "))
        .unwrap()
        .to_string();
    assert!(id.starts_with("o-") && id.len() == 18, "{made}");
    let again = owner(&["create"]);
    assert_eq!(again.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(stderr.contains("never replaced"), "{stderr}");
    let shown = String::from_utf8(owner(&["show"]).stdout).unwrap();
    assert!(shown.contains(&id), "{shown}");

    let mut runner = Command::new(workspace_binary("runner"))
        .args(["--scheduler", &grid.url, "--owner", "ada", "--json"])
        .arg("--state-dir")
        .arg(grid.dir.path().join("ada-runner"))
        .arg("--owner-key")
        .arg(&key)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut tries = 0;
    let owners = loop {
        tries += 1;
        assert!(tries < 600, "the runner never registered");
        let owners: Vec<Value> = reqwest::get(format!("{}/v1/owners", grid.url))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if !owners.is_empty() {
            break owners;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    runner.kill().unwrap();
    let _ = runner.wait();
    assert_eq!(owners[0]["name"], "ada");
    assert_eq!(owners[0]["key"], id.as_str());
    grid.stop().await;
}

#[tokio::test]
async fn the_scheduler_reads_a_settings_file_and_stops_cleanly_on_sigterm() {
    use std::io::BufRead;

    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let file = dir.path().join("scheduler.toml");
    std::fs::write(
        &file,
        format!(
            "listen = \"127.0.0.1:0\"\ndata_dir = {:?}\nheartbeat-seconds = 7\n\
             max-runners = [\"cpu=5\", \"gpu=1\"]\njson-logs = true\n",
            data.to_str().unwrap()
        ),
    )
    .unwrap();
    let mut scheduler = Command::new(workspace_binary("scheduler"))
        .args(["serve", "--config"])
        .arg(&file)
        .env_remove("HELIO_DATA_DIR")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    std::io::BufReader::new(scheduler.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    let url = first.trim().to_string();
    assert!(url.starts_with("http://127.0.0.1:"), "{first:?}");
    // The file's data directory holds the database.
    assert!(data.join("scheduler.db").exists());
    let health: Value = reqwest::get(format!("{url}/health"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["status"], "ok");
    sigterm(scheduler.id());
    let out = scheduler.wait_with_output().unwrap();
    let logs = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{:?}\n{logs}", out.status);
    // json-logs = true: every log line is JSON, and the last says it shut down.
    let lines: Vec<Value> = logs
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
        .collect();
    assert!(
        lines.iter().any(|l| l["fields"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("shutting down"))),
        "{logs}"
    );

    // A setting the scheduler does not have is named, with the ones it has; a bad value is
    // refused as the flag's would be.
    for (settings, words) in [
        (
            "listen = \"127.0.0.1:0\"\nheartbeat = 7\n",
            &["unknown setting `heartbeat`", "heartbeat-seconds"][..],
        ),
        ("heartbeat-seconds = 0\n", &["--heartbeat-seconds"][..]),
    ] {
        std::fs::write(&file, settings).unwrap();
        let out = Command::new(workspace_binary("scheduler"))
            .args(["serve", "--config"])
            .arg(&file)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{settings}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(words.iter().all(|w| stderr.contains(w)), "{stderr}");
    }
}
