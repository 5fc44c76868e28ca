//! Reading tasks: a transaction reads each task once into [`Pending`] (a group's tasks in a
//! few queries), the core changes it in memory, and `write.rs` writes what changed just
//! before the commit. Also the commit itself, and the bell it rings when work appeared.

use super::*;
use crate::credibility::Weight;

/// Rows per multi-row statement: far below SQLite's and PostgreSQL's limits on parameters.
pub(super) const ROWS_PER_STATEMENT: usize = 100;

/// `$1, $2, ..., $n` on PostgreSQL; `?, ?, ...` on SQLite, where numbered parameters cost
/// time quadratic in their number to bind (sqlx looks each one's name up, and SQLite finds
/// a name by walking the list of them).
pub(super) fn params(postgres: bool, from: usize, n: usize) -> String {
    let marks: Vec<String> = if postgres {
        (from..from + n).map(|i| format!("${i}")).collect()
    } else {
        vec!["?".to_string(); n]
    };
    marks.join(", ")
}

/// `(p, ..., p), (p, ...), ...`: `rows` rows of `cols` parameters each (see [`params`]).
pub(super) fn placeholders(postgres: bool, rows: usize, cols: usize) -> String {
    (0..rows)
        .map(|r| format!("({})", params(postgres, r * cols + 1, cols)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A task read from its rows (one per replica, ordered by lease).
pub(super) fn task_from_rows(rows: &[AnyRow]) -> Result<(TaskState, TaskInfo)> {
    let row = &rows[0];
    let id: i64 = row.try_get(0)?;
    let phase: String = row.try_get(1)?;
    let digest: Option<String> = row.try_get(3)?;
    let phase = match (phase.as_str(), digest) {
        ("open", _) => Phase::Open,
        ("deciding", _) => Phase::Deciding,
        ("cancelled", _) => Phase::Cancelled,
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
        tier: tier_of(row.try_get(19)?),
        batch_cancelled: row.try_get::<String, _>(22)? == "cancelled",
        memory_bytes: row.try_get::<i64, _>(23)?.max(0) as u64,
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
            "withdrawn" => ReplicaState::Withdrawn,
            other => {
                return Err(StoreError::Corrupt(format!(
                    "a replica of task {id} in state {other:?}"
                )));
            }
        };
        replicas.push(Replica {
            runner,
            owner: r.try_get(14)?,
            weight: Weight(r.try_get::<Option<i64>, _>(20)?.unwrap_or(0)),
            state,
        });
    }
    let state = TaskState {
        redundancy,
        replicas,
        wanted: row.try_get::<i64, _>(2)? as u32,
        phase,
        need: row
            .try_get::<Option<f64>, _>(21)?
            .map(crate::credibility::Weight::of_error),
    };
    Ok((state, info))
}

/// One transaction's tasks and the writes it holds back until just before it commits. A
/// task is read once (a group's reported tasks in one query), changed in memory by as many
/// of the group's events as touch it, and written once; ledger entries and reputation
/// counts likewise. Rolling the transaction back drops all of it.
#[derive(Default)]
pub(super) struct Pending {
    pub(super) tasks: BTreeMap<i64, Touched>,
    pub(super) ledger: Vec<LedgerRow>,
    /// The ledger's end, once read.
    pub(super) tail: Option<LedgerTail>,
    /// What to add to each runner's record.
    pub(super) reputation: BTreeMap<String, Conduct>,
    /// The runners that lease in this transaction, as read at its start.
    pub(super) runners: HashMap<String, LeasingRunner>,
    /// The tasks its leases are picked from first.
    pub(super) pool: Pool,
    /// Whose work they are served from, once read, with this transaction's leases counted.
    pub(super) shares: Option<crate::share::Shares>,
    /// Whether an established runner is online, once read.
    pub(super) established_online: Option<bool>,
}

/// What a transaction adds to one runner's record (a change may be negative: an agreement
/// or a flag taken back).
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Conduct {
    pub(super) agreements: i64,
    pub(super) disagreements: i64,
    pub(super) spot_checks: i64,
    pub(super) returns: i64,
}

impl Conduct {
    /// `record` with these changes.
    pub(super) fn on(&self, record: Reputation) -> Reputation {
        let add = |n: u64, by: i64| (n as i64 + by).max(0) as u64;
        Reputation {
            agreements: add(record.agreements, self.agreements),
            disagreements: add(record.disagreements, self.disagreements),
            spot_checks: add(record.spot_checks, self.spot_checks),
            returns: add(record.returns, self.returns),
            ..record
        }
    }
}

/// The tasks a group's lease requests are picked from first ([`Store::pool`]).
#[derive(Default)]
pub(super) struct Pool {
    /// Lowest id first.
    pub(super) ids: Vec<i64>,
    /// Whether it holds every task that wanted a replica when it was read (of the tiers it
    /// was read for).
    pub(super) complete: bool,
}

impl Pending {
    /// Task `id` is now `state`; `signed` is a report to store with its runner's replica.
    pub(super) fn save(&mut self, id: i64, state: TaskState, signed: Option<SignedReport>) {
        let t = self
            .tasks
            .get_mut(&id)
            .expect("a task is read before it is saved");
        if let Some(shares) = &mut self.shares {
            let by = i64::from(state.leased()) - i64::from(t.state.leased());
            shares.count(&t.info.batch_id, by);
        }
        t.state = state;
        t.reports.extend(signed);
    }

    /// Leases `runner` gained (or, below zero, ended) in this transaction.
    pub(super) fn leases_gained(&self, runner: &str) -> i64 {
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

/// A task a transaction read.
pub(super) struct Touched {
    /// As read.
    pub(super) read: TaskState,
    /// As it now is.
    pub(super) state: TaskState,
    pub(super) info: std::sync::Arc<TaskInfo>,
    /// Reports received, in order.
    pub(super) reports: Vec<SignedReport>,
    /// Its accepted result, when this transaction accepted it.
    pub(super) accepted: Option<Accepted>,
}

/// An accepted task's result, as its row keeps it.
pub(super) struct Accepted {
    pub(super) result: String,
    pub(super) succeeded: bool,
    pub(super) at: i64,
    /// Whether the result names no blob still to be stored.
    pub(super) outputs_stored: bool,
    /// Whether the accepted result this one replaces succeeded, when it replaces one.
    pub(super) replaces: Option<bool>,
}

/// A ledger entry to write.
pub(super) struct LedgerRow {
    pub(super) seq: i64,
    pub(super) credit: Credit,
    pub(super) prev: Blake3Hash,
    pub(super) hash: Blake3Hash,
    pub(super) at: i64,
}

/// A result report to store with its runner's replica.
pub(super) struct SignedReport {
    pub(super) runner: String,
    pub(super) report: String,
    pub(super) signature: String,
    pub(super) at: i64,
    pub(super) wall_ms: i64,
}

pub(super) struct LedgerTail {
    pub(super) len: i64,
    pub(super) head: Blake3Hash,
}

/// What the storage layer needs of a task beyond its [`TaskState`].
pub(super) struct TaskInfo {
    pub(super) id: i64,
    pub(super) batch_id: String,
    pub(super) name: String,
    pub(super) manifest: String,
    pub(super) wall_seconds: u64,
    pub(super) credit_rate: f64,
    /// The least tier that may run it.
    pub(super) tier: Tier,
    /// Whether its batch was cancelled (its tasks are cancelled in chunks, after).
    pub(super) batch_cancelled: bool,
    /// Its `limits.memory_bytes` (0: not recorded).
    pub(super) memory_bytes: u64,
}

impl TaskInfo {
    pub(super) fn manifest(&self) -> Result<helio_sdk::TaskManifest> {
        parse_manifest(self.id, &self.manifest)
    }
}

pub(super) fn parse_manifest(id: i64, text: &str) -> Result<helio_sdk::TaskManifest> {
    helio_sdk::TaskManifest::from_json(text)
        .map_err(|e| StoreError::Corrupt(format!("task {id}: a bad manifest: {e}")))
}

impl Store {
    /// Reads those of `ids` this transaction has not read yet into `p`, in one query (on
    /// PostgreSQL after locking them, in id order, with a statement of their own: the read
    /// then sees what any transaction it waited for wrote). Unknown ids are passed over.
    pub(super) async fn fetch(
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
                 r.report_seq, t.tier, r.weight, b.target_error, b.state, t.memory_bytes \
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
    pub(super) async fn load(
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

    /// On PostgreSQL, tells the schedulers listening (see [`Store::listen_for_work`]) that
    /// work appears when `tx` commits; the notification names this store, which ignores its
    /// own (it rings its bell itself, in [`Store::commit`]).
    pub(super) async fn notify_work(&self, tx: &mut Transaction<'static, Any>) -> Result<()> {
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
    pub(super) async fn commit(&self, tx: Transaction<'static, Any>, work: bool) -> Result<()> {
        tx.commit().await?;
        if work {
            self.bell.ring();
        }
        Ok(())
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
