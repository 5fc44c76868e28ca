//! Submitting a batch: its row and its tasks, in one transaction.

use super::*;

/// A batch's id: `b-` and 16 hex digits of the BLAKE3 of everything that defines it, so that
/// the same manifest submitted twice is the same batch.
pub fn batch_id(batch: &BatchManifest) -> BatchId {
    let mut h = blake3::Hasher::new_derive_key("helio batch id v1");
    h.update(batch.batch.as_str().as_bytes());
    h.update(&[0]);
    let red = batch.redundancy;
    for n in [red.replicas, red.quorum, red.max_replicas] {
        h.update(&n.to_le_bytes());
    }
    h.update(&batch.credit_rate.to_le_bytes());
    // Only when set, so that a batch without one keeps the id it always had.
    if let Some(t) = batch.target_error {
        h.update(b"target_error");
        h.update(&t.to_le_bytes());
    }
    for task in &batch.tasks {
        h.update(
            serde_json::to_string(task)
                .expect("a manifest serializes")
                .as_bytes(),
        );
        h.update(&[0]);
    }
    BatchId::from_digits(&Blake3Hash::from(h.finalize()).to_string()[..16])
        .expect("16 hex digits make a batch id")
}

/// How a submitter steers a batch it submits (a batch submitted again keeps its own).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct Steer {
    /// Its priority among the submitter's batches (higher first).
    #[serde(default)]
    pub priority: i64,
    /// When what is left of it is cancelled (milliseconds since the Unix epoch).
    pub deadline_ms: Option<i64>,
}

impl Store {
    /// Stores a batch (every blob it names must already be stored), steered as `steer`
    /// says, within its submitter's quota. Submitting the same batch again returns it
    /// unchanged.
    pub async fn submit(
        &self,
        batch: &BatchManifest,
        submitter: &str,
        steer: &Steer,
        now: i64,
    ) -> Result<Submitted> {
        let id = batch_id(batch).to_string();
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
        self.check_quota(&mut tx, submitter, batch.tasks.len() as u64)
            .await?;
        let red = batch.redundancy;
        sqlx::query(
            "INSERT INTO batches (id, name, submitted_by, created_ms, replicas, quorum, \
             max_replicas, credit_rate, tasks, target_error, priority, deadline_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
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
        .bind(self.target_of(batch))
        .bind(steer.priority)
        .bind(steer.deadline_ms)
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
                 wall_seconds, phase, wanted, memory_bytes) VALUES ",
            );
            for i in 0..chunk.len() {
                let p = i * 10;
                if i > 0 {
                    sql.push(',');
                }
                sql.push_str(&format!(
                    "(${}, ${}, ${}, ${}, ${}, ${}, ${}, ${}, 'open', ${}, ${})",
                    p + 1,
                    p + 2,
                    p + 3,
                    p + 4,
                    p + 5,
                    p + 6,
                    p + 7,
                    p + 8,
                    p + 9,
                    p + 10
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
                    .bind(wanted)
                    .bind(task.limits.memory_bytes.min(i64::MAX as u64) as i64);
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
}
