//! The volunteer runner (`runner --tier cpu --scheduler URL`): keeps its Ed25519 key,
//! registers, leases tasks, runs them in parallel slots in the sandbox, reports signed
//! results, uploads outputs when the scheduler asks, and retries with backoff while the
//! scheduler is away. It only ever connects outward.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use helio_sdk::ids::Owner;
use helio_sdk::wire::{
    self, HeartbeatAck, Lease, Leases, OwnerKey, RegisterRunner, Registered, ReportStatus,
    RunnerKey,
};
use helio_sdk::{Blake3Hash, DETERMINISM_PROFILE, TaskManifest, Tier};
use tokio::sync::watch;
use tokio::task::JoinSet;

pub use crate::display::Output;
use crate::display::{Display, Event};
use crate::health::HEALTH_CHECK_BATCH;
use crate::{LoadedTask, Pause, Progress, RunOutput, Sandbox, SandboxConfig};

mod blobs;
mod checkpoints;
mod machine;
mod sensors;
mod state;

use blobs::BlobCache;
use sensors::{Sensors, watch_machine};

use crate::controls::Controls;

use backon::Retryable;
pub use helio_sdk::client::{ClientError, RunnerClient as Client};
use helio_sdk::client::{away_backoff, now_ms};
pub use machine::{
    calibrate, create_owner_key, load_or_create_key, load_or_create_owner_key, total_memory,
};
pub use state::{Loop, Next};

/// How a volunteer runner runs.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// The scheduler's base URL.
    pub scheduler: String,
    /// Who runs this runner (credits go to this owner).
    pub owner: Owner,
    /// The owner key that holds `owner`'s name at the scheduler; `None`: `owner.key` in the
    /// state directory (made there when absent).
    pub owner_key: Option<PathBuf>,
    /// The operator's invitation, for an owner new to a scheduler that admits by invitation.
    pub invite: Option<String>,
    /// The highest tier of task it takes.
    pub tier: Tier,
    /// Tasks it runs at once.
    pub slots: u32,
    /// Where its key and downloaded blobs are kept.
    pub state_dir: PathBuf,
    /// Where compiled modules are cached.
    pub cache_dir: Option<PathBuf>,
    /// The most its downloaded blobs and compiled modules may take on disk together;
    /// `None`: no limit.
    pub cache_limit: Option<u64>,
    /// What it shows.
    pub output: Output,
    /// Where the machine is, as its owner says.
    pub location: Option<String>,
    /// The share of its electricity from renewable sources, 0 to 1.
    pub green_energy: Option<f64>,
    /// The volunteer's CPU cap and the rules that hold its work (hours, battery, idle).
    pub controls: Controls,
}

impl AgentConfig {
    /// The limit its blob and compiled-module caches share, if any.
    fn disk_limit(&self) -> Option<helio_sandbox::disk_limit::DiskLimit> {
        let limit = self.cache_limit?;
        let mut dirs = vec![self.state_dir.join("blobs")];
        dirs.extend(self.cache_dir.clone());
        Some(helio_sandbox::disk_limit::DiskLimit::new(dirs, limit))
    }
}

/// How far a runner is asked to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Stop {
    /// Keep running.
    Run,
    /// Take no more tasks for now, and keep the ones running (paused by the throttle): the
    /// volunteer's controls hold the work.
    Hold,
    /// Take no more tasks; finish and report the ones running.
    Drain,
    /// Hand every lease back and stop now.
    Now,
}

/// What a runner did in one session.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// Tasks run and reported.
    pub reported: u64,
    /// Results that were part of an accepted quorum.
    pub accepted: u64,
    /// Results that disagreed with the accepted one.
    pub disagreed: u64,
    /// Micro-credits granted.
    pub micro_credits: u64,
}

/// How long a runner with free slots lets the scheduler hold its lease request when there
/// is no work (long polling): within a round trip of a batch's submission it has tasks, and
/// an idle runner asks once in this long.
pub const LEASE_WAIT_MS: u32 = 20_000;

/// Waits until `at` (or forever).
async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// A lease request in flight.
type Asking =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<Leases, ClientError>> + Send>>;

/// Registers, retrying while the scheduler is away ([`away_backoff`]) and the runner is not
/// told to stop; a refusal is final.
async fn register(
    client: &Client,
    reg: &RegisterRunner,
    stop: &watch::Receiver<Stop>,
    display: &Display,
) -> anyhow::Result<Option<Registered>> {
    let answer = (|| client.register(reg))
        .retry(away_backoff())
        .when(|e: &ClientError| e.is_transient() && *stop.borrow() == Stop::Run)
        .notify(|e, wait| display.event(away(e, wait)))
        .await;
    match answer {
        Ok(r) => Ok(Some(r)),
        Err(e) if e.is_transient() => Ok(None),
        Err(e) => anyhow::bail!("{e}"),
    }
}

/// Keeps `now`, the ledger's latest account of this runner, in `ledger`, and shows what
/// changed since the one before.
fn news(
    display: &Display,
    baseline: &HeartbeatAck,
    ledger: &std::sync::Mutex<HeartbeatAck>,
    now: HeartbeatAck,
) {
    let before = std::mem::replace(&mut *ledger.lock().expect("ledger account"), now.clone());
    if now.micro_credits != before.micro_credits {
        display.event(Event::Credits {
            session_micro_credits: now.micro_credits.saturating_sub(baseline.micro_credits),
            session_tasks: now.tasks.saturating_sub(baseline.tasks),
            total_micro_credits: now.micro_credits,
        });
    }
    if now.flagged && !before.flagged {
        display.event(Event::Warning {
            message: "the scheduler flagged this runner: a result it reported disagreed with \
                      the one other runners agreed on. It earns nothing for such results and \
                      gets less work; unstable hardware (memory errors, an overclock) is the \
                      usual cause"
                .into(),
        });
    }
}

/// The warning that the scheduler cannot be reached, and when the runner tries again.
fn away(error: &ClientError, wait: Duration) -> Event {
    Event::Warning {
        message: format!(
            "scheduler away ({error}); trying again in {:.1} s",
            wait.as_secs_f64()
        ),
    }
}

/// Runs the volunteer runner until `stop` says so.
pub async fn run(config: AgentConfig, mut stop: watch::Receiver<Stop>) -> anyhow::Result<Summary> {
    let key = load_or_create_key(&config.state_dir)
        .map_err(|e| anyhow::anyhow!("runner key in {}: {e}", config.state_dir.display()))?;
    // Tasks are built to pause only where the controls may pause them: the pause branch
    // costs float kernels speed.
    let throttled = config.controls.duty < 1.0 || config.controls.any();
    let sandbox = Arc::new(Sandbox::new(SandboxConfig {
        cache_dir: config.cache_dir.clone(),
        pool_slots: config.slots,
        disk_limit: config.disk_limit(),
        pause: if throttled {
            Pause::OnRequest
        } else {
            Pause::Never
        },
        ..SandboxConfig::default()
    })?);
    if let Some(throttle) = sandbox.throttle() {
        throttle.set_duty(config.controls.duty);
    }
    let sensors = if config.controls.any() {
        Some(Sensors::new(&config.controls).map_err(|e| anyhow::anyhow!(e))?)
    } else {
        None
    };
    let fuel_per_second = {
        let sandbox = sandbox.clone();
        // A runner that cannot calibrate still works; it registers 0, which the scheduler
        // shows as unknown.
        tokio::task::spawn_blocking(move || calibrate(&sandbox))
            .await?
            .unwrap_or_else(|e| {
                tracing::warn!(error = %e, "cannot measure this machine's speed");
                0
            })
    };
    let owner_key_path = config
        .owner_key
        .clone()
        .unwrap_or_else(|| config.state_dir.join("owner.key"));
    let (owner_key, made) = load_or_create_owner_key(&owner_key_path)
        .map_err(|e| anyhow::anyhow!("owner key {}: {e}", owner_key_path.display()))?;
    let client = Client::new(&config.scheduler, key);
    let reg = RegisterRunner {
        public_key: client.key().public_hex(),
        owner: config.owner.to_string(),
        tier: config.tier,
        slots: config.slots,
        cores: std::thread::available_parallelism().map_or(1, |n| n.get() as u32),
        memory_bytes: crate::memory_cap::usable(),
        fuel_per_second,
        profile: DETERMINISM_PROFILE.to_string(),
        location: config.location.clone(),
        green_energy: config.green_energy,
        owner_key: None,
        endorsement: None,
        invite: config.invite.clone(),
    }
    .endorsed_by(&owner_key);
    let display = Display::new(
        config.output,
        config.slots,
        Some(crate::status::StatusFile::new(&config.state_dir)),
    );
    if made {
        display.event(Event::Notice {
            message: format!(
                "made owner key {} for owner {}: it holds the name at the scheduler; keep it, and \
                 give your other machines' runners a copy (--owner-key) to join the same owner",
                owner_key_path.display(),
                config.owner
            ),
        });
    }
    let Some(registered) = register(&client, &reg, &stop, &display).await? else {
        return Ok(Summary::default());
    };
    display.event(Event::Joined {
        runner: registered.runner.clone(),
        owner: config.owner.to_string(),
        tier: config.tier,
        slots: config.slots,
        fuel_per_second,
        scheduler: config.scheduler.clone(),
    });
    let ticker = display.is_live().then(|| {
        let display = display.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Display::TICK).await;
                display.tick();
            }
        })
    });
    // Credits granted while this runner waited for others to agree reach it through the
    // heartbeat: the session's credits are the ledger's total now less the total at start.
    let baseline = client.heartbeat().await.unwrap_or_default();
    let ledger = Arc::new(std::sync::Mutex::new(baseline.clone()));
    let heartbeat = {
        let (client, display, ledger) = (client.clone(), display.clone(), ledger.clone());
        let every = Duration::from_secs(registered.heartbeat_seconds.max(1));
        let baseline = baseline.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                if let Ok(ack) = client.heartbeat().await {
                    news(&display, &baseline, &ledger, ack);
                }
            }
        })
    };
    let (held_tx, mut held) = watch::channel(false);
    if let Some(sensors) = sensors
        && let Some(throttle) = sandbox.throttle()
    {
        watch_machine(
            config.controls.clone(),
            sensors,
            (throttle.clone(), held_tx),
            display.clone(),
        );
        // The first look is taken before any work is asked for.
        let _ = held.changed().await;
    }
    let mut summary = work(&config, &client, &sandbox, &display, (&mut stop, held)).await?;
    heartbeat.abort();
    if let Some(ticker) = ticker {
        ticker.abort();
    }
    // The ledger's word on the session, if the scheduler answers.
    if let Ok(ack) = client.heartbeat().await {
        summary.micro_credits = ack.micro_credits.saturating_sub(baseline.micro_credits);
        news(&display, &baseline, &ledger, ack);
    }
    display.event(Event::Session {
        reported: summary.reported,
        accepted: summary.accepted,
        disagreed: summary.disagreed,
        micro_credits: summary.micro_credits,
    });
    Ok(summary)
}

/// The main loop: starts what the scheduler leases, asks for work while slots are free,
/// reports results with the next lease request, until told to stop (see [`Loop`]); takes no
/// new work while `held`.
async fn work(
    config: &AgentConfig,
    client: &Client,
    sandbox: &Arc<Sandbox>,
    display: &Display,
    (stop, mut held): (&mut watch::Receiver<Stop>, watch::Receiver<bool>),
) -> anyhow::Result<Summary> {
    let blobs = Arc::new(BlobCache::new(
        config.state_dir.join("blobs"),
        config.disk_limit(),
    ));
    let mut summary = Summary::default();
    let mut running = Slots::new();
    let mut state = Loop::new(config.slots, getrandom::u64().unwrap_or_default());
    // The lease request in flight, which may wait at the scheduler until work appears.
    let mut asking: Option<Asking> = None;
    let epoch = tokio::time::Instant::now();
    loop {
        let hold = if *held.borrow() {
            Stop::Hold
        } else {
            Stop::Run
        };
        let level = (*stop.borrow()).max(hold);
        let next = state.next(level, epoch.elapsed());
        if next.drop_request {
            asking = None;
        }
        if !next.give_back.is_empty() {
            // Told to stop while the last answer brought new work: none of it started.
            let _ = client.give_back(next.give_back).await;
        }
        if !next.abandon.is_empty() {
            let _ = client.give_back(next.abandon.clone()).await;
            display.event(Event::Warning {
                message: format!(
                    "stopped now: handed {} leases back to the scheduler",
                    next.abandon.len()
                ),
            });
        }
        if next.exit {
            running.abort_all();
            break;
        }
        start(next.start, &mut running, (client, sandbox, &blobs), display);
        if let Some(free) = next.ask {
            let client = client.clone();
            asking = Some(Box::pin(async move {
                client.lease_or_wait(free, LEASE_WAIT_MS).await
            }));
        }
        let wake = state.wake_at(level).map(|at| epoch + at);
        let mut done = Vec::new();
        tokio::select! {
            Some(joined) = running.join_next(), if !running.is_empty() => {
                done.push(joined?);
                while let Some(joined) = running.try_join_next() {
                    done.push(joined?);
                }
            }
            answer = async { asking.as_mut().expect("a request in flight").await },
                if asking.is_some() => {
                asking = None;
                let now = epoch.elapsed();
                match answer {
                    Ok(answer) => {
                        state.answered(Ok(answer), now);
                    }
                    Err(e) if e.is_transient() => {
                        let wait = state.answered(Err(()), now).expect("a failure waits");
                        display.event(away(&e, wait));
                    }
                    Err(e) => anyhow::bail!("{e}"),
                }
            }
            _ = sleep_until(wake), if wake.is_some() => {}
            changed = stop.changed() => {
                if changed.is_err() {
                    // Nobody can tell this runner to stop any more: stop taking work.
                    return Err(anyhow::anyhow!("the runner's stop signal went away"));
                }
            }
            // A hold ended or began; once the controls' thread is gone, nothing changes.
            Ok(()) = held.changed() => {}
        }
        if !done.is_empty() {
            let ended: Vec<(u32, i64)> = done.iter().map(|(s, l, _)| (*s, l.task_id)).collect();
            for (slot, _) in &ended {
                display.ended(*slot);
            }
            let want = state.finished(&ended, level.max(*stop.borrow()));
            if let Some(leases) = report_all(client, done, want, &mut summary, display).await {
                state.offer(leases);
            }
        }
    }
    Ok(summary)
}

/// What the agent's slots run: each slot's task with its result.
type Slots = JoinSet<(u32, Lease, Result<RunOutput, String>)>;

/// Starts each `(slot, lease)` in `running`, shown on `display`.
fn start(
    leases: Vec<(u32, Lease)>,
    running: &mut Slots,
    (client, sandbox, blobs): (&Client, &Arc<Sandbox>, &Arc<BlobCache>),
    display: &Display,
) {
    for (slot, lease) in leases {
        let progress = Arc::new(Progress::default());
        display.started(
            Event::Started {
                slot,
                task_id: lease.task_id,
                task: lease.manifest.name.to_string(),
                batch: lease.batch.clone(),
                fuel_limit: lease.manifest.limits.fuel,
            },
            progress.clone(),
        );
        running.spawn(execute_in(
            slot,
            lease,
            (client.clone(), sandbox.clone(), blobs.clone()),
            progress,
        ));
    }
}

/// [`execute`] in `slot`, owning what it needs, for the slots' join set.
async fn execute_in(
    slot: u32,
    lease: Lease,
    (client, sandbox, blobs): (Client, Arc<Sandbox>, Arc<BlobCache>),
    progress: Arc<Progress>,
) -> (u32, Lease, Result<RunOutput, String>) {
    let out = execute(&client, &sandbox, &blobs, &lease, progress).await;
    (slot, lease, out)
}

/// Fetches a leased task's module and inputs (from the local blob cache or the scheduler)
/// and runs it.
async fn execute(
    client: &Client,
    sandbox: &Arc<Sandbox>,
    blobs: &BlobCache,
    lease: &Lease,
    progress: Arc<Progress>,
) -> Result<RunOutput, String> {
    let m = &lease.manifest;
    let module = blobs.get(client, &m.module.blake3).await?;
    let mut inputs = Vec::new();
    for input in &m.inputs {
        inputs.push((input.name.clone(), blobs.get(client, &input.blake3).await?));
    }
    let task = LoadedTask {
        manifest: m.clone(),
        module,
        inputs,
    };
    if m.checkpoint.is_some() {
        return checkpoints::run(client, sandbox, task, lease, progress).await;
    }
    let sandbox = sandbox.clone();
    tokio::task::spawn_blocking(move || task.run_watched(&sandbox, Some(progress)))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())
}

/// Reports finished tasks (retrying while the scheduler is away and the leases last),
/// uploads outputs when asked, and hands back tasks this runner could not run. Asks for up
/// to `want` new tasks with the report; returns those leased (`None` when no report was
/// answered, so the caller asks on its own).
async fn report_all(
    client: &Client,
    done: Vec<(u32, Lease, Result<RunOutput, String>)>,
    want: u32,
    summary: &mut Summary,
    display: &Display,
) -> Option<Vec<Lease>> {
    let mut results = Vec::new();
    let mut outputs = Vec::new();
    let mut failed = Vec::new();
    for (slot, lease, out) in done {
        match out {
            Ok(output) => {
                results.push(client.result(&lease, &output.report));
                outputs.push((slot, lease, output));
            }
            Err(e) => {
                display.event(Event::Warning {
                    message: format!(
                        "task {}: cannot run it here: {e}; handing it back",
                        lease.manifest.name
                    ),
                });
                failed.push(lease.task_id);
            }
        }
    }
    if !failed.is_empty() {
        let _ = client.give_back(failed).await;
    }
    if results.is_empty() {
        return None;
    }
    let deadline = outputs
        .iter()
        .map(|(_, l, _)| l.deadline_ms)
        .max()
        .unwrap_or(0);
    let answer = (|| client.report_and_lease(results.clone(), want))
        .retry(away_backoff())
        .when(|e: &ClientError| e.is_transient() && now_ms() < deadline)
        .notify(|e, wait| display.event(away(e, wait)))
        .await;
    let (acks, leases) = match answer {
        Ok(answer) => answer,
        Err(e) => {
            display.event(Event::Error {
                message: format!(
                    "{} results lost, the scheduler did not take them before their leases \
                     ended: {e}",
                    results.len()
                ),
            });
            return None;
        }
    };
    for ((slot, lease, output), ack) in outputs.iter().zip(acks) {
        if lease.batch == HEALTH_CHECK_BATCH {
            display.event(Event::HealthCheck {
                wall_ms: output.report.wall_ms,
                result: ack.status.clone(),
                error: ack.error.clone(),
            });
            continue;
        }
        summary.reported += 1;
        summary.micro_credits += ack.micro_credits;
        match ack.status {
            ReportStatus::Accepted => summary.accepted += 1,
            ReportStatus::Disagreed => summary.disagreed += 1,
            _ => {}
        }
        let name = lease.manifest.name.as_str();
        display.event(Event::Finished {
            slot: *slot,
            task_id: lease.task_id,
            task: name.to_string(),
            outcome: output.report.outcome.name().to_string(),
            fuel: output.report.fuel_consumed,
            wall_ms: output.report.wall_ms,
            result: ack.status.clone(),
            micro_credits: ack.micro_credits,
            error: ack.error.clone(),
            session_accepted: summary.accepted,
        });
        upload(client, output, &ack.upload, name, display).await;
    }
    (want > 0).then_some(leases)
}

/// Uploads the blobs of `output` the scheduler asked for (`hashes`): they complete an
/// accepted result and the store lacks them. A failure is shown, not fatal: the scheduler
/// asks another runner or recovers them with its own run.
async fn upload(
    client: &Client,
    output: &RunOutput,
    hashes: &[Blake3Hash],
    name: &str,
    display: &Display,
) {
    for hash in hashes {
        let bytes = if *hash == output.report.stdout_blake3 {
            Some(output.stdout.clone())
        } else {
            output
                .outputs
                .iter()
                .find(|o| o.blake3().ok().as_ref() == Some(hash))
                .and_then(|o| o.read_all().ok())
        };
        if let Some(bytes) = bytes
            && let Err(e) = client.upload(hash, bytes).await
        {
            display.event(Event::Warning {
                message: format!(
                    "task {name}: cannot upload output {hash} ({e}); the scheduler will \
                     ask another runner or run the task itself"
                ),
            });
        }
    }
}
