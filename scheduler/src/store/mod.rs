//! The scheduler's state in a database: SQLite (the default, in the data directory) or
//! PostgreSQL. The only module that speaks SQL. Every event is one transaction: it loads a
//! task's rows into a [`TaskState`], applies the event with the pure core, and writes back
//! what changed together with the credits and reputation the effect implies, so a crash
//! between two statements can never leave a credit without its acceptance or the reverse.
//!
//! One SQL text serves both databases (through sqlx's `Any` driver): parameters are `$n`,
//! types are `TEXT`, `BIGINT` and `DOUBLE PRECISION`. The one difference is row locking:
//! PostgreSQL takes `FOR UPDATE` locks (and `SKIP LOCKED` when leasing, so that several
//! scheduler instances share one queue); SQLite runs one writer at a time.

use std::collections::{BTreeMap, HashMap};
use std::str::FromStr;
use std::sync::Arc;

use helio_sdk::ids::{BatchId, CheckId, TaskId};
use helio_sdk::wire::{
    self, BatchResults, BatchStatus, Correction, CreditRow, Lease, RegisterRunner, Registered,
    ReportAck, ReportStatus, ResultReport, Submitted, TaskResult,
};
use helio_sdk::{BatchManifest, Blake3Hash, Redundancy, RunReport, Tier};
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{Any, AnyPool, Executor, Row, Transaction};
use tokio::sync::oneshot;

use crate::bell::{self, Bell};
use crate::credibility;
use crate::ledger::{self, Credit, Entry, Kind};
use crate::task::{Effect, Phase, Replica, ReplicaState, Reputation, TaskState};

mod batches;
mod checking;
mod checkpoints;
mod control;
#[cfg(test)]
mod control_tests;
#[cfg(test)]
mod credibility_tests;
mod credits;
mod group;
mod health;
mod history;
mod lease;
mod owners;
mod queues;
mod reads;
mod report;
mod rows;
mod runners;
mod schema;
#[cfg(test)]
mod tests;
mod write;

pub use batches::{Steer, batch_id};
pub use checkpoints::{KeptCheckpoint, stale_checkpoint};
pub use control::SubmitterGrant;
pub use owners::{Enrollment, OwnerInfo};
pub use report::result_blobs;
pub use schema::statistics_stale;

use group::*;
use health::*;
use lease::*;
use queues::*;
use reads::{STATUS_COLUMNS, status_of};
use rows::*;
use runners::*;

/// A storage error: the database failed, or its contents break an invariant.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database failed.
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    /// The database holds something this scheduler cannot read.
    #[error("database holds {0}")]
    Corrupt(String),
    /// The named thing does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// The request conflicts with what is stored.
    #[error("{0}")]
    Conflict(String),
    /// The request is not allowed (an owner not admitted).
    #[error("{0}")]
    Forbidden(String),
    /// Too many such requests for now.
    #[error("{0}")]
    TooMany(String),
}

type Result<T, E = StoreError> = std::result::Result<T, E>;

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Submits batches and reads their results.
    Submitter,
    /// Everything a submitter may, and operating the grid.
    Admin,
    /// Nothing but admitting one new owner, once (where owners are admitted by invitation).
    Invite,
}

impl Role {
    /// Its name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Submitter => "submitter",
            Role::Admin => "admin",
            Role::Invite => "invite",
        }
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Role, String> {
        match s {
            "submitter" => Ok(Role::Submitter),
            "admin" => Ok(Role::Admin),
            "invite" => Ok(Role::Invite),
            _ => Err(format!(
                "unknown role {s:?}; the roles are submitter, admin and invite"
            )),
        }
    }
}

/// A registered runner, as requests are authenticated against it.
#[derive(Debug, Clone)]
pub struct RunnerRecord {
    /// Its id.
    pub id: String,
    /// Its Ed25519 public key.
    pub public_key: wire::PublicKey,
    /// Its owner.
    pub owner: String,
    /// Its tier.
    pub tier: Tier,
    /// Tasks it runs at once.
    pub slots: u32,
    /// Its conduct so far.
    pub reputation: Reputation,
    /// When it was last heard from.
    pub last_seen_ms: i64,
    /// Whether it counts as online (the expiry loop marks runners offline).
    pub online: bool,
    /// Where it says it is.
    pub location: String,
    /// The share of its energy it says is renewable, 0 to 1.
    pub green_energy: Option<f64>,
    /// Milliseconds it was online.
    pub uptime_ms: i64,
    /// Whether it passed a health check since it last registered or came back online.
    pub warm: bool,
    /// Health checks it failed in a row.
    pub checks_failed: u64,
    /// The memory it says it may use, in bytes (0: it did not say).
    pub memory_bytes: u64,
}

/// A health check issued to a runner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheck {
    /// Its id.
    pub id: CheckId,
    /// The runner it was issued to.
    pub runner: String,
    /// The seed of its task.
    pub seed: u64,
    /// When its lease ends.
    pub deadline_ms: i64,
    /// `pending`, `passed`, `failed`, `expired` or `dropped`.
    pub state: String,
    /// The digest the runner reported, once it did.
    pub digest: Option<Blake3Hash>,
}

/// Tasks across the grid by where they stand.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct TaskCounts {
    /// Open: waiting for runners or for their results.
    pub open: u64,
    /// Open tasks with at least one lease out.
    pub running: u64,
    /// Leases out.
    pub leases: u64,
    /// Tasks the scheduler decides with its own run.
    pub deciding: u64,
    /// Accepted with a successful result.
    pub succeeded: u64,
    /// Accepted with any other outcome.
    pub failed: u64,
    /// Tasks whose runners reported different digests, whatever became of them.
    pub disputed: u64,
}

/// What volunteers gave the grid.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct Impact {
    /// Wall-clock milliseconds of every reported run.
    pub compute_ms: u64,
    /// Results reported.
    pub results: u64,
    /// Fuel of the results credited.
    pub fuel: u64,
    /// Micro-credits granted for tasks.
    pub micro_credits: u64,
}

/// How credits are shared, and what runners earn besides tasks.
#[derive(Debug, Clone)]
pub struct CreditPolicy {
    /// The share (0 to 1) of every task credit that goes to the cooperative fund.
    pub cooperative_share: f64,
    /// The owner name the fund's entries carry; no runner may register under it.
    pub cooperative: String,
    /// Micro-credits per hour online; 0 grants no credit for time online.
    pub uptime_micro_per_hour: u64,
    /// The least time online credited at once, in milliseconds.
    pub uptime_min_ms: i64,
    /// A runner not heard from for this long is offline, and a longer silence does not
    /// count as time online, in milliseconds.
    pub offline_after_ms: i64,
    /// Whether a cold runner (new, registered again, back from offline) must pass a health
    /// check before it gets work.
    pub health_checks: bool,
    /// How runners are weighed: the share of saboteurs assumed, the spot-check rate, and the
    /// target error that makes a runner established.
    pub credibility: crate::credibility::Policy,
    /// The target error of a batch that sets none; `None`: its quorum alone decides.
    pub target_error: Option<f64>,
}

impl Default for CreditPolicy {
    fn default() -> Self {
        CreditPolicy {
            cooperative_share: 0.0,
            cooperative: "cooperative".into(),
            uptime_micro_per_hour: 0,
            uptime_min_ms: 60_000,
            offline_after_ms: 45_000,
            health_checks: true,
            credibility: crate::credibility::Policy::default(),
            target_error: None,
        }
    }
}

/// What a bearer token is when it is used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenLookup {
    /// Valid: its role and whom it is for.
    Valid {
        /// What it may do.
        role: Role,
        /// Whom it is for.
        name: String,
    },
    /// It expired at `at_ms`.
    Expired {
        /// When.
        at_ms: i64,
    },
    /// It was revoked at `at_ms`.
    Revoked {
        /// When.
        at_ms: i64,
    },
    /// No such token.
    Unknown,
}

/// Characters of a token's hash that name it in `scheduler token list` and `revoke`.
pub const TOKEN_ID_LEN: usize = 12;

/// A token as `scheduler token list` shows it (never the token itself: only its hash is
/// stored).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TokenInfo {
    /// The start of its hash.
    pub id: String,
    /// What it may do.
    pub role: Role,
    /// Whom it is for.
    pub name: String,
    /// When it was made, in milliseconds since the Unix epoch.
    pub created_ms: i64,
    /// When it expires, if ever.
    pub expires_ms: Option<i64>,
    /// When it was revoked, if it was.
    pub revoked_ms: Option<i64>,
}

/// One payout of an owner's balance.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct Payout {
    /// Its ledger entry.
    pub seq: u64,
    /// Who is paid.
    pub owner: String,
    /// How much, in micro-credits.
    pub micro_credits: u64,
    /// When, in milliseconds since the Unix epoch.
    pub at_ms: i64,
}

/// One entry of a runner's activity log.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct RunnerEvent {
    /// When, in milliseconds since the Unix epoch.
    pub at_ms: i64,
    /// What: registered, online, offline, flagged, missed deadline, handed back, uptime credit.
    pub event: String,
    /// The particulars.
    pub detail: String,
}

/// Where [`Store::authority_jobs`] goes on from in each of its lists.
#[derive(Debug, Clone, Copy, Default)]
pub struct Turns {
    /// The last deciding task taken.
    pub deciding: i64,
    /// The last task taken whose outputs are recovered.
    pub recovering: i64,
    /// The last task taken to check (a spot check or a re-verification).
    pub checking: i64,
}

/// Tasks of each list [`Store::authority_jobs`] takes at a time.
const TURN: i64 = 16;

/// A task the scheduler must run itself: to decide it, or to recover the outputs of an
/// accepted result no runner uploaded.
#[derive(Debug, Clone)]
pub struct AuthorityJob {
    /// The task.
    pub task_id: TaskId,
    /// Its manifest.
    pub manifest: helio_sdk::TaskManifest,
    /// For output recovery or a check: the accepted digest the run must reproduce.
    pub expect: Option<Blake3Hash>,
}

/// The database.
#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    /// Where reads outside a transaction go: on SQLite connections of their own, so that
    /// a dashboard's or a submitter's read never waits for a group commit on the one writing
    /// connection, nor holds it up (WAL lets them read while it writes); on PostgreSQL
    /// the same pool.
    reads: AnyPool,
    postgres: bool,
    policy: std::sync::Arc<CreditPolicy>,
    group: std::sync::Arc<Group>,
    /// Rung after a commit that made work appear (see [`Store::flush`]).
    bell: std::sync::Arc<Bell>,
    /// The operators' grants to submitters, as last read, and when ([`Store::grants`]).
    #[allow(clippy::type_complexity)]
    grants: Arc<
        std::sync::Mutex<
            Option<(
                std::time::Instant,
                Arc<BTreeMap<String, crate::share::Grant>>,
            )>,
        >,
    >,
    /// Whether some submitter has a quota of leases out: then a lease that ends may let a
    /// waiting runner have work, and rings the bell.
    quotas: Arc<std::sync::atomic::AtomicBool>,
}

const RUNNER_COLUMNS: &str = "id, public_key, owner, tier, slots, agreements, disagreements, \
     missed_deadlines, spot_checks, returns, last_seen_ms, online, location, green_energy, \
     uptime_ms, warm, checks_failed, memory_bytes";

const TIERS: [Tier; 3] = Tier::ALL;

fn tier_rank(t: Tier) -> i64 {
    TIERS.iter().position(|x| *x == t).unwrap_or(0) as i64
}

/// The tier stored as `rank` (see [`tier_rank`]); an unknown rank reads as the lowest.
fn tier_of(rank: i64) -> Tier {
    TIERS.get(rank as usize).copied().unwrap_or_default()
}

fn hash(text: &str) -> Result<Blake3Hash> {
    Blake3Hash::parse(text).map_err(|e| StoreError::Corrupt(format!("a bad hash {text:?}: {e}")))
}

fn phase_name(p: Phase) -> &'static str {
    match p {
        Phase::Open => "open",
        Phase::Deciding => "deciding",
        Phase::Accepted { .. } => "accepted",
        Phase::Cancelled => "cancelled",
    }
}

/// SQLite connections for reads outside transactions ([`Store::reads`]).
const READ_CONNECTIONS: u32 = 2;

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl Store {
    /// Opens the database at `url` (`sqlite://PATH` or `postgres://...`) and brings its
    /// schema up to date.
    pub async fn open(url: &str) -> Result<Store> {
        sqlx::any::install_default_drivers();
        let postgres = url.starts_with("postgres:") || url.starts_with("postgresql:");
        let options = if postgres {
            AnyPoolOptions::new().max_connections(16)
        } else {
            // One connection: SQLite has one writer anyway, and this way no request ever
            // waits on a busy lock. WAL with full sync: a committed credit survives a crash.
            AnyPoolOptions::new()
                .max_connections(1)
                .after_connect(|conn, _| {
                    Box::pin(async move {
                        conn.execute(
                            "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; \
                             PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 10000;",
                        )
                        .await?;
                        Ok(())
                    })
                })
        };
        let pool = options.connect(url).await?;
        let mut store = Store {
            reads: pool.clone(),
            pool,
            postgres,
            policy: Default::default(),
            group: Default::default(),
            bell: Default::default(),
            grants: Default::default(),
            quotas: Default::default(),
        };
        store.migrate().await?;
        if !postgres {
            store.reads = AnyPoolOptions::new()
                .max_connections(READ_CONNECTIONS)
                .after_connect(|conn, _| {
                    Box::pin(async move {
                        conn.execute("PRAGMA query_only = ON; PRAGMA busy_timeout = 10000;")
                            .await?;
                        Ok(())
                    })
                })
                .connect(url)
                .await?;
        }
        Ok(store)
    }

    /// This store with `policy` for credits.
    pub fn with_policy(mut self, policy: CreditPolicy) -> Store {
        self.policy = std::sync::Arc::new(policy);
        self
    }

    /// How this store weighs runners.
    pub fn credibility(&self) -> &credibility::Policy {
        &self.policy.credibility
    }

    /// The target error a batch is held to: its own, else the operator's (if any).
    pub fn target_of(&self, batch: &BatchManifest) -> Option<f64> {
        batch.target_error.or(self.policy.target_error)
    }

    /// Which database this is: `sqlite` or `postgres`.
    pub fn kind(&self) -> &'static str {
        if self.postgres { "postgres" } else { "sqlite" }
    }

    fn for_update(&self) -> &'static str {
        if self.postgres { " FOR UPDATE" } else { "" }
    }

    /// Locks rows read for leasing on PostgreSQL, passing over those another transaction
    /// holds.
    fn skip_locked(&self) -> &'static str {
        if self.postgres {
            " FOR UPDATE SKIP LOCKED"
        } else {
            ""
        }
    }

    /// Whether the database answers (for `/health`).
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").fetch_one(&self.pool).await?;
        Ok(())
    }

    /// Closes the database's connections, waiting for those in use.
    pub async fn close(&self) {
        self.reads.close().await;
        self.pool.close().await;
    }

    /// The bell lease requests wait on for work (see [`crate::bell`]).
    pub fn bell(&self) -> &Bell {
        &self.bell
    }
}
