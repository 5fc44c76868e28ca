//! The dashboard's data: one snapshot of the grid — its pulse, batches, runners, contributor
//! wall, impact and flagged runners — read from the database at most once a second however
//! many people watch, and published to every open event stream.
//!
//! Reading a snapshot scans the task and replica tables, so its cost grows with the grid's
//! history. The pulse therefore waits ten times as long as the last read took (and at least
//! [`Pulse::MIN_INTERVAL`]) before the next, which keeps the dashboard under a tenth of one
//! core whatever the grid's size, and reads nothing while nobody watches.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use helio_sdk::Tier;
use helio_sdk::wire::{BatchStatus, CreditRow, RunnerInfo};

use crate::credibility::Policy;
use serde::Serialize;
use tokio::sync::watch;

use crate::store::{Impact, RunnerRecord, Store, StoreError, TaskCounts, now_ms};

/// Batches a snapshot shows, newest first.
pub const BATCHES: u32 = 12;
/// Runners a snapshot lists: online ones first, then the most recently seen.
pub const RUNNERS: usize = 100;
/// Owners on the contributor wall.
pub const OWNERS: usize = 25;
/// How far back the accepted-tasks rate looks.
const RATE_WINDOW_MS: i64 = 10_000;
/// Minutes the chart of accepted tasks shows.
pub const CHART_MINUTES: usize = 60;
/// Points of a batch's or an owner's chart over time.
pub const TREND_POINTS: usize = 24;

/// One batch as the dashboard shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct BatchView {
    /// Its progress.
    #[serde(flatten)]
    pub status: BatchStatus,
    /// Who submitted it (the token's name).
    pub submitted_by: String,
    /// When, in milliseconds since the Unix epoch.
    pub created_ms: i64,
    /// Whether every task is accepted and its outputs stored ([`BatchStatus::done`]).
    pub done: bool,
    /// Its tasks accepted by each of [`TREND_POINTS`] moments from its submission to now.
    pub progress: Vec<u64>,
}

/// The grid at one moment.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Snapshot {
    /// When it was read, in milliseconds since the Unix epoch.
    pub at_ms: i64,
    /// Runners online, by tier (every tier named).
    pub runners_online: BTreeMap<String, u64>,
    /// Runners ever registered.
    pub runners_known: u64,
    /// Owner accounts.
    pub owners_known: u64,
    /// Tasks accepted per second over the last ten seconds; `None` until two readings exist.
    pub tasks_per_second: Option<f64>,
    /// Tasks accepted in each of the last [`CHART_MINUTES`] minutes, oldest first.
    pub accepted_per_minute: Vec<u64>,
    /// Each wall owner's credits (in micro-credits, payouts apart) by each of
    /// [`TREND_POINTS`] moments from the ledger's first entry to now.
    pub credit_trends: BTreeMap<String, Vec<u64>>,
    /// Tasks by where they stand.
    pub tasks: TaskCounts,
    /// What volunteers gave.
    pub impact: Impact,
    /// Runners, online first, at most [`RUNNERS`].
    pub runners: Vec<RunnerInfo>,
    /// Every flagged runner.
    pub flagged: Vec<RunnerInfo>,
    /// The contributor wall: owners by credits earned, at most [`OWNERS`].
    pub owners: Vec<CreditRow>,
    /// The newest batches; `None` for a viewer without a submitter or admin token.
    pub batches: Option<Vec<BatchView>>,
}

/// What anyone may see of runner `r`, weighed by `policy`.
pub fn runner_info(r: RunnerRecord, policy: &Policy) -> RunnerInfo {
    RunnerInfo {
        spot_checks: r.reputation.spot_checks,
        returns: r.reputation.returns,
        verified: Policy::verified(&r.reputation),
        established: policy.established(policy.weight(&r.reputation)),
        online: r.online,
        flagged: r.reputation.flagged(),
        trusted: r.reputation.trusted(),
        agreements: r.reputation.agreements,
        disagreements: r.reputation.disagreements,
        missed_deadlines: r.reputation.missed_deadlines,
        id: r.id,
        owner: r.owner,
        tier: r.tier,
        slots: r.slots,
        last_seen_ms: r.last_seen_ms,
        location: r.location,
        green_energy: r.green_energy,
        uptime_ms: r.uptime_ms,
        warm: r.warm,
        checks_failed: r.checks_failed,
    }
}

/// A snapshot as JSON, once without and once with the batches.
#[derive(Debug)]
pub struct Published {
    /// For anyone.
    pub public: String,
    /// For a submitter or an admin.
    pub full: String,
}

/// The latest snapshot and the readings the accepted-tasks rate is computed from.
pub struct Pulse {
    latest: watch::Sender<Option<Arc<Published>>>,
    /// (when, tasks accepted by then), oldest first, within [`RATE_WINDOW_MS`].
    readings: Mutex<VecDeque<(i64, u64)>>,
    closed: AtomicBool,
}

impl Default for Pulse {
    fn default() -> Self {
        Pulse {
            latest: watch::Sender::new(None),
            readings: Mutex::new(VecDeque::new()),
            closed: AtomicBool::new(false),
        }
    }
}

impl Pulse {
    /// The shortest time between two readings.
    pub const MIN_INTERVAL: Duration = Duration::from_secs(1);

    /// A stream of snapshots: the latest now (if any), then each new one.
    pub fn subscribe(&self) -> watch::Receiver<Option<Arc<Published>>> {
        self.latest.subscribe()
    }

    /// Ends every event stream: the scheduler is shutting down (a stream that never ends
    /// would keep it waiting).
    pub fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.latest.send_replace(None);
    }

    /// Whether [`Pulse::close`] was called.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// Reads a snapshot of the grid now; the batches only if `batches`.
    pub async fn read(&self, store: &Store, batches: bool) -> Result<Snapshot, StoreError> {
        let tasks = store.task_counts().await?;
        let now = now_ms();
        let tasks_per_second = self.rate(now, tasks.succeeded + tasks.failed);
        let mut runners: Vec<RunnerRecord> = store.runners().await?;
        let runners_known = runners.len() as u64;
        let mut runners_online: BTreeMap<String, u64> =
            Tier::ALL.iter().map(|t| (t.to_string(), 0)).collect();
        for r in runners.iter().filter(|r| r.online) {
            *runners_online.entry(r.tier.to_string()).or_default() += 1;
        }
        let flagged: Vec<RunnerInfo> = runners
            .iter()
            .filter(|r| r.reputation.flagged())
            .cloned()
            .map(|r| runner_info(r, store.credibility()))
            .collect();
        runners.sort_by(|a, b| {
            (b.online, b.last_seen_ms, &a.id).cmp(&(a.online, a.last_seen_ms, &b.id))
        });
        runners.truncate(RUNNERS);
        let mut owners = store.credits("owner").await?;
        owners.truncate(OWNERS);
        let wall: Vec<String> = owners.iter().map(|o| o.key.clone()).collect();
        let batches = match batches {
            true => {
                let mut views = Vec::new();
                for (id, submitted_by, created_ms) in store.recent_batches(BATCHES).await? {
                    let id = id.parse().map_err(|e: helio_sdk::ids::IdError| {
                        StoreError::Corrupt(format!("a stored batch id: {e}"))
                    })?;
                    let status = store.batch_status(&id).await?;
                    let progress = store
                        .batch_progress(&id, (created_ms, now), TREND_POINTS)
                        .await?;
                    views.push(BatchView {
                        progress,
                        done: status.done(),
                        status,
                        submitted_by,
                        created_ms,
                    });
                }
                Some(views)
            }
            false => None,
        };
        Ok(Snapshot {
            at_ms: now,
            runners_online,
            runners_known,
            owners_known: store.owner_count().await?,
            tasks_per_second,
            accepted_per_minute: store.accepted_per_minute(now, CHART_MINUTES).await?,
            credit_trends: store.credit_trends(&wall, now, TREND_POINTS).await?,
            tasks,
            impact: store.impact().await?,
            runners: runners
                .into_iter()
                .map(|r| runner_info(r, store.credibility()))
                .collect(),
            flagged,
            owners,
            batches,
        })
    }

    /// Records that `accepted` tasks were accepted by `now` and returns the rate over the
    /// readings of the last [`RATE_WINDOW_MS`].
    fn rate(&self, now: i64, accepted: u64) -> Option<f64> {
        let mut readings = self.readings.lock().expect("pulse readings");
        while readings
            .front()
            .is_some_and(|(at, _)| now - at > RATE_WINDOW_MS)
        {
            readings.pop_front();
        }
        let rate = readings.front().and_then(|&(at, then)| {
            (now > at).then(|| accepted.saturating_sub(then) as f64 * 1000.0 / (now - at) as f64)
        });
        readings.push_back((now, accepted));
        rate
    }

    /// Reads and publishes snapshots while anyone watches; see the module's documentation
    /// for how often.
    pub async fn run(self: Arc<Self>, store: Store) {
        loop {
            if self.is_closed() {
                return;
            }
            if self.latest.receiver_count() == 0 {
                // Nobody watches: forget the last snapshot, so that the next viewer does not
                // start from an old one, and look again shortly.
                if self.latest.borrow().is_some() {
                    self.latest.send_replace(None);
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
            let started = Instant::now();
            match self.read(&store, true).await {
                Ok(snapshot) => {
                    self.latest.send_replace(Some(Arc::new(publish(snapshot))));
                }
                Err(e) => tracing::warn!(error = %e, "cannot read the dashboard's snapshot"),
            }
            tokio::time::sleep(Self::MIN_INTERVAL.max(started.elapsed() * 10)).await;
        }
    }
}

/// The snapshot as JSON for each kind of viewer.
pub fn publish(mut snapshot: Snapshot) -> Published {
    let full = serde_json::to_string(&snapshot).expect("a snapshot serializes");
    snapshot.batches = None;
    let public = serde_json::to_string(&snapshot).expect("a snapshot serializes");
    Published { public, full }
}
