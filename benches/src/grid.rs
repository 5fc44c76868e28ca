//! `helio-bench grid`: accepted tasks per second through a real scheduler process with
//! volunteer runners on loopback, on SQLite and PostgreSQL, and the scheduler's memory.
//!
//! Each measurement starts a fresh `scheduler serve` (the binary built beside this one), a
//! fresh database, and `runners` in-process volunteer runners (`helio_runner::agent`, each of
//! its own owner, signing every request), submits a batch of trivial tasks (an empty module,
//! replicas 2, quorum 2) with `helio submit`'s library, and polls the batch until every task
//! is accepted. With `--redundancy adaptive` the batch asks for a target error of 1e-4 with
//! one replica at first (decision 059); `--establish N` first runs N tasks at replicas 2 so
//! that the runners have records, as on a grid that has been running.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use helio_cli::grid::Grid;
use helio_runner::agent::{self, AgentConfig, Stop};
use helio_sdk::ids::Owner;
use helio_sdk::{Blake3Hash, Tier};
use serde_json::json;
use sqlx::Connection;
use tokio::sync::watch;

/// Which database a measurement uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Db {
    /// SQLite in the scheduler's data directory.
    Sqlite,
    /// A fresh database on the PostgreSQL server at `--postgres`.
    Postgres,
}

/// How the measured batch's tasks are decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Redundancy {
    /// Two replicas, both must agree.
    Fixed,
    /// One replica at first, a target error of 1e-4 (credibility decides).
    Adaptive,
}

/// What to measure.
#[derive(clap::Args, Clone, Debug)]
pub struct GridArgs {
    /// Databases to measure.
    #[arg(long, value_delimiter = ',', default_values = ["sqlite", "postgres"])]
    db: Vec<Db>,
    /// Runner counts for the scaling rows (at `--scale-tasks` tasks).
    #[arg(long, value_delimiter = ',', default_values_t = [2usize, 4, 16, 64])]
    runners: Vec<usize>,
    /// Batch sizes for the size rows (at `--size-runners` runners).
    #[arg(long, value_delimiter = ',', default_values_t = [1_000usize, 10_000, 100_000])]
    sizes: Vec<usize>,
    /// Tasks per batch in the runner-scaling rows.
    #[arg(long, default_value_t = 10_000)]
    scale_tasks: usize,
    /// Runners in the batch-size rows.
    #[arg(long, default_value_t = 16)]
    size_runners: usize,
    /// The scheduler binary (default: the one built beside this benchmark); name another
    /// build to compare versions in one run.
    #[arg(long)]
    scheduler: Option<PathBuf>,
    /// Slots per runner.
    #[arg(long, default_value_t = 4)]
    slots: u32,
    /// Submit each batch only once every runner has registered and passed its health
    /// check, as on a grid already running; by default the runners start with the batch,
    /// so its first second includes their start (calibration, registration, checks).
    #[arg(long)]
    warm: bool,
    /// How the measured batches' tasks are decided (each measured in turn, per row).
    #[arg(long, value_delimiter = ',', default_values = ["fixed"])]
    redundancy: Vec<Redundancy>,
    /// Tasks run at replicas 2 before each measured batch, so that the runners have
    /// records (agreements) as on a grid that has been running.
    #[arg(long, default_value_t = 0)]
    establish: usize,
    /// The PostgreSQL server (a database is created and dropped per measurement).
    #[arg(
        long,
        env = "HELIO_TEST_POSTGRES",
        default_value = "postgres://postgres@127.0.0.1:5432/postgres"
    )]
    postgres: String,
}

/// One measurement.
struct Figures {
    requests_per_task: f64,
    leases_per_task: f64,
    submit: Duration,
    total: Duration,
    steady_rate: f64,
    rss_kib: u64,
    peak_kib: u64,
    /// The scheduler's RSS (KiB) when a quarter, half and three quarters of the tasks were
    /// accepted: whether its memory grows with the number of finished tasks.
    rss_quarters: [u64; 3],
    /// One read of the dashboard's snapshot with the batch finished (best of three).
    dashboard: Duration,
}

/// Runs the measurements and prints a Markdown table.
pub fn grid(args: &GridArgs) -> Result<()> {
    // Each task needs two agreeing replicas from distinct runners of distinct owners: fewer
    // runners than that would wait forever.
    if let Some(&few) = args
        .runners
        .iter()
        .chain([&args.size_runners])
        .find(|&&r| r < 2)
    {
        bail!(
            "{few} runner(s): every task runs on 2 runners of distinct owners (replicas 2), \
             so --runners and --size-runners must be at least 2"
        );
    }
    let scheduler = match &args.scheduler {
        Some(path) => path.clone(),
        None => scheduler_binary()?,
    };
    let runtime = tokio::runtime::Runtime::new()?;
    println!(
        "\n## The grid: accepted tasks per second (empty module, replicas 2, {} slots per runner)\n\nscheduler: {}\n",
        args.slots,
        scheduler.display()
    );
    println!(
        "| database | redundancy | runners | tasks | submit | submit → all accepted | accepted tasks/s | steady tasks/s | scheduler RSS at ¼, ½, ¾ accepted | scheduler RSS | scheduler peak RSS | requests per task | leases per task | dashboard read |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    let mut rows: Vec<(usize, usize)> = args
        .runners
        .iter()
        .map(|&r| (r, args.scale_tasks))
        .collect();
    rows.extend(args.sizes.iter().map(|&n| (args.size_runners, n)));
    rows.dedup();
    for &db in &args.db {
        for &(runners, tasks) in &rows {
            for &red in &args.redundancy {
                let f = runtime
                    .block_on(measure(&scheduler, args, db, red, runners, tasks))
                    .with_context(|| {
                        format!("{db:?}, {red:?}, {runners} runners, {tasks} tasks")
                    })?;
                print_row(db, red, runners, tasks, &f);
            }
        }
    }
    Ok(())
}

fn print_row(db: Db, red: Redundancy, runners: usize, tasks: usize, f: &Figures) {
    println!(
        "| {db:?} | {red:?} | {runners} | {tasks} | {:.2} s | {:.2} s | {:.0} | {:.0} | {} / {} / {} MiB | {} MiB | {} MiB | {:.1} | {:.2} | {:.0} ms |",
        f.submit.as_secs_f64(),
        f.total.as_secs_f64(),
        tasks as f64 / f.total.as_secs_f64(),
        f.steady_rate,
        f.rss_quarters[0] / 1024,
        f.rss_quarters[1] / 1024,
        f.rss_quarters[2] / 1024,
        f.rss_kib / 1024,
        f.peak_kib / 1024,
        f.requests_per_task,
        f.leases_per_task,
        f.dashboard.as_secs_f64() * 1000.0,
    );
}

/// The `scheduler` binary built beside this benchmark.
fn scheduler_binary() -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let path = exe
        .parent()
        .context("the benchmark's directory")?
        .join("scheduler");
    ensure!(
        path.exists(),
        "{} is missing: build it first with `cargo build --release -p helio-scheduler`",
        path.display()
    );
    Ok(path)
}

/// A scheduler process and its database, removed on drop.
pub(crate) struct Scheduler {
    child: Child,
    pub(crate) url: String,
    pub(crate) token: String,
    database: Option<(String, String)>,
    _dir: tempfile::TempDir,
}

impl Scheduler {
    pub(crate) async fn start(binary: &Path, db: Db, postgres: &str) -> Result<Scheduler> {
        let dir = tempfile::tempdir()?;
        let mut database = None;
        if db == Db::Postgres {
            let mut conn = sqlx::PgConnection::connect(postgres)
                .await
                .with_context(|| format!("PostgreSQL at {postgres}"))?;
            let name = format!("helio_bench_{}", std::process::id());
            sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .execute(&mut conn)
                .await?;
            sqlx::query(&format!("CREATE DATABASE {name}"))
                .execute(&mut conn)
                .await?;
            let (base, _) = postgres.rsplit_once('/').context("a database URL")?;
            database = Some((format!("{base}/{name}"), name));
        }
        let command = |args: &[&str]| {
            let mut c = Command::new(binary);
            c.args(args).arg("--data-dir").arg(dir.path().join("data"));
            if let Some((url, _)) = &database {
                c.arg("--database").arg(url);
            }
            c
        };
        let out = command(&["token", "create", "--role", "submitter", "--name", "bench"])
            .output()
            .context("scheduler token create")?;
        ensure!(
            out.status.success(),
            "scheduler token create: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let token = String::from_utf8(out.stdout)?.trim().to_string();
        // Every simulated volunteer is a new owner from loopback.
        let mut child = command(&[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--new-owners-per-address",
            "1000000",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("scheduler serve")?;
        let mut first = String::new();
        BufReader::new(child.stdout.take().context("its standard output")?)
            .read_line(&mut first)?;
        let url = first.trim().to_string();
        if !url.starts_with("http://") {
            let _ = child.kill();
            bail!("scheduler serve printed {first:?} instead of its URL");
        }
        Ok(Scheduler {
            child,
            url,
            token,
            database,
            _dir: dir,
        })
    }

    /// Waits (at most a minute) until `runners` runners have passed their health checks.
    async fn until_warm(&self, runners: usize) -> Result<()> {
        let start = Instant::now();
        loop {
            let metrics = reqwest::get(format!("{}/metrics", self.url))
                .await?
                .text()
                .await?;
            let passed: f64 = metrics
                .lines()
                .filter_map(|l| l.strip_prefix("helio_health_checks_total{status=\"accepted\"} "))
                .filter_map(|n| n.trim().parse::<f64>().ok())
                .sum();
            if passed as usize >= runners {
                return Ok(());
            }
            ensure!(
                start.elapsed() < Duration::from_secs(60),
                "{passed} of {runners} runners passed their health checks within a minute"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// (VmRSS, VmHWM) of the scheduler process, in KiB.
    fn memory(&self) -> (u64, u64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        (field("VmRSS:"), field("VmHWM:"))
    }

    pub(crate) async fn stop(mut self, postgres: &str) -> Result<()> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some((_, name)) = &self.database {
            let mut conn = sqlx::PgConnection::connect(postgres).await?;
            sqlx::query(&format!("DROP DATABASE {name} WITH (FORCE)"))
                .execute(&mut conn)
                .await?;
        }
        Ok(())
    }
}

/// Writes a batch `name` of `n` trivial tasks into `dir`, decided as `red` says; returns
/// the manifest's path.
fn trivial_batch(dir: &Path, name: &str, n: usize, red: Redundancy) -> Result<PathBuf> {
    let module =
        wat::parse_str(r#"(module (memory (export "memory") 1) (func (export "_start")))"#)?;
    std::fs::write(dir.join("empty.wasm"), &module)?;
    let tasks: Vec<_> = (0..n)
        .map(|i| json!({ "name": format!("t-{i:06}"), "args": [name, i.to_string()] }))
        .collect();
    let mut batch = json!({
        "schema_version": 1,
        "batch": format!("{name}-{n}"),
        "defaults": {
            "module": { "uri": "empty.wasm", "blake3": Blake3Hash::of(&module).to_string() },
            "limits": { "fuel": 1_000_000u64, "wall_seconds": 60 },
        },
        "redundancy": { "replicas": 2, "quorum": 2, "max_replicas": 5 },
        "tasks": tasks,
    });
    if red == Redundancy::Adaptive {
        batch["redundancy"] = json!({ "replicas": 1, "quorum": 1, "max_replicas": 4 });
        batch["target_error"] = json!(1e-4);
    }
    let path = dir.join(format!("{name}.json"));
    std::fs::write(&path, serde_json::to_vec(&batch)?)?;
    Ok(path)
}

impl Scheduler {
    /// Runner requests and leases so far, from `/metrics`.
    async fn counted(&self) -> Result<(f64, f64)> {
        let metrics = reqwest::get(format!("{}/metrics", self.url))
            .await?
            .text()
            .await?;
        let metric = |name: &str| -> f64 {
            metrics
                .lines()
                .filter(|l| l.starts_with(name))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum()
        };
        Ok((
            metric("helio_runner_requests_total"),
            metric("helio_leases_total"),
        ))
    }

    /// The best of three reads of the dashboard's snapshot.
    async fn dashboard_time(&self) -> Result<Duration> {
        let mut best = Duration::MAX;
        for _ in 0..3 {
            let asked = Instant::now();
            let response = reqwest::Client::new()
                .get(format!("{}/v1/dashboard", self.url))
                .bearer_auth(&self.token)
                .send()
                .await?;
            ensure!(
                response.status().is_success(),
                "dashboard: {}",
                response.status()
            );
            response.bytes().await?;
            best = best.min(asked.elapsed());
        }
        Ok(best)
    }
}

async fn measure(
    binary: &Path,
    args: &GridArgs,
    db: Db,
    red: Redundancy,
    runners: usize,
    tasks: usize,
) -> Result<Figures> {
    let scheduler = Scheduler::start(binary, db, &args.postgres).await?;
    let work = tempfile::tempdir()?;
    let manifest = trivial_batch(work.path(), "trivial", tasks, red)?;
    let grid = Grid::new(&scheduler.url, &scheduler.token);

    let (stop_tx, stop_rx) = watch::channel(Stop::Run);
    let mut handles = Vec::new();
    for k in 0..runners {
        let owner = format!("bench-{k:02}");
        let config = AgentConfig {
            scheduler: scheduler.url.clone(),
            owner: Owner::parse(&owner)?,
            owner_key: None,
            invite: None,
            tier: Tier::Cpu,
            slots: args.slots,
            state_dir: work.path().join("runners").join(&owner),
            cache_dir: None,
            cache_limit: None,
            output: agent::Output::Quiet,
            location: None,
            green_energy: None,
            controls: Default::default(),
        };
        handles.push(tokio::spawn(agent::run(config, stop_rx.clone())));
    }

    if args.warm {
        scheduler.until_warm(runners).await?;
    }
    if args.establish > 0 {
        let first = trivial_batch(work.path(), "establish", args.establish, Redundancy::Fixed)?;
        let batch = grid.submit(&first.display().to_string()).await?.batch;
        while !grid.status(&batch).await?.done() {
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
    let (requests_before, leases_before) = scheduler.counted().await?;
    let start = Instant::now();
    let submitted = grid.submit(&manifest.display().to_string()).await?;
    let submit = start.elapsed();
    let (mut first, mut first_done) = (None, 0u64);
    let mut rss_quarters = [0u64; 3];
    let status = loop {
        let status = grid.status(&submitted.batch).await?;
        let finished = status.succeeded + status.failed;
        for (q, rss) in rss_quarters.iter_mut().enumerate() {
            if *rss == 0 && finished * 4 >= (q as u64 + 1) * tasks as u64 {
                *rss = scheduler.memory().0;
            }
        }
        if first.is_none() && finished > 0 {
            first = Some(Instant::now());
            first_done = finished;
        }
        if status.done() {
            break status;
        }
        ensure!(
            start.elapsed() < Duration::from_secs(3600),
            "the batch did not finish within an hour: {status:?}"
        );
        // As often as `helio submit --wait` asks (300 ms), or a little more.
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let done = Instant::now();
    let total = done - start - submit;
    ensure!(
        status.failed == 0 && status.succeeded == tasks as u64,
        "not every task was accepted: {status:?}"
    );
    let (rss_kib, peak_kib) = scheduler.memory();
    let (requests, leases) = scheduler.counted().await?;
    let (requests, leases) = (requests - requests_before, leases - leases_before);
    let (requests_per_task, leases_per_task) = (requests / tasks as f64, leases / tasks as f64);
    let dashboard = scheduler.dashboard_time().await?;
    let steady = done - first.unwrap_or(start);
    let steady_rate = (tasks as u64 - first_done) as f64 / steady.as_secs_f64().max(1e-3);

    let _ = stop_tx.send(Stop::Now);
    for h in handles {
        let _ = h.await;
    }
    scheduler.stop(&args.postgres).await?;
    Ok(Figures {
        requests_per_task,
        leases_per_task,
        submit,
        total,
        steady_rate,
        rss_kib,
        peak_kib,
        rss_quarters,
        dashboard,
    })
}
