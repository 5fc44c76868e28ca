//! Reads for submitters and the dashboard: a batch's status and results, and the grid's totals.
//! None of them locks or writes.

use super::*;
use helio_sdk::wire::BatchState;

/// What a [`BatchStatus`] is read from (see [`status_of`]).
pub(super) const STATUS_COLUMNS: &str = "id, name, tasks, accepted_ok, accepted_failed, \
     micro_credits, running, deciding, cancelled, state, priority, deadline_ms, ended_why, \
     submitted_by, created_ms";

/// A batch's status from its row's [`STATUS_COLUMNS`], but for its outputs pending.
pub(super) fn status_of(row: &AnyRow) -> Result<BatchStatus> {
    let id: String = row.try_get(0)?;
    let count = |i: usize| -> Result<u64> { Ok(row.try_get::<i64, _>(i)?.max(0) as u64) };
    let (tasks, succeeded, failed) = (count(2)?, count(3)?, count(4)?);
    let (running, deciding, cancelled) = (count(6)?, count(7)?, count(8)?);
    let state: String = row.try_get(9)?;
    Ok(BatchStatus {
        name: row.try_get(1)?,
        tasks,
        pending: tasks
            .checked_sub(succeeded + failed + running + deciding + cancelled)
            .ok_or_else(|| {
                StoreError::Corrupt(format!("batch {id} counts more tasks than it has"))
            })?,
        running,
        deciding,
        succeeded,
        failed,
        outputs_pending: 0,
        micro_credits: count(5)?,
        cancelled,
        state: state
            .parse::<BatchState>()
            .map_err(|e| StoreError::Corrupt(format!("batch {id}: {e}")))?,
        priority: row.try_get(10)?,
        deadline_ms: row.try_get(11)?,
        ended: row.try_get(12)?,
        submitted_by: row.try_get(13)?,
        created_ms: row.try_get(14)?,
        batch: id,
    })
}

impl Store {
    /// A batch's progress.
    pub async fn batch_status(&self, id: &BatchId) -> Result<BatchStatus> {
        let id = id.as_str();
        // Every count is kept as tasks move (migrations 5, 7 and 11), in the transactions
        // that move them, so this reads one row whatever the batch's size; pending tasks are
        // what the counts leave. [`Store::recount_batch`] counts the same from the rows.
        let batch = sqlx::query(&format!(
            "SELECT {STATUS_COLUMNS} FROM batches WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.reads)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("batch {id}")))?;
        let mut status = status_of(&batch)?;
        status.outputs_pending = self.outputs_pending(id).await?;
        Ok(status)
    }

    /// How many of batch `id`'s accepted tasks' outputs the scheduler does not hold yet.
    pub(super) async fn outputs_pending(&self, id: &str) -> Result<u64> {
        // `succeeded IN (0, 1)` names every value the column holds, so the read can seek the
        // `tasks_batch_status` index to the unstored outputs instead of walking every
        // accepted task.
        Ok(sqlx::query(
            "SELECT COUNT(*) FROM tasks WHERE batch_id = $1 AND phase = 'accepted' \
             AND succeeded IN (0, 1) AND outputs_stored = 0",
        )
        .bind(id)
        .fetch_one(&self.reads)
        .await?
        .try_get::<i64, _>(0)? as u64)
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
    pub async fn batch_results(&self, id: &BatchId) -> Result<BatchResults> {
        let id = id.as_str();
        let name: String = sqlx::query("SELECT name FROM batches WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.reads)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("batch {id}")))?
            .try_get(0)?;
        let mut credits: BTreeMap<String, (Vec<String>, u64)> = BTreeMap::new();
        for row in sqlx::query(
            "SELECT task, runner_id, micro_credits, kind FROM ledger WHERE batch_id = $1 \
             AND kind IN ('task', 'fund', 'reversal', 'fund_reversal') ORDER BY seq",
        )
        .bind(id)
        .fetch_all(&self.reads)
        .await?
        {
            // A reversal takes back its credit, and its runner from those who agreed.
            let e = credits.entry(row.try_get(0)?).or_default();
            let runner: String = row.try_get(1)?;
            let amount = row.try_get::<i64, _>(2)? as u64;
            match row.try_get::<String, _>(3)?.as_str() {
                "task" => e.0.push(runner),
                "reversal" => e.0.retain(|r| *r != runner),
                _ => {}
            }
            match row.try_get::<String, _>(3)?.as_str() {
                "task" | "fund" => e.1 += amount,
                _ => e.1 = e.1.saturating_sub(amount),
            }
        }
        let mut tasks = Vec::new();
        for row in sqlx::query(
            "SELECT t.name, t.phase, t.result, t.by_scheduler, t.id, t.corrected_ms, \
             t.correction FROM tasks t \
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
                corrected: match (row.try_get(5)?, row.try_get(6)?) {
                    (Some(at_ms), Some(why)) => Some(Correction { at_ms, why }),
                    _ => None,
                },
            });
        }
        Ok(BatchResults {
            batch: id.into(),
            name,
            tasks,
        })
    }

    /// The id of task `name` of batch `batch`.
    pub async fn task_id(&self, batch: &str, name: &str) -> Result<TaskId> {
        let id: i64 = sqlx::query("SELECT id FROM tasks WHERE batch_id = $1 AND name = $2")
            .bind(batch)
            .bind(name)
            .fetch_optional(&self.reads)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("task {name} of batch {batch}")))?
            .try_get(0)?;
        TaskId::new(id).map_err(|e| StoreError::Corrupt(e.to_string()))
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
            "SELECT CAST(COALESCE(SUM(CASE WHEN kind = 'task' THEN fuel ELSE -fuel END), 0) \
             AS BIGINT), CAST(COALESCE(SUM(CASE WHEN kind = 'task' THEN micro_credits \
             ELSE -micro_credits END), 0) AS BIGINT) FROM ledger \
             WHERE kind IN ('task', 'reversal')",
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
}
