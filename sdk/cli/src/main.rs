//! `helio`: the scientists' and CI's tool.
//!
//! - `helio pack SOURCE --out DIR ...` builds a job crate for wasm32-wasip1 (or takes a
//!   ready `.wasm`), checks it against the contract, and writes the module, its inputs and
//!   a task or batch manifest (parameter sweeps, CSV rows, seeds, one task per input file).
//! - `helio validate MANIFEST` checks a manifest and everything it names, and lists every
//!   problem. Exit status 0 when valid, 1 when not, 2 when it cannot be read.
//! - `helio submit BATCH --scheduler URL [--wait]`, `helio status`, `helio results`,
//!   `helio credits`: work with a scheduler. Manifests and results may be local, `file://`,
//!   `http(s)://` or `s3://`. Exit status 0 when every task was accepted with success, 1 when
//!   some task's accepted result is a failure (or, for `results`, not every task is accepted
//!   yet), 2 for a rejected manifest (invalid, naming a missing object, or a hash mismatch),
//!   3 when the scheduler is unreachable, 4 when it refused the request, 5 when results
//!   could not be written, 6 when object storage is unreachable or denies access.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use helio_cli::fetch::locate;
use helio_cli::grid::{self, Grid, GridError};
use helio_cli::pack::{PackOptions, pack};
use helio_cli::sweep::parse_axis;
use helio_cli::validate::validate_source;
use helio_sdk::wire::BatchChange;
use serde_json::json;

#[derive(Parser)]
#[command(name = "helio", version, about = "Package and check Helio jobs")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// A batch to pause, resume or cancel.
#[derive(Args)]
struct SteerArgs {
    /// The batch id.
    batch: String,
    #[command(flatten)]
    remote: Remote,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// Where the scheduler is and the token to use.
#[derive(Args)]
struct Remote {
    /// The scheduler's URL.
    #[arg(long, env = "HELIO_SCHEDULER", default_value = "http://127.0.0.1:8080")]
    scheduler: String,
    /// A submitter token (`scheduler token create --role submitter`).
    #[arg(long, env = "HELIO_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

#[derive(Subcommand)]
enum Command {
    /// Submit a batch manifest and everything it names to a scheduler; prints the batch id.
    Submit {
        /// The batch manifest: a path, or a file://, http(s):// or s3:// URI.
        manifest: String,
        #[command(flatten)]
        remote: Remote,
        /// Show progress until every task is accepted.
        #[arg(long)]
        wait: bool,
        /// Its priority among your batches: higher is served first (default 0). It never
        /// raises your batches above another submitter's; fair share decides between you.
        #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
        priority: i64,
        /// Cancel what is left of it after this long: a number and s, m, h or d (6h, 2d).
        #[arg(long, value_parser = grid::parse_span)]
        deadline: Option<i64>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show a batch's progress; without a batch, list your batches, newest first.
    Status {
        /// The batch id `helio submit` printed.
        batch: Option<String>,
        #[command(flatten)]
        remote: Remote,
        /// With no batch: every submitter's batches (an admin token).
        #[arg(long, conflicts_with = "batch")]
        all: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Stop handing out a batch's tasks; those running finish and count.
    Pause(SteerArgs),
    /// Hand out a paused batch's tasks again.
    Resume(SteerArgs),
    /// Cancel a batch: its tasks not yet accepted end, running ones are withdrawn, and
    /// nothing more of it is credited. Accepted results stay.
    Cancel(SteerArgs),
    /// Change a batch's priority or deadline.
    Set {
        /// The batch id.
        batch: String,
        #[command(flatten)]
        remote: Remote,
        /// Its priority among your batches (higher first).
        #[arg(long, allow_negative_numbers = true)]
        priority: Option<i64>,
        /// Cancel what is left of it this long from now: a number and s, m, h or d.
        #[arg(long, value_parser = grid::parse_span, conflicts_with = "no_deadline")]
        deadline: Option<i64>,
        /// Drop its deadline.
        #[arg(long)]
        no_deadline: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Download a batch's accepted outputs and its results manifest.
    Results {
        /// The batch id.
        batch: String,
        /// Where to write `<task>/<output>` and `results.json`: a directory, or a
        /// `file://`, `s3://` or `http(s)://` prefix.
        #[arg(long)]
        out: String,
        #[command(flatten)]
        remote: Remote,
        /// Print the results manifest as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show the credit leaderboard.
    Credits {
        /// owner, runner or batch.
        #[arg(long, default_value = "owner")]
        by: String,
        #[command(flatten)]
        remote: Remote,
        /// Print CSV.
        #[arg(long, conflicts_with = "json")]
        csv: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Build or take a module and write it with its inputs and a task or batch manifest.
    Pack(Box<PackArgs>),
    /// Check a task or batch manifest and everything it names; list every problem.
    Validate {
        /// The manifest: a path, a file:// or an http(s):// URL.
        manifest: String,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args)]
struct PackArgs {
    /// A job crate's directory (built for wasm32-wasip1) or a `.wasm` file.
    source: PathBuf,
    /// The directory to write (the module, `inputs/`, `task.json` or `batch.json`).
    #[arg(long)]
    out: PathBuf,
    /// The binary to build, when the crate has several.
    #[arg(long)]
    bin: Option<String>,
    /// The task's or batch's name (default: the module's).
    #[arg(long)]
    name: Option<String>,
    /// An argument every task gets (repeat; use --arg=--flag for values starting with -).
    #[arg(long = "arg", allow_hyphen_values = true)]
    args: Vec<String>,
    /// An environment variable, KEY=VALUE (repeat).
    #[arg(long = "env")]
    env: Vec<String>,
    /// The seed.
    #[arg(long)]
    seed: Option<u64>,
    /// An input every task gets, NAME=FILE (repeat).
    #[arg(long = "input")]
    inputs: Vec<String>,
    /// One task per file in DIR, each getting that file as input NAME: NAME=DIR.
    #[arg(long)]
    each_input: Option<String>,
    /// A declared output, NAME:MAX_BYTES, or NAME:MAX_BYTES:optional (repeat).
    #[arg(long = "output")]
    outputs: Vec<String>,
    /// limits.fuel.
    #[arg(long, default_value_t = 10_000_000_000)]
    fuel: u64,
    /// limits.memory_bytes.
    #[arg(long)]
    memory_bytes: Option<u64>,
    /// limits.wall_seconds.
    #[arg(long)]
    wall_seconds: Option<u64>,
    /// The least runner tier: cpu, gpu or hpc.
    #[arg(long)]
    tier: Option<String>,
    /// Sweep a parameter: NAME=a,b,c or NAME=start:end:step (repeat; every combination
    /// becomes a task, which gets --NAME VALUE).
    #[arg(long = "sweep")]
    sweeps: Vec<String>,
    /// Sweep the rows of a CSV whose header names the parameters.
    #[arg(long)]
    sweep_csv: Option<PathBuf>,
    /// Sweep the seed over 1..=N.
    #[arg(long)]
    seeds: Option<u64>,
    /// The batch's redundancy: REPLICAS,QUORUM,MAX_REPLICAS.
    #[arg(long)]
    redundancy: Option<String>,
    /// The batch's credit per unit of fuel.
    #[arg(long)]
    credit_rate: Option<f64>,
    /// The most error an accepted result may have, judged by its runners' credibility
    /// (e.g. 1e-4); `--redundancy` then is a floor (e.g. 1,1,4).
    #[arg(long)]
    target_error: Option<f64>,
}

fn pair(flag: &str, text: &str, sep: char) -> Result<(String, String), String> {
    text.split_once(sep)
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .ok_or_else(|| format!("{flag} {text:?}: expected the form A{sep}B"))
}

fn options(a: PackArgs) -> Result<PackOptions, String> {
    let outputs = a
        .outputs
        .iter()
        .map(|o| {
            let parts: Vec<&str> = o.split(':').collect();
            let max = |s: &str| {
                s.parse::<u64>()
                    .map_err(|_| format!("--output {o:?}: {s:?} is not a number of bytes"))
            };
            match parts[..] {
                [name, bytes] => Ok((name.to_string(), max(bytes)?, false)),
                [name, bytes, "optional"] => Ok((name.to_string(), max(bytes)?, true)),
                _ => Err(format!(
                    "--output {o:?}: write NAME:MAX_BYTES or NAME:MAX_BYTES:optional"
                )),
            }
        })
        .collect::<Result<_, _>>()?;
    let redundancy = match &a.redundancy {
        None => None,
        Some(r) => {
            let n: Vec<u32> = r
                .split(',')
                .map(|v| v.trim().parse::<u32>())
                .collect::<Result<_, _>>()
                .map_err(|_| format!("--redundancy {r:?}: write REPLICAS,QUORUM,MAX_REPLICAS"))?;
            match n[..] {
                [replicas, quorum, max] => Some((replicas, quorum, max)),
                _ => {
                    return Err(format!(
                        "--redundancy {r:?}: write REPLICAS,QUORUM,MAX_REPLICAS"
                    ));
                }
            }
        }
    };
    Ok(PackOptions {
        source: a.source,
        bin: a.bin,
        out: a.out,
        name: a.name,
        args: a.args,
        env: a
            .env
            .iter()
            .map(|e| pair("--env", e, '='))
            .collect::<Result<_, _>>()?,
        seed: a.seed,
        inputs: a
            .inputs
            .iter()
            .map(|i| pair("--input", i, '=').map(|(n, f)| (n, PathBuf::from(f))))
            .collect::<Result<_, _>>()?,
        each_input: a
            .each_input
            .as_deref()
            .map(|i| pair("--each-input", i, '=').map(|(n, d)| (n, PathBuf::from(d))))
            .transpose()?,
        outputs,
        fuel: a.fuel,
        memory_bytes: a.memory_bytes,
        wall_seconds: a.wall_seconds,
        tier: a.tier,
        sweeps: a
            .sweeps
            .iter()
            .map(|s| parse_axis(s))
            .collect::<Result<_, _>>()?,
        sweep_csv: a.sweep_csv,
        seeds: a.seeds,
        redundancy,
        credit_rate: a.credit_rate,
        target_error: a.target_error,
    })
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Submit {
            manifest,
            remote,
            wait,
            priority,
            deadline,
            json,
        } => {
            let steer = grid::Steer {
                priority,
                deadline_ms: deadline.map(|span| helio_sdk::client::now_ms().saturating_add(span)),
            };
            grid(remote, json, |g| submit(g, manifest, steer, wait, json))
        }
        Command::Status {
            batch: Some(batch),
            remote,
            json,
            ..
        } => grid(remote, json, |g| status(g, batch, json)),
        Command::Status {
            batch: None,
            remote,
            all,
            json,
        } => grid(remote, json, |g| list(g, all, json)),
        Command::Pause(a) => grid(a.remote, a.json, |g| steer(g, a.batch, "pause", a.json)),
        Command::Resume(a) => grid(a.remote, a.json, |g| steer(g, a.batch, "resume", a.json)),
        Command::Cancel(a) => grid(a.remote, a.json, |g| steer(g, a.batch, "cancel", a.json)),
        Command::Set {
            batch,
            remote,
            priority,
            deadline,
            no_deadline,
            json,
        } => {
            let change = BatchChange {
                priority,
                deadline_ms: deadline.map(|span| helio_sdk::client::now_ms().saturating_add(span)),
                no_deadline,
            };
            grid(remote, json, |g| set(g, batch, change, json))
        }
        Command::Results {
            batch,
            out,
            remote,
            json,
        } => grid(remote, json, |g| results(g, batch, out, json)),
        Command::Credits {
            by,
            remote,
            csv,
            json,
        } => grid(remote, json, |g| credits(g, by, csv, json)),
        Command::Pack(args) => pack_command(*args),
        Command::Validate { manifest, json } => validate_command(&manifest, json),
    }
}

/// `helio submit`: the batch id (or a JSON line), then with `wait` how it ended.
async fn submit(
    g: Grid,
    manifest: String,
    steer: grid::Steer,
    wait: bool,
    json: bool,
) -> Result<u8, GridError> {
    let submitted = g.submit_steered(&manifest, steer).await?;
    if json {
        // JSON lines: what was submitted, then (with --wait) how it ended.
        println!("{}", serde_json::to_string(&submitted).expect("serializes"));
    } else {
        println!("{}", submitted.batch);
        eprintln!(
            "{} batch {} ({} tasks)",
            if submitted.created {
                "submitted"
            } else {
                "already submitted:"
            },
            submitted.name,
            submitted.tasks
        );
    }
    if !wait {
        return Ok(0);
    }
    let status = g
        .wait(&submitted.batch, |s| {
            if !json {
                eprintln!("{}", grid::progress_line(s));
            }
        })
        .await?;
    if json {
        println!("{}", serde_json::to_string(&status).expect("serializes"));
    }
    Ok(grid::exit_for(&status))
}

/// `helio status BATCH`.
async fn status(g: Grid, batch: String, json: bool) -> Result<u8, GridError> {
    let status = g.status(&batch).await?;
    if json {
        println!("{}", serde_json::to_string(&status).expect("serializes"));
    } else {
        println!("{}", grid::progress_line(&status));
    }
    Ok(grid::exit_for(&status))
}

/// `helio status`: one's batches, a table or JSON.
async fn list(g: Grid, all: bool, json: bool) -> Result<u8, GridError> {
    let batches = g.batches(all).await?;
    if json {
        println!("{}", serde_json::to_string(&batches).expect("serializes"));
        return Ok(0);
    }
    println!(
        "{:<18}  {:<20}  {:<9}  {:>8}  {:>8}  {:>8}  {:>7}  {:>7}  {:>8}",
        "BATCH", "NAME", "STATE", "PRIORITY", "TASKS", "ACCEPTED", "FAILED", "RUNNING", "PENDING"
    );
    for b in &batches {
        let state = if b.done() && b.state != helio_sdk::wire::BatchState::Cancelled {
            "done"
        } else {
            b.state.as_str()
        };
        println!(
            "{:<18}  {:<20}  {:<9}  {:>8}  {:>8}  {:>8}  {:>7}  {:>7}  {:>8}",
            b.batch,
            b.name,
            state,
            b.priority,
            b.tasks,
            b.succeeded + b.failed,
            b.failed,
            b.running,
            b.pending
        );
    }
    if batches.is_empty() {
        eprintln!("no batches");
    }
    Ok(0)
}

/// `helio pause`, `resume` and `cancel`.
async fn steer(g: Grid, batch: String, action: &str, json: bool) -> Result<u8, GridError> {
    let status = g.steer(&batch, action).await?;
    if json {
        println!("{}", serde_json::to_string(&status).expect("serializes"));
    } else {
        println!("{}", grid::progress_line(&status));
    }
    Ok(0)
}

/// `helio set`.
async fn set(g: Grid, batch: String, change: BatchChange, json: bool) -> Result<u8, GridError> {
    if change == BatchChange::default() {
        return Err(GridError::Manifest(
            "helio set: name what to change: --priority, --deadline or --no-deadline".into(),
        ));
    }
    let status = g.change(&batch, &change).await?;
    if json {
        println!("{}", serde_json::to_string(&status).expect("serializes"));
    } else {
        println!("{}", grid::progress_line(&status));
        if let Some(at) = status.deadline_ms {
            let left = (at - helio_sdk::client::now_ms()).max(0) / 1000;
            println!("priority {}, deadline in {left} s", status.priority);
        } else {
            println!("priority {}, no deadline", status.priority);
        }
    }
    Ok(0)
}

/// `helio results`: downloads every accepted output.
async fn results(g: Grid, batch: String, out: String, json: bool) -> Result<u8, GridError> {
    let results = g.download(&batch, &out).await?;
    let accepted = results.tasks.iter().filter(|t| t.result.is_some()).count();
    let failed = results
        .tasks
        .iter()
        .filter(|t| t.result.as_ref().is_some_and(|r| !r.outcome.is_success()))
        .count();
    if json {
        println!("{}", serde_json::to_string(&results).expect("serializes"));
    } else {
        println!(
            "wrote {}/results.json: {accepted} of {} tasks accepted ({failed} failed)",
            out.trim_end_matches('/'),
            results.tasks.len()
        );
        // A result the scheduler's own run replaced is worth a line each: when and why.
        for t in &results.tasks {
            if let Some(c) = &t.corrected {
                println!("{}: corrected at {} ms: {}", t.task, c.at_ms, c.why);
            }
        }
    }
    Ok(if failed == 0 && accepted == results.tasks.len() {
        0
    } else {
        grid::EXIT_TASKS_FAILED
    })
}

/// `helio credits`: a table, CSV or JSON.
async fn credits(g: Grid, by: String, csv: bool, json: bool) -> Result<u8, GridError> {
    let credits = g.credits(&by).await?;
    if json {
        println!("{}", serde_json::to_string(&credits).expect("serializes"));
    } else if csv {
        print!("{}", credits.to_csv());
    } else {
        // Payouts go to owners: only their rows have a balance to show.
        let owners = by == "owner";
        let (paid, balance) = if owners {
            ("paid", "balance")
        } else {
            ("", "")
        };
        let header = format!(
            "{:>4}  {:<24} {:>8} {:>16} {:>16} {:>16} {:>16}",
            "rank", by, "tasks", "fuel", "credits", paid, balance
        );
        println!("{}", header.trim_end());
        for (i, r) in credits.rows.iter().enumerate() {
            let (paid, balance) = if owners {
                (
                    helio_sdk::wire::credits_text(r.paid),
                    helio_sdk::wire::credits_text(r.micro_credits.saturating_sub(r.paid)),
                )
            } else {
                Default::default()
            };
            let line = format!(
                "{:>4}  {:<24} {:>8} {:>16} {:>16} {:>16} {:>16}",
                i + 1,
                r.key,
                r.tasks,
                r.fuel,
                helio_sdk::wire::credits_text(r.micro_credits),
                paid,
                balance
            );
            println!("{}", line.trim_end());
        }
    }
    Ok(0)
}

/// `helio pack`.
fn pack_command(args: PackArgs) -> ExitCode {
    match options(args).and_then(|o| pack(&o)) {
        Ok(p) => {
            println!(
                "wrote {} ({} {}, module {})",
                p.manifest.display(),
                p.tasks,
                if p.tasks == 1 { "task" } else { "tasks" },
                p.module
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("helio pack: {e}");
            ExitCode::from(2)
        }
    }
}

/// `helio validate`: exit status 0 when valid, 1 with its problems, 2 when unreadable.
fn validate_command(manifest: &str, json: bool) -> ExitCode {
    let report = match locate(manifest).and_then(|s| validate_source(&s)) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("helio validate: {e}");
            return ExitCode::from(2);
        }
    };
    let valid = report.problems.is_empty();
    if json {
        println!(
            "{}",
            json!({
                "manifest": manifest,
                "kind": report.kind,
                "valid": valid,
                "tasks": report.tasks,
                "problems": report.problems,
                "notes": report.notes,
            })
        );
    } else if valid {
        println!(
            "{manifest}: a valid {} ({} {})",
            report.kind,
            report.tasks,
            if report.tasks == 1 { "task" } else { "tasks" }
        );
        for note in &report.notes {
            println!("  note: {note}");
        }
    } else {
        println!(
            "{manifest}: {} problem{} in this {}:",
            report.problems.len(),
            if report.problems.len() == 1 { "" } else { "s" },
            report.kind
        );
        for p in &report.problems {
            println!("  - {p}");
        }
    }
    if valid {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// Runs a command against the scheduler and maps its errors to exit statuses.
/// With `json`, a failure is also printed to standard output as one JSON object:
/// `{"error": …, "kind": …, "exit_code": …}`.
fn grid<F, Fut>(remote: Remote, json: bool, command: F) -> ExitCode
where
    F: FnOnce(Grid) -> Fut,
    Fut: std::future::Future<Output = Result<u8, GridError>>,
{
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("helio: cannot start the I/O runtime: {e}");
            return ExitCode::from(3);
        }
    };
    let g = Grid::new(&remote.scheduler, remote.token.as_deref().unwrap_or(""));
    match runtime.block_on(command(g)) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("helio: {e}");
            if json {
                println!(
                    "{}",
                    serde_json::json!({
                        "error": e.to_string(),
                        "kind": e.kind(),
                        "exit_code": e.exit_code(),
                    })
                );
            }
            ExitCode::from(e.exit_code())
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn verify_cli() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
