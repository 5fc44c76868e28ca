//! Checkpoints of tasks that checkpoint: the last one each replica handed in, and the one a
//! new lease goes on from when a replica's lease ended without a result.

use super::*;
use helio_sdk::wire::Resume;

impl Store {
    /// The manifest of task `task_id`, which `runner` must hold a lease of now, and the
    /// number of the last checkpoint `runner` handed in of it, if any: a checkpoint not later
    /// is refused before its bytes are stored.
    pub async fn leased_manifest(
        &self,
        runner: &str,
        task_id: i64,
    ) -> Result<(helio_sdk::TaskManifest, Option<u32>)> {
        let row = sqlx::query(
            "SELECT t.manifest, c.saved FROM replicas r JOIN tasks t ON t.id = r.task_id \
             LEFT JOIN checkpoints c ON c.task_id = r.task_id AND c.runner_id = r.runner_id \
             WHERE r.task_id = $1 AND r.runner_id = $2 AND r.state = 'leased'",
        )
        .bind(task_id)
        .bind(runner)
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| {
            StoreError::Conflict(format!("runner {runner} holds no lease of task {task_id}"))
        })?;
        let manifest = rows::parse_manifest(task_id, &row.try_get::<String, _>(0)?)?;
        let last = row
            .try_get::<Option<i64>, _>(1)?
            .map(|n| u32::try_from(n).unwrap_or(u32::MAX));
        Ok((manifest, last))
    }

    /// Records `runner`'s checkpoint of task `task_id` (its bytes already stored as a blob):
    /// only while it holds the lease, and only one later than the last it handed in.
    pub async fn save_checkpoint(
        &self,
        runner: &str,
        task_id: i64,
        checkpoint: &Resume,
        now: i64,
    ) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        let leased = sqlx::query(
            "SELECT 1 FROM replicas WHERE task_id = $1 AND runner_id = $2 AND state = 'leased'",
        )
        .bind(task_id)
        .bind(runner)
        .fetch_optional(&mut *tx)
        .await?;
        if leased.is_none() {
            return Err(StoreError::Conflict(format!(
                "runner {runner} holds no lease of task {task_id}"
            )));
        }
        let last =
            sqlx::query("SELECT saved FROM checkpoints WHERE task_id = $1 AND runner_id = $2")
                .bind(task_id)
                .bind(runner)
                .fetch_optional(&mut *tx)
                .await?;
        if let Some(row) = last {
            let last: i64 = row.try_get(0)?;
            if last >= i64::from(checkpoint.saved) {
                return Err(stale_checkpoint(task_id, checkpoint.saved, last));
            }
        }
        sqlx::query("DELETE FROM checkpoints WHERE task_id = $1 AND runner_id = $2")
            .bind(task_id)
            .bind(runner)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO checkpoints (task_id, runner_id, blake3, saved, fuel_used, saved_ms) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(task_id)
        .bind(runner)
        .bind(checkpoint.blake3.to_string())
        .bind(i64::from(checkpoint.saved))
        .bind(checkpoint.fuel_used.min(i64::MAX as u64) as i64)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// For a new lease of task `task_id` to `runner`: the checkpoint it goes on from, the one
    /// furthest on that a replica whose lease ended without a result left and no other lease
    /// took. Marks it taken by `runner`.
    pub(super) async fn resume_in(
        &self,
        tx: &mut Transaction<'static, Any>,
        task_id: i64,
        runner: &str,
    ) -> Result<Option<Resume>> {
        let row = sqlx::query(
            "SELECT c.runner_id, c.blake3, c.saved, c.fuel_used FROM checkpoints c \
             JOIN replicas r ON r.task_id = c.task_id AND r.runner_id = c.runner_id \
             WHERE c.task_id = $1 AND c.taken_by IS NULL \
             AND r.state IN ('expired', 'returned') \
             ORDER BY c.fuel_used DESC, c.runner_id LIMIT 1",
        )
        .bind(task_id)
        .fetch_optional(&mut **tx)
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let left_by: String = row.try_get(0)?;
        let resume = resume_at(&row, 1)?;
        sqlx::query("UPDATE checkpoints SET taken_by = $3 WHERE task_id = $1 AND runner_id = $2")
            .bind(task_id)
            .bind(&left_by)
            .bind(runner)
            .execute(&mut **tx)
            .await?;
        Ok(Some(resume))
    }
}

/// The refusal of checkpoint `saved` of task `task_id` from a runner that handed in
/// checkpoint `last` before.
pub fn stale_checkpoint(task_id: i64, saved: u32, last: i64) -> StoreError {
    StoreError::Conflict(format!(
        "checkpoint {saved} of task {task_id} is not later than checkpoint {last}, \
         which this runner handed in before"
    ))
}

/// A checkpoint as the scheduler keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeptCheckpoint {
    /// The runner that handed it in.
    pub runner: String,
    /// Where it is: the checkpoint's number, fuel and bytes.
    pub resume: Resume,
    /// The runner whose lease went on from it, if one did.
    pub taken_by: Option<String>,
}

impl Store {
    /// The checkpoints kept of task `task_id`, in the order their runners' ids sort.
    pub async fn checkpoints(&self, task_id: i64) -> Result<Vec<KeptCheckpoint>> {
        let rows = sqlx::query(
            "SELECT runner_id, blake3, saved, fuel_used, taken_by FROM checkpoints \
             WHERE task_id = $1 ORDER BY runner_id",
        )
        .bind(task_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(KeptCheckpoint {
                    runner: row.try_get(0)?,
                    resume: resume_at(row, 1)?,
                    taken_by: row.try_get(4)?,
                })
            })
            .collect()
    }
}

/// A [`Resume`] from three columns from `first` on: the hash, the number and the fuel.
fn resume_at(row: &AnyRow, first: usize) -> Result<Resume> {
    let blake3: String = row.try_get(first)?;
    Ok(Resume {
        blake3: Blake3Hash::parse(&blake3)
            .map_err(|e| StoreError::Corrupt(format!("a checkpoint's hash: {e}")))?,
        saved: row
            .try_get::<i64, _>(first + 1)?
            .clamp(0, i64::from(u32::MAX)) as u32,
        fuel_used: row.try_get::<i64, _>(first + 2)?.max(0) as u64,
    })
}
