//! The dashboard: its JSON and event stream against the grid's own accounts (on SQLite and
//! PostgreSQL), and the page itself in headless Chromium (Debian's `chromium` and
//! `chromium-driver`, driven over WebDriver) while real runners finish a batch.

use std::collections::BTreeMap;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{ClientBuilder, Locator};
use helio_runner::agent::Stop;
use helio_sdk::Tier;
use helio_sdk::wire::{BatchStatus, ReportStatus};
use serde_json::Value;

use super::grid::{
    Db, TestGrid, check_finished, cold_runner, hashchain_batch, lie, lie_with, rogue,
    runner_of_tier,
};

async fn get_json(url: &str, token: Option<&str>) -> (u16, Value) {
    let mut request = reqwest::Client::new().get(url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

async fn dashboard_counts_what_the_grid_did(db: Db) {
    let grid = TestGrid::start(db, 30_000).await;
    let (n, rounds) = (8, 200);
    let manifest = hashchain_batch(grid.dir.path(), n, rounds, 60);
    let batch = grid.submit(&manifest).await;

    // Before any work: the batch is there, nothing accepted, nobody online.
    let url = format!("{}/v1/dashboard", grid.url);
    let (code, before) = get_json(&url, Some(&grid.token)).await;
    assert_eq!(code, 200, "{before}");
    assert_eq!(before["tasks"]["open"], n);
    assert_eq!(before["tasks"]["succeeded"], 0);
    assert_eq!(before["batches"][0]["batch"], batch.as_str());
    assert_eq!(before["batches"][0]["pending"], n);

    // Two liars who disagree with each other and with the honest runners, on the first task.
    let liars = [
        rogue(&grid.url, "mallory").await,
        rogue(&grid.url, "trudy").await,
    ];
    // Tasks are drawn at random: the second liar hands back what it gets until it holds a
    // replica of the first liar's task (each task it hands back is closed to its owner, so
    // it gets there within the batch).
    let first = liars[0].lease(1).await.unwrap().remove(0);
    let second = loop {
        let lease = liars[1].lease(1).await.unwrap().remove(0);
        if lease.task_id == first.task_id {
            break lease;
        }
        liars[1].give_back(vec![lease.task_id]).await.unwrap();
    };
    let leases = [first, second];
    let (_, mid) = get_json(&url, None).await;
    assert_eq!(mid["tasks"]["running"], 1, "{mid}");
    assert_eq!(mid["tasks"]["leases"], 2, "{mid}");
    assert_eq!(mid["tasks"]["disputed"], 0, "{mid}");
    assert_eq!(mid["runners_online"]["cpu"], 2, "{mid}");
    for (i, (liar, lease)) in liars.iter().zip(&leases).enumerate() {
        let report = if i == 0 {
            lie(liar, lease)
        } else {
            lie_with(liar, lease, 777, b"made up differently")
        };
        let acks = liar.report(vec![report]).await.unwrap();
        assert_eq!(acks[0].status, ReportStatus::Recorded, "{acks:?}");
    }
    let (_, mid) = get_json(&url, None).await;
    assert_eq!(mid["tasks"]["running"], 0, "{mid}");
    assert_eq!(mid["tasks"]["disputed"], 1, "{mid}");

    let runners: Vec<_> = ["alice", "bob", "carol"]
        .iter()
        .map(|o| grid.runner(o, 2))
        .collect();
    grid.wait_for(&batch, BatchStatus::done).await;
    for (stop, task) in runners {
        stop.send(Stop::Drain).unwrap();
        task.await.unwrap().unwrap();
    }
    let credits = check_finished(&grid, &batch, n, rounds).await;

    // Without a token: everything but the batches.
    let (code, public) = get_json(&url, None).await;
    assert_eq!(code, 200);
    assert!(public["batches"].is_null(), "{public}");
    assert_eq!(public["tasks"]["succeeded"], n);
    assert_eq!(public["tasks"]["failed"], 0);
    assert_eq!(public["tasks"]["open"], 0);
    assert_eq!(public["tasks"]["leases"], 0);
    assert_eq!(
        public["tasks"]["disputed"], 1,
        "one task got two lies: {public}"
    );
    let flagged: Vec<&str> = public["flagged"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    let mut liar_ids: Vec<String> = liars.iter().map(|l| l.runner_id()).collect();
    liar_ids.sort();
    let mut flagged_sorted: Vec<String> = flagged.iter().map(|s| s.to_string()).collect();
    flagged_sorted.sort();
    assert_eq!(flagged_sorted, liar_ids);
    assert_eq!(public["runners_known"], 5);
    // The contributor wall adds up to the ledger, owner by owner.
    let by_owner = grid.submitter().credits("owner").await.unwrap();
    let wall: BTreeMap<String, u64> = public["owners"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            (
                o["key"].as_str().unwrap().to_string(),
                o["micro_credits"].as_u64().unwrap(),
            )
        })
        .collect();
    let expected: BTreeMap<String, u64> = by_owner
        .rows
        .iter()
        .map(|r| (r.key.clone(), r.micro_credits))
        .collect();
    assert_eq!(wall, expected);
    assert!(!wall.contains_key("mallory") && !wall.contains_key("trudy"));
    // The charts: every task accepted in the last hour, minute by minute, and each owner's
    // credits over time, ending at what the wall shows.
    let per_minute: Vec<u64> =
        serde_json::from_value(public["accepted_per_minute"].clone()).unwrap();
    assert_eq!(per_minute.len(), 60);
    assert_eq!(
        per_minute.iter().sum::<u64>(),
        u64::from(n),
        "{per_minute:?}"
    );
    let trends: BTreeMap<String, Vec<u64>> =
        serde_json::from_value(public["credit_trends"].clone()).unwrap();
    assert_eq!(
        trends.keys().collect::<Vec<_>>(),
        wall.keys().collect::<Vec<_>>()
    );
    for (owner, points) in &trends {
        assert_eq!(points.len(), 24, "{owner}");
        assert!(
            points.windows(2).all(|w| w[0] <= w[1]),
            "{owner}: {points:?}"
        );
        assert_eq!(points.last(), wall.get(owner), "{owner}: {points:?}");
    }
    let impact = &public["impact"];
    assert_eq!(
        impact["micro_credits"].as_u64().unwrap(),
        credits.values().sum::<u64>()
    );
    let results = grid.submitter().results(&batch).await.unwrap().tasks;
    let fuel: u64 = results
        .iter()
        .map(|t| t.result.as_ref().unwrap().fuel_consumed * t.agreeing.len() as u64)
        .sum();
    assert_eq!(impact["fuel"].as_u64().unwrap(), fuel);
    // Every report counted once: the honest replicas and the two lies.
    let reported: u64 = results.iter().map(|t| t.agreeing.len() as u64).sum::<u64>() + 2;
    assert_eq!(impact["results"].as_u64().unwrap(), reported);
    assert!(impact["compute_ms"].as_u64().is_some());

    // With the token: the batch, finished.
    let (_, full) = get_json(&url, Some(&grid.token)).await;
    let b = &full["batches"][0];
    assert_eq!(b["batch"], batch.as_str());
    assert_eq!(b["succeeded"], n);
    assert_eq!(b["submitted_by"], "test");
    assert_eq!(b["done"], true);
    let progress: Vec<u64> = serde_json::from_value(b["progress"].clone()).unwrap();
    assert_eq!(progress.len(), 24);
    assert!(progress.windows(2).all(|w| w[0] <= w[1]), "{progress:?}");
    assert_eq!(progress.last(), Some(&u64::from(n)), "{progress:?}");
    assert_eq!(
        b["micro_credits"].as_u64().unwrap(),
        credits.values().sum::<u64>()
    );
    // A wrong token is refused, not taken for no token.
    let (code, body) = get_json(&url, Some("not-a-token")).await;
    assert_eq!(code, 401, "{body}");

    // The same accounts in the metrics, with the API's requests by route.
    let metrics = reqwest::get(format!("{}/metrics", grid.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let value = |series: &str| -> f64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
            .unwrap_or_else(|| panic!("no {series} in\n{metrics}"))
            .parse()
            .unwrap()
    };
    assert_eq!(value("helio_tasks{phase=\"succeeded\"}"), f64::from(n));
    assert_eq!(value("helio_tasks{phase=\"disputed\"}"), 1.0);
    assert_eq!(value("helio_tasks{phase=\"open\"}"), 0.0);
    assert_eq!(value("helio_runners_flagged"), 2.0);
    assert_eq!(value("helio_leases_out"), 0.0);
    assert_eq!(
        value("helio_ledger_task_micro_credits"),
        credits.values().sum::<u64>() as f64
    );
    assert_eq!(
        value("helio_http_requests_total{method=\"GET\",route=\"/v1/dashboard\",status=\"401\"}"),
        1.0
    );
    // Every report came through POST /v1/results: the two lies and the honest reports.
    let report_calls =
        value("helio_http_request_duration_seconds_count{method=\"POST\",route=\"/v1/results\"}");
    assert!(report_calls >= 2.0, "{report_calls}");
    assert_eq!(
        value("helio_results_total{status=\"recorded\"}")
            + value("helio_results_total{status=\"accepted\"}"),
        reported as f64
    );
    // Paths with ids are counted under their route's pattern.
    assert!(metrics.contains("route=\"/v1/batches/{id}\""), "{metrics}");

    // The event stream sends a snapshot at once, and shutting the scheduler down ends it.
    let mut events = reqwest::Client::new()
        .get(format!("{}/v1/dashboard/events", grid.url))
        .send()
        .await
        .unwrap();
    assert_eq!(events.status(), 200);
    assert_eq!(
        events.headers()["content-type"].to_str().unwrap(),
        "text/event-stream"
    );
    let mut text = String::new();
    while !text.contains("\n\n") {
        let chunk = tokio::time::timeout(Duration::from_secs(10), events.chunk())
            .await
            .expect("a snapshot within 10 s")
            .unwrap()
            .expect("the stream goes on");
        text.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    assert!(text.starts_with("event: snapshot\ndata: {"), "{text}");
    let data = text.lines().find_map(|l| l.strip_prefix("data: ")).unwrap();
    let streamed: Value = serde_json::from_str(data).unwrap();
    assert_eq!(streamed["tasks"]["succeeded"], n);
    assert!(streamed["batches"].is_null());
    tokio::time::timeout(Duration::from_secs(30), grid.stop())
        .await
        .expect("the scheduler stops while a dashboard is open");
    let rest = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(_chunk) = events.chunk().await.unwrap_or(None) {}
    })
    .await;
    assert!(rest.is_ok(), "the event stream did not end at shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dashboard_counts_what_the_grid_did_sqlite() {
    dashboard_counts_what_the_grid_did(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dashboard_counts_what_the_grid_did_postgres() {
    dashboard_counts_what_the_grid_did(Db::Postgres).await;
}

/// Debian's chromedriver, started on a free port, and a headless Chromium session on it.
struct Browser {
    driver: Child,
    client: fantoccini::Client,
}

impl Browser {
    const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
    const CHROMIUM: &str = "/usr/bin/chromium";

    async fn start() -> Browser {
        let driver_path = std::env::var("HELIO_CHROMEDRIVER").unwrap_or(Self::CHROMEDRIVER.into());
        let chromium = std::env::var("HELIO_CHROMIUM").unwrap_or(Self::CHROMIUM.into());
        for path in [&driver_path, &chromium] {
            assert!(
                std::path::Path::new(path).exists(),
                "{path} is missing: the dashboard's browser tests need Debian's chromium and \
                 chromium-driver (apt-get install chromium chromium-driver; scripts/test installs \
                 them), or HELIO_CHROMIUM and HELIO_CHROMEDRIVER naming others"
            );
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        // In a process group of its own, so that the browsers it starts die with it even
        // when a failing test never closes its session.
        let driver = Command::new(&driver_path)
            .process_group(0)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {driver_path}: {e}"));
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({
                "binary": chromium,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--window-size=1280,1100",
                         "--force-device-scale-factor=1"],
            }),
        );
        let start = Instant::now();
        let client = loop {
            let attempt = ClientBuilder::rustls()
                .unwrap()
                .capabilities(caps.clone())
                .connect(&format!("http://127.0.0.1:{port}"))
                .await;
            match attempt {
                Ok(client) => break client,
                Err(e) if start.elapsed() < Duration::from_secs(30) => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => panic!("no browser session from {driver_path}: {e}"),
            }
        };
        Browser { driver, client }
    }

    /// Waits (at most `secs`) until `script` returns true in the page.
    async fn wait_until(&self, what: &str, secs: u64, script: &str) {
        let start = Instant::now();
        loop {
            let value = self.client.execute(script, vec![]).await.unwrap();
            if value == Value::Bool(true) {
                return;
            }
            if start.elapsed() > Duration::from_secs(secs) {
                let text = self.text("main").await;
                panic!("the page did not show {what} within {secs} s; it shows:\n{text}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn text(&self, css: &str) -> String {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    async fn close(self) {
        self.client.clone().close().await.unwrap();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let group = format!("-{}", self.driver.id());
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// The page, in headless Chromium: a batch goes from nothing done, to half done, to done
/// while real runners work, credits appear on the contributor wall, a liar shows up
/// flagged — all without a reload. Half the batch needs GPU-tier runners, which join only
/// once the page has shown the other half done, so the page must show the batch part done
/// however fast the machine is. Leaves screenshots (wide and phone-sized) in the test's
/// target directory.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_dashboard_shows_a_batch_finish_live_in_a_browser() {
    let grid = TestGrid::start(Db::Sqlite, 30_000).await;
    let (n, rounds) = (12, 20_000);
    let manifest = hashchain_batch(grid.dir.path(), n, rounds, 120);
    let mut json: Value = serde_json::from_slice(&std::fs::read(&manifest).unwrap()).unwrap();
    for task in &mut json["tasks"].as_array_mut().unwrap()[n as usize / 2..] {
        task["tier"] = "gpu".into();
    }
    std::fs::write(&manifest, serde_json::to_vec(&json).unwrap()).unwrap();
    let batch = grid.submit(&manifest).await;

    let browser = Browser::start().await;
    let page = &browser.client;
    page.goto(&format!("{}/", grid.url)).await.unwrap();
    browser
        .wait_until(
            "the stream live",
            30,
            "return document.getElementById('status').dataset.state === 'live'",
        )
        .await;
    // A mark that a reload would wipe.
    page.execute("window.helioMark = 'no reload'; return true", vec![])
        .await
        .unwrap();
    // Without a token the batches ask for one; give it through the form.
    browser
        .wait_until(
            "the token form",
            10,
            "return !document.getElementById('token-form').hidden",
        )
        .await;
    page.find(Locator::Id("token"))
        .await
        .unwrap()
        .send_keys(&grid.token)
        .await
        .unwrap();
    page.find(Locator::Css("#token-form button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let row = format!("document.querySelector('#batches tr[data-batch=\"{batch}\"]')");
    browser
        .wait_until(
            "the batch, nothing done",
            30,
            &format!(
                "const r = {row}; return !!r && r.querySelector('.done').dataset.done === '0'"
            ),
        )
        .await;
    // Record every count of done tasks the page shows from now on.
    page.execute(
        &format!(
            "window.helioSeen = []; const look = () => {{ const r = {row}; \
             if (r) {{ const d = Number(r.querySelector('.done').dataset.done); \
             if (window.helioSeen[window.helioSeen.length - 1] !== d) window.helioSeen.push(d); }} }}; \
             look(); new MutationObserver(look).observe(document.getElementById('batches'), \
             {{subtree: true, childList: true, attributes: true, characterData: true}}); return true"
        ),
        vec![],
    )
    .await
    .unwrap();

    // A liar takes one task first, then three honest CPU runners do the CPU half.
    let liar = rogue(&grid.url, "mallory").await;
    let lease = liar.lease(1).await.unwrap().remove(0);
    liar.report(vec![lie(&liar, &lease)]).await.unwrap();
    let mut runners: Vec<_> = ["alice", "bob", "carol"]
        .iter()
        .map(|o| grid.runner(o, 1))
        .collect();
    let half = n / 2;
    browser
        .wait_until(
            "the batch half done",
            120,
            &format!(
                "const r = {row}; return !!r && r.querySelector('.done').dataset.done === '{half}' \
                 && r.querySelector('.state').dataset.state === 'running'"
            ),
        )
        .await;
    // Then two GPU runners do the rest.
    for owner in ["dave", "erin"] {
        runners.push(runner_of_tier(
            &grid.url,
            grid.dir.path(),
            owner,
            1,
            Tier::Gpu,
        ));
    }
    browser
        .wait_until(
            "the batch done",
            240,
            &format!(
                "const r = {row}; return !!r && r.querySelector('.state').dataset.state === 'done'"
            ),
        )
        .await;
    // The charts, drawn in SVG: the hour's bars add up to the batch, and the batch's line
    // over time ends with every task accepted.
    browser
        .wait_until(
            "the charts",
            30,
            &format!(
                "const c = document.querySelector('#accepted-chart svg'); const r = {row}; \
                 const bars = c ? [...c.querySelectorAll('rect')] : []; \
                 const sum = bars.reduce((a, b) => a + Number(b.dataset.count), 0); \
                 const line = r && r.querySelector('.trend svg polyline'); \
                 return !!c && sum === {n} && c.dataset.total === '{n}' && !!line \
                 && line.getAttribute('points').split(' ').length === 24 \
                 && r.querySelector('.trend svg').dataset.last === '{n}'"
            ),
        )
        .await;
    for (stop, task) in runners {
        stop.send(Stop::Drain).unwrap();
        task.await.unwrap().unwrap();
    }
    let credits = check_finished(&grid, &batch, n, rounds).await;

    // Credits on the wall: each owner's figure as the ledger has it.
    let by_owner = grid.submitter().credits("owner").await.unwrap();
    assert_eq!(by_owner.rows.len(), 5, "{by_owner:?}");
    for owner in &by_owner.rows {
        browser
            .wait_until(
                &format!("{}'s credits", owner.key),
                15,
                &format!(
                    "const r = document.querySelector('#owners tr[data-owner=\"{}\"] .credits'); \
                     return !!r && r.dataset.microCredits === '{}'",
                    owner.key, owner.micro_credits
                ),
            )
            .await;
    }
    let total: u64 = credits.values().sum();
    assert!(total > 0);
    browser
        .wait_until(
            "the liar flagged",
            15,
            &format!(
                "return !!document.querySelector('#flagged li[data-runner=\"{}\"]')",
                liar.runner_id()
            ),
        )
        .await;
    // A runner that joined and has not passed its health check yet shows as checking.
    let newcomer = cold_runner(&grid.url, "newcomer", 1).await;
    browser
        .wait_until(
            "the newcomer checking",
            15,
            &format!(
                "const r = document.querySelector('#runners tr[data-runner=\"{}\"]'); \
                 return !!r && r.querySelector('.cold')?.textContent === 'checking'",
                newcomer.runner_id()
            ),
        )
        .await;
    // Made established (as months of verified results would), it shows so, with its count.
    super::trust::establish(&grid, &newcomer.runner_id()).await;
    browser
        .wait_until(
            "the newcomer established",
            15,
            &format!(
                "const r = document.querySelector('#runners tr[data-runner=\"{}\"]'); \
                 return !!r && !!r.querySelector('.established') \
                 && r.querySelector('.verified')?.textContent === '5,000'",
                newcomer.runner_id()
            ),
        )
        .await;
    // Every owner account counts, as GET /v1/owners lists them.
    let owners: Vec<Value> = reqwest::get(format!("{}/v1/owners", grid.url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(owners.len() >= 6, "{owners:?}");
    browser
        .wait_until(
            "the owners counted",
            15,
            &format!(
                "return document.getElementById('owners-known').textContent === '{} owners'",
                owners.len()
            ),
        )
        .await;
    assert_eq!(browser.text("#accepted").await, n.to_string());
    assert_eq!(browser.text("#disputed").await, "1");
    let seen = page
        .execute("return window.helioSeen", vec![])
        .await
        .unwrap();
    let seen: Vec<u64> = serde_json::from_value(seen).unwrap();
    assert_eq!(seen.first(), Some(&0), "{seen:?}");
    assert_eq!(seen.last(), Some(&(n as u64)), "{seen:?}");
    assert!(
        seen.windows(2).all(|w| w[0] < w[1]),
        "progress went backwards: {seen:?}"
    );
    assert!(seen.contains(&(half as u64)), "{seen:?}");
    let mark = page
        .execute("return window.helioMark", vec![])
        .await
        .unwrap();
    assert_eq!(mark, "no reload", "the page reloaded");

    // Screenshots for the README: wide, then phone-sized.
    let shots = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"));
    let png = page.screenshot().await.unwrap();
    assert!(png.starts_with(b"\x89PNG"));
    std::fs::write(shots.join("dashboard.png"), png).unwrap();
    page.set_window_size(390, 844).await.unwrap();
    let fits = page
        .execute(
            "return document.documentElement.scrollWidth <= window.innerWidth + 1",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(fits, Value::Bool(true), "the page is wider than a phone");
    std::fs::write(
        shots.join("dashboard-phone.png"),
        page.screenshot().await.unwrap(),
    )
    .unwrap();

    browser.close().await;
    grid.stop().await;
}
