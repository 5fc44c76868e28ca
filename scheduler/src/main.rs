//! `scheduler`: serve the grid, create tokens, verify the credit ledger.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use helio_scheduler::service::{self, Config};
use helio_scheduler::store::Role;

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

#[derive(Subcommand)]
enum Command {
    /// Serve the HTTP API; prints the address it listens on as the first line.
    Serve {
        #[command(flatten)]
        db: Db,
        /// Where to listen (port 0 picks a free one).
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: std::net::SocketAddr,
        /// Seconds a lease lasts beyond the task's wall_seconds.
        #[arg(long, default_value_t = 60)]
        lease_grace_seconds: u64,
        /// Seconds an accepted result's outputs may take to arrive before the scheduler
        /// recovers them with its own run.
        #[arg(long, default_value_t = 60)]
        upload_wait_seconds: u64,
        /// Log JSON lines instead of text.
        #[arg(long)]
        json_logs: bool,
    },
    /// Manage API tokens.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Inspect the credit ledger.
    Ledger {
        #[command(subcommand)]
        command: LedgerCommand,
    },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Create a token and print it (it is stored only as a hash).
    Create {
        #[command(flatten)]
        db: Db,
        /// submitter or admin.
        #[arg(long, value_parser = |s: &str| s.parse::<Role>())]
        role: Role,
        /// Who the token is for.
        #[arg(long, default_value = "default")]
        name: String,
    },
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
    match run(Cli::parse()).await {
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
            lease_grace_seconds,
            upload_wait_seconds,
            json_logs,
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
            config.api.lease_grace_ms = lease_grace_seconds as i64 * 1000;
            config.upload_wait_ms = upload_wait_seconds as i64 * 1000;
            let running = service::start(config, async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await?;
            println!("http://{}", running.addr);
            running.task.await??;
            Ok(ExitCode::SUCCESS)
        }
        Command::Token {
            command: TokenCommand::Create { db, role, name },
        } => {
            let store = service::open_store(&config(db)).await?;
            println!("{}", store.create_token(role, &name).await?);
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

#[test]
fn verify_cli() {
    use clap::CommandFactory;
    Cli::command().debug_assert();
}
