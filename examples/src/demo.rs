//! The Quick start's grid in one process: a scheduler with SQLite in a data directory,
//! three volunteers' runners, and example batches submitted, run by two runners each,
//! accepted when the two agree, credited, downloaded, and the ledger verified.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, ensure};
use helio_cli::grid::{Grid, progress_line};
use helio_runner::agent::{self, AgentConfig, Stop};
use helio_scheduler::service::{self, Config};
use helio_scheduler::store::Role;
use helio_sdk::Tier;
use helio_sdk::ids::Owner;
use helio_sdk::wire::credits_text;
use helio_sdk::wire::{BatchResults, BatchStatus, Credits};
use tokio::sync::watch;

use crate::batches::Example;

/// The volunteers of the demo; each runs one runner with one slot.
pub const OWNERS: [&str; 3] = ["ada", "grace", "marie"];

/// What the demo did, for its caller (and its test) to check.
#[derive(Debug)]
pub struct Demo {
    /// Each submitted batch's final status and results.
    pub batches: Vec<(BatchStatus, BatchResults)>,
    /// Runner id to owner.
    pub owners: BTreeMap<String, String>,
    /// Credits per owner.
    pub credits: Credits,
    /// Entries in the verified ledger.
    pub ledger_entries: usize,
}

/// Runs the grid under `out` (wiped first: each run starts fresh) with the example batches
/// whose job names are in `jobs`, writing what happens through `say`.
pub async fn run(out: &Path, jobs: &[String], say: &(dyn Fn(String) + Sync)) -> Result<Demo> {
    if out.exists() {
        std::fs::remove_dir_all(out).with_context(|| format!("cannot clear {}", out.display()))?;
    }
    let examples =
        crate::batches::write_batches(&out.join("batches")).map_err(anyhow::Error::msg)?;
    let chosen: Vec<&Example> = jobs
        .iter()
        .map(|job| {
            examples.iter().find(|e| e.job == job).with_context(|| {
                let known: Vec<_> = examples.iter().map(|e| e.job).collect();
                format!("no example batch {job:?}; there are {}", known.join(", "))
            })
        })
        .collect::<Result<_>>()?;

    // The scheduler: SQLite in the data directory, a free port on loopback.
    let mut config = Config::new(out.join("scheduler"));
    config.listen = "127.0.0.1:0".parse().expect("a socket address");
    let token = service::open_store(&config)
        .await?
        .create_token(Role::Submitter, "demo")
        .await?;
    let (stop_scheduler, stopped) = tokio::sync::oneshot::channel::<()>();
    let scheduler = service::start(config.clone(), async {
        let _ = stopped.await;
    })
    .await?;
    let url = format!("http://{}", scheduler.addr);
    say(format!(
        "scheduler  {url}  (SQLite in {})",
        config.data_dir.display()
    ));

    let (stop_runners, stop) = watch::channel(Stop::Run);
    let (owners, runners) = start_runners(out, &url, &stop, say)?;

    let grid = Grid::new(&url, &token);
    let mut batches = Vec::new();
    for example in chosen {
        batches.push(run_batch(&grid, example, out, &owners, say).await?);
    }

    // Stop the runners (they finish what they run), then read the credits and the ledger.
    let _ = stop_runners.send(Stop::Drain);
    for runner in runners {
        runner.await.context("a runner panicked")??;
    }
    let credits = grid.credits("owner").await?;
    say_credits(&credits, say);
    let _ = stop_scheduler.send(());
    scheduler.task.await.context("the scheduler panicked")??;

    let store = service::open_store(&config).await?;
    let (entries, len, head) = store.ledger().await.context("cannot read the ledger")?;
    helio_scheduler::ledger::verify_anchored(&entries, len, &head)
        .map_err(|e| anyhow::anyhow!("the ledger does not verify: {e}"))?;
    say(format!(
        "ledger     {} entries, hash chain verified, head {head}",
        entries.len()
    ));
    for (status, _) in &batches {
        ensure!(
            status.failed == 0,
            "{}: {} tasks failed",
            status.name,
            status.failed
        );
    }
    Ok(Demo {
        batches,
        owners,
        credits,
        ledger_entries: entries.len(),
    })
}

/// The volunteer runners, each an agent task.
type Runners = Vec<tokio::task::JoinHandle<Result<agent::Summary>>>;

/// Starts one volunteer runner per owner against `url`; returns runner id → owner, and the
/// runners. Each runner makes its key on first start; its id is the key's.
fn start_runners(
    out: &Path,
    url: &str,
    stop: &watch::Receiver<Stop>,
    say: &(dyn Fn(String) + Sync),
) -> Result<(BTreeMap<String, String>, Runners)> {
    let mut owners = BTreeMap::new();
    let mut runners = Vec::new();
    for owner in OWNERS {
        let state_dir = out.join("runners").join(owner);
        let id = agent::load_or_create_key(&state_dir)
            .with_context(|| format!("runner key in {}", state_dir.display()))?
            .runner_id();
        say(format!("runner     {id}  owner {owner}, tier cpu, 1 slot"));
        owners.insert(id, owner.to_string());
        let config = AgentConfig {
            scheduler: url.to_string(),
            owner: Owner::parse(owner)?,
            owner_key: None,
            invite: None,
            tier: Tier::Cpu,
            slots: 1,
            state_dir,
            cache_dir: Some(out.join("runners").join("compiled")),
            cache_limit: None,
            output: agent::Output::Quiet,
            location: None,
            green_energy: None,
            controls: Default::default(),
        };
        runners.push(tokio::spawn(agent::run(config, stop.clone())));
    }
    Ok((owners, runners))
}

/// Submits `example`, waits for it, downloads its results and prints a line per task.
async fn run_batch(
    grid: &Grid,
    example: &Example,
    out: &Path,
    owners: &BTreeMap<String, String>,
    say: &(dyn Fn(String) + Sync),
) -> Result<(BatchStatus, BatchResults)> {
    say(String::new());
    say(format!(
        "batch      {}: {} ({} tasks)",
        example.job, example.about, example.packed.tasks
    ));
    let manifest = example.packed.manifest.display().to_string();
    let submitted = grid.submit(&manifest).await?;
    say(format!(
        "submitted  {}  (each task goes to two runners of different owners)",
        submitted.batch
    ));
    let status = grid
        .wait(&submitted.batch, |s| say(format!("  {}", progress_line(s))))
        .await?;
    let results_dir = out.join("results").join(example.job);
    let results = grid
        .download(&submitted.batch, &results_dir.to_string_lossy())
        .await?;
    say(format!("results    {}", results_dir.display()));
    let width = results
        .tasks
        .iter()
        .map(|t| t.task.len())
        .max()
        .unwrap_or(0);
    for task in results.tasks.iter().take(12) {
        say(format!(
            "  {}",
            task_line(task, width, owners, &results_dir)
        ));
    }
    if results.tasks.len() > 12 {
        say(format!("  … and {} more", results.tasks.len() - 12));
    }
    Ok((status, results))
}

/// The credits per owner.
fn say_credits(credits: &Credits, say: &(dyn Fn(String) + Sync)) {
    say(String::new());
    say("credits by owner (a task's credit goes to each runner that agreed; 1 credit = 10^9 fuel at credit_rate 1.0)".into());
    for row in &credits.rows {
        say(format!(
            "  {:<8} {:>4} results  {:>16} fuel  {:>12} credits",
            row.key,
            row.tasks,
            row.fuel,
            credits_text(row.micro_credits)
        ));
    }
}

/// One task's line: outcome, fuel, who agreed, credit, and what its first output says.
fn task_line(
    task: &helio_sdk::wire::TaskResult,
    width: usize,
    owners: &BTreeMap<String, String>,
    dir: &Path,
) -> String {
    let Some(result) = &task.result else {
        return format!("{:<width$} {}", task.task, task.state);
    };
    let agreed: Vec<&str> = task
        .agreeing
        .iter()
        .map(|id| owners.get(id).map_or(id.as_str(), String::as_str))
        .collect();
    let by = match task.decided_by.as_deref() {
        Some("scheduler") => "the scheduler's own run".to_string(),
        _ => agreed.join(" + "),
    };
    let first = result
        .outputs
        .first()
        .map(|o| dir.join(&task.task).join(o.name.as_str()));
    format!(
        "{:<width$}  {:<7} fuel {:>11}  agreed by {:<14} {} credits  {}",
        task.task,
        result.outcome.name(),
        result.fuel_consumed,
        by,
        credits_text(task.micro_credits),
        first.as_deref().map(preview).unwrap_or_default()
    )
}

/// The numbers of the example jobs' JSON outputs worth a glance, in this order.
const WORTH_SHOWING: [&str; 6] = [
    "dt",
    "relative_drift",
    "temperature",
    "abs_magnetisation",
    "energy",
    "matches",
];

/// A few words of an output: a JSON object's telling numbers, or the start of a text.
fn preview(path: &Path) -> String {
    let Ok(bytes) = std::fs::read(path) else {
        return String::new();
    };
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    if let Ok(serde_json::Value::Object(fields)) = serde_json::from_slice(&bytes) {
        let mut numbers: Vec<String> = WORTH_SHOWING
            .iter()
            .filter_map(|k| {
                fields
                    .get(*k)
                    .filter(|v| v.is_number())
                    .map(|v| format!("{k}={v}"))
            })
            .collect();
        if numbers.is_empty() {
            numbers = fields
                .iter()
                .filter(|(_, v)| v.is_number())
                .take(3)
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
        }
        return format!("{name}: {}", numbers.join(" "));
    }
    match std::str::from_utf8(&bytes) {
        Ok(text) if text.len() <= 80 => format!("{name}: {}", text.trim()),
        _ => format!("{name}: {} bytes", bytes.len()),
    }
}

/// Where the demo keeps its state: `target/helio-demo` in the workspace.
pub fn default_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the examples crate lives in the workspace")
        .join("target/helio-demo")
}
