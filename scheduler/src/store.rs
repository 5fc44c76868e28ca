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

use helio_sdk::wire::{
    self, BatchResults, BatchStatus, CreditRow, Lease, RegisterRunner, Registered, ReportAck,
    ReportStatus, ResultReport, Submitted, TaskResult,
};
use helio_sdk::{BatchManifest, Blake3Hash, Redundancy, RunReport, Tier};
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{Any, AnyPool, Executor, Row, Transaction};
use tokio::sync::oneshot;

use crate::bell::{self, Bell};
use crate::ledger::{self, Credit, Entry, Kind};
use crate::task::{Effect, Phase, Progress, Replica, ReplicaState, Reputation, TaskState};

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
}

type Result<T, E = StoreError> = std::result::Result<T, E>;

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Submits batches and reads their results.
    Submitter,
    /// Everything a submitter may, and operating the grid.
    Admin,
}

impl Role {
    /// Its name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Submitter => "submitter",
            Role::Admin => "admin",
        }
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Role, String> {
        match s {
            "submitter" => Ok(Role::Submitter),
            "admin" => Ok(Role::Admin),
            _ => Err(format!(
                "unknown role {s:?}; the roles are submitter and admin"
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
}

/// A health check issued to a runner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheck {
    /// Its id (its lease carries the negated id as task id).
    pub id: i64,
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
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
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
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
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
        }
    }
}

/// One payout of an owner's balance.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
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
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RunnerEvent {
    /// When, in milliseconds since the Unix epoch.
    pub at_ms: i64,
    /// What: registered, online, offline, flagged, missed deadline, handed back, uptime credit.
    pub event: String,
    /// The particulars.
    pub detail: String,
}

/// A task the scheduler must run itself: to decide it, or to recover the outputs of an
/// accepted result no runner uploaded.
#[derive(Debug, Clone)]
pub struct AuthorityJob {
    /// The task.
    pub task_id: i64,
    /// Its manifest.
    pub manifest: helio_sdk::TaskManifest,
    /// For output recovery: the accepted digest the run must reproduce.
    pub expect: Option<Blake3Hash>,
}

/// One stored migration.
struct Migration {
    version: i64,
    name: &'static str,
    sql: &'static str,
}

const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "grid",
        sql: include_str!("../migrations/0001_grid.sql"),
    },
    Migration {
        version: 2,
        name: "nodes and credits",
        sql: include_str!("../migrations/0002_nodes_and_credits.sql"),
    },
    Migration {
        version: 3,
        name: "dashboard",
        sql: include_str!("../migrations/0003_dashboard.sql"),
    },
    Migration {
        version: 4,
        name: "status indexes",
        sql: include_str!("../migrations/0004_status_indexes.sql"),
    },
    Migration {
        version: 5,
        name: "batch counts",
        sql: include_str!("../migrations/0005_batch_counts.sql"),
    },
    Migration {
        version: 6,
        name: "health checks",
        sql: include_str!("../migrations/0006_health_checks.sql"),
    },
    Migration {
        version: 7,
        name: "batch progress",
        sql: include_str!("../migrations/0007_batch_progress.sql"),
    },
];

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
}

/// Runners' leases and reports waiting to be committed: whatever queues up while one
/// transaction commits is committed together in the next (group commit), so that a busy
/// grid pays one synchronous disk write for many requests, not one each.
#[derive(Default)]
struct Group {
    queue: std::sync::Mutex<Vec<Job>>,
    /// Whether a committer task is running (see [`Store::grouped`]).
    committer: std::sync::atomic::AtomicBool,
    /// Held while a group commits.
    committing: tokio::sync::Mutex<()>,
    /// The batch and name of tasks leased and not yet accepted (they never change), so
    /// that a result's signature, which covers them, is checked before its request joins a
    /// group, not by the committer while every other request waits. A result whose task
    /// is not here (a scheduler restarted since the lease) is checked in the transaction.
    names: std::sync::Mutex<HashMap<i64, BatchAndName>>,
}

/// A task's batch id and name.
type BatchAndName = (Arc<str>, Arc<str>);

/// The most tasks [`Group::names`] holds; when full it starts over (a miss only moves a
/// signature check into the transaction).
const NAMES_HELD: usize = 100_000;

/// One request in a group, and where its answer goes.
enum Job {
    Lease {
        runner: RunnerRecord,
        max: u32,
        now: i64,
        grace_ms: i64,
        reply: oneshot::Sender<Result<Vec<Lease>>>,
    },
    Report {
        runner: RunnerRecord,
        results: Vec<ResultReport>,
        /// Whether each result's signature was already found good.
        signed: Vec<bool>,
        /// New leases wanted after the results are recorded: at most this many, with this
        /// grace.
        lease: Option<(u32, i64)>,
        now: i64,
        reply: oneshot::Sender<Result<(Vec<ReportAck>, Vec<Lease>)>>,
    },
}

/// A job's answer, before it is sent.
enum Done {
    Leases(Vec<Lease>),
    Acks(Vec<ReportAck>, Vec<Lease>),
}

impl Job {
    fn answer(self, done: Result<Done>) {
        // A requester that went away no longer wants its answer; what committed stays.
        match (self, done) {
            (Job::Lease { reply, .. }, Ok(Done::Leases(l))) => drop(reply.send(Ok(l))),
            (Job::Report { reply, .. }, Ok(Done::Acks(a, l))) => drop(reply.send(Ok((a, l)))),
            (Job::Lease { reply, .. }, Err(e)) => drop(reply.send(Err(e))),
            (Job::Report { reply, .. }, Err(e)) => drop(reply.send(Err(e))),
            _ => unreachable!("each job is answered in its own kind"),
        }
    }
}

const RUNNER_COLUMNS: &str = "id, public_key, owner, tier, slots, agreements, disagreements, \
     missed_deadlines, last_seen_ms, online, location, green_energy, uptime_ms, warm, \
     checks_failed";

const TIERS: [Tier; 3] = Tier::ALL;

fn tier_rank(t: Tier) -> i64 {
    TIERS.iter().position(|x| *x == t).unwrap_or(0) as i64
}

fn hash(text: &str) -> Result<Blake3Hash> {
    Blake3Hash::parse(text).map_err(|e| StoreError::Corrupt(format!("a bad hash {text:?}: {e}")))
}

fn phase_name(p: Phase) -> &'static str {
    match p {
        Phase::Open => "open",
        Phase::Deciding => "deciding",
        Phase::Accepted { .. } => "accepted",
    }
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

    /// Queues `job` and commits it with whatever else is queued. One committer task at a
    /// time takes the queue and commits it, again and again until it finds the queue empty;
    /// a request starts one only if none is running. (A task per request, each waiting its
    /// turn, piled up faster than they drained under load: every one that found work
    /// committed it, so the line grew by all but one of the requests that came in during
    /// each commit, and the scheduler's memory with it.) The committer is a task of its
    /// own, so a requester that goes away never cuts a group's transaction short.
    async fn grouped<T>(&self, job: Job, answer: oneshot::Receiver<Result<T>>) -> Result<T> {
        use std::sync::atomic::Ordering::SeqCst;
        self.group.queue.lock().expect("not poisoned").push(job);
        if !self.group.committer.swap(true, SeqCst) {
            let store = self.clone();
            tokio::spawn(async move {
                loop {
                    let _committing = store.group.committing.lock().await;
                    let jobs =
                        std::mem::take(&mut *store.group.queue.lock().expect("not poisoned"));
                    if !jobs.is_empty() {
                        store.commit_group(jobs).await;
                        continue;
                    }
                    // Nothing queued: stop, unless a job came in after the look and its
                    // requester, seeing this committer still running, started none.
                    store.group.committer.store(false, SeqCst);
                    let queued = !store.group.queue.lock().expect("not poisoned").is_empty();
                    if !queued || store.group.committer.swap(true, SeqCst) {
                        break;
                    }
                }
            });
        }
        answer
            .await
            .map_err(|_| StoreError::Corrupt("a grouped commit ended without an answer".into()))?
    }

    /// Runs `jobs` in one transaction and answers each. If any fails, the transaction is
    /// rolled back and each job runs again in its own, so that one bad request costs the
    /// others nothing.
    async fn commit_group(&self, jobs: Vec<Job>) {
        if jobs.len() > 1 {
            match self.run_jobs(&jobs).await {
                Ok(done) => {
                    for (job, done) in jobs.into_iter().zip(done) {
                        job.answer(Ok(done));
                    }
                    return;
                }
                Err(e) => {
                    tracing::debug!(error = %e, jobs = jobs.len(), "a group failed; committing its requests one by one")
                }
            }
        }
        for job in jobs {
            let done = self
                .run_jobs(std::slice::from_ref(&job))
                .await
                .map(|mut d| d.pop().expect("one answer per job"));
            job.answer(done);
        }
    }

    async fn run_jobs(&self, jobs: &[Job]) -> Result<Vec<Done>> {
        let mut tx = self.pool.begin().await?;
        let mut p = Pending::default();
        // Every task the group's reports name, read in one query.
        let reported: Vec<i64> = jobs
            .iter()
            .flat_map(|job| match job {
                Job::Report { results, .. } => results.iter().map(|r| r.task_id).collect(),
                Job::Lease { .. } => Vec::new(),
            })
            .collect();
        self.fetch(&mut tx, &mut p, &reported).await?;
        // Every runner that leases, read in one query.
        let mut leasing: Vec<&str> = jobs
            .iter()
            .filter_map(|job| match job {
                Job::Lease { runner, .. }
                | Job::Report {
                    runner,
                    lease: Some(_),
                    ..
                } => Some(runner.id.as_str()),
                Job::Report { .. } => None,
            })
            .collect();
        leasing.sort_unstable();
        leasing.dedup();
        for chunk in leasing.chunks(ROWS_PER_STATEMENT) {
            let sql = format!(
                "{LEASING_COLUMNS} WHERE r.id IN ({})",
                params(self.postgres, 1, chunk.len())
            );
            let mut query = sqlx::query(&sql);
            for id in chunk {
                query = query.bind(*id);
            }
            for row in query.fetch_all(&mut *tx).await? {
                let (id, runner) = leasing_runner(&row)?;
                p.runners.insert(id, runner);
            }
        }
        // The tasks the group's leases will most likely go to, read after the reported ones:
        // on PostgreSQL fetching those waits for their row locks, which must not happen while
        // this transaction holds the pool's (taken without waiting), or two transactions
        // could each wait for the other.
        self.pool(&mut tx, &mut p, jobs).await?;
        let mut done = Vec::with_capacity(jobs.len());
        for job in jobs {
            done.push(match job {
                Job::Lease {
                    runner,
                    max,
                    now,
                    grace_ms,
                    ..
                } => Done::Leases(
                    self.lease_in(&mut tx, &mut p, runner, *max, *now, *grace_ms)
                        .await?,
                ),
                Job::Report {
                    runner,
                    results,
                    signed,
                    lease,
                    now,
                    ..
                } => {
                    let acks = self
                        .report_in(&mut tx, &mut p, runner, results, signed, *now)
                        .await?;
                    let leases = match *lease {
                        Some((max, grace_ms)) => {
                            self.lease_in(&mut tx, &mut p, runner, max, *now, grace_ms)
                                .await?
                        }
                        None => Vec::new(),
                    };
                    Done::Acks(acks, leases)
                }
            });
        }
        let work = self.flush(&mut tx, p).await?;
        self.commit(tx, work).await?;
        Ok(done)
    }

    /// This store with `policy` for credits.
    pub fn with_policy(mut self, policy: CreditPolicy) -> Store {
        self.policy = std::sync::Arc::new(policy);
        self
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

    async fn migrate(&self) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        if self.postgres {
            // Two schedulers starting at once migrate one after the other.
            sqlx::query("SELECT pg_advisory_xact_lock(7305141)")
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, \
             name TEXT NOT NULL, checksum TEXT NOT NULL, applied_ms BIGINT NOT NULL)",
        )
        .execute(&mut *tx)
        .await?;
        let applied: Vec<(i64, String)> =
            sqlx::query("SELECT version, checksum FROM schema_migrations ORDER BY version")
                .fetch_all(&mut *tx)
                .await?
                .iter()
                .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
                .collect::<Result<_, sqlx::Error>>()?;
        for (version, checksum) in &applied {
            match MIGRATIONS.iter().find(|m| m.version == *version) {
                None => {
                    return Err(StoreError::Corrupt(format!(
                        "schema version {version}, newer than this scheduler knows; run a newer scheduler"
                    )));
                }
                Some(m) if Blake3Hash::of(m.sql.as_bytes()).to_string() != *checksum => {
                    return Err(StoreError::Corrupt(format!(
                        "schema migration {version} ({}) with another text than this scheduler's",
                        m.name
                    )));
                }
                Some(_) => {}
            }
        }
        for m in MIGRATIONS {
            if applied.iter().any(|(v, _)| *v == m.version) {
                continue;
            }
            sqlx::raw_sql(m.sql).execute(&mut *tx).await?;
            sqlx::query(
                "INSERT INTO schema_migrations (version, name, checksum, applied_ms) \
                 VALUES ($1, $2, $3, $4)",
            )
            .bind(m.version)
            .bind(m.name)
            .bind(Blake3Hash::of(m.sql.as_bytes()).to_string())
            .bind(now_ms())
            .execute(&mut *tx)
            .await?;
            tracing::info!(
                version = m.version,
                name = m.name,
                "applied schema migration"
            );
        }
        tx.commit().await?;
        Ok(())
    }

    // ---- tokens ----

    /// Creates a token with `role`; returns the token, which is stored only as its hash.
    pub async fn create_token(&self, role: Role, name: &str) -> Result<String> {
        let mut secret = [0u8; 24];
        getrandom::fill(&mut secret)
            .map_err(|e| StoreError::Conflict(format!("no randomness for a token: {e}")))?;
        let token = format!("helio_{}", wire::to_hex(&secret));
        sqlx::query("INSERT INTO tokens (hash, role, name, created_ms) VALUES ($1, $2, $3, $4)")
            .bind(Blake3Hash::of(token.as_bytes()).to_string())
            .bind(role.as_str())
            .bind(name)
            .bind(now_ms())
            .execute(&self.pool)
            .await?;
        Ok(token)
    }

    /// The role and name of `token`, if it is one.
    pub async fn token(&self, token: &str) -> Result<Option<(Role, String)>> {
        let row = sqlx::query("SELECT role, name FROM tokens WHERE hash = $1")
            .bind(Blake3Hash::of(token.as_bytes()).to_string())
            .fetch_optional(&self.reads)
            .await?;
        let Some(row) = row else { return Ok(None) };
        let role: String = row.try_get(0)?;
        let role = role.parse().map_err(StoreError::Corrupt)?;
        Ok(Some((role, row.try_get(1)?)))
    }

    // ---- runners ----

    /// Registers a runner, or updates what it offers when its key is known.
    pub async fn register_runner(&self, reg: &RegisterRunner, now: i64) -> Result<Registered> {
        let key = wire::parse_public_key(&reg.public_key)
            .map_err(|e| StoreError::Conflict(format!("public_key {e}")))?;
        let id = wire::runner_id(&key);
        if reg.owner == self.policy.cooperative {
            return Err(StoreError::Conflict(format!(
                "owner {:?} is the cooperative fund's name; choose another owner",
                reg.owner
            )));
        }
        let mut tx = self.pool.begin().await?;
        let known = sqlx::query("SELECT 1 FROM runners WHERE id = $1")
            .bind(&id)
            .fetch_optional(&mut *tx)
            .await?
            .is_some();
        sqlx::query(
            "INSERT INTO runners (id, public_key, owner, tier, slots, cores, memory_bytes, \
             fuel_per_second, profile, registered_ms, last_seen_ms, location, green_energy) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10, $11, $12) \
             ON CONFLICT (id) DO UPDATE SET tier = $4, slots = $5, cores = $6, \
             memory_bytes = $7, fuel_per_second = $8, profile = $9, last_seen_ms = $10, \
             location = $11, green_energy = $12, online = 1, warm = 0",
        )
        .bind(&id)
        .bind(&reg.public_key)
        .bind(&reg.owner)
        .bind(tier_rank(reg.tier))
        .bind(i64::from(reg.slots))
        .bind(i64::from(reg.cores))
        .bind(reg.memory_bytes as i64)
        .bind(reg.fuel_per_second as i64)
        .bind(&reg.profile)
        .bind(now)
        .bind(reg.location.as_deref().unwrap_or(""))
        .bind(reg.green_energy)
        .execute(&mut *tx)
        .await?;
        // A key belongs to one owner for good: credits already granted name it.
        let owner: String = sqlx::query("SELECT owner FROM runners WHERE id = $1")
            .bind(&id)
            .fetch_one(&mut *tx)
            .await?
            .try_get(0)?;
        if owner != reg.owner {
            return Err(StoreError::Conflict(format!(
                "runner {id} is registered to owner {owner:?}, not {:?}; a new owner needs a new key",
                reg.owner
            )));
        }
        let detail = format!(
            "owner {}, tier {}, {} slots, {} cores, {} MiB, {} fuel/s{}{}",
            reg.owner,
            reg.tier,
            reg.slots,
            reg.cores,
            reg.memory_bytes >> 20,
            reg.fuel_per_second,
            reg.location
                .as_deref()
                .map(|l| format!(", in {l}"))
                .unwrap_or_default(),
            reg.green_energy
                .map(|g| format!(", {:.0}% green energy", g * 100.0))
                .unwrap_or_default(),
        );
        // Registered again (a restart, new hardware): cold until it passes a new check.
        drop_checks_in(&mut tx, &id, now).await?;
        let event = if known {
            "registered again"
        } else {
            "registered"
        };
        event_in(&mut tx, &id, now, event, &detail).await?;
        tx.commit().await?;
        Ok(Registered {
            runner: id,
            heartbeat_seconds: 0,
        })
    }

    /// The runner with `id`.
    pub async fn runner(&self, id: &str) -> Result<Option<RunnerRecord>> {
        let row = sqlx::query(&format!(
            "SELECT {RUNNER_COLUMNS} FROM runners WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.reads)
        .await?;
        row.map(|r| runner_record(&r)).transpose()
    }

    /// Records that `runner` (as read a moment ago) was heard from: the time since it was
    /// last heard from counts as online unless it exceeds the offline limit; a runner marked
    /// offline is online again.
    pub async fn touch(&self, runner: &RunnerRecord, now: i64) -> Result<()> {
        sqlx::query(
            "UPDATE runners SET uptime_ms = uptime_ms + CASE WHEN online = 1 \
             AND $2 - last_seen_ms <= $3 THEN $2 - last_seen_ms ELSE 0 END, \
             last_seen_ms = $2 WHERE id = $1 AND last_seen_ms < $2",
        )
        .bind(&runner.id)
        .bind(now)
        .bind(self.policy.offline_after_ms)
        .execute(&self.pool)
        .await?;
        if !runner.online {
            let mut tx = self.pool.begin().await?;
            let back = sqlx::query("UPDATE runners SET online = 1 WHERE id = $1 AND online = 0")
                .bind(&runner.id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if back == 1 {
                let away = (now - runner.last_seen_ms) / 1000;
                let detail = format!("heard from again after {away} s");
                event_in(&mut tx, &runner.id, now, "online", &detail).await?;
            }
            tx.commit().await?;
        }
        Ok(())
    }

    /// Marks offline every online runner not heard from within the offline limit, and hands
    /// the tasks it holds to other runners. Returns the runners marked.
    pub async fn mark_offline(&self, now: i64) -> Result<Vec<String>> {
        let silent = now - self.policy.offline_after_ms;
        let ids: Vec<String> =
            sqlx::query("SELECT id FROM runners WHERE online = 1 AND last_seen_ms < $1 LIMIT 1000")
                .bind(silent)
                .fetch_all(&self.pool)
                .await?
                .iter()
                .map(|r| r.try_get(0))
                .collect::<Result<_, _>>()?;
        let mut marked = Vec::new();
        for id in ids {
            let mut tx = self.pool.begin().await?;
            let changed = sqlx::query(
                "UPDATE runners SET online = 0, warm = 0 \
                 WHERE id = $1 AND online = 1 AND last_seen_ms < $2",
            )
            .bind(&id)
            .bind(silent)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if changed == 0 {
                continue;
            }
            let tasks: Vec<i64> = sqlx::query(
                "SELECT task_id FROM replicas WHERE runner_id = $1 AND state = 'leased'",
            )
            .bind(&id)
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(|r| r.try_get(0))
            .collect::<Result<_, _>>()?;
            let mut p = Pending::default();
            let handed = self.hand_back(&mut tx, &mut p, &id, tasks).await?;
            let work = self.flush(&mut tx, p).await?;
            drop_checks_in(&mut tx, &id, now).await?;
            let detail = format!(
                "not heard from for {} s; {handed} leased task{} handed to other runners",
                self.policy.offline_after_ms / 1000,
                if handed == 1 { "" } else { "s" }
            );
            event_in(&mut tx, &id, now, "offline", &detail).await?;
            self.commit(tx, work).await?;
            tracing::info!(runner = %id, leases = handed, "runner went offline");
            marked.push(id);
        }
        Ok(marked)
    }

    /// The newest `limit` entries of a runner's activity log, newest first.
    pub async fn runner_events(&self, id: &str, limit: u32) -> Result<Vec<RunnerEvent>> {
        if sqlx::query("SELECT 1 FROM runners WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.reads)
            .await?
            .is_none()
        {
            return Err(StoreError::NotFound(format!("runner {id}")));
        }
        sqlx::query(
            "SELECT at_ms, event, detail FROM runner_events WHERE runner_id = $1 \
             ORDER BY at_ms DESC LIMIT $2",
        )
        .bind(id)
        .bind(i64::from(limit))
        .fetch_all(&self.reads)
        .await?
        .iter()
        .map(|r| {
            Ok(RunnerEvent {
                at_ms: r.try_get(0)?,
                event: r.try_get(1)?,
                detail: r.try_get(2)?,
            })
        })
        .collect()
    }

    /// Runners of `tier` online now.
    pub async fn online_in_tier(&self, tier: Tier) -> Result<u64> {
        Ok(
            sqlx::query("SELECT COUNT(*) FROM runners WHERE tier = $1 AND online = 1")
                .bind(tier_rank(tier))
                .fetch_one(&self.reads)
                .await?
                .try_get::<i64, _>(0)? as u64,
        )
    }

    /// Every runner, most recently seen first.
    pub async fn runners(&self) -> Result<Vec<RunnerRecord>> {
        sqlx::query(&format!(
            "SELECT {RUNNER_COLUMNS} FROM runners ORDER BY last_seen_ms DESC, id"
        ))
        .fetch_all(&self.reads)
        .await?
        .iter()
        .map(runner_record)
        .collect()
    }

    // ---- batches ----

    /// Stores a batch (every blob it names must already be stored). Submitting the same
    /// batch again returns it unchanged.
    pub async fn submit(
        &self,
        batch: &BatchManifest,
        submitter: &str,
        now: i64,
    ) -> Result<Submitted> {
        let id = batch_id(batch);
        let mut tx = self.pool.begin().await?;
        let existing = sqlx::query("SELECT tasks FROM batches WHERE id = $1")
            .bind(&id)
            .fetch_optional(&mut *tx)
            .await?;
        if existing.is_some() {
            return Ok(Submitted {
                batch: id,
                name: batch.batch.to_string(),
                tasks: batch.tasks.len() as u64,
                created: false,
            });
        }
        let red = batch.redundancy;
        sqlx::query(
            "INSERT INTO batches (id, name, submitted_by, created_ms, replicas, quorum, \
             max_replicas, credit_rate, tasks) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(&id)
        .bind(batch.batch.as_str())
        .bind(submitter)
        .bind(now)
        .bind(i64::from(red.replicas))
        .bind(i64::from(red.quorum))
        .bind(i64::from(red.max_replicas))
        .bind(batch.credit_rate)
        .bind(batch.tasks.len() as i64)
        .execute(&mut *tx)
        .await?;
        let n = batch.tasks.len() as i64;
        let last: i64 = sqlx::query(
            "UPDATE counters SET value = value + $1 WHERE name = 'task' RETURNING value",
        )
        .bind(n)
        .fetch_one(&mut *tx)
        .await?
        .try_get(0)?;
        let first = last - n + 1;
        let wanted = i64::from(TaskState::new(red).wanted);
        const CHUNK: usize = 500;
        for (c, chunk) in batch.tasks.chunks(CHUNK).enumerate() {
            let mut sql = String::from(
                "INSERT INTO tasks (id, batch_id, idx, name, manifest, tier, quorum, \
                 wall_seconds, phase, wanted) VALUES ",
            );
            for i in 0..chunk.len() {
                let p = i * 9;
                if i > 0 {
                    sql.push(',');
                }
                sql.push_str(&format!(
                    "(${}, ${}, ${}, ${}, ${}, ${}, ${}, ${}, 'open', ${})",
                    p + 1,
                    p + 2,
                    p + 3,
                    p + 4,
                    p + 5,
                    p + 6,
                    p + 7,
                    p + 8,
                    p + 9
                ));
            }
            let mut q = sqlx::query(&sql);
            for (i, task) in chunk.iter().enumerate() {
                let idx = (c * CHUNK + i) as i64;
                q = q
                    .bind(first + idx)
                    .bind(id.clone())
                    .bind(idx)
                    .bind(task.name.to_string())
                    .bind(serde_json::to_string(task).expect("a manifest serializes"))
                    .bind(tier_rank(task.tier))
                    .bind(i64::from(red.quorum))
                    .bind(task.limits.wall_seconds as i64)
                    .bind(wanted);
            }
            q.execute(&mut *tx).await?;
        }
        self.notify_work(&mut tx).await?;
        self.commit(tx, true).await?;
        Ok(Submitted {
            batch: id,
            name: batch.batch.to_string(),
            tasks: batch.tasks.len() as u64,
            created: true,
        })
    }

    /// A batch's progress.
    pub async fn batch_status(&self, id: &str) -> Result<BatchStatus> {
        // Every count is kept as tasks move (migrations 5 and 7), in the transactions that
        // move them, so this reads one row whatever the batch's size; pending tasks are what
        // the counts leave. [`Store::recount_batch`] counts the same from the rows.
        let batch = sqlx::query(
            "SELECT name, tasks, accepted_ok, accepted_failed, micro_credits, running, deciding \
             FROM batches WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.reads)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("batch {id}")))?;
        let count = |i: usize| -> Result<u64> { Ok(batch.try_get::<i64, _>(i)? as u64) };
        let (tasks, succeeded, failed) = (count(1)?, count(2)?, count(3)?);
        let (running, deciding) = (count(5)?, count(6)?);
        let mut status = BatchStatus {
            batch: id.into(),
            name: batch.try_get(0)?,
            tasks,
            pending: tasks
                .checked_sub(succeeded + failed + running + deciding)
                .ok_or_else(|| {
                    StoreError::Corrupt(format!("batch {id} counts more tasks than it has"))
                })?,
            running,
            deciding,
            succeeded,
            failed,
            outputs_pending: 0,
            micro_credits: count(4)?,
        };
        // `succeeded IN (0, 1)` names every value the column holds, so the read can seek the
        // `tasks_batch_status` index to the unstored outputs instead of walking every
        // accepted task.
        status.outputs_pending = sqlx::query(
            "SELECT COUNT(*) FROM tasks WHERE batch_id = $1 AND phase = 'accepted' \
             AND succeeded IN (0, 1) AND outputs_stored = 0",
        )
        .bind(id)
        .fetch_one(&self.reads)
        .await?
        .try_get::<i64, _>(0)? as u64;
        Ok(status)
    }

    /// A batch's pending, running and deciding tasks counted from its tasks' and replicas'
    /// rows, a look at every open task: what [`Store::batch_status`] keeps as counters, for a
    /// check of them.
    pub async fn recount_batch(&self, id: &str) -> Result<(u64, u64, u64)> {
        let rows = sqlx::query(
            "SELECT t.phase, \
             CASE WHEN t.phase = 'open' AND NOT EXISTS (SELECT 1 FROM replicas r \
               WHERE r.task_id = t.id AND r.state IN ('leased', 'reported')) THEN 1 ELSE 0 END, \
             COUNT(*) FROM tasks t WHERE t.batch_id = $1 AND t.phase IN ('open', 'deciding') \
             GROUP BY 1, 2",
        )
        .bind(id)
        .fetch_all(&self.reads)
        .await?;
        let (mut pending, mut running, mut deciding) = (0, 0, 0);
        for row in rows {
            let phase: String = row.try_get(0)?;
            let idle: i64 = row.try_get(1)?;
            let n = row.try_get::<i64, _>(2)? as u64;
            match (phase.as_str(), idle) {
                ("open", 1) => pending += n,
                ("open", _) => running += n,
                _ => deciding += n,
            }
        }
        Ok((pending, running, deciding))
    }

    /// Every task of a batch with its accepted result, in manifest order.
    pub async fn batch_results(&self, id: &str) -> Result<BatchResults> {
        let name: String = sqlx::query("SELECT name FROM batches WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.reads)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("batch {id}")))?
            .try_get(0)?;
        let mut credits: BTreeMap<String, (Vec<String>, u64)> = BTreeMap::new();
        for row in sqlx::query(
            "SELECT task, runner_id, micro_credits, kind FROM ledger WHERE batch_id = $1 \
             AND kind IN ('task', 'fund') ORDER BY seq",
        )
        .bind(id)
        .fetch_all(&self.reads)
        .await?
        {
            let e = credits.entry(row.try_get(0)?).or_default();
            if row.try_get::<String, _>(3)? == "task" {
                e.0.push(row.try_get(1)?);
            }
            e.1 += row.try_get::<i64, _>(2)? as u64;
        }
        let mut tasks = Vec::new();
        for row in sqlx::query(
            "SELECT t.name, t.phase, t.result, t.by_scheduler, t.id FROM tasks t \
             WHERE t.batch_id = $1 ORDER BY t.idx",
        )
        .bind(id)
        .fetch_all(&self.reads)
        .await?
        {
            let task: String = row.try_get(0)?;
            let phase: String = row.try_get(1)?;
            let result: Option<String> = row.try_get(2)?;
            let by_scheduler: i64 = row.try_get(3)?;
            let result = result
                .map(|r| serde_json::from_str::<RunReport>(&r))
                .transpose()
                .map_err(|e| StoreError::Corrupt(format!("a bad result of task {task}: {e}")))?;
            let state = match phase.as_str() {
                "open" => {
                    let id: i64 = row.try_get(4)?;
                    let out = sqlx::query(
                        "SELECT COUNT(*) FROM replicas WHERE task_id = $1 \
                         AND state IN ('leased', 'reported')",
                    )
                    .bind(id)
                    .fetch_one(&self.reads)
                    .await?
                    .try_get::<i64, _>(0)?;
                    if out > 0 { "running" } else { "pending" }
                }
                other => other,
            };
            let (agreeing, micro_credits) = credits.remove(&task).unwrap_or_default();
            tasks.push(TaskResult {
                decided_by: result.as_ref().map(|_| {
                    if by_scheduler == 1 {
                        "scheduler"
                    } else {
                        "quorum"
                    }
                    .to_string()
                }),
                task,
                state: state.into(),
                result,
                agreeing,
                micro_credits,
            });
        }
        Ok(BatchResults {
            batch: id.into(),
            name,
            tasks,
        })
    }

    /// The id of task `name` of batch `batch`.
    pub async fn task_id(&self, batch: &str, name: &str) -> Result<i64> {
        Ok(
            sqlx::query("SELECT id FROM tasks WHERE batch_id = $1 AND name = $2")
                .bind(batch)
                .bind(name)
                .fetch_optional(&self.reads)
                .await?
                .ok_or_else(|| StoreError::NotFound(format!("task {name} of batch {batch}")))?
                .try_get(0)?,
        )
    }

    // ---- leases ----

    /// Leases up to `max` tasks to `runner` (never more than its free slots, one for a
    /// flagged runner), each until
    /// its wall-clock limit plus `grace_ms` from `now`.
    pub async fn lease(
        &self,
        runner: &RunnerRecord,
        max: u32,
        now: i64,
        grace_ms: i64,
    ) -> Result<Vec<Lease>> {
        let (reply, answer) = oneshot::channel();
        self.grouped(
            Job::Lease {
                runner: runner.clone(),
                max,
                now,
                grace_ms,
                reply,
            },
            answer,
        )
        .await
    }

    async fn lease_in(
        &self,
        tx: &mut Transaction<'static, Any>,
        p: &mut Pending,
        runner: &RunnerRecord,
        max: u32,
        now: i64,
        grace_ms: i64,
    ) -> Result<Vec<Lease>> {
        // The runner's reputation as of now (the caller's record may be a moment old), and
        // how many leases it holds.
        let row = match p.runners.get(&runner.id) {
            Some(row) => row.clone(),
            None => {
                let row = sqlx::query(&format!("{LEASING_COLUMNS} WHERE r.id = $1"))
                    .bind(&runner.id)
                    .fetch_optional(&mut **tx)
                    .await?
                    .ok_or_else(|| StoreError::NotFound(format!("runner {}", runner.id)))?;
                leasing_runner(&row)?.1
            }
        };
        if self.policy.health_checks && !row.warm {
            return self.check_lease_in(tx, runner, row.check_after, now).await;
        }
        // What this transaction changed is not written yet: count it in.
        let (agreed, disagreed) = p.reputation.get(&runner.id).copied().unwrap_or_default();
        let reputation = Reputation {
            agreements: (row.reputation.agreements as i64 + agreed) as u64,
            disagreements: (row.reputation.disagreements as i64 + disagreed) as u64,
            missed_deadlines: row.reputation.missed_deadlines,
        };
        let active: i64 = row.active + p.leases_gained(&runner.id);
        // A flagged runner's results are rechecked anyway: it holds one task at a time, so
        // that it cannot tie up many tasks until their deadlines.
        let slots = if reputation.flagged() {
            1
        } else {
            runner.slots
        };
        let n = crate::task::lease_count(slots, active as u32, max);
        if n == 0 {
            return Ok(Vec::new());
        }
        let tier = tier_rank(runner.tier);
        let trusted = reputation.trusted();
        let fits = |t: &Touched| {
            t.info.tier <= tier
                && (t.state.redundancy.quorum > 1 || trusted)
                && t.state.may_lease(&runner.id, &runner.owner).is_ok()
        };
        let pooled: Vec<i64> = p
            .pool
            .ids
            .iter()
            .copied()
            .filter(|id| p.tasks.get(id).is_some_and(fits))
            .take(n as usize)
            .collect();
        let ids = if pooled.len() == n as usize || p.pool.complete {
            pooled
        } else {
            self.candidates(tx, p, runner, tier, trusted, n).await?
        };
        let mut leases = Vec::with_capacity(ids.len());
        for id in ids {
            let (before, info) = self.load(tx, p, id).await?;
            let mut after = before;
            let deadline = crate::task::lease_deadline(now, info.wall_seconds, grace_ms);
            if after.lease(&runner.id, &runner.owner, deadline).is_err() {
                continue;
            }
            p.save(id, after, None);
            let lease = Lease {
                task_id: id,
                manifest: info.manifest()?,
                batch: info.batch_id.clone(),
                deadline_ms: deadline,
            };
            self.remember_name(&lease);
            leases.push(lease);
        }
        Ok(leases)
    }

    /// Up to `n` tasks `runner` may lease, lowest id first, read from the database (and
    /// fetched into `p`): the leasing of a runner the group's pool did not serve.
    async fn candidates(
        &self,
        tx: &mut Transaction<'static, Any>,
        p: &mut Pending,
        runner: &RunnerRecord,
        tier: i64,
        trusted: bool,
        n: u32,
    ) -> Result<Vec<i64>> {
        // Tasks this transaction changed still look wanted in the database: ask for as many
        // more, and pass over those it already gave away.
        let stale = p.tasks.values().filter(|t| t.read.wanted > 0).count() as i64;
        let candidates: Vec<i64> = sqlx::query(&format!(
            "SELECT t.id {TAKEABLE} ORDER BY t.id LIMIT $4{}",
            self.skip_locked()
        ))
        .bind(tier)
        .bind(i64::from(trusted))
        .bind(&runner.owner)
        .bind(i64::from(n) + stale)
        .fetch_all(&mut **tx)
        .await?
        .iter()
        .map(|r| r.try_get(0))
        .collect::<Result<_, _>>()?;
        let ids: Vec<i64> = candidates
            .into_iter()
            .filter(|id| {
                p.tasks
                    .get(id)
                    .is_none_or(|t| t.state.may_lease(&runner.id, &runner.owner).is_ok())
            })
            .take(n as usize)
            .collect();
        self.fetch(tx, p, &ids).await?;
        Ok(ids)
    }

    /// Reads (into `p`) the tasks a group's leases will most likely go to: the lowest-id
    /// tasks that want a replica, of a tier one of the group's runners may run, as many as
    /// its runners may lease and a few more, so that each lease request picks its tasks from
    /// memory instead of a query of its own. What a runner may take of them (its tier, its
    /// trust, no second replica for an owner) is decided per request; a request the pool
    /// cannot fill queries for itself, unless the pool holds every task that wants a replica.
    async fn pool(
        &self,
        tx: &mut Transaction<'static, Any>,
        p: &mut Pending,
        jobs: &[Job],
    ) -> Result<()> {
        let mut wanted = 0i64;
        let mut tier = None;
        for job in jobs {
            let (runner, max, reported) = match job {
                Job::Lease { runner, max, .. } => (runner, *max, 0),
                Job::Report {
                    runner,
                    results,
                    lease: Some((max, _)),
                    ..
                } => (runner, *max, results.len() as i64),
                Job::Report { .. } => continue,
            };
            let Some(row) = p.runners.get(&runner.id) else {
                continue;
            };
            if self.policy.health_checks && !row.warm {
                continue;
            }
            // What it may lease once the results in its own request free their slots; a
            // request this undercounts (its runner unflagged by this group, say) queries
            // for itself.
            let slots = if row.reputation.flagged() {
                1
            } else {
                runner.slots
            };
            let active = (row.active - reported).max(0) as u32;
            wanted += i64::from(crate::task::lease_count(slots, active, max));
            tier = tier.max(Some(tier_rank(runner.tier)));
        }
        let Some(tier) = tier.filter(|_| wanted > 0) else {
            return Ok(());
        };
        let limit = wanted + POOL_SPARE;
        let ids: Vec<i64> = sqlx::query(&format!(
            "SELECT t.id FROM tasks t WHERE t.wanted > 0 AND t.tier <= $1 \
             ORDER BY t.id LIMIT $2{}",
            self.skip_locked()
        ))
        .bind(tier)
        .bind(limit)
        .fetch_all(&mut **tx)
        .await?
        .iter()
        .map(|r| r.try_get(0))
        .collect::<Result<_, _>>()?;
        p.pool.complete = (ids.len() as i64) < limit;
        self.fetch(tx, p, &ids).await?;
        p.pool.ids = ids;
        Ok(())
    }

    /// A cold runner's lease: one health check, unless it holds one still running or must
    /// wait after failing (`check_after`). A check past its deadline is marked `expired`
    /// and replaced.
    async fn check_lease_in(
        &self,
        tx: &mut Transaction<'static, Any>,
        runner: &RunnerRecord,
        check_after: i64,
        now: i64,
    ) -> Result<Vec<Lease>> {
        if now < check_after {
            return Ok(Vec::new());
        }
        let running = sqlx::query(
            "SELECT 1 FROM health_checks WHERE runner_id = $1 AND state = 'pending' \
             AND deadline_ms >= $2",
        )
        .bind(&runner.id)
        .bind(now)
        .fetch_optional(&mut **tx)
        .await?;
        if running.is_some() {
            return Ok(Vec::new());
        }
        sqlx::query(
            "UPDATE health_checks SET state = 'expired', finished_ms = $2 \
             WHERE runner_id = $1 AND state = 'pending'",
        )
        .bind(&runner.id)
        .bind(now)
        .execute(&mut **tx)
        .await?;
        let id: i64 = sqlx::query(
            "UPDATE counters SET value = value + 1 WHERE name = 'health_check' RETURNING value",
        )
        .fetch_one(&mut **tx)
        .await?
        .try_get(0)?;
        let seed = getrandom::u64()
            .map_err(|e| StoreError::Corrupt(format!("no random seed for a health check: {e}")))?;
        let deadline = crate::task::lease_deadline(
            now,
            u64::from(helio_runner::health::HEALTH_CHECK_WALL_SECONDS),
            crate::health::GRACE_MS,
        );
        sqlx::query(
            "INSERT INTO health_checks (id, runner_id, seed, issued_ms, deadline_ms, state) \
             VALUES ($1, $2, $3, $4, $5, 'pending')",
        )
        .bind(id)
        .bind(&runner.id)
        .bind(seed as i64)
        .bind(now)
        .bind(deadline)
        .execute(&mut **tx)
        .await?;
        Ok(vec![crate::health::lease(id, seed, deadline)?])
    }

    /// The health check `id`, if it exists.
    pub async fn health_check(&self, id: i64) -> Result<Option<HealthCheck>> {
        let row = sqlx::query(
            "SELECT runner_id, seed, deadline_ms, state, digest FROM health_checks WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok(HealthCheck {
                id,
                runner: r.try_get(0)?,
                seed: r.try_get::<i64, _>(1)? as u64,
                deadline_ms: r.try_get(2)?,
                state: r.try_get(3)?,
                digest: r
                    .try_get::<Option<String>, _>(4)?
                    .map(|d| Blake3Hash::parse(&d).map_err(|e| StoreError::Corrupt(e.to_string())))
                    .transpose()?,
            })
        })
        .transpose()
    }

    /// Records the result of `runner`'s pending health check `id`: it reported `digest`, the
    /// scheduler's own run gave `expected`. A pass makes the runner warm; a failure keeps it
    /// cold and makes it wait before its next check (a minute, doubling with each failure
    /// in a row, at most an hour). Returns false, changing nothing, when the check is not
    /// that runner's pending one.
    pub async fn finish_check(
        &self,
        id: i64,
        runner: &str,
        digest: &Blake3Hash,
        expected: &Blake3Hash,
        now: i64,
    ) -> Result<bool> {
        let passed = digest == expected;
        let mut tx = self.pool.begin().await?;
        let changed = sqlx::query(
            "UPDATE health_checks SET state = $3, digest = $4, expected = $5, finished_ms = $6 \
             WHERE id = $1 AND runner_id = $2 AND state = 'pending'",
        )
        .bind(id)
        .bind(runner)
        .bind(if passed { "passed" } else { "failed" })
        .bind(digest.to_string())
        .bind(expected.to_string())
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if changed == 0 {
            return Ok(false);
        }
        if passed {
            sqlx::query(
                "UPDATE runners SET warm = 1, checks_failed = 0, check_after_ms = 0 WHERE id = $1",
            )
            .bind(runner)
            .execute(&mut *tx)
            .await?;
            event_in(
                &mut tx,
                runner,
                now,
                "health check passed",
                &format!("check {id}"),
            )
            .await?;
        } else {
            let failed: i64 = sqlx::query(
                "UPDATE runners SET checks_failed = checks_failed + 1 WHERE id = $1 \
                 RETURNING checks_failed",
            )
            .bind(runner)
            .fetch_one(&mut *tx)
            .await?
            .try_get(0)?;
            let wait = crate::health::retry_after_ms(failed as u64);
            sqlx::query("UPDATE runners SET check_after_ms = $2 WHERE id = $1")
                .bind(runner)
                .bind(now + wait)
                .execute(&mut *tx)
                .await?;
            let detail = format!(
                "check {id}: digest {digest}, the scheduler's run gave {expected}; \
                 {failed} failed in a row, next check in {} s",
                wait / 1000
            );
            event_in(&mut tx, runner, now, "health check failed", &detail).await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    /// Remembers a leased task's batch and name (see [`Group::names`]).
    fn remember_name(&self, lease: &Lease) {
        let mut held = self.group.names.lock().expect("not poisoned");
        if held.len() >= NAMES_HELD {
            held.clear();
        }
        held.entry(lease.task_id).or_insert_with(|| {
            (
                Arc::from(lease.batch.as_str()),
                Arc::from(lease.manifest.name.as_str()),
            )
        });
    }

    /// Hands `runner`'s leases of `tasks` back; returns how many it held.
    pub async fn give_back(&self, runner: &str, tasks: &[i64], now: i64) -> Result<u32> {
        let mut tx = self.pool.begin().await?;
        let mut p = Pending::default();
        let n = self
            .hand_back(&mut tx, &mut p, runner, tasks.to_vec())
            .await?;
        let work = self.flush(&mut tx, p).await?;
        if n > 0 {
            let detail = format!(
                "handed {n} leased task{} back",
                if n == 1 { "" } else { "s" }
            );
            event_in(&mut tx, runner, now, "handed back", &detail).await?;
        }
        self.commit(tx, work).await?;
        Ok(n)
    }

    /// Ends `runner`'s leases of `tasks` (unknown tasks and tasks it holds no lease of are
    /// passed over), in task order so that concurrent transactions never deadlock; returns
    /// how many it held.
    async fn hand_back(
        &self,
        tx: &mut Transaction<'static, Any>,
        p: &mut Pending,
        runner: &str,
        mut tasks: Vec<i64>,
    ) -> Result<u32> {
        tasks.sort_unstable();
        tasks.dedup();
        let mut n = 0;
        for id in tasks {
            let mut state = match self.load(tx, p, id).await {
                Ok((state, _)) => state,
                Err(StoreError::NotFound(_)) => continue,
                Err(e) => return Err(e),
            };
            if state.give_back(runner).is_ok() {
                p.save(id, state, None);
                n += 1;
            }
        }
        Ok(n)
    }

    /// Ends every lease past its deadline; returns how many ended.
    pub async fn expire(&self, now: i64) -> Result<u32> {
        let ids: Vec<i64> = sqlx::query(
            "SELECT DISTINCT task_id FROM replicas WHERE state = 'leased' AND deadline_ms < $1 \
             ORDER BY task_id LIMIT 1000",
        )
        .bind(now)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| r.try_get(0))
        .collect::<Result<_, _>>()?;
        let mut tx = self.pool.begin().await?;
        let mut p = Pending::default();
        self.fetch(&mut tx, &mut p, &ids).await?;
        let mut ended = 0;
        for id in ids {
            let (mut state, info) = self.load(&mut tx, &mut p, id).await?;
            let (missed, _) = state.expire(now);
            p.save(id, state, None);
            for runner in &missed {
                sqlx::query(
                    "UPDATE runners SET missed_deadlines = missed_deadlines + 1 WHERE id = $1",
                )
                .bind(runner)
                .execute(&mut *tx)
                .await?;
                let detail = format!(
                    "no result for task {} of batch {} by its deadline",
                    info.name, info.batch_id
                );
                event_in(&mut tx, runner, now, "missed deadline", &detail).await?;
                tracing::info!(
                    task = id,
                    runner,
                    "lease expired; the task goes to another runner"
                );
            }
            ended += missed.len() as u32;
        }
        let work = self.flush(&mut tx, p).await?;
        self.commit(tx, work).await?;
        Ok(ended)
    }

    // ---- results ----

    /// Records results `runner` reports, each checked (lease, digest, signature) and
    /// applied in the same transaction as the acceptance and credits it completes; then,
    /// when `lease` asks for `(max, grace_ms)` (`max` above 0), leases new tasks as [`Store::lease`] does,
    /// in that transaction too.
    pub async fn report(
        &self,
        runner: &RunnerRecord,
        results: &[ResultReport],
        lease: Option<(u32, i64)>,
        now: i64,
    ) -> Result<(Vec<ReportAck>, Vec<Lease>)> {
        // Signatures of results whose task's batch and name are known here are checked
        // now, on this request's own thread, not by the committer.
        let names: Vec<_> = {
            let held = self.group.names.lock().expect("not poisoned");
            results
                .iter()
                .map(|r| held.get(&r.task_id).cloned())
                .collect()
        };
        let signed = results
            .iter()
            .zip(names)
            .map(|(r, name)| {
                name.is_some_and(|(batch, name)| {
                    let message = wire::result_message(&batch, &name, &r.report.digest);
                    runner.public_key.verifies(&message, &r.signature)
                })
            })
            .collect();
        let (reply, answer) = oneshot::channel();
        self.grouped(
            Job::Report {
                runner: runner.clone(),
                results: results.to_vec(),
                signed,
                lease,
                now,
                reply,
            },
            answer,
        )
        .await
    }

    async fn report_in(
        &self,
        tx: &mut Transaction<'static, Any>,
        p: &mut Pending,
        runner: &RunnerRecord,
        results: &[ResultReport],
        signed: &[bool],
        now: i64,
    ) -> Result<Vec<ReportAck>> {
        // In task order, as `run_jobs` read (and on PostgreSQL locked) them.
        let mut order: Vec<usize> = (0..results.len()).collect();
        order.sort_by_key(|&i| results[i].task_id);
        let mut acks: Vec<Option<ReportAck>> = vec![None; results.len()];
        for i in order {
            let r = &results[i];
            let refuse = |error: String| ReportAck {
                task_id: r.task_id,
                status: ReportStatus::Refused,
                error: Some(error),
                micro_credits: 0,
                upload: Vec::new(),
            };
            let (before, info) = match self.load(tx, p, r.task_id).await {
                Ok(x) => x,
                Err(StoreError::NotFound(what)) => {
                    acks[i] = Some(refuse(format!("{what} not found")));
                    continue;
                }
                Err(e) => return Err(e),
            };
            let report = &r.report;
            if let Some(error) = inconsistent(report) {
                acks[i] = Some(refuse(error));
                continue;
            }
            let message = wire::result_message(&info.batch_id, &info.name, &report.digest);
            if !signed[i] && !runner.public_key.verifies(&message, &r.signature) {
                acks[i] = Some(refuse(
                    "the result's signature does not verify with this runner's key".into(),
                ));
                continue;
            }
            let mut after = before.clone();
            let digest = report.outcome.is_deterministic().then_some(report.digest);
            let effect = match after.report(&runner.id, digest, now) {
                Ok(e) => e,
                Err(refusal) => {
                    acks[i] = Some(refuse(refusal.to_string()));
                    continue;
                }
            };
            if effect == Effect::Duplicate {
                acks[i] = Some(ReportAck {
                    task_id: r.task_id,
                    status: ReportStatus::Duplicate,
                    error: None,
                    micro_credits: 0,
                    upload: Vec::new(),
                });
                continue;
            }
            let signed = SignedReport {
                runner: runner.id.clone(),
                report: serde_json::to_string(report).expect("a report serializes"),
                signature: r.signature.clone(),
                at: now,
                wall_ms: report.wall_ms.min(i64::MAX as u64) as i64,
            };
            p.save(r.task_id, after.clone(), Some(signed));
            let applied = self
                .apply(tx, p, &info, &after, &effect, Some(report), now)
                .await?;
            let status = match &effect {
                Effect::Accepted { agreeing, .. } if agreeing.contains(&runner.id) => {
                    ReportStatus::Accepted
                }
                Effect::Accepted { .. } | Effect::Late { agreed: false, .. } => {
                    ReportStatus::Disagreed
                }
                Effect::Late { agreed: true, .. } => ReportStatus::Accepted,
                _ => ReportStatus::Recorded,
            };
            // The blobs to upload if the store lacks them (the caller checks which it holds).
            let upload = if status == ReportStatus::Accepted {
                result_blobs(report)
            } else {
                Vec::new()
            };
            acks[i] = Some(ReportAck {
                task_id: r.task_id,
                status,
                error: None,
                micro_credits: applied.get(&runner.id).copied().unwrap_or(0),
                upload,
            });
        }
        Ok(acks
            .into_iter()
            .map(|a| a.expect("every result answered"))
            .collect())
    }

    /// Applies an effect's consequences: acceptance, credits, flags, reputation. Returns the
    /// micro-credits granted per runner.
    #[allow(clippy::too_many_arguments)]
    async fn apply(
        &self,
        tx: &mut Transaction<'static, Any>,
        p: &mut Pending,
        info: &TaskInfo,
        state: &TaskState,
        effect: &Effect,
        report: Option<&RunReport>,
        now: i64,
    ) -> Result<BTreeMap<String, u64>> {
        let task_id = info.id;
        let mut granted = BTreeMap::new();
        match effect {
            Effect::Accepted {
                digest,
                agreeing,
                disagreeing,
            } => {
                // The accepted result: this report if it agrees, else an agreeing one's.
                let result = match report.filter(|r| r.digest == *digest) {
                    Some(r) => r.clone(),
                    None => self.agreeing_report(tx, p, task_id, digest).await?,
                };
                // Every blob the result names is wanted until `blob_stored` says the store
                // holds it; a result that names none has all its outputs stored.
                let wanted = result_blobs(&result);
                p.tasks
                    .get_mut(&task_id)
                    .ok_or_else(|| StoreError::Corrupt(format!("task {task_id} not read")))?
                    .accepted = Some(Accepted {
                    result: serde_json::to_string(&result).expect("a report serializes"),
                    succeeded: result.outcome.is_success(),
                    at: now,
                    outputs_stored: wanted.is_empty(),
                });
                for blob in wanted {
                    sqlx::query(
                        "INSERT INTO wanted_blobs (blake3, task_id) VALUES ($1, $2) \
                         ON CONFLICT DO NOTHING",
                    )
                    .bind(blob.to_string())
                    .bind(task_id)
                    .execute(&mut **tx)
                    .await?;
                }
                for runner in agreeing {
                    let credit = self
                        .credit(tx, p, info, state, runner, &result, now)
                        .await?;
                    granted.insert(runner.clone(), credit);
                }
                for runner in disagreeing {
                    self.flag(tx, p, runner, info, now).await?;
                }
            }
            Effect::Late { runner, agreed } => {
                if *agreed && let Some(result) = report {
                    let credit = self.credit(tx, p, info, state, runner, result, now).await?;
                    granted.insert(runner.clone(), credit);
                } else {
                    self.flag(tx, p, runner, info, now).await?;
                }
            }
            Effect::RunAuthority => {
                tracing::info!(
                    task = task_id,
                    "no quorum within max_replicas; the scheduler will run the task itself"
                );
            }
            Effect::Nothing | Effect::Duplicate | Effect::Issue(_) => {}
        }
        Ok(granted)
    }

    /// The earliest report of `task_id` with `digest`: those committed come first, then
    /// those this transaction holds, then the task's stored result.
    async fn agreeing_report(
        &self,
        tx: &mut Transaction<'static, Any>,
        p: &Pending,
        task_id: i64,
        digest: &Blake3Hash,
    ) -> Result<RunReport> {
        let row = sqlx::query(
            "SELECT report FROM replicas WHERE task_id = $1 AND digest = $2 \
             AND report IS NOT NULL ORDER BY report_seq LIMIT 1",
        )
        .bind(task_id)
        .bind(digest.to_string())
        .fetch_optional(&mut **tx)
        .await?;
        let held = p.tasks.get(&task_id).and_then(|t| {
            t.reports.iter().find(|s| {
                t.state.replicas.iter().any(|r| {
                    r.runner == s.runner
                        && matches!(r.state, ReplicaState::Reported { digest: Some(d), .. } if d == *digest)
                })
            })
        });
        let text: String = match (row, held) {
            (Some(row), _) => row.try_get(0)?,
            (None, Some(signed)) => signed.report.clone(),
            (None, None) => sqlx::query("SELECT result FROM tasks WHERE id = $1")
                .bind(task_id)
                .fetch_one(&mut **tx)
                .await?
                .try_get::<Option<String>, _>(0)?
                .ok_or_else(|| {
                    StoreError::Corrupt(format!("task {task_id}: no report of its digest"))
                })?,
        };
        serde_json::from_str(&text)
            .map_err(|e| StoreError::Corrupt(format!("task {task_id}: a bad report: {e}")))
    }

    async fn flag(
        &self,
        tx: &mut Transaction<'static, Any>,
        p: &mut Pending,
        runner: &str,
        info: &TaskInfo,
        now: i64,
    ) -> Result<()> {
        tracing::warn!(
            runner,
            task = info.id,
            "runner's digest disagreed with the accepted one; flagged"
        );
        p.reputation.entry(runner.to_string()).or_default().1 += 1;
        let detail = format!(
            "its result of task {} of batch {} disagreed with the accepted one",
            info.name, info.batch_id
        );
        event_in(tx, runner, now, "flagged", &detail).await
    }

    /// Credits `runner` for an accepted task (its owner's part, and the cooperative fund's
    /// share when the policy sets one) and counts its agreement. Returns the owner's part.
    #[allow(clippy::too_many_arguments)]
    async fn credit(
        &self,
        tx: &mut Transaction<'static, Any>,
        p: &mut Pending,
        info: &TaskInfo,
        state: &TaskState,
        runner: &str,
        result: &RunReport,
        now: i64,
    ) -> Result<u64> {
        let owner = match state.replicas.iter().find(|r| r.runner == runner) {
            Some(r) => r.owner.clone(),
            None => sqlx::query("SELECT owner FROM runners WHERE id = $1")
                .bind(runner)
                .fetch_one(&mut **tx)
                .await?
                .try_get(0)?,
        };
        let total = ledger::micro_credits(result.fuel_consumed, info.credit_rate);
        let (own, fund) = ledger::split(total, self.policy.cooperative_share);
        let mut credit = Credit {
            kind: Kind::Task,
            batch: info.batch_id.clone(),
            task: info.name.clone(),
            runner: runner.into(),
            owner,
            digest: result.digest,
            fuel: result.fuel_consumed,
            micro_credits: own,
        };
        self.append(tx, p, &credit, now).await?;
        if fund > 0 {
            credit.kind = Kind::Fund;
            credit.owner = self.policy.cooperative.clone();
            credit.micro_credits = fund;
            self.append(tx, p, &credit, now).await?;
        }
        p.reputation.entry(runner.to_string()).or_default().0 += 1;
        Ok(own)
    }

    /// Appends `credit` to the ledger after the chain's end as this transaction sees it
    /// (read, and on PostgreSQL locked, at the first append); the entry is written with
    /// the transaction's other writes.
    async fn append(
        &self,
        tx: &mut Transaction<'static, Any>,
        p: &mut Pending,
        credit: &Credit,
        now: i64,
    ) -> Result<()> {
        let tail = self.tail(tx, p).await?;
        let (seq, prev) = (tail.len, tail.head);
        let entry_hash = ledger::entry_hash(&prev, seq as u64, credit);
        *tail = LedgerTail {
            len: seq + 1,
            head: entry_hash,
        };
        p.ledger.push(LedgerRow {
            seq,
            credit: credit.clone(),
            prev,
            hash: entry_hash,
            at: now,
        });
        Ok(())
    }

    /// The ledger's end as this transaction sees it, read (and on PostgreSQL locked) once.
    async fn tail<'p>(
        &self,
        tx: &mut Transaction<'static, Any>,
        p: &'p mut Pending,
    ) -> Result<&'p mut LedgerTail> {
        if p.tail.is_none() {
            let row = sqlx::query(&format!(
                "SELECT len, head FROM ledger_head WHERE id = 1{}",
                self.for_update()
            ))
            .fetch_one(&mut **tx)
            .await?;
            p.tail = Some(LedgerTail {
                len: row.try_get(0)?,
                head: hash(&row.try_get::<String, _>(1)?)?,
            });
        }
        Ok(p.tail.as_mut().expect("read above"))
    }

    // ---- the scheduler's own runs ----

    /// Tasks the scheduler must run itself: those no quorum decided, and accepted ones whose
    /// outputs no runner uploaded within `upload_wait_ms`.
    pub async fn authority_jobs(&self, now: i64, upload_wait_ms: i64) -> Result<Vec<AuthorityJob>> {
        let mut jobs = Vec::new();
        for row in sqlx::query(
            "SELECT id, manifest, NULL FROM tasks WHERE phase = 'deciding' ORDER BY id LIMIT 16",
        )
        .fetch_all(&self.pool)
        .await?
        .into_iter()
        .chain(
            sqlx::query(
                "SELECT id, manifest, digest FROM tasks WHERE phase = 'accepted' \
                 AND outputs_stored = 0 AND accepted_ms < $1 ORDER BY accepted_ms LIMIT 16",
            )
            .bind(now - upload_wait_ms)
            .fetch_all(&self.pool)
            .await?,
        ) {
            let task_id: i64 = row.try_get(0)?;
            let manifest: String = row.try_get(1)?;
            let expect: Option<String> = row.try_get(2)?;
            jobs.push(AuthorityJob {
                task_id,
                manifest: parse_manifest(task_id, &manifest)?,
                expect: expect.as_deref().map(hash).transpose()?,
            });
        }
        Ok(jobs)
    }

    /// The scheduler's own run of a deciding task gave `report`: it decides the task.
    pub async fn authority(&self, task_id: i64, report: &RunReport, now: i64) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        let mut p = Pending::default();
        let (mut state, info) = self.load(&mut tx, &mut p, task_id).await?;
        let effect = state.authority(report.digest);
        p.save(task_id, state.clone(), None);
        self.apply(&mut tx, &mut p, &info, &state, &effect, Some(report), now)
            .await?;
        let work = self.flush(&mut tx, p).await?;
        sqlx::query("UPDATE tasks SET by_scheduler = 1 WHERE id = $1")
            .bind(task_id)
            .execute(&mut *tx)
            .await?;
        self.commit(tx, work).await?;
        Ok(())
    }

    // ---- blobs ----

    /// Whether some accepted result names `blob` and the blob store lacks it: a runner may
    /// upload it.
    pub async fn blob_wanted(&self, blob: &Blake3Hash) -> Result<bool> {
        Ok(
            sqlx::query("SELECT 1 FROM wanted_blobs WHERE blake3 = $1 LIMIT 1")
                .bind(blob.to_string())
                .fetch_optional(&self.pool)
                .await?
                .is_some(),
        )
    }

    /// Records that the blob store now holds `blob`; marks the tasks whose outputs are now
    /// all stored.
    pub async fn blob_stored(&self, blob: &Blake3Hash) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        let tasks: Vec<i64> =
            sqlx::query("DELETE FROM wanted_blobs WHERE blake3 = $1 RETURNING task_id")
                .bind(blob.to_string())
                .fetch_all(&mut *tx)
                .await?
                .iter()
                .map(|r| r.try_get(0))
                .collect::<Result<_, _>>()?;
        for id in tasks {
            sqlx::query(
                "UPDATE tasks SET outputs_stored = 1 WHERE id = $1 AND NOT EXISTS \
                 (SELECT 1 FROM wanted_blobs w WHERE w.task_id = $1)",
            )
            .bind(id)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    // ---- credits and the ledger ----

    /// Credits summed per `owner`, `runner` or `batch`, highest first. An owner's row
    /// counts everything it earned (tasks, the fund's shares, uptime) and what it was paid;
    /// a runner's its task and uptime credits; a batch's what its tasks earned in all.
    pub async fn credits(&self, by: &str) -> Result<Vec<CreditRow>> {
        let (column, kinds) = match by {
            "owner" => ("owner", "'task', 'fund', 'uptime', 'payout'"),
            "runner" => ("runner_id", "'task', 'uptime'"),
            "batch" => ("batch_id", "'task', 'fund'"),
            other => {
                return Err(StoreError::Conflict(format!(
                    "credits by {other:?}: choose owner, runner or batch"
                )));
            }
        };
        let sum = |what: &str| format!("CAST(COALESCE(SUM({what}), 0) AS BIGINT)");
        sqlx::query(&format!(
            "SELECT {column}, {}, {}, {}, {} FROM ledger WHERE kind IN ({kinds}) \
             GROUP BY {column} ORDER BY 4 DESC, 1",
            sum("CASE WHEN kind IN ('task', 'fund') THEN 1 ELSE 0 END"),
            sum("CASE WHEN kind = 'task' THEN fuel ELSE 0 END"),
            sum("CASE WHEN kind <> 'payout' THEN micro_credits ELSE 0 END"),
            sum("CASE WHEN kind = 'payout' THEN micro_credits ELSE 0 END"),
        ))
        .fetch_all(&self.reads)
        .await?
        .iter()
        .map(|r| {
            Ok(CreditRow {
                key: r.try_get(0)?,
                tasks: r.try_get::<i64, _>(1)? as u64,
                fuel: r.try_get::<i64, _>(2)? as u64,
                micro_credits: r.try_get::<i64, _>(3)? as u64,
                paid: r.try_get::<i64, _>(4)? as u64,
            })
        })
        .collect()
    }

    /// Credits every runner that is not flagged for its time online not yet credited, when
    /// it is at least the policy's minimum. Returns how many runners were credited.
    pub async fn credit_uptime(&self, now: i64) -> Result<u32> {
        let per_hour = self.policy.uptime_micro_per_hour;
        if per_hour == 0 {
            return Ok(0);
        }
        let mut tx = self.pool.begin().await?;
        let mut p = Pending::default();
        // Lock the ledger first: two rounds at once credit one after the other.
        self.tail(&mut tx, &mut p).await?;
        let rows = sqlx::query(
            "SELECT id, owner, uptime_credited_ms, uptime_ms FROM runners \
             WHERE uptime_ms - uptime_credited_ms >= $1 AND disagreements = 0 ORDER BY id",
        )
        .bind(self.policy.uptime_min_ms)
        .fetch_all(&mut *tx)
        .await?;
        let mut credited = 0;
        for row in rows {
            let runner: String = row.try_get(0)?;
            let (from, to): (i64, i64) = (row.try_get(2)?, row.try_get(3)?);
            let ms = (to - from) as u64;
            let micro_credits = (u128::from(ms) * u128::from(per_hour) / 3_600_000) as u64;
            let credit = Credit {
                kind: Kind::Uptime,
                batch: String::new(),
                task: format!("uptime {from}..{to} ms"),
                runner: runner.clone(),
                owner: row.try_get(1)?,
                digest: Blake3Hash::ZERO,
                fuel: ms,
                micro_credits,
            };
            self.append(&mut tx, &mut p, &credit, now).await?;
            sqlx::query("UPDATE runners SET uptime_credited_ms = $2 WHERE id = $1")
                .bind(&runner)
                .bind(to)
                .execute(&mut *tx)
                .await?;
            let detail = format!(
                "{} s online credited: {} micro-credits",
                ms / 1000,
                micro_credits
            );
            event_in(&mut tx, &runner, now, "uptime credit", &detail).await?;
            credited += 1;
        }
        let work = self.flush(&mut tx, p).await?;
        self.commit(tx, work).await?;
        Ok(credited)
    }

    /// Pays every owner whose balance (earned, less paid) is at least `threshold`
    /// micro-credits its whole balance: one payout entry each, in one transaction.
    pub async fn pay_out(&self, threshold: u64, now: i64) -> Result<Vec<Payout>> {
        let mut tx = self.pool.begin().await?;
        let mut p = Pending::default();
        // Lock the ledger before reading balances, so that two rounds never pay one balance
        // twice: the second waits, then sees the first's payouts.
        self.tail(&mut tx, &mut p).await?;
        let rows = sqlx::query(
            "SELECT owner, CAST(SUM(CASE WHEN kind = 'payout' THEN -micro_credits \
             ELSE micro_credits END) AS BIGINT) FROM ledger GROUP BY owner ORDER BY owner",
        )
        .fetch_all(&mut *tx)
        .await?;
        let mut payouts = Vec::new();
        for row in rows {
            let owner: String = row.try_get(0)?;
            let balance: i64 = row.try_get(1)?;
            if balance <= 0 || (balance as u64) < threshold.max(1) {
                continue;
            }
            let seq = self.tail(&mut tx, &mut p).await?.len as u64;
            let credit = Credit {
                kind: Kind::Payout,
                batch: String::new(),
                task: format!("payout {seq}"),
                runner: String::new(),
                owner: owner.clone(),
                digest: Blake3Hash::ZERO,
                fuel: 0,
                micro_credits: balance as u64,
            };
            self.append(&mut tx, &mut p, &credit, now).await?;
            payouts.push(Payout {
                seq,
                owner,
                micro_credits: balance as u64,
                at_ms: now,
            });
        }
        let work = self.flush(&mut tx, p).await?;
        self.commit(tx, work).await?;
        Ok(payouts)
    }

    /// Every payout so far, oldest first.
    pub async fn payouts(&self) -> Result<Vec<Payout>> {
        sqlx::query(
            "SELECT seq, owner, micro_credits, created_ms FROM ledger WHERE kind = 'payout' \
             ORDER BY seq",
        )
        .fetch_all(&self.reads)
        .await?
        .iter()
        .map(|r| {
            Ok(Payout {
                seq: r.try_get::<i64, _>(0)? as u64,
                owner: r.try_get(1)?,
                micro_credits: r.try_get::<i64, _>(2)? as u64,
                at_ms: r.try_get(3)?,
            })
        })
        .collect()
    }

    /// The whole ledger in order, and its anchor (length and head hash), both as of one
    /// moment while the grid may be appending: read in one transaction that sees one
    /// snapshot (on PostgreSQL `REPEATABLE READ`; read apart, a commit between the two reads
    /// made a sound ledger fail `verify`).
    pub async fn ledger(&self) -> Result<(Vec<Entry>, u64, Blake3Hash)> {
        let mut tx = self.reads.begin().await?;
        if self.postgres {
            sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                .execute(&mut *tx)
                .await?;
        }
        let head = sqlx::query("SELECT len, head FROM ledger_head WHERE id = 1")
            .fetch_one(&mut *tx)
            .await?;
        let entries = sqlx::query(
            "SELECT seq, batch_id, task, runner_id, owner, digest, fuel, micro_credits, prev, \
             hash, kind FROM ledger ORDER BY seq",
        )
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(|r| {
            let kind: String = r.try_get(10)?;
            Ok(Entry {
                seq: r.try_get::<i64, _>(0)? as u64,
                credit: Credit {
                    kind: Kind::parse(&kind).ok_or_else(|| {
                        StoreError::Corrupt(format!("a ledger entry of kind {kind:?}"))
                    })?,
                    batch: r.try_get(1)?,
                    task: r.try_get(2)?,
                    runner: r.try_get(3)?,
                    owner: r.try_get(4)?,
                    digest: hash(&r.try_get::<String, _>(5)?)?,
                    fuel: r.try_get::<i64, _>(6)? as u64,
                    micro_credits: r.try_get::<i64, _>(7)? as u64,
                },
                prev: hash(&r.try_get::<String, _>(8)?)?,
                hash: hash(&r.try_get::<String, _>(9)?)?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
        tx.commit().await?;
        Ok((
            entries,
            head.try_get::<i64, _>(0)? as u64,
            hash(&head.try_get::<String, _>(1)?)?,
        ))
    }

    /// Tasks credited to `runner` and the micro-credits it earned (tasks and time online).
    pub async fn runner_totals(&self, runner: &str) -> Result<(u64, u64)> {
        let row = sqlx::query(
            "SELECT CAST(COALESCE(SUM(CASE WHEN kind = 'task' THEN 1 ELSE 0 END), 0) AS BIGINT), \
             CAST(COALESCE(SUM(micro_credits), 0) AS BIGINT) FROM ledger \
             WHERE runner_id = $1 AND kind IN ('task', 'uptime')",
        )
        .bind(runner)
        .fetch_one(&self.reads)
        .await?;
        Ok((
            row.try_get::<i64, _>(0)? as u64,
            row.try_get::<i64, _>(1)? as u64,
        ))
    }

    /// Whether the database answers (for `/health`).
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").fetch_one(&self.pool).await?;
        Ok(())
    }

    /// PostgreSQL only: brings the planner's statistics up to date for each table that grows
    /// with the grid's work and has changed by more than [`statistics_stale`] allows since it
    /// was last analyzed; returns the tables analyzed. Without statistics (a fresh database,
    /// before autovacuum's first visit, or a server with autovacuum off) PostgreSQL planned
    /// the group read's join of tasks with their replicas as a sequential scan of every
    /// replica, 28 ms a group at 100,000 tasks instead of 0.1 ms.
    pub async fn keep_statistics(&self) -> Result<Vec<String>> {
        if !self.postgres {
            return Ok(Vec::new());
        }
        let rows = sqlx::query(
            "SELECT CAST(relname AS TEXT), n_live_tup, n_mod_since_analyze \
             FROM pg_stat_user_tables \
             WHERE schemaname = current_schema() AND relname IN \
               ('tasks', 'replicas', 'ledger', 'health_checks', 'wanted_blobs') \
             ORDER BY relname",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut analyzed = Vec::new();
        for row in rows {
            let (table, live, changed): (String, i64, i64) =
                (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?);
            if statistics_stale(live, changed) {
                // SKIP_LOCKED: a table autovacuum is working on now is left to it.
                sqlx::query(&format!("ANALYZE (SKIP_LOCKED) {table}"))
                    .execute(&self.pool)
                    .await?;
                analyzed.push(table);
            }
        }
        Ok(analyzed)
    }

    /// Closes the database's connections, waiting for those in use.
    pub async fn close(&self) {
        self.reads.close().await;
        self.pool.close().await;
    }

    /// Tasks across the grid by where they stand, for the dashboard.
    pub async fn task_counts(&self) -> Result<TaskCounts> {
        let mut counts = TaskCounts::default();
        for row in
            sqlx::query("SELECT phase, succeeded, disputed, COUNT(*) FROM tasks GROUP BY 1, 2, 3")
                .fetch_all(&self.reads)
                .await?
        {
            let phase: String = row.try_get(0)?;
            let ok: i64 = row.try_get(1)?;
            let n = row.try_get::<i64, _>(3)? as u64;
            match (phase.as_str(), ok) {
                ("open", _) => counts.open += n,
                ("deciding", _) => counts.deciding += n,
                ("accepted", 1) => counts.succeeded += n,
                _ => counts.failed += n,
            }
            if row.try_get::<i64, _>(2)? == 1 {
                counts.disputed += n;
            }
        }
        let row = sqlx::query(
            "SELECT COUNT(*), COUNT(DISTINCT task_id) FROM replicas WHERE state = 'leased'",
        )
        .fetch_one(&self.reads)
        .await?;
        counts.leases = row.try_get::<i64, _>(0)? as u64;
        counts.running = row.try_get::<i64, _>(1)? as u64;
        Ok(counts)
    }

    /// The `limit` most recently submitted batches, newest first: id, submitter, when.
    pub async fn recent_batches(&self, limit: u32) -> Result<Vec<(String, String, i64)>> {
        sqlx::query(
            "SELECT id, submitted_by, created_ms FROM batches \
             ORDER BY created_ms DESC, id LIMIT $1",
        )
        .bind(i64::from(limit))
        .fetch_all(&self.reads)
        .await?
        .iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)))
        .collect()
    }

    /// What volunteers gave: wall time of reported runs, and fuel and micro-credits of
    /// accepted work (the ledger's task entries).
    pub async fn impact(&self) -> Result<Impact> {
        let compute_ms = sqlx::query(
            "SELECT CAST(COALESCE(SUM(wall_ms), 0) AS BIGINT), COUNT(*) FROM replicas \
             WHERE state = 'reported'",
        )
        .fetch_one(&self.reads)
        .await?;
        let ledger = sqlx::query(
            "SELECT CAST(COALESCE(SUM(fuel), 0) AS BIGINT), \
             CAST(COALESCE(SUM(micro_credits), 0) AS BIGINT) FROM ledger WHERE kind = 'task'",
        )
        .fetch_one(&self.reads)
        .await?;
        Ok(Impact {
            compute_ms: compute_ms.try_get::<i64, _>(0)? as u64,
            results: compute_ms.try_get::<i64, _>(1)? as u64,
            fuel: ledger.try_get::<i64, _>(0)? as u64,
            micro_credits: ledger.try_get::<i64, _>(1)? as u64,
        })
    }

    // ---- reading and writing tasks ----

    /// Reads those of `ids` this transaction has not read yet into `p`, in one query (on
    /// PostgreSQL after locking them, in id order, with a statement of their own: the read
    /// then sees what any transaction it waited for wrote). Unknown ids are passed over.
    async fn fetch(
        &self,
        tx: &mut Transaction<'static, Any>,
        p: &mut Pending,
        ids: &[i64],
    ) -> Result<()> {
        let mut ids: Vec<i64> = ids
            .iter()
            .copied()
            .filter(|id| !p.tasks.contains_key(id))
            .collect();
        ids.sort_unstable();
        ids.dedup();
        for chunk in ids.chunks(ROWS_PER_STATEMENT) {
            let list = params(self.postgres, 1, chunk.len());
            if self.postgres {
                let sql =
                    format!("SELECT id FROM tasks WHERE id IN ({list}) ORDER BY id FOR UPDATE");
                let mut lock = sqlx::query(&sql);
                for id in chunk {
                    lock = lock.bind(id);
                }
                lock.fetch_all(&mut **tx).await?;
            }
            // Each task, its batch's settings and its replicas: one row per replica, or one
            // row with NULL replica columns for a task with none.
            let sql = format!(
                "SELECT t.id, t.phase, t.wanted, t.digest, t.by_scheduler, t.batch_id, t.name, \
                 t.manifest, t.wall_seconds, b.replicas, b.quorum, b.max_replicas, \
                 b.credit_rate, r.runner_id, r.owner, r.state, r.deadline_ms, r.digest, \
                 r.report_seq, t.tier \
                 FROM tasks t JOIN batches b ON b.id = t.batch_id \
                 LEFT JOIN replicas r ON r.task_id = t.id \
                 WHERE t.id IN ({list}) ORDER BY t.id, r.lease_seq"
            );
            let mut read = sqlx::query(&sql);
            for id in chunk {
                read = read.bind(id);
            }
            let rows = read.fetch_all(&mut **tx).await?;
            for rows in
                rows.chunk_by(|a, b| a.try_get::<i64, _>(0).ok() == b.try_get::<i64, _>(0).ok())
            {
                let (state, info) = task_from_rows(rows)?;
                p.tasks.insert(
                    info.id,
                    Touched {
                        read: state.clone(),
                        state,
                        info: std::sync::Arc::new(info),
                        reports: Vec::new(),
                        accepted: None,
                    },
                );
            }
        }
        Ok(())
    }

    /// Task `id` as this transaction sees it.
    async fn load(
        &self,
        tx: &mut Transaction<'static, Any>,
        p: &mut Pending,
        id: i64,
    ) -> Result<(TaskState, std::sync::Arc<TaskInfo>)> {
        if !p.tasks.contains_key(&id) {
            self.fetch(tx, p, &[id]).await?;
        }
        let t = p
            .tasks
            .get(&id)
            .ok_or_else(|| StoreError::NotFound(format!("task {id}")))?;
        Ok((t.state.clone(), t.info.clone()))
    }

    /// Writes what the transaction changed: each task's row and replicas as they now are,
    /// the ledger's new entries and end, and the runners' agreement counts, a few
    /// multi-row statements in all. Returns whether work appeared (a task wants more
    /// replicas than before), for [`Store::commit`] to ring the bell; on PostgreSQL it then
    /// also notifies the other schedulers, when the transaction commits.
    async fn flush(&self, tx: &mut Transaction<'static, Any>, p: Pending) -> Result<bool> {
        let work = p.tasks.values().any(|t| t.state.wanted > t.read.wanted);
        if work {
            self.notify_work(tx).await?;
        }
        let mut tasks = Vec::new();
        let mut replicas = Vec::new();
        {
            // Accepted tasks' names are not needed before their results (a late report is
            // checked in its transaction); should this transaction roll back, the same.
            let mut held = self.group.names.lock().expect("not poisoned");
            for (id, t) in &p.tasks {
                if t.accepted.is_some() {
                    held.remove(id);
                }
            }
        }
        for (id, t) in &p.tasks {
            let disputed = t.state.disputed() && !t.read.disputed();
            if t.state.phase != t.read.phase
                || t.state.wanted != t.read.wanted
                || disputed
                || t.accepted.is_some()
            {
                tasks.push((*id, &t.state, disputed, t.accepted.as_ref()));
            }
            for (seq, replica) in t.state.replicas.iter().enumerate() {
                let signed = t.reports.iter().rev().find(|s| s.runner == replica.runner);
                if t.read.replicas.get(seq) == Some(replica) && signed.is_none() {
                    continue;
                }
                replicas.push((*id, seq, replica, signed));
            }
        }
        for chunk in tasks.chunks(ROWS_PER_STATEMENT) {
            let sql = format!(
                "UPDATE tasks SET phase = v.column2, wanted = v.column3, digest = v.column4, \
                 by_scheduler = v.column5, \
                 disputed = CASE WHEN v.column6 = 1 THEN 1 ELSE tasks.disputed END, \
                 result = COALESCE(v.column7, tasks.result), \
                 succeeded = COALESCE(v.column8, tasks.succeeded), \
                 accepted_ms = COALESCE(v.column9, tasks.accepted_ms), \
                 outputs_stored = CASE WHEN v.column10 = 1 THEN 1 ELSE tasks.outputs_stored END \
                 FROM (VALUES {}) AS v WHERE tasks.id = v.column1",
                placeholders(self.postgres, chunk.len(), 10)
            );
            let mut q = sqlx::query(&sql);
            for (id, state, disputed, accepted) in chunk {
                let (digest, by_scheduler) = match state.phase {
                    Phase::Accepted {
                        digest,
                        by_scheduler,
                    } => (Some(digest.to_string()), i64::from(by_scheduler)),
                    _ => (None, 0),
                };
                q = q
                    .bind(*id)
                    .bind(phase_name(state.phase))
                    .bind(i64::from(state.wanted))
                    .bind(digest)
                    .bind(by_scheduler)
                    .bind(i64::from(*disputed))
                    .bind(accepted.map(|a| a.result.clone()))
                    .bind(accepted.map(|a| i64::from(a.succeeded)))
                    .bind(accepted.map(|a| a.at))
                    .bind(i64::from(accepted.is_some_and(|a| a.outputs_stored)));
            }
            q.execute(&mut **tx).await?;
        }
        for chunk in replicas.chunks(ROWS_PER_STATEMENT) {
            let sql = format!(
                "INSERT INTO replicas (task_id, runner_id, owner, lease_seq, state, deadline_ms, \
                 digest, report_seq, report, signature, reported_ms, wall_ms) VALUES {} \
                 ON CONFLICT (task_id, runner_id) DO UPDATE SET state = excluded.state, \
                 digest = excluded.digest, report_seq = excluded.report_seq, \
                 report = COALESCE(excluded.report, replicas.report), \
                 signature = COALESCE(excluded.signature, replicas.signature), \
                 reported_ms = COALESCE(excluded.reported_ms, replicas.reported_ms), \
                 wall_ms = COALESCE(excluded.wall_ms, replicas.wall_ms)",
                placeholders(self.postgres, chunk.len(), 12)
            );
            let mut q = sqlx::query(&sql);
            for (id, seq, replica, signed) in chunk {
                let (state, deadline, digest, report_seq) = match replica.state {
                    ReplicaState::Leased { deadline_ms } => ("leased", deadline_ms, None, None),
                    ReplicaState::Reported { digest, seq } => (
                        "reported",
                        0,
                        digest.map(|d| d.to_string()),
                        Some(i64::from(seq)),
                    ),
                    ReplicaState::Expired => ("expired", 0, None, None),
                    ReplicaState::Returned => ("returned", 0, None, None),
                };
                q = q
                    .bind(*id)
                    .bind(replica.runner.as_str())
                    .bind(replica.owner.as_str())
                    .bind(*seq as i64)
                    .bind(state)
                    .bind(deadline)
                    .bind(digest)
                    .bind(report_seq)
                    .bind(signed.map(|s| s.report.clone()))
                    .bind(signed.map(|s| s.signature.clone()))
                    .bind(signed.map(|s| s.at))
                    .bind(signed.map(|s| s.wall_ms));
            }
            q.execute(&mut **tx).await?;
        }
        for chunk in p.ledger.chunks(ROWS_PER_STATEMENT) {
            let sql = format!(
                "INSERT INTO ledger (seq, kind, batch_id, task, runner_id, owner, digest, fuel, \
                 micro_credits, prev, hash, created_ms) VALUES {}",
                placeholders(self.postgres, chunk.len(), 12)
            );
            let mut q = sqlx::query(&sql);
            for e in chunk {
                q = q
                    .bind(e.seq)
                    .bind(e.credit.kind.as_str())
                    .bind(e.credit.batch.as_str())
                    .bind(e.credit.task.as_str())
                    .bind(e.credit.runner.as_str())
                    .bind(e.credit.owner.as_str())
                    .bind(e.credit.digest.to_string())
                    .bind(e.credit.fuel as i64)
                    .bind(e.credit.micro_credits as i64)
                    .bind(e.prev.to_string())
                    .bind(e.hash.to_string())
                    .bind(e.at);
            }
            q.execute(&mut **tx).await?;
        }
        if let (Some(tail), false) = (&p.tail, p.ledger.is_empty()) {
            sqlx::query("UPDATE ledger_head SET len = $1, head = $2 WHERE id = 1")
                .bind(tail.len)
                .bind(tail.head.to_string())
                .execute(&mut **tx)
                .await?;
        }
        // Each batch's newly accepted tasks and credits, and its tasks that began or stopped
        // running or deciding (see `batch_status`).
        let mut batches: BTreeMap<&str, BatchDelta> = BTreeMap::new();
        for t in p.tasks.values() {
            let delta = batches.entry(t.info.batch_id.as_str()).or_default();
            if let (Some(a), false) = (&t.accepted, matches!(t.read.phase, Phase::Accepted { .. }))
            {
                if a.succeeded {
                    delta.ok += 1;
                } else {
                    delta.failed += 1;
                }
            }
            let (before, after) = (t.read.progress(), t.state.progress());
            if before != after {
                delta.moved(before, -1);
                delta.moved(after, 1);
            }
        }
        for e in &p.ledger {
            batches
                .entry(e.credit.batch.as_str())
                .or_default()
                .micro_credits += e.credit.micro_credits as i64;
        }
        let rows: Vec<_> = batches
            .into_iter()
            .filter(|(_, d)| *d != BatchDelta::default())
            .collect();
        for chunk in rows.chunks(ROWS_PER_STATEMENT) {
            let sql = format!(
                "UPDATE batches SET accepted_ok = batches.accepted_ok + v.column2, \
                 accepted_failed = batches.accepted_failed + v.column3, \
                 micro_credits = batches.micro_credits + v.column4, \
                 running = batches.running + v.column5, \
                 deciding = batches.deciding + v.column6 \
                 FROM (VALUES {}) AS v WHERE batches.id = v.column1",
                placeholders(self.postgres, chunk.len(), 6)
            );
            let mut q = sqlx::query(&sql);
            for (batch, d) in chunk {
                q = q
                    .bind(*batch)
                    .bind(d.ok)
                    .bind(d.failed)
                    .bind(d.micro_credits)
                    .bind(d.running)
                    .bind(d.deciding);
            }
            q.execute(&mut **tx).await?;
        }
        let counts: Vec<_> = p.reputation.iter().collect();
        for chunk in counts.chunks(ROWS_PER_STATEMENT) {
            let sql = format!(
                "UPDATE runners SET agreements = runners.agreements + v.column2, \
                 disagreements = runners.disagreements + v.column3 \
                 FROM (VALUES {}) AS v WHERE runners.id = v.column1",
                placeholders(self.postgres, chunk.len(), 3)
            );
            let mut q = sqlx::query(&sql);
            for (runner, (agreed, disagreed)) in chunk {
                q = q.bind(runner.as_str()).bind(*agreed).bind(*disagreed);
            }
            q.execute(&mut **tx).await?;
        }
        Ok(work)
    }

    /// On PostgreSQL, tells the schedulers listening (see [`Store::listen_for_work`]) that
    /// work appears when `tx` commits; the notification names this store, which ignores its
    /// own (it rings its bell itself, in [`Store::commit`]).
    async fn notify_work(&self, tx: &mut Transaction<'static, Any>) -> Result<()> {
        if self.postgres {
            sqlx::query("SELECT pg_notify($1, $2)")
                .bind(bell::CHANNEL)
                .bind(self.bell.id())
                .execute(&mut **tx)
                .await?;
        }
        Ok(())
    }

    /// Commits `tx`; if `work` appeared in it (see [`Store::flush`]), then rings the bell.
    async fn commit(&self, tx: Transaction<'static, Any>, work: bool) -> Result<()> {
        tx.commit().await?;
        if work {
            self.bell.ring();
        }
        Ok(())
    }

    /// Whether `runner`, whose lease request just found nothing, may have missed work
    /// another transaction held: on PostgreSQL a lease passes over tasks locked by a
    /// concurrent one (`SKIP LOCKED`), which may commit with some of them still wanted and
    /// ring no bell, so the request must not wait for one. Reads without locks, outside any
    /// transaction. On SQLite (one writer) a lease that found nothing missed nothing.
    pub async fn passed_over_work(&self, runner: &RunnerRecord) -> Result<bool> {
        if !self.postgres {
            return Ok(false);
        }
        let found = sqlx::query(&format!("SELECT 1 {TAKEABLE} LIMIT 1"))
            .bind(tier_rank(runner.tier))
            .bind(i64::from(runner.reputation.trusted()))
            .bind(&runner.owner)
            .fetch_optional(&self.reads)
            .await?;
        Ok(found.is_some())
    }

    /// The bell lease requests wait on for work (see [`crate::bell`]).
    pub fn bell(&self) -> &Bell {
        &self.bell
    }

    /// Rings this store's bell whenever another scheduler sharing the PostgreSQL database
    /// commits work; runs until aborted, trying again every few seconds while it cannot
    /// listen (meanwhile runners waiting here wake at the end of their wait). On SQLite (one
    /// scheduler per database) it returns at once.
    pub async fn listen_for_work(&self, url: &str) {
        if !self.postgres {
            return;
        }
        let retry = std::time::Duration::from_secs(5);
        let mut listener = loop {
            let listening = async {
                let mut listener = sqlx::postgres::PgListener::connect(url).await?;
                listener.listen(bell::CHANNEL).await?;
                Ok::<_, sqlx::Error>(listener)
            };
            match listening.await {
                Ok(listener) => break listener,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot hear other schedulers' work; trying again");
                    tokio::time::sleep(retry).await;
                }
            }
        };
        loop {
            match listener.try_recv().await {
                Ok(Some(n)) if n.payload() == self.bell.id() => {}
                Ok(Some(_)) => self.bell.ring(),
                // The connection was lost and is made again at the next call: whatever was
                // sent in between is lost, so ring in case some of it was work.
                Ok(None) => self.bell.ring(),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot hear other schedulers' work; trying again");
                    tokio::time::sleep(retry).await;
                }
            }
        }
    }
}

/// The tasks a runner may take a replica of: wanted, of its tier (`$1`, a rank) or below,
/// of a quorum above one unless it is trusted (`$2`, 1 or 0), and holding no replica of
/// its owner's (`$3`).
const TAKEABLE: &str = "FROM tasks t WHERE t.wanted > 0 AND t.tier <= $1 \
     AND (t.quorum > 1 OR $2 = 1) \
     AND NOT EXISTS (SELECT 1 FROM replicas r WHERE r.task_id = t.id AND r.owner = $3)";

/// Rows per multi-row statement: far below SQLite's and PostgreSQL's limits on parameters.
const ROWS_PER_STATEMENT: usize = 100;

/// SQLite connections for reads outside transactions ([`Store::reads`]).
const READ_CONNECTIONS: u32 = 2;

/// Tasks a group's pool reads beyond what its runners may lease, for the requests whose
/// runners some of them do not fit.
const POOL_SPARE: i64 = 16;

/// `$1, $2, ..., $n` on PostgreSQL; `?, ?, ...` on SQLite, where numbered parameters cost
/// time quadratic in their number to bind (sqlx looks each one's name up, and SQLite finds
/// a name by walking the list of them).
fn params(postgres: bool, from: usize, n: usize) -> String {
    let marks: Vec<String> = if postgres {
        (from..from + n).map(|i| format!("${i}")).collect()
    } else {
        vec!["?".to_string(); n]
    };
    marks.join(", ")
}

/// `(p, ..., p), (p, ...), ...`: `rows` rows of `cols` parameters each (see [`params`]).
fn placeholders(postgres: bool, rows: usize, cols: usize) -> String {
    (0..rows)
        .map(|r| format!("({})", params(postgres, r * cols + 1, cols)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A task read from its rows (one per replica, ordered by lease).
fn task_from_rows(rows: &[AnyRow]) -> Result<(TaskState, TaskInfo)> {
    let row = &rows[0];
    let id: i64 = row.try_get(0)?;
    let phase: String = row.try_get(1)?;
    let digest: Option<String> = row.try_get(3)?;
    let phase = match (phase.as_str(), digest) {
        ("open", _) => Phase::Open,
        ("deciding", _) => Phase::Deciding,
        ("accepted", Some(d)) => Phase::Accepted {
            digest: hash(&d)?,
            by_scheduler: row.try_get::<i64, _>(4)? == 1,
        },
        (other, _) => {
            return Err(StoreError::Corrupt(format!("task {id} in phase {other:?}")));
        }
    };
    let redundancy = Redundancy {
        replicas: row.try_get::<i64, _>(9)? as u32,
        quorum: row.try_get::<i64, _>(10)? as u32,
        max_replicas: row.try_get::<i64, _>(11)? as u32,
    };
    let info = TaskInfo {
        batch_id: row.try_get(5)?,
        name: row.try_get(6)?,
        manifest: row.try_get(7)?,
        wall_seconds: row.try_get::<i64, _>(8)? as u64,
        credit_rate: row.try_get(12)?,
        tier: row.try_get(19)?,
        id,
    };
    let mut replicas = Vec::new();
    for r in rows {
        let Some(runner) = r.try_get::<Option<String>, _>(13)? else {
            continue;
        };
        let state: String = r.try_get(15)?;
        let digest: Option<String> = r.try_get(17)?;
        let state = match state.as_str() {
            "leased" => ReplicaState::Leased {
                deadline_ms: r.try_get(16)?,
            },
            "reported" => ReplicaState::Reported {
                digest: digest.as_deref().map(hash).transpose()?,
                seq: r.try_get::<Option<i64>, _>(18)?.unwrap_or(0) as u32,
            },
            "expired" => ReplicaState::Expired,
            "returned" => ReplicaState::Returned,
            other => {
                return Err(StoreError::Corrupt(format!(
                    "a replica of task {id} in state {other:?}"
                )));
            }
        };
        replicas.push(Replica {
            runner,
            owner: r.try_get(14)?,
            state,
        });
    }
    let state = TaskState {
        redundancy,
        replicas,
        wanted: row.try_get::<i64, _>(2)? as u32,
        phase,
    };
    Ok((state, info))
}

/// One transaction's tasks and the writes it holds back until just before it commits. A
/// task is read once (a group's reported tasks in one query), changed in memory by as many
/// of the group's events as touch it, and written once; ledger entries and reputation
/// counts likewise. Rolling the transaction back drops all of it.
#[derive(Default)]
struct Pending {
    tasks: BTreeMap<i64, Touched>,
    ledger: Vec<LedgerRow>,
    /// The ledger's end, once read.
    tail: Option<LedgerTail>,
    /// Agreements and disagreements to add, per runner.
    reputation: BTreeMap<String, (i64, i64)>,
    /// The runners that lease in this transaction, as read at its start.
    runners: HashMap<String, LeasingRunner>,
    /// The tasks its leases are picked from first.
    pool: Pool,
}

/// The tasks a group's lease requests are picked from first ([`Store::pool`]).
#[derive(Default)]
struct Pool {
    /// Lowest id first.
    ids: Vec<i64>,
    /// Whether it holds every task that wanted a replica when it was read (of the tiers it
    /// was read for).
    complete: bool,
}

/// What leasing reads of a runner: its reputation, the leases it holds and whether it is
/// warm, as stored (this transaction's own changes are counted in from [`Pending`]).
#[derive(Debug, Clone)]
struct LeasingRunner {
    reputation: Reputation,
    active: i64,
    warm: bool,
    check_after: i64,
}

/// Reads [`LeasingRunner`]s: the columns, then `FROM runners r WHERE ...`.
const LEASING_COLUMNS: &str = "SELECT r.id, r.agreements, r.disagreements, r.missed_deadlines, \
     (SELECT COUNT(*) FROM replicas WHERE runner_id = r.id AND state = 'leased'), r.warm, \
     r.check_after_ms FROM runners r";

/// A reputation from three columns from `first` on: agreements, disagreements, missed
/// deadlines.
fn reputation_at(row: &AnyRow, first: usize) -> Result<Reputation> {
    Ok(Reputation {
        agreements: row.try_get::<i64, _>(first)? as u64,
        disagreements: row.try_get::<i64, _>(first + 1)? as u64,
        missed_deadlines: row.try_get::<i64, _>(first + 2)? as u64,
    })
}

fn leasing_runner(row: &AnyRow) -> Result<(String, LeasingRunner)> {
    Ok((
        row.try_get(0)?,
        LeasingRunner {
            reputation: reputation_at(row, 1)?,
            active: row.try_get(4)?,
            warm: row.try_get::<i64, _>(5)? == 1,
            check_after: row.try_get(6)?,
        },
    ))
}

impl Pending {
    /// Task `id` is now `state`; `signed` is a report to store with its runner's replica.
    fn save(&mut self, id: i64, state: TaskState, signed: Option<SignedReport>) {
        let t = self
            .tasks
            .get_mut(&id)
            .expect("a task is read before it is saved");
        t.state = state;
        t.reports.extend(signed);
    }

    /// Leases `runner` gained (or, below zero, ended) in this transaction.
    fn leases_gained(&self, runner: &str) -> i64 {
        let leased = |s: &TaskState| {
            s.replicas
                .iter()
                .filter(|r| r.runner == runner && matches!(r.state, ReplicaState::Leased { .. }))
                .count() as i64
        };
        self.tasks
            .values()
            .map(|t| leased(&t.state) - leased(&t.read))
            .sum()
    }
}

/// What one transaction changes in a batch's counts (see [`Store::batch_status`]).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct BatchDelta {
    ok: i64,
    failed: i64,
    micro_credits: i64,
    running: i64,
    deciding: i64,
}

impl BatchDelta {
    /// A task entered (`by` 1) or left (`by` -1) `progress`. Pending tasks are not counted:
    /// they are what the others leave of the batch; accepted ones are counted with their
    /// outcome, which only the acceptance knows.
    fn moved(&mut self, progress: Progress, by: i64) {
        match progress {
            Progress::Running => self.running += by,
            Progress::Deciding => self.deciding += by,
            Progress::Pending | Progress::Accepted => {}
        }
    }
}

/// A task a transaction read.
struct Touched {
    /// As read.
    read: TaskState,
    /// As it now is.
    state: TaskState,
    info: std::sync::Arc<TaskInfo>,
    /// Reports received, in order.
    reports: Vec<SignedReport>,
    /// Its accepted result, when this transaction accepted it.
    accepted: Option<Accepted>,
}

/// An accepted task's result, as its row keeps it.
struct Accepted {
    result: String,
    succeeded: bool,
    at: i64,
    /// Whether the result names no blob still to be stored.
    outputs_stored: bool,
}

/// A ledger entry to write.
struct LedgerRow {
    seq: i64,
    credit: Credit,
    prev: Blake3Hash,
    hash: Blake3Hash,
    at: i64,
}

/// A result report to store with its runner's replica.
struct SignedReport {
    runner: String,
    report: String,
    signature: String,
    at: i64,
    wall_ms: i64,
}

struct LedgerTail {
    len: i64,
    head: Blake3Hash,
}

/// What the storage layer needs of a task beyond its [`TaskState`].
struct TaskInfo {
    id: i64,
    batch_id: String,
    name: String,
    manifest: String,
    wall_seconds: u64,
    credit_rate: f64,
    /// The least tier that may run it ([`tier_rank`]).
    tier: i64,
}

impl TaskInfo {
    fn manifest(&self) -> Result<helio_sdk::TaskManifest> {
        parse_manifest(self.id, &self.manifest)
    }
}

fn parse_manifest(id: i64, text: &str) -> Result<helio_sdk::TaskManifest> {
    helio_sdk::TaskManifest::from_json(text)
        .map_err(|e| StoreError::Corrupt(format!("task {id}: a bad manifest: {e}")))
}

fn runner_record(r: &AnyRow) -> Result<RunnerRecord> {
    let key: String = r.try_get(1)?;
    Ok(RunnerRecord {
        id: r.try_get(0)?,
        public_key: wire::parse_public_key(&key).map_err(StoreError::Corrupt)?,
        owner: r.try_get(2)?,
        tier: TIERS
            .get(r.try_get::<i64, _>(3)? as usize)
            .copied()
            .unwrap_or_default(),
        slots: r.try_get::<i64, _>(4)? as u32,
        reputation: reputation_at(r, 5)?,
        last_seen_ms: r.try_get(8)?,
        online: r.try_get::<i64, _>(9)? == 1,
        location: r.try_get(10)?,
        green_energy: r.try_get(11)?,
        uptime_ms: r.try_get(12)?,
        warm: r.try_get::<i64, _>(13)? == 1,
        checks_failed: r.try_get::<i64, _>(14)? as u64,
    })
}

/// Why a report's digest cannot be taken: it does not match the report's own fields (so a
/// runner cannot claim fuel, outputs or an outcome other than the ones it agreed on).
pub(crate) fn inconsistent(report: &RunReport) -> Option<String> {
    let computed = RunReport::compute_digest(
        &report.outcome,
        report.fuel_consumed,
        &report.stdout_blake3,
        &report.outputs,
    );
    (computed != report.digest).then(|| {
        format!(
            "the digest {} does not match the report's own fields (they give {computed})",
            report.digest
        )
    })
}

/// Drops `runner`'s pending health checks: it registered again or went offline (and the
/// statement that records that makes it cold).
async fn drop_checks_in(tx: &mut Transaction<'static, Any>, runner: &str, now: i64) -> Result<()> {
    sqlx::query(
        "UPDATE health_checks SET state = 'dropped', finished_ms = $2 \
         WHERE runner_id = $1 AND state = 'pending'",
    )
    .bind(runner)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Appends an entry to a runner's activity log.
async fn event_in(
    tx: &mut Transaction<'static, Any>,
    runner: &str,
    at: i64,
    event: &str,
    detail: &str,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO runner_events (runner_id, at_ms, event, detail) VALUES ($1, $2, $3, $4)",
    )
    .bind(runner)
    .bind(at)
    .bind(event)
    .bind(detail)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// The blobs an accepted result names: its outputs and, unless empty, its standard output.
pub fn result_blobs(report: &RunReport) -> Vec<Blake3Hash> {
    let mut blobs: Vec<Blake3Hash> = report.outputs.iter().map(|o| o.blake3).collect();
    if report.stdout_blake3 != Blake3Hash::of(b"") {
        blobs.push(report.stdout_blake3);
    }
    blobs.sort();
    blobs.dedup();
    blobs
}

/// A batch's id: `b-` and 16 hex digits of the BLAKE3 of everything that defines it, so that
/// the same manifest submitted twice is the same batch.
pub fn batch_id(batch: &BatchManifest) -> String {
    let mut h = blake3::Hasher::new_derive_key("helio batch id v1");
    h.update(batch.batch.as_str().as_bytes());
    h.update(&[0]);
    let red = batch.redundancy;
    for n in [red.replicas, red.quorum, red.max_replicas] {
        h.update(&n.to_le_bytes());
    }
    h.update(&batch.credit_rate.to_le_bytes());
    for task in &batch.tasks {
        h.update(
            serde_json::to_string(task)
                .expect("a manifest serializes")
                .as_bytes(),
        );
        h.update(&[0]);
    }
    format!("b-{}", &Blake3Hash::from(h.finalize()).to_string()[..16])
}

/// Whether a table of `live` rows, `changed` of them inserted, updated or deleted since it
/// was last analyzed, needs its statistics again: past a thousand changes and a tenth of
/// its rows (autovacuum's own rule is 50 and a tenth).
pub fn statistics_stale(live: i64, changed: i64) -> bool {
    changed > 1_000 + live / 10
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statistics_go_stale_past_a_thousand_changes_and_a_tenth_of_the_rows() {
        assert!(!statistics_stale(0, 1_000));
        assert!(statistics_stale(0, 1_001));
        assert!(!statistics_stale(100_000, 11_000));
        assert!(statistics_stale(100_000, 11_001));
    }

    /// A store with a batch of four tasks (replicas 2) and two runners of their own owners.
    async fn group_fixture() -> (tempfile::TempDir, Store, Vec<RunnerRecord>) {
        fixture(4, &[("alice", 2), ("bob", 2)]).await
    }

    /// A store with a batch of `tasks` tasks (replicas 2, quorum 2) and warm runners of the
    /// given owners and slots.
    async fn fixture(
        tasks: usize,
        owners: &[(&str, u32)],
    ) -> (tempfile::TempDir, Store, Vec<RunnerRecord>) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("s.db").display());
        let store = Store::open(&url).await.unwrap();
        let module = Blake3Hash::of(b"module").to_string();
        let tasks: Vec<_> = (0..tasks)
            .map(|i| serde_json::json!({ "name": format!("t{i}") }))
            .collect();
        let batch = BatchManifest::from_value(serde_json::json!({
            "schema_version": 1,
            "batch": "group",
            "defaults": {
                "module": { "uri": "m.wasm", "blake3": module },
                "limits": { "fuel": 1000 },
            },
            "redundancy": { "replicas": 2, "quorum": 2, "max_replicas": 3 },
            "tasks": tasks,
        }))
        .unwrap();
        store.submit(&batch, "test", 0).await.unwrap();
        let mut runners = Vec::new();
        for (i, (owner, slots)) in owners.iter().enumerate() {
            let key = wire::RunnerKey::from_secret([i as u8 + 1; 32]);
            let registered = store
                .register_runner(
                    &RegisterRunner {
                        public_key: key.public_hex(),
                        owner: owner.to_string(),
                        tier: Tier::Cpu,
                        slots: *slots,
                        cores: 2,
                        memory_bytes: 1 << 30,
                        fuel_per_second: 1,
                        profile: helio_sdk::DETERMINISM_PROFILE.to_string(),
                        location: None,
                        green_energy: None,
                    },
                    0,
                )
                .await
                .unwrap();
            let runner = store.runner(&registered.runner).await.unwrap().unwrap();
            // Warm: its health check passed.
            let check = store.lease(&runner, 1, 0, 0).await.unwrap();
            let digest = Blake3Hash::of(b"check");
            let id = -check[0].task_id;
            assert!(
                store
                    .finish_check(id, &runner.id, &digest, &digest, 0)
                    .await
                    .unwrap()
            );
            runners.push(runner);
        }
        (dir, store, runners)
    }

    /// However many requests wait while a group commits, one committer task waits with them
    /// (a task per request once piled up under load, and the scheduler's memory with them),
    /// and it ends once the queue is empty.
    #[tokio::test]
    async fn requests_waiting_for_a_commit_share_one_committer() {
        let (_dir, store, runners) = group_fixture().await;
        let metrics = tokio::runtime::Handle::current().metrics();
        let before = metrics.num_alive_tasks();
        const WAITING: usize = 40;
        let held = store.group.committing.lock().await;
        let requests: Vec<_> = (0..WAITING)
            .map(|i| {
                let store = store.clone();
                let runner = runners[i % 2].clone();
                tokio::spawn(async move { store.lease(&runner, 1, 1, 60_000).await })
            })
            .collect();
        while store.group.queue.lock().unwrap().len() < WAITING {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        // The requests and at most one committer (the runtime's other tasks may end meanwhile).
        let alive = metrics.num_alive_tasks().saturating_sub(before);
        assert!(
            alive <= WAITING + 1,
            "{alive} tasks for {WAITING} waiting requests"
        );
        drop(held);
        for r in requests {
            r.await.unwrap().unwrap();
        }
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while metrics.num_alive_tasks() > before {
            assert!(
                std::time::Instant::now() < deadline,
                "the committer is still running with nothing queued"
            );
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        // A request after the committer ended starts another.
        store.lease(&runners[0], 1, 2, 60_000).await.unwrap();
    }

    /// A group's lease requests pick their tasks from the lowest-id tasks that want a
    /// replica, read once for the group; a runner none of those fit (its owner holds a replica
    /// of each) still gets the next tasks that fit it, lowest id first.
    #[tokio::test]
    async fn a_lease_the_group_pool_cannot_fill_reads_its_own_tasks() {
        let spare = POOL_SPARE as usize;
        let owners = [("alice", spare as u32 + 4), ("alice", 2), ("bob", 2)];
        let (_dir, store, runners) = fixture(spare + 10, &owners).await;
        let batch = store.recent_batches(1).await.unwrap()[0].0.clone();
        let mut task = Vec::new();
        for i in 0..spare + 10 {
            task.push(store.task_id(&batch, &format!("t{i}")).await.unwrap());
        }
        let ids = |leases: Vec<Lease>| leases.iter().map(|l| l.task_id).collect::<Vec<_>>();
        // Alice's first runner takes the first spare + 4 tasks: the pool of the next group
        // (4 leases at most, and the spare) holds none that her second runner may take.
        let held = ids(store.lease(&runners[0], 100, 1, 60_000).await.unwrap());
        assert_eq!(held, task[..spare + 4]);
        // Both in one group: alice's second runner and bob's.
        let hold = store.group.committing.lock().await;
        let ask = |runner: RunnerRecord| {
            let store = store.clone();
            tokio::spawn(async move { store.lease(&runner, 2, 2, 60_000).await })
        };
        let (second, bob) = (ask(runners[1].clone()), ask(runners[2].clone()));
        while store.group.queue.lock().unwrap().len() < 2 {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        drop(hold);
        let second = ids(second.await.unwrap().unwrap());
        let bob = ids(bob.await.unwrap().unwrap());
        assert_eq!(
            second,
            task[spare + 4..spare + 6],
            "alice's second runner: the first tasks alice holds no replica of"
        );
        assert_eq!(bob, task[..2], "bob: the lowest ids, from the pool");
    }

    /// The keys of the first `n` runners [`fixture`] registers.
    fn fixture_keys(n: u8) -> Vec<wire::RunnerKey> {
        (1..=n)
            .map(|i| wire::RunnerKey::from_secret([i; 32]))
            .collect()
    }

    /// A batch's pending, running and deciding tasks as `batch_status` keeps them, asserted
    /// equal to a count of the rows.
    async fn kept_counts(store: &Store, batch: &str) -> (u64, u64, u64) {
        let status = store.batch_status(batch).await.unwrap();
        let kept = (status.pending, status.running, status.deciding);
        assert_eq!(
            kept,
            store.recount_batch(batch).await.unwrap(),
            "{status:?}"
        );
        kept
    }

    /// `store`'s database taken back to schema 6 (no kept running or deciding counts), then
    /// opened again, which migrates it to the current schema.
    async fn schema_6_again(dir: &tempfile::TempDir, store: Store) -> Store {
        store.close().await;
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("s.db").display());
        let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(&url)
            .await
            .unwrap();
        sqlx::raw_sql(
            "ALTER TABLE batches DROP COLUMN running; ALTER TABLE batches DROP COLUMN deciding; \
             DELETE FROM schema_migrations WHERE version = 7;",
        )
        .execute(&mut conn)
        .await
        .unwrap();
        drop(conn);
        Store::open(&url).await.unwrap()
    }

    /// A batch's counts, kept as its task moves, agree with a count of the rows after each
    /// move: a lease, a lease handed back, one that expires, reports that disagree until
    /// the replicas run out, and the scheduler's own run that decides.
    #[tokio::test]
    async fn a_batchs_counts_follow_every_move_of_its_task() {
        let owners = [
            ("alice", 1),
            ("bob", 1),
            ("carol", 1),
            ("dave", 1),
            ("erin", 1),
        ];
        let (dir, mut store, runners) = fixture(1, &owners).await;
        let keys = fixture_keys(5);
        let batch = store.recent_batches(1).await.unwrap()[0].0.clone();
        assert_eq!(kept_counts(&store, &batch).await, (1, 0, 0));

        let lease = store.lease(&runners[0], 1, 1, 0).await.unwrap();
        let task = lease[0].task_id;
        assert_eq!(kept_counts(&store, &batch).await, (0, 1, 0));
        assert_eq!(
            store.give_back(&runners[0].id, &[task], 2).await.unwrap(),
            1
        );
        assert_eq!(kept_counts(&store, &batch).await, (1, 0, 0));

        assert_eq!(store.lease(&runners[1], 1, 3, 0).await.unwrap().len(), 1);
        assert_eq!(kept_counts(&store, &batch).await, (0, 1, 0));
        assert_eq!(store.expire(i64::MAX / 2).await.unwrap(), 1);
        assert_eq!(kept_counts(&store, &batch).await, (1, 0, 0));

        // Three runners, three answers: no quorum, and no replica left to ask.
        let answer = |n: u8| {
            RunReport::new(
                helio_sdk::Outcome::Exited { exit_code: 0 },
                7,
                Blake3Hash::of(&[n]),
                Vec::new(),
                1,
            )
        };
        for (i, runner) in runners.iter().enumerate().skip(2) {
            let lease = store.lease(runner, 1, 10, 60_000).await.unwrap();
            assert_eq!(lease.len(), 1, "{} got no lease", runner.owner);
            let report = answer(i as u8);
            let result = signed(&lease[0], &keys[i], &report, &report.digest);
            let (acks, _) = store.report(runner, &[result], None, 11).await.unwrap();
            assert_eq!(acks[0].status, ReportStatus::Recorded, "{acks:?}");
            let expected = if i < 4 { (0, 1, 0) } else { (0, 0, 1) };
            assert_eq!(kept_counts(&store, &batch).await, expected);
            // A database from before the counts (schema 6) gets them from its rows.
            if i == 2 || i == 4 {
                store = schema_6_again(&dir, store).await;
                assert_eq!(kept_counts(&store, &batch).await, expected);
            }
        }
        store.authority(task, &answer(2), 12).await.unwrap();
        assert_eq!(kept_counts(&store, &batch).await, (0, 0, 0));
        let status = store.batch_status(&batch).await.unwrap();
        assert_eq!((status.succeeded, status.failed), (1, 0));
    }

    /// A successful run's report.
    fn success() -> RunReport {
        RunReport::new(
            helio_sdk::Outcome::Exited { exit_code: 0 },
            7,
            Blake3Hash::of(b"out"),
            Vec::new(),
            1,
        )
    }

    /// `report` of `lease`'s task, with `key`'s signature of `digest`.
    fn signed(
        lease: &Lease,
        key: &wire::RunnerKey,
        report: &RunReport,
        digest: &Blake3Hash,
    ) -> ResultReport {
        ResultReport {
            task_id: lease.task_id,
            report: report.clone(),
            signature: key.sign(&wire::result_message(
                &lease.batch,
                lease.manifest.name.as_str(),
                digest,
            )),
        }
    }

    /// The ledger and its anchor are read as of one moment: a ledger read while tasks are
    /// being accepted (entries and anchor appended by other transactions) always verifies.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_ledger_is_read_as_of_one_moment_while_tasks_are_accepted() {
        const TASKS: usize = 60;
        let (_dir, store, runners) = fixture(TASKS, &[("alice", 4), ("bob", 4)]).await;
        let keys = fixture_keys(2);
        let report = success();
        let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let reader = {
            let (store, done) = (store.clone(), done.clone());
            tokio::spawn(async move {
                let mut reads = 0;
                while !done.load(std::sync::atomic::Ordering::SeqCst) {
                    let (entries, len, head) = store.ledger().await.unwrap();
                    if let Err(e) = crate::ledger::verify_anchored(&entries, len, &head) {
                        panic!("a sound ledger read as {len} entries failed: {e}");
                    }
                    reads += 1;
                }
                reads
            })
        };
        let mut now = 1;
        let mut accepted = 0;
        while accepted < TASKS {
            for (runner, key) in runners.iter().zip(&keys) {
                now += 1;
                let leases = store.lease(runner, 4, now, 60_000).await.unwrap();
                let results: Vec<_> = leases
                    .iter()
                    .map(|l| signed(l, key, &report, &report.digest))
                    .collect();
                let (acks, _) = store.report(runner, &results, None, now).await.unwrap();
                accepted += acks
                    .iter()
                    .filter(|a| a.status == ReportStatus::Accepted)
                    .count();
            }
        }
        done.store(true, std::sync::atomic::Ordering::SeqCst);
        assert!(reader.await.unwrap() > 0);
        let (entries, len, head) = store.ledger().await.unwrap();
        assert!(
            len >= TASKS as u64,
            "{len} entries for {TASKS} accepted tasks"
        );
        crate::ledger::verify_anchored(&entries, len, &head).unwrap();
    }

    /// Requests that queue up while a group commits are committed together; one that fails
    /// (a runner the database does not know) costs the others nothing.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failing_request_in_a_group_costs_the_others_nothing() {
        let (_dir, store, runners) = group_fixture().await;
        let mut ghost = runners[0].clone();
        ghost.id = "never-registered".into();

        // Hold the commit while three requests queue, so that they form one group.
        let held = store.group.committing.lock().await;
        let requests: Vec<_> = [runners[0].clone(), ghost, runners[1].clone()]
            .into_iter()
            .map(|r| {
                let store = store.clone();
                tokio::spawn(async move { store.lease(&r, 2, 1, 60_000).await })
            })
            .collect();
        while store.group.queue.lock().unwrap().len() < 3 {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        drop(held);
        let mut answers = Vec::new();
        for r in requests {
            answers.push(r.await.unwrap());
        }
        assert_eq!(answers[0].as_ref().unwrap().len(), 2);
        assert!(
            matches!(&answers[1], Err(StoreError::NotFound(w)) if w.contains("never-registered")),
            "{:?}",
            answers[1].as_ref().err()
        );
        let bob = answers[2].as_ref().unwrap();
        assert_eq!(bob.len(), 2);
        // Alice and Bob got the same two tasks (one replica each), as they would have
        // one after the other.
        let ids = |l: &Vec<Lease>| l.iter().map(|l| l.task_id).collect::<Vec<_>>();
        assert_eq!(ids(answers[0].as_ref().unwrap()), ids(bob));
    }
    /// A result's signature is checked whether the scheduler still knows its task's batch
    /// and name from the lease (checked before the group commit) or not (after a restart:
    /// checked in the transaction): a signature by another key, or over another digest, is
    /// refused either way, and a good one is taken.
    #[tokio::test]
    async fn a_result_signature_is_checked_before_and_after_a_restart() {
        let (dir, store, runners) = group_fixture().await;
        let keys = fixture_keys(2);
        let alice = store.lease(&runners[0], 1, 1, 60_000).await.unwrap();
        let acks = bad_signatures_then_good(&store, &runners[0], &alice[0], &keys, 0, 2).await;
        assert_eq!(acks[0].status, ReportStatus::Recorded, "{acks:?}");
        let bob = store.lease(&runners[1], 1, 3, 60_000).await.unwrap();
        assert_eq!(bob[0].task_id, alice[0].task_id);
        store.close().await;

        // Restarted: the task's name is read in the transaction.
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("s.db").display());
        let store = Store::open(&url).await.unwrap();
        assert!(store.group.names.lock().unwrap().is_empty());
        let acks = bad_signatures_then_good(&store, &runners[1], &bob[0], &keys, 1, 4).await;
        assert_eq!(acks[0].status, ReportStatus::Accepted, "{acks:?}");
    }

    /// Reports `lease`'s result as `runners`' runner `own` twice with a bad signature (the
    /// other runner's key; its own key over another digest), asserting each is refused for
    /// its signature, then signed right; returns the last report's acks.
    async fn bad_signatures_then_good(
        store: &Store,
        runner: &RunnerRecord,
        lease: &Lease,
        keys: &[wire::RunnerKey],
        own: usize,
        now: i64,
    ) -> Vec<ReportAck> {
        let report = success();
        let bad = [
            signed(lease, &keys[1 - own], &report, &report.digest),
            signed(lease, &keys[own], &report, &Blake3Hash::of(b"other")),
        ];
        for r in bad {
            let (acks, _) = store.report(runner, &[r], None, now).await.unwrap();
            assert!(
                acks.iter().all(|a| a.status == ReportStatus::Refused
                    && a.error.as_deref().is_some_and(|e| e.contains("signature"))),
                "{acks:?}"
            );
        }
        let good = signed(lease, &keys[own], &report, &report.digest);
        store.report(runner, &[good], None, now).await.unwrap().0
    }
}
