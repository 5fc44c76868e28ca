//! The grid end to end, in one process: a scheduler on port 0 with a fresh database, volunteer
//! runners, dishonest and vanishing runners, `helio submit` and `helio results`. Each test
//! runs on SQLite and on PostgreSQL (a fresh database per test, on this machine's server).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use helio_cli::grid::Grid;
use helio_runner::agent::{self, AgentConfig, Client, Stop};
use helio_runner::health::HEALTH_CHECK_BATCH;
use helio_scheduler::ledger;
use helio_scheduler::service::{self, Config};
use helio_scheduler::store::Role;
use helio_sdk::ids::Owner;
use helio_sdk::wire::{self, BatchStatus, RegisterRunner, ReportStatus, ResultReport, RunnerKey};
use helio_sdk::{Blake3Hash, DETERMINISM_PROFILE, Outcome, RunReport, Tier};
use sqlx::Connection;
use tokio::sync::watch;

/// Where the tests' PostgreSQL server is.
fn postgres_admin_url() -> String {
    std::env::var("HELIO_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

#[derive(Clone, Copy, Debug)]
pub enum Db {
    Sqlite,
    Postgres,
}

/// A fresh database URL for one test: `None` for SQLite in the data directory.
pub async fn fresh_database(db: Db) -> Option<String> {
    match db {
        Db::Sqlite => None,
        Db::Postgres => {
            let admin = postgres_admin_url();
            let mut conn = sqlx::PgConnection::connect(&admin)
                .await
                .unwrap_or_else(|e| panic!("PostgreSQL at {admin}: {e} (scripts/test starts it)"));
            let mut name = [0u8; 8];
            getrandom::fill(&mut name).unwrap();
            let name = format!("helio_test_{}", wire::to_hex(&name));
            sqlx::query(&format!("CREATE DATABASE {name}"))
                .execute(&mut conn)
                .await
                .unwrap();
            let (base, _) = admin.rsplit_once('/').unwrap();
            Some(format!("{base}/{name}"))
        }
    }
}

/// Drops the test's PostgreSQL database, if it has one.
pub async fn drop_database(config: &Config) {
    if let Some(url) = &config.database {
        let (_, name) = url.rsplit_once('/').unwrap();
        let mut conn = sqlx::PgConnection::connect(&postgres_admin_url())
            .await
            .unwrap();
        sqlx::query(&format!("DROP DATABASE {name} WITH (FORCE)"))
            .execute(&mut conn)
            .await
            .unwrap();
    }
}

/// A running scheduler with a submitter token.
pub struct TestGrid {
    pub url: String,
    pub token: String,
    pub config: Config,
    pub dir: tempfile::TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl TestGrid {
    pub async fn start(db: Db, grace_ms: i64) -> TestGrid {
        TestGrid::start_with(db, |c| c.api.lease_grace_ms = grace_ms).await
    }

    /// A scheduler with the tests' settings, then `adjust`'s.
    pub async fn start_with(db: Db, adjust: impl FnOnce(&mut Config)) -> TestGrid {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::new(dir.path().join("data"));
        config.listen = "127.0.0.1:0".parse().unwrap();
        config.database = fresh_database(db).await;
        config.api.heartbeat_seconds = 1;
        // Every test's owners come from loopback.
        config.api.admission = helio_scheduler::owners::Admission::Open {
            per_address_per_day: 10_000,
        };
        config.upload_wait_ms = 2_000;
        adjust(&mut config);
        let token = service::open_store(&config)
            .await
            .unwrap()
            .create_token(Role::Submitter, "test")
            .await
            .unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel();
        let running = service::start(config.clone(), async {
            let _ = rx.await;
        })
        .await
        .unwrap();
        TestGrid {
            url: format!("http://{}", running.addr),
            token,
            config,
            dir,
            stop: Some(tx),
            task: running.task,
        }
    }

    pub fn submitter(&self) -> Grid {
        Grid::new(&self.url, &self.token)
    }

    /// Submits the batch manifest at `manifest`; returns the batch's id.
    pub async fn submit(&self, manifest: &Path) -> String {
        self.submitter()
            .submit(manifest.to_str().unwrap())
            .await
            .unwrap()
            .batch
    }

    /// A volunteer runner of `owner`, running until the returned sender says stop.
    pub fn runner(&self, owner: &str, slots: u32) -> RunnerHandle {
        runner(&self.url, self.dir.path(), owner, slots)
    }

    /// Waits (at most a minute) until `done` holds for the batch's status.
    pub async fn wait_for(&self, batch: &str, done: impl Fn(&BatchStatus) -> bool) -> BatchStatus {
        let start = Instant::now();
        loop {
            let status = self.submitter().status(batch).await.unwrap();
            if done(&status) {
                return status;
            }
            assert!(
                start.elapsed() < Duration::from_secs(90),
                "the batch did not get there in time: {status:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.task.await.unwrap().unwrap();
        drop_database(&self.config).await;
    }
}

/// A runner's stop switch and its task.
pub type RunnerHandle = (
    watch::Sender<Stop>,
    tokio::task::JoinHandle<anyhow::Result<agent::Summary>>,
);

/// A volunteer runner of `owner` working for the scheduler at `url`, keeping its key
/// under `dir/runners/<owner>`.
pub fn runner(url: &str, dir: &Path, owner: &str, slots: u32) -> RunnerHandle {
    runner_of_tier(url, dir, owner, slots, Tier::Cpu)
}

/// [`runner`] of `tier`.
pub fn runner_of_tier(url: &str, dir: &Path, owner: &str, slots: u32, tier: Tier) -> RunnerHandle {
    let (tx, rx) = watch::channel(Stop::Run);
    let config = AgentConfig {
        scheduler: url.to_string(),
        owner: Owner::parse(owner).unwrap(),
        owner_key: None,
        invite: None,
        tier,
        slots,
        state_dir: dir.join("runners").join(owner),
        cache_dir: None,
        cache_limit: None,
        output: agent::Output::Quiet,
        location: None,
        green_energy: None,
        controls: Default::default(),
    };
    (tx, tokio::spawn(agent::run(config, rx)))
}

/// The BLAKE3 chain the hashchain job computes.
pub fn chain(start: [u8; 32], rounds: u32) -> String {
    let mut h = start;
    for _ in 0..rounds {
        h = *blake3::hash(&h).as_bytes();
    }
    wire::to_hex(&h)
}

/// A batch of `n` hashchain tasks in `dir`; returns the manifest's path.
pub fn hashchain_batch(dir: &Path, n: u32, rounds: u32, wall_seconds: u64) -> PathBuf {
    let module = helio_jobs::bytes(helio_jobs::HASHCHAIN);
    std::fs::write(dir.join("hashchain.wasm"), &module).unwrap();
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            serde_json::json!({
                "name": format!("chain-{i:03}"),
                "args": ["--rounds", rounds.to_string(), "--start", wire::to_hex(&[i as u8; 32])],
            })
        })
        .collect();
    let batch = serde_json::json!({
        "schema_version": 1,
        "batch": "chains",
        "defaults": {
            "module": { "uri": "hashchain.wasm", "blake3": Blake3Hash::of(&module).to_string() },
            "outputs": [{ "name": "digest.txt", "max_bytes": 128 }],
            "limits": { "fuel": 10_000_000_000u64, "wall_seconds": wall_seconds },
        },
        "redundancy": { "replicas": 2, "quorum": 2, "max_replicas": 5 },
        "credit_rate": 2.0,
        "tasks": tasks,
    });
    let path = dir.join("batch.json");
    std::fs::write(&path, serde_json::to_string_pretty(&batch).unwrap()).unwrap();
    path
}

/// A registered runner that never runs anything: it reports whatever it is told to.
pub async fn rogue(url: &str, owner: &str) -> Client {
    rogue_with_slots(url, owner, 2).await
}

/// [`rogue`] with `slots` slots.
pub async fn rogue_with_slots(url: &str, owner: &str, slots: u32) -> Client {
    let client = cold_runner(url, owner, slots).await;
    pass_health_check(&client).await;
    client
}

/// A runner registered and not yet through its health check: cold.
pub async fn cold_runner(url: &str, owner: &str, slots: u32) -> Client {
    let mut secret = [0u8; 32];
    getrandom::fill(&mut secret).unwrap();
    let client = Client::new(url, RunnerKey::from_secret(secret));
    client
        .register(
            &RegisterRunner {
                public_key: client.key().public_hex(),
                owner: owner.into(),
                tier: Tier::Cpu,
                slots,
                cores: 1,
                memory_bytes: 0,
                fuel_per_second: 1,
                profile: DETERMINISM_PROFILE.into(),
                location: None,
                green_energy: None,
                owner_key: None,
                endorsement: None,
                invite: None,
            }
            .endorsed_by(&owner_key(owner)),
        )
        .await
        .unwrap();
    client
}

/// The owner key of the tests' owner `name`: the same for every runner of the name.
pub fn owner_key(name: &str) -> helio_sdk::wire::OwnerKey {
    helio_sdk::wire::OwnerKey::from_secret(
        *blake3::hash(format!("test owner {name}").as_bytes()).as_bytes(),
    )
}

/// A sandbox for the tests' own runs.
pub fn sandbox() -> &'static helio_runner::Sandbox {
    static SANDBOX: std::sync::OnceLock<helio_runner::Sandbox> = std::sync::OnceLock::new();
    SANDBOX.get_or_init(|| helio_runner::Sandbox::new(Default::default()).unwrap())
}

/// Runs the health check a cold runner is leased first; the check's lease and what the run
/// gave, not yet reported.
pub async fn run_health_check(client: &Client) -> (wire::Lease, helio_runner::RunOutput) {
    let leases = client.lease(1).await.unwrap();
    assert_eq!(leases.len(), 1, "a cold runner gets one lease: {leases:?}");
    let lease = leases.into_iter().next().unwrap();
    assert_eq!(lease.batch, HEALTH_CHECK_BATCH);
    assert!(lease.task_id < 0, "a check's lease has a negative id");
    let module = client.blob(&lease.manifest.module.blake3).await.unwrap();
    let task = helio_runner::LoadedTask {
        manifest: lease.manifest.clone(),
        module: module.into(),
        inputs: Vec::new(),
    };
    let output = task.run(sandbox()).unwrap();
    (lease, output)
}

/// Passes the health check a cold runner gets first, so that it gets tasks.
pub async fn pass_health_check(client: &Client) {
    let (lease, output) = run_health_check(client).await;
    let acks = client
        .report(vec![client.result(&lease, &output.report)])
        .await
        .unwrap();
    assert_eq!(acks[0].status, ReportStatus::Accepted, "{acks:?}");
}

/// A signed report of a made-up result.
pub fn lie(client: &Client, lease: &wire::Lease) -> ResultReport {
    lie_with(client, lease, 4242, b"made up")
}

/// A signed report of a made-up result with `fuel` and standard output `stdout`: liars who
/// pick different ones disagree with each other too.
pub fn lie_with(client: &Client, lease: &wire::Lease, fuel: u64, stdout: &[u8]) -> ResultReport {
    let report = RunReport::new(
        Outcome::Exited { exit_code: 0 },
        fuel,
        Blake3Hash::of(stdout),
        Vec::new(),
        1,
    );
    let message = wire::result_message(&lease.batch, lease.manifest.name.as_str(), &report.digest);
    ResultReport {
        task_id: lease.task_id,
        signature: client.key().sign(&message),
        report,
    }
}

/// Checks everything a finished batch must satisfy: every task accepted with the honest
/// answer, every credit matching an accepted result, the ledger intact. Returns the
/// micro-credits per runner.
pub async fn check_finished(
    grid: &TestGrid,
    batch: &str,
    n: u32,
    rounds: u32,
) -> std::collections::BTreeMap<String, u64> {
    check_batch(
        &grid.submitter(),
        &grid.config,
        grid.dir.path(),
        batch,
        n,
        rounds,
    )
    .await
}

/// [`check_finished`] for any scheduler.
pub async fn check_batch(
    submitter: &Grid,
    config: &Config,
    dir: &Path,
    batch: &str,
    n: u32,
    rounds: u32,
) -> std::collections::BTreeMap<String, u64> {
    let out = dir.join("results");
    let results = submitter
        .download(batch, out.to_str().unwrap())
        .await
        .unwrap();
    assert_eq!(results.tasks.len(), n as usize);
    let mut expected_total = 0;
    for (i, task) in results.tasks.iter().enumerate() {
        let result = task.result.as_ref().expect("every task accepted");
        assert!(
            result.outcome.is_success(),
            "{}: {:?}",
            task.task,
            result.outcome
        );
        let written = std::fs::read_to_string(out.join(&task.task).join("digest.txt")).unwrap();
        assert_eq!(
            written.trim(),
            chain([i as u8; 32], rounds),
            "{}",
            task.task
        );
        assert!(
            task.agreeing.len() >= 2,
            "{}: {:?}",
            task.task,
            task.agreeing
        );
        let each = ledger::micro_credits(result.fuel_consumed, 2.0);
        assert!(each > 0);
        assert_eq!(task.micro_credits, each * task.agreeing.len() as u64);
        expected_total += task.micro_credits;
    }
    let written: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("results.json")).unwrap()).unwrap();
    assert_eq!(written["tasks"].as_array().unwrap().len(), n as usize);
    // The status's counts, kept as tasks are accepted, against the results read row by row.
    let status = submitter.status(batch).await.unwrap();
    assert_eq!(status.micro_credits, expected_total);
    assert_eq!(
        (status.tasks, status.succeeded, status.failed),
        (n as u64, results.tasks.len() as u64, 0)
    );
    assert_eq!(
        (status.pending, status.running, status.deciding),
        (0, 0, 0),
        "{status:?}"
    );
    let store = service::open_store(config).await.unwrap();
    let (entries, len, head) = store.ledger().await.unwrap();
    ledger::verify_anchored(&entries, len, &head).unwrap();
    assert_eq!(
        entries.iter().map(|e| e.credit.micro_credits).sum::<u64>(),
        expected_total
    );
    let by_runner = submitter.credits("runner").await.unwrap();
    by_runner
        .rows
        .into_iter()
        .map(|r| (r.key, r.micro_credits))
        .collect()
}

async fn honest_runners_outvote_a_liar(db: Db) {
    let grid = TestGrid::start(db, 30_000).await;
    let (n, rounds) = (12, 300);
    let manifest = hashchain_batch(grid.dir.path(), n, rounds, 60);
    let submitted = grid
        .submitter()
        .submit(manifest.to_str().unwrap())
        .await
        .unwrap();
    assert!(submitted.created);
    assert_eq!(submitted.tasks, 12);

    // The liar takes work first, so it surely holds replicas.
    let liar = rogue(&grid.url, "mallory").await;
    let mut lied = 0;
    for lease in liar.lease(2).await.unwrap() {
        let acks = liar.report(vec![lie(&liar, &lease)]).await.unwrap();
        assert_eq!(acks[0].status, ReportStatus::Recorded);
        lied += 1;
    }
    assert_eq!(lied, 2);
    let runners: Vec<_> = ["alice", "bob", "carol"]
        .iter()
        .map(|o| grid.runner(o, 2))
        .collect();
    grid.wait_for(&submitted.batch, BatchStatus::done).await;
    for (stop, task) in runners {
        stop.send(Stop::Drain).unwrap();
        let summary = task.await.unwrap().unwrap();
        assert_eq!(summary.disagreed, 0);
    }
    let credits = check_finished(&grid, &submitted.batch, n, rounds).await;
    assert!(
        !credits.contains_key(&liar.runner_id()),
        "the liar earned credits: {credits:?}"
    );
    assert_eq!(credits.len(), 3);
    let runners: Vec<wire::RunnerInfo> = reqwest::get(format!("{}/v1/runners", grid.url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let liar_info = runners.iter().find(|r| r.id == liar.runner_id()).unwrap();
    assert!(liar_info.flagged);
    assert_eq!(liar_info.disagreements, 2);
    assert_eq!(liar_info.agreements, 0);
    for honest in runners.iter().filter(|r| r.id != liar.runner_id()) {
        assert!(!honest.flagged, "{honest:?}");
    }
    // The same manifest again is the same batch.
    let again = grid
        .submitter()
        .submit(manifest.to_str().unwrap())
        .await
        .unwrap();
    assert_eq!((again.batch, again.created), (submitted.batch, false));
    grid.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn honest_runners_outvote_a_liar_sqlite() {
    honest_runners_outvote_a_liar(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn honest_runners_outvote_a_liar_postgres() {
    honest_runners_outvote_a_liar(Db::Postgres).await;
}

async fn a_stuck_runners_leases_expire_and_replayed_reports_change_nothing(db: Db) {
    let grid = TestGrid::start(db, 3_000).await;
    let (n, rounds) = (4, 100);
    let manifest = hashchain_batch(grid.dir.path(), n, rounds, 1);
    let batch = grid.submit(&manifest).await;
    // A runner takes two tasks and never reports them (as if stuck in them); it keeps its
    // heartbeat, so it stays online and only the leases' deadlines free the tasks.
    let ghost = rogue(&grid.url, "ghost").await;
    let taken = ghost.lease(2).await.unwrap();
    assert_eq!(taken.len(), 2);
    // The status's counts, kept as tasks move, against the rows counted.
    let status = grid.submitter().status(&batch).await.unwrap();
    let kept = (status.pending, status.running, status.deciding);
    assert_eq!(kept, (2, 2, 0), "{status:?}");
    let store = service::open_store(&grid.config).await.unwrap();
    assert_eq!(store.recount_batch(&batch).await.unwrap(), kept);
    drop(store);
    let beating = {
        let ghost = ghost.clone();
        tokio::spawn(async move {
            loop {
                ghost.heartbeat().await.unwrap();
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        })
    };
    let (stop, task) = grid.runner("alice", 2);
    let (stop2, task2) = grid.runner("bob", 2);
    grid.wait_for(&batch, BatchStatus::done).await;
    beating.abort();
    // The ghost's result after its deadline is refused, and earns nothing.
    let late = ghost.report(vec![lie(&ghost, &taken[0])]).await.unwrap();
    assert_eq!(late[0].status, ReportStatus::Refused, "{late:?}");
    for (s, t) in [(stop, task), (stop2, task2)] {
        s.send(Stop::Drain).unwrap();
        t.await.unwrap().unwrap();
    }
    let credits = check_finished(&grid, &batch, n, rounds).await;
    assert!(!credits.contains_key(&ghost.runner_id()));
    // Replaying a runner's accepted report changes nothing.
    let store = service::open_store(&grid.config).await.unwrap();
    let (before, _, _) = store.ledger().await.unwrap();
    let alice = store
        .runners()
        .await
        .unwrap()
        .into_iter()
        .find(|r| r.owner == "alice")
        .unwrap();
    let results = grid.submitter().results(&batch).await.unwrap();
    let task = results
        .tasks
        .iter()
        .find(|t| t.agreeing.contains(&alice.id))
        .unwrap();
    let task_id = sqlx_task_id(&grid, &batch, &task.task).await;
    let report = task.result.clone().unwrap();
    let signature = RunnerKey::from_secret(read_key(&grid, "alice")).sign(&wire::result_message(
        &batch,
        &task.task,
        &report.digest,
    ));
    let (acks, _) = store
        .report(
            &alice,
            &[ResultReport {
                task_id,
                report,
                signature,
            }],
            None,
            helio_scheduler::store::now_ms(),
        )
        .await
        .unwrap();
    assert_eq!(acks[0].status, ReportStatus::Duplicate);
    let (after, _, _) = store.ledger().await.unwrap();
    assert_eq!(before, after);
    let runners = store.runners().await.unwrap();
    let ghost_record = runners.iter().find(|r| r.id == ghost.runner_id()).unwrap();
    assert_eq!(ghost_record.reputation.missed_deadlines, 2);
    grid.stop().await;
}

async fn sqlx_task_id(grid: &TestGrid, batch: &str, task: &str) -> i64 {
    let leases_of_batch = service::open_store(&grid.config).await.unwrap();
    leases_of_batch.task_id(batch, task).await.unwrap().get()
}

fn read_key(grid: &TestGrid, owner: &str) -> [u8; 32] {
    let text = std::fs::read_to_string(
        grid.dir
            .path()
            .join("runners")
            .join(owner)
            .join("runner.key"),
    )
    .unwrap();
    wire::from_hex(text.trim()).unwrap().try_into().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_runners_leases_expire_and_replayed_reports_change_nothing_sqlite() {
    a_stuck_runners_leases_expire_and_replayed_reports_change_nothing(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_runners_leases_expire_and_replayed_reports_change_nothing_postgres() {
    a_stuck_runners_leases_expire_and_replayed_reports_change_nothing(Db::Postgres).await;
}

/// Two runners report the same tasks at the same moment, one request per result: whatever
/// order the transactions meet in, every task is accepted once, by both, and credited once
/// to each.
async fn simultaneous_reports_accept_every_task_once(db: Db) {
    let grid = TestGrid::start(db, 60_000).await;
    let n = 40;
    let manifest = hashchain_batch(grid.dir.path(), n, 10, 60);
    let batch = grid.submit(&manifest).await;
    let mut reports = Vec::new();
    for owner in ["ann", "bob"] {
        let runner = rogue_with_slots(&grid.url, owner, 64).await;
        let leases = runner.lease(64).await.unwrap();
        assert_eq!(leases.len(), n as usize, "{owner} leases every task");
        for lease in &leases {
            reports.push((runner.clone(), lie(&runner, lease)));
        }
    }
    // Interleave the two runners' reports of each task, and send them all at once.
    reports.sort_by_key(|(_, r)| r.task_id);
    let mut sent = tokio::task::JoinSet::new();
    for (runner, report) in reports {
        sent.spawn(async move { runner.report(vec![report]).await.unwrap() });
    }
    let mut accepted = 0;
    while let Some(acks) = sent.join_next().await {
        let ack = &acks.unwrap()[0];
        assert!(
            matches!(ack.status, ReportStatus::Recorded | ReportStatus::Accepted),
            "{ack:?}"
        );
        accepted += u32::from(ack.status == ReportStatus::Accepted);
    }
    // The first report of a task is recorded; the second completes its quorum.
    assert_eq!(accepted, n, "one report of each task completes its quorum");
    let results = grid.submitter().results(&batch).await.unwrap();
    let each = ledger::micro_credits(4242, 2.0);
    for task in &results.tasks {
        assert_eq!(task.state, "accepted", "{}", task.task);
        assert_eq!(task.agreeing.len(), 2, "{}", task.task);
        assert_eq!(task.micro_credits, 2 * each, "{}", task.task);
    }
    let store = service::open_store(&grid.config).await.unwrap();
    let (entries, len, head) = store.ledger().await.unwrap();
    ledger::verify_anchored(&entries, len, &head).unwrap();
    assert_eq!(entries.len(), 2 * n as usize);
    drop(store);
    grid.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simultaneous_reports_accept_every_task_once_sqlite() {
    simultaneous_reports_accept_every_task_once(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simultaneous_reports_accept_every_task_once_postgres() {
    simultaneous_reports_accept_every_task_once(Db::Postgres).await;
}

/// A runner reports and takes its next work in one request: the new leases come with the
/// acknowledgements, never exceed its free slots, never repeat a task it ran, and the tasks
/// finish as with separate requests.
async fn a_report_takes_the_next_tasks_in_the_same_request(db: Db) {
    let grid = TestGrid::start(db, 60_000).await;
    let n = 5;
    let manifest = hashchain_batch(grid.dir.path(), n, 10, 60);
    let batch = grid.submit(&manifest).await;
    for owner in ["ann", "bob"] {
        let runner = rogue_with_slots(&grid.url, owner, 2).await;
        let mut held = runner.lease(2).await.unwrap();
        assert_eq!(held.len(), 2);
        let mut ran = std::collections::BTreeSet::new();
        while !held.is_empty() {
            // Report one of the two held, asking for more than the one slot it frees.
            let done = held.remove(0);
            assert!(
                ran.insert(done.task_id),
                "task {} leased twice",
                done.task_id
            );
            let (acks, leases) = runner
                .report_and_lease(vec![lie(&runner, &done)], 5)
                .await
                .unwrap();
            assert_eq!(acks.len(), 1);
            assert!(
                matches!(
                    acks[0].status,
                    ReportStatus::Recorded | ReportStatus::Accepted
                ),
                "{:?}",
                acks[0]
            );
            assert!(leases.len() <= 1, "one slot was free: {leases:?}");
            held.extend(leases);
            assert!(held.len() <= 2);
        }
        assert_eq!(ran.len(), n as usize, "{owner} ran every task once");
    }
    let results = grid.submitter().results(&batch).await.unwrap();
    for task in &results.tasks {
        assert_eq!(task.state, "accepted", "{}", task.task);
        assert_eq!(task.agreeing.len(), 2, "{}", task.task);
    }
    grid.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_takes_the_next_tasks_in_the_same_request_sqlite() {
    a_report_takes_the_next_tasks_in_the_same_request(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_takes_the_next_tasks_in_the_same_request_postgres() {
    a_report_takes_the_next_tasks_in_the_same_request(Db::Postgres).await;
}

/// On PostgreSQL the scheduler analyzes the tables a batch fills, so that the queries over
/// them are planned with statistics even before autovacuum's first visit (or where it is
/// off, as on the CI's server); once analyzed, an unchanged table is not analyzed again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tables_a_batch_fills_are_analyzed_postgres() {
    let grid = TestGrid::start(Db::Postgres, 60_000).await;
    let url = grid.config.database.clone().unwrap();
    let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
    assert_eq!(tasks_analyzed(&mut conn).await, 0);
    grid.submit(&hashchain_batch(grid.dir.path(), 3_000, 1, 1))
        .await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while tasks_analyzed(&mut conn).await == 0 {
        assert!(
            Instant::now() < deadline,
            "the 3,000 tasks' table was not analyzed within a minute"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let store = helio_scheduler::store::Store::open(&url).await.unwrap();
    assert_eq!(store.keep_statistics().await.unwrap(), Vec::<String>::new());
    store.close().await;
    drop(conn);
    grid.stop().await;
}

/// How often the tasks table has been analyzed other than by autovacuum.
async fn tasks_analyzed(conn: &mut sqlx::PgConnection) -> i64 {
    sqlx::query_scalar("SELECT analyze_count FROM pg_stat_user_tables WHERE relname = 'tasks'")
        .fetch_one(conn)
        .await
        .unwrap()
}
