//! `scheduler`: serve the grid, create tokens, verify the credit ledger.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use helio_scheduler::owners::Admission;
use helio_scheduler::service::{self, Config};
use helio_scheduler::store::{Role, now_ms};
use helio_sdk::{Name, Tier};

#[derive(Parser)]
#[command(name = "scheduler", version, about = "The Helio scheduler")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args, Clone)]
struct Db {
    /// Where the SQLite database, blobs and compiled modules live.
    #[arg(long, env = "HELIO_DATA_DIR", default_value = "helio-data")]
    data_dir: PathBuf,
    /// A PostgreSQL URL (postgres://user@host/db) instead of SQLite in the data directory.
    #[arg(long, env = "HELIO_DATABASE")]
    database: Option<String>,
}

/// Limits on runners.
#[derive(clap::Args, Clone)]
struct Nodes {
    /// The most runners of a tier online at once, as TIER=N (repeatable); registering
    /// beyond it is refused with 503 until one goes offline.
    #[arg(long = "max-runners", value_name = "TIER=N", value_parser = parse_pool)]
    max_runners: Vec<(Tier, u64)>,
    /// Requests a second each runner may make on average (twice as many at once, a
    /// flagged runner a tenth); 0 for no limit.
    #[arg(long, default_value_t = 100.0, value_parser = parse_rate)]
    runner_rate: f64,
    /// How new owners are admitted: open (anyone, at most --new-owners-per-address a day
    /// from one network address) or invite (only with `token create --role invite`).
    #[arg(long, default_value = "open", value_parser = |s: &str| s.parse::<Admission>())]
    admission: Admission,
    /// With open admission: new owners a day from one network address (an invitation
    /// admits beyond it).
    #[arg(long, default_value_t = 5)]
    new_owners_per_address: u32,
    /// Behind a reverse proxy: the header it puts the client's address in (e.g.
    /// x-forwarded-for; its first address counts). Trust it only when the proxy sets it.
    #[arg(long, value_name = "HEADER")]
    address_header: Option<String>,
}

/// How credits are shared and paid.
#[derive(clap::Args, Clone)]
struct CreditArgs {
    /// The share (0 to 1) of every task's credit that goes to the cooperative fund.
    #[arg(long, default_value_t = 0.0, value_parser = parse_share)]
    cooperative_share: f64,
    /// The owner name the fund's credits carry (no runner may register under it).
    #[arg(long, default_value = "cooperative")]
    cooperative_name: String,
    /// Credits a runner earns per hour online (flagged runners earn none).
    #[arg(long, default_value = "0", value_parser = parse_credits)]
    uptime_credits_per_hour: u64,
    /// Pay an owner once its balance reaches this many credits.
    #[arg(long, default_value = "1", value_parser = parse_credits)]
    payout_threshold: u64,
    /// Pay out balances this often, in hours; without it, only `POST /v1/payouts` pays.
    #[arg(long, value_parser = parse_hours)]
    payout_every_hours: Option<f64>,
}

/// How far runners are believed (decision 059).
#[derive(clap::Args, Clone)]
struct TrustArgs {
    /// The most error an accepted result may have, judged by its runners' credibility, for
    /// every batch that sets no `target_error` (e.g. 1e-4); without it, such a batch's
    /// quorum alone decides.
    #[arg(long, value_parser = parse_error)]
    target_error: Option<f64>,
    /// The share of runners assumed to be saboteurs: how far a newcomer is believed.
    #[arg(long, default_value_t = 0.2, value_parser = parse_error)]
    saboteur_share: f64,
    /// The share (0 to 1) of results accepted on credibility that the scheduler re-runs
    /// itself, unannounced.
    #[arg(long, default_value_t = 0.1, value_parser = parse_share)]
    spot_rate: f64,
}

fn parse_error(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(e) if e.is_finite() && e > 0.0 && e < 0.5 => Ok(e),
        _ => Err(format!(
            "{text:?}: give a probability above 0 and below 0.5"
        )),
    }
}

fn parse_pool(text: &str) -> Result<(Tier, u64), String> {
    let (tier, n) = text
        .split_once('=')
        .ok_or_else(|| format!("{text:?}: write TIER=N, e.g. cpu=1000"))?;
    let tier: Tier = tier.parse().map_err(|e| format!("{text:?}: {e}"))?;
    let n: u64 = n
        .parse()
        .map_err(|_| format!("{text:?}: {n:?} is not a whole number of runners"))?;
    Ok((tier, n))
}

fn parse_rate(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(r) if r.is_finite() && r >= 0.0 => Ok(r),
        _ => Err(format!("{text:?}: give requests a second, 0 or more")),
    }
}

fn parse_share(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(r) if (0.0..=1.0).contains(&r) => Ok(r),
        _ => Err(format!("{text:?}: give a share from 0 to 1")),
    }
}

fn parse_hours(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(h) if h.is_finite() && h > 0.0 && h <= 24.0 * 366.0 => Ok(h),
        _ => Err(format!("{text:?}: give hours, more than 0")),
    }
}

/// Credits as a decimal with at most six places, in micro-credits.
fn parse_credits(text: &str) -> Result<u64, String> {
    let bad = || format!("{text:?}: give credits as a decimal with at most 6 places, e.g. 2.5");
    let (whole, frac) = text.split_once('.').unwrap_or((text, ""));
    if whole.is_empty()
        || frac.len() > 6
        || !(whole.bytes().chain(frac.bytes())).all(|b| b.is_ascii_digit())
    {
        return Err(bad());
    }
    let whole: u64 = whole.parse().map_err(|_| bad())?;
    let frac: u64 = format!("{frac:0<6}").parse().map_err(|_| bad())?;
    whole
        .checked_mul(1_000_000)
        .and_then(|w| w.checked_add(frac))
        .ok_or_else(bad)
}

// Parsed once at start-up: the size of its largest variant costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// Serve the HTTP API; prints the address it listens on as the first line.
    Serve {
        #[command(flatten)]
        db: Db,
        /// Where to listen (port 0 picks a free one).
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: std::net::SocketAddr,
        /// Serve HTTPS with this certificate chain (PEM); needs --tls-key. Without it, plain
        /// HTTP (put a reverse proxy that terminates TLS in front of a public scheduler).
        #[arg(long, requires = "tls_key")]
        tls_cert: Option<PathBuf>,
        /// The certificate's private key (PEM).
        #[arg(long, requires = "tls_cert")]
        tls_key: Option<PathBuf>,
        /// Seconds a lease lasts beyond the task's wall_seconds.
        #[arg(long, default_value_t = 60)]
        lease_grace_seconds: u64,
        /// Seconds an accepted result's outputs may take to arrive before the scheduler
        /// recovers them with its own run.
        #[arg(long, default_value_t = 60)]
        upload_wait_seconds: u64,
        /// Seconds between a runner's heartbeats; a runner silent for three is marked
        /// offline and its leases go to other runners.
        #[arg(long, default_value_t = 15, value_parser = clap::value_parser!(u64).range(1..=3600))]
        heartbeat_seconds: u64,
        /// Where modules, inputs and outputs are kept: a directory, or s3://BUCKET/PREFIX
        /// (credentials, region and endpoint from the standard AWS environment and files)
        /// so that several schedulers can share them. Default: DATA_DIR/blobs.
        #[arg(long, env = "HELIO_BLOBS", value_name = "DIR|s3://BUCKET/PREFIX")]
        blobs: Option<String>,
        /// Log JSON lines instead of text.
        #[arg(long)]
        json_logs: bool,
        /// A TOML file of settings, keyed by these flags' long names (listen = "0.0.0.0:8080",
        /// max-runners = ["cpu=1000"]); flags and environment variables win over it.
        #[arg(long, env = "HELIO_SCHEDULER_CONFIG", value_name = "FILE")]
        config: Option<PathBuf>,
        #[command(flatten)]
        nodes: Nodes,
        #[command(flatten)]
        credits: CreditArgs,
        #[command(flatten)]
        trust: TrustArgs,
    },
    /// Manage API tokens.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Owner accounts.
    Owner {
        #[command(subcommand)]
        command: OwnerCommand,
    },
    /// What submitters are granted: a share of the grid, quotas.
    Submitter {
        #[command(subcommand)]
        command: SubmitterCommand,
    },
    /// Inspect the credit ledger.
    Ledger {
        #[command(subcommand)]
        command: LedgerCommand,
    },
    /// Print the API's OpenAPI document, as `GET /v1/openapi.json` serves it.
    Openapi,
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Create a token and print it (it is stored only as a hash).
    Create {
        #[command(flatten)]
        db: Db,
        /// submitter, admin, or invite (admits one new owner, once).
        #[arg(long, value_parser = |s: &str| s.parse::<Role>())]
        role: Role,
        /// Who the token is for.
        #[arg(long, default_value = "default")]
        name: String,
        /// Days until it expires (fractions allowed); without it, it never does.
        #[arg(long, value_parser = parse_days)]
        expires_in_days: Option<f64>,
    },
    /// List every token: its id (the start of its hash), role, name, and when it was
    /// made, expires and was revoked.
    List {
        #[command(flatten)]
        db: Db,
        /// One JSON array instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a token at once, by its id as `token list` shows it (or a unique start of it).
    Revoke {
        #[command(flatten)]
        db: Db,
        /// The token's id.
        id: String,
    },
}

fn parse_days(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(d) if d.is_finite() && d > 0.0 && d <= 36_600.0 => Ok(d),
        _ => Err(format!("{text:?}: give days, more than 0")),
    }
}

/// `scheduler token ...`.
async fn token(command: TokenCommand) -> anyhow::Result<ExitCode> {
    let day_ms = 86_400_000.0;
    match command {
        TokenCommand::Create {
            db,
            role,
            name,
            expires_in_days,
        } => {
            let store = service::open_store(&config(db)).await?;
            let expires = expires_in_days.map(|d| now_ms() + (d * day_ms) as i64);
            println!("{}", store.create_token_until(role, &name, expires).await?);
        }
        TokenCommand::List { db, json } => {
            let store = service::open_store(&config(db)).await?;
            let tokens = store.tokens().await?;
            if json {
                println!("{}", serde_json::to_string(&tokens)?);
                return Ok(ExitCode::SUCCESS);
            }
            let now = now_ms();
            let when = |at: Option<i64>| match at {
                None => "-".to_string(),
                Some(at) if at <= now => format!("{:.1} days ago", (now - at) as f64 / day_ms),
                Some(at) => format!("in {:.1} days", (at - now) as f64 / day_ms),
            };
            println!(
                "id            role       name                 made             expires          revoked"
            );
            for t in tokens {
                println!(
                    "{:<13} {:<10} {:<20} {:<16} {:<16} {}",
                    t.id,
                    t.role.as_str(),
                    t.name,
                    when(Some(t.created_ms)),
                    when(t.expires_ms),
                    when(t.revoked_ms)
                );
            }
        }
        TokenCommand::Revoke { db, id } => {
            let store = service::open_store(&config(db)).await?;
            let t = store.revoke_token(&id, now_ms()).await?;
            println!("revoked token {} ({}, {})", t.id, t.name, t.role.as_str());
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Subcommand)]
enum OwnerCommand {
    /// List every owner account: its name, owner key id, how and when it was admitted, and
    /// its runners.
    List {
        #[command(flatten)]
        db: Db,
        /// One JSON array instead of a table.
        #[arg(long)]
        json: bool,
    },
}

/// `scheduler owner ...`.
async fn owner(command: OwnerCommand) -> anyhow::Result<ExitCode> {
    let OwnerCommand::List { db, json } = command;
    let store = service::open_store(&config(db)).await?;
    let owners = store.owners().await?;
    if json {
        println!("{}", serde_json::to_string(&owners)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!("name                 key                 admitted  runners  online  days");
    let now = now_ms();
    for o in owners {
        println!(
            "{:<20} {:<19} {:<9} {:>7} {:>7}  {:.1}",
            o.name,
            o.key,
            o.admitted,
            o.runners,
            o.online,
            (now - o.created_ms) as f64 / 86_400_000.0
        );
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Subcommand)]
enum SubmitterCommand {
    /// Grant a submitter (its tokens' name) a share of the grid and quotas; replaces what
    /// it was granted before. A submitter never granted anything has share 1, no quotas.
    Set {
        /// The submitter: the name its tokens were created with.
        name: String,
        #[command(flatten)]
        db: Db,
        /// Its weight in fair share: with share 2 it is served until it has twice the
        /// leases out of a submitter of share 1.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
        share: u32,
        /// The most leases it may have out at once.
        #[arg(long)]
        max_running: Option<u64>,
        /// The most tasks it may have submitted and not finished; a batch past it is
        /// refused whole.
        #[arg(long)]
        max_tasks: Option<u64>,
    },
    /// List what each submitter is granted.
    List {
        #[command(flatten)]
        db: Db,
        /// One JSON array instead of a table.
        #[arg(long)]
        json: bool,
    },
}

/// `scheduler submitter ...`.
async fn submitter(command: SubmitterCommand) -> anyhow::Result<ExitCode> {
    let limit = |n: Option<u64>| n.map_or_else(|| "-".to_string(), |n| n.to_string());
    match command {
        SubmitterCommand::Set {
            name,
            db,
            share,
            max_running,
            max_tasks,
        } => {
            let store = service::open_store(&config(db)).await?;
            let grant = helio_scheduler::store::SubmitterGrant {
                name,
                share,
                max_running,
                max_tasks,
            };
            store.set_grant(&grant).await?;
            println!(
                "submitter {}: share {}, at most {} leases out, at most {} unfinished tasks",
                grant.name,
                grant.share,
                limit(grant.max_running),
                limit(grant.max_tasks)
            );
        }
        SubmitterCommand::List { db, json } => {
            let store = service::open_store(&config(db)).await?;
            let grants = store.submitter_grants().await?;
            if json {
                println!("{}", serde_json::to_string(&grants)?);
                return Ok(ExitCode::SUCCESS);
            }
            println!("name                 share  max-running  max-tasks");
            for g in grants {
                println!(
                    "{:<20} {:>5}  {:>11}  {:>9}",
                    g.name,
                    g.share,
                    limit(g.max_running),
                    limit(g.max_tasks)
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Subcommand)]
enum LedgerCommand {
    /// Exit 0 only when no ledger entry was edited, dropped or reordered.
    Verify {
        #[command(flatten)]
        db: Db,
    },
}

fn config(db: Db) -> Config {
    let mut config = Config::new(db.data_dir);
    config.database = db.database;
    config
}

#[tokio::main]
async fn main() -> ExitCode {
    use clap::CommandFactory;
    let args = match helio_sdk::config::with_file(
        &Cli::command(),
        std::env::args_os().collect(),
        "HELIO_SCHEDULER_CONFIG",
    ) {
        Ok(args) => args,
        Err(e) => {
            eprintln!("scheduler: {e}");
            return ExitCode::from(2);
        }
    };
    match run(Cli::parse_from(args)).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("scheduler: {e:#}");
            ExitCode::from(2)
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve {
            db,
            listen,
            tls_cert,
            tls_key,
            lease_grace_seconds,
            upload_wait_seconds,
            heartbeat_seconds,
            blobs,
            json_logs,
            config: _,
            nodes,
            credits,
            trust,
        } => {
            let filter = tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info".into());
            let logs = tracing_subscriber::fmt()
                .with_env_filter(filter)
                .with_writer(std::io::stderr);
            if json_logs {
                logs.json().init()
            } else {
                logs.init()
            }
            let mut config = config(db);
            config.listen = listen;
            config.tls = tls_cert.zip(tls_key);
            let scheme = if config.tls.is_some() {
                "https"
            } else {
                "http"
            };
            config.blobs = blobs;
            config.api.lease_grace_ms = lease_grace_seconds as i64 * 1000;
            config.upload_wait_ms = upload_wait_seconds as i64 * 1000;
            config.api.heartbeat_seconds = heartbeat_seconds;
            config.api.max_runners = nodes.max_runners.into_iter().collect();
            config.api.runner_rate = nodes.runner_rate;
            config.api.admission = match nodes.admission {
                Admission::Open { .. } => Admission::Open {
                    per_address_per_day: nodes.new_owners_per_address,
                },
                invite => invite,
            };
            config.api.address_header = nodes.address_header.map(|h| h.to_ascii_lowercase());
            Name::parse(&credits.cooperative_name)
                .map_err(|e| anyhow::anyhow!("--cooperative-name: {e}"))?;
            config.policy.cooperative_share = credits.cooperative_share;
            config.policy.cooperative = credits.cooperative_name;
            config.policy.uptime_micro_per_hour = credits.uptime_credits_per_hour;
            config.policy.target_error = trust.target_error;
            config.policy.credibility = helio_scheduler::credibility::Policy {
                prior: trust.saboteur_share,
                target: trust
                    .target_error
                    .unwrap_or(helio_scheduler::credibility::Policy::default().target),
                spot_rate: trust.spot_rate,
            };
            config.payout_threshold = credits.payout_threshold;
            config.payout_every = credits
                .payout_every_hours
                .map(|h| std::time::Duration::from_secs_f64(h * 3600.0));
            let running = service::start(config, shutdown_signal()).await?;
            println!("{scheme}://{}", running.addr);
            running.task.await??;
            Ok(ExitCode::SUCCESS)
        }
        Command::Token { command } => token(command).await,
        Command::Owner { command } => owner(command).await,
        Command::Submitter { command } => submitter(command).await,
        Command::Openapi => {
            print!("{}", helio_scheduler::api::openapi_json());
            Ok(ExitCode::SUCCESS)
        }
        Command::Ledger {
            command: LedgerCommand::Verify { db },
        } => {
            let store = service::open_store(&config(db)).await?;
            let (entries, len, head) = store.ledger().await.context("cannot read the ledger")?;
            match helio_scheduler::ledger::verify_anchored(&entries, len, &head) {
                Ok(()) => {
                    println!("ledger verified: {len} entries, head {head}");
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    println!("ledger broken: {e}");
                    Ok(ExitCode::from(1))
                }
            }
        }
    }
}

/// Ctrl-C, or SIGTERM from a service manager.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[test]
fn credits_parse_exactly() {
    assert_eq!(parse_credits("1"), Ok(1_000_000));
    assert_eq!(parse_credits("2.5"), Ok(2_500_000));
    assert_eq!(parse_credits("0.000001"), Ok(1));
    for bad in ["", ".5", "1.0000001", "-1", "1e3", "x", "99999999999999999"] {
        assert!(parse_credits(bad).is_err(), "{bad:?} parsed");
    }
    assert_eq!(parse_pool("gpu=12"), Ok((Tier::Gpu, 12)));
    assert!(parse_pool("tpu=1").is_err());
    assert!(parse_pool("cpu").is_err());
}

#[test]
fn verify_cli() {
    use clap::CommandFactory;
    Cli::command().debug_assert();
}
