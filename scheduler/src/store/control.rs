//! Submitters steering their batches: pause, resume, cancel, priority and deadline; the list
//! of one's batches; and what an operator grants a submitter (share and quotas).

use super::*;
use helio_sdk::wire::{BatchChange, BatchState};

/// Tasks cancelled per transaction: a million-task batch is cancelled in many short ones,
/// never one that holds the database for minutes.
const CANCEL_CHUNK: i64 = 500;

/// What an operator grants a submitter, as `scheduler submitter` sets and lists it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SubmitterGrant {
    /// The submitter (its tokens' name).
    pub name: String,
    /// Its weight in fair share.
    pub share: u32,
    /// The most leases it may have out at once.
    pub max_running: Option<u64>,
    /// The most tasks it may have submitted and not finished.
    pub max_tasks: Option<u64>,
}

impl Store {
    /// Who submitted batch `id`.
    pub async fn batch_submitter(&self, id: &BatchId) -> Result<String> {
        Ok(
            sqlx::query("SELECT submitted_by FROM batches WHERE id = $1")
                .bind(id.as_str())
                .fetch_optional(&self.reads)
                .await?
                .ok_or_else(|| StoreError::NotFound(format!("batch {id}")))?
                .try_get(0)?,
        )
    }

    /// The newest `limit` batches of `submitter` (every submitter's: `None`), newest first.
    pub async fn batches(&self, submitter: Option<&str>, limit: u32) -> Result<Vec<BatchStatus>> {
        let rows = match submitter {
            Some(name) => {
                sqlx::query(&format!(
                    "SELECT {STATUS_COLUMNS} FROM batches WHERE submitted_by = $1 \
                     ORDER BY created_ms DESC, id LIMIT $2"
                ))
                .bind(name)
                .bind(i64::from(limit))
                .fetch_all(&self.reads)
                .await?
            }
            None => {
                sqlx::query(&format!(
                    "SELECT {STATUS_COLUMNS} FROM batches ORDER BY created_ms DESC, id LIMIT $1"
                ))
                .bind(i64::from(limit))
                .fetch_all(&self.reads)
                .await?
            }
        };
        let mut list = Vec::with_capacity(rows.len());
        for row in &rows {
            let mut status = status_of(row)?;
            status.outputs_pending = self.outputs_pending(&status.batch).await?;
            list.push(status);
        }
        Ok(list)
    }

    /// Pauses (no new leases) or resumes batch `id`. A cancelled batch stays cancelled.
    pub async fn set_paused(&self, id: &BatchId, paused: bool) -> Result<()> {
        let (from, to) = if paused {
            (BatchState::Active, BatchState::Paused)
        } else {
            (BatchState::Paused, BatchState::Active)
        };
        let mut tx = self.pool.begin().await?;
        let state = self.state_in(&mut tx, id).await?;
        if state == BatchState::Cancelled {
            return Err(StoreError::Conflict(format!(
                "batch {id} is cancelled; it cannot be {}",
                if paused { "paused" } else { "resumed" }
            )));
        }
        if state == from {
            sqlx::query("UPDATE batches SET state = $1 WHERE id = $2")
                .bind(to.as_str())
                .bind(id.as_str())
                .execute(&mut *tx)
                .await?;
            if !paused {
                // Its tasks are work again: waiting runners must hear of it.
                self.notify_work(&mut tx).await?;
            }
        }
        self.commit(tx, !paused).await
    }

    /// Changes batch `id`'s priority or deadline.
    pub async fn change_batch(&self, id: &BatchId, change: &BatchChange) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        if self.state_in(&mut tx, id).await? == BatchState::Cancelled {
            return Err(StoreError::Conflict(format!(
                "batch {id} is cancelled; nothing of it changes any more"
            )));
        }
        if let Some(priority) = change.priority {
            sqlx::query("UPDATE batches SET priority = $1 WHERE id = $2")
                .bind(priority)
                .bind(id.as_str())
                .execute(&mut *tx)
                .await?;
        }
        if change.deadline_ms.is_some() || change.no_deadline {
            sqlx::query("UPDATE batches SET deadline_ms = $1 WHERE id = $2")
                .bind(change.deadline_ms.filter(|_| !change.no_deadline))
                .bind(id.as_str())
                .execute(&mut *tx)
                .await?;
        }
        self.commit(tx, false).await
    }

    async fn state_in(
        &self,
        tx: &mut Transaction<'static, Any>,
        id: &BatchId,
    ) -> Result<BatchState> {
        let state: String = sqlx::query(&format!(
            "SELECT state FROM batches WHERE id = $1{}",
            self.for_update()
        ))
        .bind(id.as_str())
        .fetch_optional(&mut **tx)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("batch {id}")))?
        .try_get(0)?;
        state
            .parse()
            .map_err(|e| StoreError::Corrupt(format!("batch {id}: {e}")))
    }

    /// Cancels batch `id` (`why`: who or what, kept with it): from the commit of its state
    /// on, none of its tasks is leased, and no result of it is taken or credited; then its
    /// tasks not yet accepted are cancelled, their leases withdrawn, in short transactions.
    /// Cancelling a cancelled batch finishes what an interrupted cancellation left. Returns
    /// the tasks cancelled.
    pub async fn cancel(&self, id: &BatchId, why: &str, now: i64) -> Result<u64> {
        let mut tx = self.pool.begin().await?;
        self.state_in(&mut tx, id).await?;
        sqlx::query(
            "UPDATE batches SET state = 'cancelled', ended_ms = $1, ended_why = $2 \
             WHERE id = $3 AND state <> 'cancelled'",
        )
        .bind(now)
        .bind(why)
        .bind(id.as_str())
        .execute(&mut *tx)
        .await?;
        self.commit(tx, false).await?;
        let mut cancelled = 0;
        loop {
            let n = self.cancel_some(id.as_str(), now).await?;
            if n == 0 {
                return Ok(cancelled);
            }
            cancelled += n;
        }
    }

    /// Cancels up to [`CANCEL_CHUNK`] of batch `batch`'s tasks not yet accepted, in one
    /// transaction; returns how many.
    async fn cancel_some(&self, batch: &str, now: i64) -> Result<u64> {
        let ids: Vec<i64> = sqlx::query(
            "SELECT id FROM tasks WHERE batch_id = $1 AND phase IN ('open', 'deciding') \
             ORDER BY id LIMIT $2",
        )
        .bind(batch)
        .bind(CANCEL_CHUNK)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| r.try_get(0))
        .collect::<Result<_, _>>()?;
        if ids.is_empty() {
            return Ok(0);
        }
        let mut tx = self.pool.begin().await?;
        let mut p = Pending::default();
        self.fetch(&mut tx, &mut p, &ids).await?;
        let mut withdrawn: BTreeMap<String, u32> = BTreeMap::new();
        let mut n = 0;
        for id in ids {
            let (mut state, _) = self.load(&mut tx, &mut p, id).await?;
            let phase = state.phase;
            for runner in state.cancel() {
                *withdrawn.entry(runner).or_default() += 1;
            }
            if state.phase != phase {
                n += 1;
                p.save(id, state, None);
            }
        }
        let work = self.flush(&mut tx, p).await?;
        for (runner, k) in withdrawn {
            let detail = format!(
                "{k} lease{} withdrawn: batch {batch} was cancelled",
                if k == 1 { "" } else { "s" }
            );
            event_in(&mut tx, &runner, now, "withdrawn", &detail).await?;
        }
        self.commit(tx, work).await?;
        Ok(n)
    }

    /// Cancels every batch past its deadline, and finishes cancellations a stop
    /// interrupted; returns the batches it cancelled.
    pub async fn end_overdue(&self, now: i64) -> Result<Vec<String>> {
        let rows = sqlx::query(
            "SELECT id, state, deadline_ms FROM batches \
             WHERE accepted_ok + accepted_failed + cancelled < tasks \
             AND (state = 'cancelled' OR deadline_ms < $1)",
        )
        .bind(now)
        .fetch_all(&self.reads)
        .await?;
        let mut ended = Vec::new();
        for row in rows {
            let id: String = row.try_get(0)?;
            let batch: BatchId = id
                .parse()
                .map_err(|e| StoreError::Corrupt(format!("batch id {id:?}: {e}")))?;
            if row.try_get::<String, _>(1)? == "cancelled" {
                while self.cancel_some(&id, now).await? > 0 {}
                continue;
            }
            let deadline: i64 = row.try_get(2)?;
            let why = format!("its deadline passed ({deadline} ms since the Unix epoch)");
            let n = self.cancel(&batch, &why, now).await?;
            tracing::info!(batch = %id, tasks = n, "batch deadline passed; cancelled what was left");
            ended.push(id);
        }
        Ok(ended)
    }

    /// Refuses `adding` more tasks from `submitter` past its quota of unfinished tasks.
    pub(super) async fn check_quota(
        &self,
        tx: &mut Transaction<'static, Any>,
        submitter: &str,
        adding: u64,
    ) -> Result<()> {
        let Some(max) = sqlx::query("SELECT max_tasks FROM submitters WHERE name = $1")
            .bind(submitter)
            .fetch_optional(&mut **tx)
            .await?
            .map(|r| r.try_get::<Option<i64>, _>(0))
            .transpose()?
            .flatten()
        else {
            return Ok(());
        };
        let open: i64 = sqlx::query(
            "SELECT CAST(COALESCE(SUM(tasks - accepted_ok - accepted_failed - cancelled), 0) \
             AS BIGINT) FROM batches WHERE submitted_by = $1 \
             AND accepted_ok + accepted_failed + cancelled < tasks",
        )
        .bind(submitter)
        .fetch_one(&mut **tx)
        .await?
        .try_get(0)?;
        let max = max.max(0) as u64;
        if open as u64 + adding > max {
            return Err(StoreError::Forbidden(format!(
                "submitter {submitter:?} may have at most {max} unfinished tasks; it has {open}, \
                 and this batch adds {adding} (wait for its batches to finish, cancel one, or \
                 ask the operator for more)"
            )));
        }
        Ok(())
    }

    /// Sets what the operator grants `grant.name`.
    pub async fn set_grant(&self, grant: &SubmitterGrant) -> Result<()> {
        let as_i64 = |n: Option<u64>| n.map(|n| n.min(i64::MAX as u64) as i64);
        sqlx::query(
            "INSERT INTO submitters (name, share, max_running, max_tasks) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (name) DO UPDATE SET share = excluded.share, \
             max_running = excluded.max_running, max_tasks = excluded.max_tasks",
        )
        .bind(&grant.name)
        .bind(i64::from(grant.share.max(1)))
        .bind(as_i64(grant.max_running))
        .bind(as_i64(grant.max_tasks))
        .execute(&self.pool)
        .await?;
        *self.grants.lock().expect("not poisoned") = None;
        // A raised quota may be work for runners waiting.
        self.bell.ring();
        Ok(())
    }

    /// Every grant an operator set, by name.
    pub async fn submitter_grants(&self) -> Result<Vec<SubmitterGrant>> {
        let rows =
            sqlx::query("SELECT name, share, max_running, max_tasks FROM submitters ORDER BY name")
                .fetch_all(&self.reads)
                .await?;
        rows.iter()
            .map(|r| {
                Ok(SubmitterGrant {
                    name: r.try_get(0)?,
                    share: r.try_get::<i64, _>(1)?.clamp(1, i64::from(u32::MAX)) as u32,
                    max_running: r.try_get::<Option<i64>, _>(2)?.map(|n| n.max(0) as u64),
                    max_tasks: r.try_get::<Option<i64>, _>(3)?.map(|n| n.max(0) as u64),
                })
            })
            .collect()
    }
}
