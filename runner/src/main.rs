//! `runner`: the Helio volunteer runner. `runner --tier cpu --scheduler URL` joins a grid;
//! `runner exec` runs one task on this machine.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use helio_runner::{Rejection, RunOutput, Sandbox, SandboxConfig, agent, controls};

#[derive(Parser)]
#[command(
    name = "runner",
    version,
    about = "The Helio volunteer runner",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    volunteer: Volunteer,
}

/// Joining a grid: `runner --tier cpu --scheduler URL`.
#[derive(clap::Args)]
struct Volunteer {
    /// The scheduler to work for (it needs no open port here: the runner connects out).
    #[arg(long, env = "HELIO_SCHEDULER")]
    scheduler: Option<String>,
    /// The highest tier of task to take: cpu, gpu or hpc.
    #[arg(long, default_value = "cpu", value_parser = |s: &str| s.parse::<helio_sdk::Tier>())]
    tier: helio_sdk::Tier,
    /// Who gets the credits [default: $HELIO_OWNER, else $USER].
    #[arg(long, value_parser = |s: &str| helio_sdk::ids::Owner::parse(s))]
    owner: Option<helio_sdk::ids::Owner>,
    /// Tasks to run at once [default: one per core].
    #[arg(long)]
    slots: Option<u32>,
    /// Where the runner keeps its key and downloaded blobs [default: ~/.local/share/helio/runner].
    #[arg(long, env = "HELIO_STATE_DIR")]
    state_dir: Option<PathBuf>,
    /// The owner key that holds the owner's name at the scheduler (see `runner owner`)
    /// [default: owner.key in the state directory, made there when absent].
    #[arg(long, env = "HELIO_OWNER_KEY", value_name = "FILE")]
    owner_key: Option<PathBuf>,
    /// An invitation from the grid's operator, for a new owner where the scheduler admits
    /// owners by invitation.
    #[arg(long, env = "HELIO_INVITE", hide_env_values = true)]
    invite: Option<String>,
    /// Print nothing but errors.
    #[arg(long, conflicts_with = "json")]
    quiet: bool,
    /// Print one JSON object per event on standard output (for service managers and logs).
    #[arg(long)]
    json: bool,
    /// A TOML file of settings, keyed by these flags' long names (scheduler = "https://...",
    /// owner = "ada", slots = 4); flags and environment variables win over it.
    #[arg(long, env = "HELIO_RUNNER_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// On SIGTERM, seconds to let running tasks finish before handing them back.
    #[arg(long, default_value_t = 30)]
    drain_seconds: u64,
    /// Where this machine is, shown to the grid's operators (a city or region).
    #[arg(long, env = "HELIO_LOCATION", value_parser = location_label)]
    location: Option<String>,
    /// The share of this machine's electricity from renewable sources, 0 to 1.
    #[arg(long, env = "HELIO_GREEN_ENERGY", value_parser = green_share)]
    green_energy: Option<f64>,
    #[command(flatten)]
    memory: MemoryCapArg,
    #[command(flatten)]
    cache: CacheLimitArg,
    #[command(flatten)]
    controls: ControlsArg,
}

/// The volunteer's say over when and how hard the runner works.
#[derive(clap::Args)]
struct ControlsArg {
    /// Use at most this percentage of the machine's processors, 1 to 100: as many slots as
    /// whole processors allow, and a duty cycle for the rest (with --slots, the slots given
    /// share the cap).
    #[arg(long, env = "HELIO_CPU_LIMIT", value_name = "PERCENT", value_parser = controls::cpu_percent)]
    cpu_limit: Option<u8>,
    /// Run only within these hours of the local day, such as 22:00-07:00; several are
    /// separated by commas. Outside them, running tasks pause and no new ones are taken.
    #[arg(long, env = "HELIO_HOURS", value_name = "HH:MM-HH:MM", value_parser = hours)]
    hours: Option<Hours>,
    /// Run only while the machine is not running on battery.
    #[arg(long, env = "HELIO_ON_MAINS_ONLY")]
    on_mains_only: bool,
    /// Run only while the rest of the machine uses less than this percentage of its CPU
    /// (such as 25); held work goes on once the machine has stayed below it for 30 s.
    #[arg(long, env = "HELIO_IDLE_BELOW", value_name = "PERCENT", value_parser = controls::cpu_percent)]
    idle_below: Option<u8>,
}

/// Windows of hours, as `--hours` gives them.
#[derive(Clone)]
struct Hours(Vec<controls::Window>);

fn hours(s: &str) -> Result<Hours, String> {
    controls::hours(s).map(Hours)
}

/// The most the runner's caches may take on disk, for joining a grid and `runner exec`.
#[derive(clap::Args)]
struct CacheLimitArg {
    /// The most disk its downloaded modules and inputs and its compiled modules may take
    /// together: a size such as 4G, or off. Past it, the least recently used go first.
    #[arg(
        long,
        env = "HELIO_CACHE_LIMIT",
        default_value = "4G",
        value_name = "SIZE"
    )]
    cache_limit: helio_runner::memory_cap::CacheLimit,
}

/// The runner's cap on its own memory, for joining a grid and for `runner exec` alike.
#[derive(clap::Args)]
struct MemoryCapArg {
    /// The most memory this runner lets itself use: auto (three quarters of the machine's),
    /// off, or a size such as 4G. A last line of defence for the machine: a task that
    /// stays within its limits never reaches it.
    #[arg(
        long,
        env = "HELIO_MEMORY_CAP",
        default_value = "auto",
        value_name = "SIZE"
    )]
    memory_cap: helio_runner::memory_cap::MemoryCap,
}

fn location_label(s: &str) -> Result<String, String> {
    helio_sdk::wire::check_location(s).map(|()| s.to_string())
}

fn green_share(s: &str) -> Result<f64, String> {
    let share: f64 = s
        .parse()
        .map_err(|_| format!("{s:?} is not a number; give a share from 0 to 1"))?;
    helio_sdk::wire::check_green_energy(share).map(|()| share)
}

#[derive(Subcommand)]
enum Command {
    /// The owner key: made once, it holds the owner's name and credits at a scheduler; every
    /// runner of the owner registers with it (copy it, or point --owner-key at it).
    #[command(subcommand)]
    Owner(OwnerCommand),
    /// Show what the runner of a state directory is doing and has earned: exit 0 while it
    /// runs, 1 when it does not.
    Status {
        /// The runner's state directory [default: ~/.local/share/helio/runner].
        #[arg(long, env = "HELIO_STATE_DIR")]
        state_dir: Option<PathBuf>,
        /// Print one JSON object: the status, and whether the runner runs (`alive`).
        #[arg(long)]
        json: bool,
    },
    /// Run one task on this machine, with no scheduler.
    Exec {
        /// The task manifest (JSON, version 1 of the job contract), or a batch manifest
        /// with --task: a path, or a file://, http(s):// or s3:// URI. The module and inputs
        /// it names may be any of these too (relative URIs resolve beside the manifest).
        manifest: String,
        /// Run this task of a batch manifest.
        #[arg(long)]
        task: Option<String>,
        /// Write the task's outputs to this directory.
        #[arg(long)]
        out_dir: Option<PathBuf>,
        /// Keep the task's checkpoints in this file (for a task that declares `checkpoint`):
        /// each one the guest saves replaces it, a run finds it there and goes on from it, and
        /// it is removed when the task ends. A run stopped any way loses only the work since
        /// its last checkpoint, and gives the same result as one that was never stopped.
        #[arg(long, value_name = "FILE")]
        checkpoint: Option<PathBuf>,
        /// Print one JSON object with the outcome, fuel, digest and outputs.
        #[arg(long)]
        json: bool,
        /// Where compiled modules are cached [default: $HELIO_CACHE_DIR, else ~/.cache/helio/modules].
        #[arg(long, conflicts_with = "no_cache")]
        cache_dir: Option<PathBuf>,
        /// Do not read or write the compiled-module cache.
        #[arg(long)]
        no_cache: bool,
        #[command(flatten)]
        memory: MemoryCapArg,
        #[command(flatten)]
        cache: CacheLimitArg,
    },
}

#[derive(Subcommand)]
enum OwnerCommand {
    /// Make a new owner key (never replaces one).
    Create {
        /// Where to keep it [default: owner.key in the default state directory].
        #[arg(long, env = "HELIO_OWNER_KEY", value_name = "FILE")]
        key: Option<PathBuf>,
    },
    /// Print an owner key's public half and id.
    Show {
        /// The key [default: owner.key in the default state directory].
        #[arg(long, env = "HELIO_OWNER_KEY", value_name = "FILE")]
        key: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_env("HELIO_LOG"))
        .with_writer(std::io::stderr)
        .init();
    let args = match helio_sdk::config::with_file(
        &<Cli as clap::CommandFactory>::command(),
        std::env::args_os().collect(),
        "HELIO_RUNNER_CONFIG",
    ) {
        Ok(args) => args,
        Err(e) => {
            eprintln!("runner: {e}");
            return ExitCode::from(2);
        }
    };
    let cli = Cli::parse_from(args);
    let Some(command) = cli.command else {
        return volunteer(cli.volunteer);
    };
    match command {
        Command::Owner(command) => owner(command),
        Command::Status { state_dir, json } => {
            let dir = state_dir.unwrap_or_else(default_state_dir);
            match helio_runner::status::read(&dir) {
                Ok(status) => {
                    let alive =
                        status.stopped_ms.is_none() && helio_runner::status::alive(status.pid);
                    if json {
                        let mut value = serde_json::to_value(&status).expect("serializes");
                        value["alive"] = alive.into();
                        println!("{value}");
                    } else {
                        print!("{}", status.text(alive, helio_sdk::client::now_ms()));
                    }
                    ExitCode::from(if alive { 0 } else { 1 })
                }
                Err(e) => {
                    eprintln!("runner: {e}");
                    ExitCode::from(2)
                }
            }
        }
        Command::Exec {
            manifest,
            task,
            out_dir,
            checkpoint,
            json,
            cache_dir,
            no_cache,
            memory,
            cache,
        } => {
            if let Err(e) = memory.memory_cap.apply() {
                eprintln!("runner: {e}");
                return ExitCode::from(2);
            }
            let cache_dir = if no_cache {
                None
            } else {
                cache_dir.or_else(default_cache_dir)
            };
            let cache = cache_dir.map(|dir| (dir, cache.cache_limit.0));
            let files = Files {
                out_dir,
                checkpoint,
                cache,
            };
            match exec(&manifest, task.as_deref(), files) {
                Ok(output) => {
                    if json {
                        println!("{}", report_json(&output));
                    } else {
                        print_human(&output);
                    }
                    ExitCode::from(if output.report.outcome.is_success() {
                        0
                    } else {
                        1
                    })
                }
                Err(rejection) => {
                    if json {
                        let value = serde_json::json!({ "outcome": "rejected", "error": rejection.to_string() });
                        println!("{value}");
                    } else {
                        eprintln!("rejected: {rejection}");
                    }
                    ExitCode::from(2)
                }
            }
        }
    }
}

fn volunteer(v: Volunteer) -> ExitCode {
    match v.memory.memory_cap.apply() {
        Ok(Some(cap)) => tracing::info!(bytes = cap, "the runner's memory is capped"),
        Ok(None) => tracing::info!("the runner's memory is not capped"),
        Err(e) => {
            eprintln!("runner: {e}");
            return ExitCode::from(2);
        }
    }
    let Some(scheduler) = v.scheduler else {
        eprintln!(
            "runner: say which scheduler to work for: runner --tier cpu --scheduler URL (or runner exec MANIFEST)"
        );
        return ExitCode::from(2);
    };
    let owner = v.owner.or_else(|| {
        ["HELIO_OWNER", "USER"]
            .iter()
            .filter_map(|k| std::env::var(k).ok())
            .find_map(|s| helio_sdk::ids::Owner::parse(&s).ok())
    });
    let Some(owner) = owner else {
        eprintln!("runner: say who gets the credits with --owner NAME");
        return ExitCode::from(2);
    };
    let state_dir = v.state_dir.unwrap_or_else(default_state_dir);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
    let share = controls::share(v.controls.cpu_limit, cores, v.slots);
    let config = agent::AgentConfig {
        scheduler,
        owner,
        owner_key: v.owner_key,
        invite: v.invite,
        tier: v.tier,
        slots: share.slots,
        state_dir,
        cache_dir: default_cache_dir(),
        cache_limit: v.cache.cache_limit.0,
        output: if v.json {
            agent::Output::Json
        } else if v.quiet {
            agent::Output::Quiet
        } else {
            agent::Output::Human
        },
        location: v.location,
        green_energy: v.green_energy,
        controls: controls::Controls {
            duty: share.duty,
            hours: v.controls.hours.map(|h| h.0).unwrap_or_default(),
            mains_only: v.controls.on_mains_only,
            idle_below: v.controls.idle_below,
        },
    };
    let (json, drain_seconds) = (v.json, v.drain_seconds);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("runner: {e}");
            return ExitCode::from(2);
        }
    };
    let result = runtime.block_on(async {
        let (tx, rx) = tokio::sync::watch::channel(agent::Stop::Run);
        let tx = std::sync::Arc::new(tx);
        {
            let tx = tx.clone();
            tokio::spawn(async move {
                // First Ctrl-C: finish the tasks running; second: hand them back.
                let _ = tokio::signal::ctrl_c().await;
                if !json {
                    eprintln!("finishing the tasks running (Ctrl-C again to hand them back)");
                }
                let _ = tx.send(agent::Stop::Drain);
                let _ = tokio::signal::ctrl_c().await;
                let _ = tx.send(agent::Stop::Now);
                std::future::pending::<()>().await;
            });
        }
        // A service manager stops with SIGTERM: let running tasks finish for a while, then
        // hand what still runs back, so that other runners take it at once.
        #[cfg(unix)]
        if let Ok(mut term) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            tokio::spawn(async move {
                term.recv().await;
                let _ = tx.send(agent::Stop::Drain);
                tokio::time::sleep(std::time::Duration::from_secs(drain_seconds)).await;
                let _ = tx.send(agent::Stop::Now);
            });
        }
        agent::run(config, rx).await
    });
    match result {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("runner: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// The runner's state: `helio/runner` in the user's data directory (on Linux
/// `$XDG_DATA_HOME`, else `~/.local/share`; on macOS `~/Library/Application Support`; on
/// Windows the roaming application data), or in the working directory without a home.
fn default_state_dir() -> PathBuf {
    directories::BaseDirs::new()
        .map(|d| d.data_dir().to_path_buf())
        .unwrap_or_else(|| PathBuf::from("."))
        .join("helio")
        .join("runner")
}

fn owner(command: OwnerCommand) -> ExitCode {
    let (key, made) = match command {
        OwnerCommand::Create { key } => {
            let path = key.unwrap_or_else(|| default_state_dir().join("owner.key"));
            (agent::create_owner_key(&path).map(|k| (k, path)), true)
        }
        OwnerCommand::Show { key } => {
            let path = key.unwrap_or_else(|| default_state_dir().join("owner.key"));
            let shown = if path.exists() {
                agent::load_or_create_owner_key(&path).map(|(k, _)| (k, path))
            } else {
                Err(std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    format!(
                        "{} holds no owner key; make one with runner owner create",
                        path.display()
                    ),
                ))
            };
            (shown, false)
        }
    };
    match key {
        Ok((key, path)) => {
            if made {
                println!("made owner key {}", path.display());
            }
            println!("owner key id: {}", key.id());
            println!("public key:   {}", key.public_hex());
            println!(
                "the first runner to register with it holds its owner name at a scheduler; keep the \
                 file secret, and give each of your machines' runners a copy (--owner-key)"
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("runner owner: {e}");
            ExitCode::from(2)
        }
    }
}

/// Where `runner exec` keeps what outlives the run.
struct Files {
    out_dir: Option<PathBuf>,
    checkpoint: Option<PathBuf>,
    /// The compiled-module cache and its disk limit.
    cache: Option<(PathBuf, Option<u64>)>,
}

fn exec(manifest: &str, task: Option<&str>, files: Files) -> Result<RunOutput, Rejection> {
    let Files {
        out_dir,
        checkpoint,
        cache,
    } = files;
    let task = helio_runner::anywhere::load(manifest, task)?;
    if let Some(dir) = &out_dir {
        std::fs::create_dir_all(dir).map_err(|e| {
            Rejection::Sandbox(format!("cannot create --out-dir {}: {e}", dir.display()))
        })?;
    }
    let (cache_dir, limit) = cache.unzip();
    let sandbox = Sandbox::new(SandboxConfig {
        disk_limit: cache_dir
            .clone()
            .zip(limit.flatten())
            .map(|(dir, bytes)| helio_runner::disk_limit::DiskLimit::new(vec![dir], bytes)),
        cache_dir,
        ..Default::default()
    })?;
    let output = match &checkpoint {
        Some(file) => run_checkpointed(&task, &sandbox, file)?,
        None => task.run(&sandbox)?,
    };
    if let Some(dir) = &out_dir {
        write_outputs(dir, &output)?;
    }
    Ok(output)
}

/// Runs `task` from the checkpoint in `file` if there is one, replacing it with each
/// checkpoint the guest saves, and removes it once the task ends.
fn run_checkpointed(
    task: &helio_runner::LoadedTask,
    sandbox: &Sandbox,
    file: &std::path::Path,
) -> Result<RunOutput, Rejection> {
    if task.manifest.checkpoint.is_none() {
        return Err(Rejection::Checkpoint(
            "--checkpoint is for a task that declares `checkpoint` in its manifest".into(),
        ));
    }
    let resume = match std::fs::read(file) {
        Ok(bytes) => Some(bytes),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => {
            return Err(Rejection::Checkpoint(format!(
                "cannot read {}: {e}",
                file.display()
            )));
        }
    };
    let mut failed = None;
    let run = helio_runner::Resumable {
        resume,
        on_checkpoint: Box::new(
            |bytes| match helio_runner::write_atomically(file, &[bytes]) {
                Ok(()) => std::ops::ControlFlow::Continue(()),
                Err(e) => {
                    failed = Some(e);
                    std::ops::ControlFlow::Break(())
                }
            },
        ),
        ..Default::default()
    };
    let output = match task.run_resumable(sandbox, run)? {
        helio_runner::Segments::Ended(output) => output,
        helio_runner::Segments::Stopped(_) => {
            let e = failed.expect("only a failed write stops the run");
            return Err(Rejection::Sandbox(format!(
                "cannot write the checkpoint to {}: {e}",
                file.display()
            )));
        }
    };
    match std::fs::remove_file(file) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Rejection::Sandbox(format!(
            "cannot remove the finished task's checkpoint {}: {e}",
            file.display()
        ))),
        _ => Ok(output),
    }
}

/// Writes the outputs through a capability on `dir`, so a name can never land elsewhere.
fn write_outputs(dir: &std::path::Path, output: &RunOutput) -> Result<(), Rejection> {
    let fail = |e: std::io::Error| {
        Rejection::Sandbox(format!("cannot write outputs to {}: {e}", dir.display()))
    };
    let dir =
        cap_std::fs::Dir::open_ambient_dir(dir, cap_std::ambient_authority()).map_err(fail)?;
    for output in &output.outputs {
        let mut file = dir.create(output.name.as_str()).map_err(fail)?;
        output.copy_to(&mut file).map_err(fail)?;
    }
    Ok(())
}

fn report_json(output: &RunOutput) -> serde_json::Value {
    let mut value = serde_json::to_value(&output.report).expect("reports serialize");
    if !output.stderr.is_empty() {
        value["stderr"] = String::from_utf8_lossy(&output.stderr).into();
    }
    value
}

fn print_human(output: &RunOutput) {
    use std::io::Write;
    let _ = std::io::stdout().write_all(&output.stdout);
    let _ = std::io::stderr().write_all(&output.stderr);
    let r = &output.report;
    let detail = match &r.outcome {
        helio_sdk::Outcome::Exited { exit_code } => format!(" (exit code {exit_code})"),
        helio_sdk::Outcome::Trapped { trap } => format!(" ({trap})"),
        helio_sdk::Outcome::ContractViolation { error } => format!(": {error}"),
        _ => String::new(),
    };
    println!("outcome  {}{detail}", r.outcome.name());
    println!("digest   {}", r.digest);
    println!("fuel     {}", r.fuel_consumed);
    for o in &r.outputs {
        println!(
            "output   {} ({} bytes, blake3 {})",
            o.name, o.bytes, o.blake3
        );
    }
    println!("wall     {} ms", r.wall_ms);
}

fn default_cache_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("HELIO_CACHE_DIR") {
        return Some(dir.into());
    }
    // The user's cache directory: on Linux `$XDG_CACHE_HOME`, else `~/.cache`.
    let base = directories::BaseDirs::new()?.cache_dir().to_path_buf();
    Some(base.join("helio").join("modules"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn verify_cli() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
