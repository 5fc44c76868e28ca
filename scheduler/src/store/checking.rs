//! The scheduler checking accepted results itself (decision 059): spot checks drawn when a
//! task is accepted on its runners' credibility, and re-verification of every result a runner
//! found false vouched for, where it is no longer believed without that runner.

use super::*;

/// `tasks.check_wanted`: a spot check.
pub(super) const CHECK_SPOT: i64 = 1;
/// `tasks.check_wanted`: a re-verification.
pub(super) const CHECK_AGAIN: i64 = 2;

impl Store {
    /// A task just accepted on its runners' credibility (`state`, not by the scheduler's
    /// own run) is spot-checked by the scheduler's own run at the policy's rate, drawn here:
    /// unannounced, so no runner knows which of its results are checked.
    pub(super) async fn maybe_spot_check(
        &self,
        tx: &mut Transaction<'static, Any>,
        task_id: i64,
        state: &TaskState,
        by_scheduler: bool,
    ) -> Result<()> {
        if state.need.is_none() || by_scheduler {
            return Ok(());
        }
        if !self.policy.credibility.spot_checked(draw()?) {
            return Ok(());
        }
        sqlx::query("UPDATE tasks SET check_wanted = $2 WHERE id = $1")
            .bind(task_id)
            .bind(CHECK_SPOT)
            .execute(&mut **tx)
            .await?;
        Ok(())
    }

    /// `runner` was found false: every result accepted on credibility that it vouched for
    /// waits for the scheduler to re-verify it (those still believed without it are let go
    /// without a run, see [`Store::checking_jobs`]).
    pub(super) async fn recheck_vouched(
        &self,
        tx: &mut Transaction<'static, Any>,
        runner: &str,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE tasks SET check_wanted = $2 WHERE check_wanted = 0 \
             AND phase = 'accepted' AND by_scheduler = 0 \
             AND id IN (SELECT task_id FROM replicas WHERE runner_id = $1 AND state = 'reported') \
             AND EXISTS (SELECT 1 FROM replicas r WHERE r.task_id = tasks.id \
                         AND r.runner_id = $1 AND r.digest = tasks.digest) \
             AND EXISTS (SELECT 1 FROM batches b WHERE b.id = tasks.batch_id \
                         AND b.target_error IS NOT NULL)",
        )
        .bind(runner)
        .bind(CHECK_AGAIN)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    /// Accepted tasks the scheduler must check by its own run, a few past `turn` in id order
    /// (then from the lowest again): spot checks, and re-verifications of results that are
    /// no longer believed with their runners weighed as they are now. A re-verification
    /// whose result is still believed is let go here without a run.
    pub(super) async fn checking_jobs(&self, turn: &mut i64) -> Result<Vec<AuthorityJob>> {
        let rows = sqlx::query(&format!(
            "SELECT id, manifest, digest, check_wanted FROM tasks \
             WHERE check_wanted > 0 AND id > $1 ORDER BY id LIMIT {TURN}"
        ))
        .bind(*turn)
        .fetch_all(&self.pool)
        .await?;
        let through = rows.len() < TURN as usize;
        let mut jobs = Vec::new();
        for row in rows {
            let task_id: i64 = row.try_get(0)?;
            *turn = if through { 0 } else { task_id };
            if row.try_get::<i64, _>(3)? == CHECK_AGAIN && self.still_believed(task_id).await? {
                sqlx::query("UPDATE tasks SET check_wanted = 0 WHERE id = $1")
                    .bind(task_id)
                    .execute(&self.pool)
                    .await?;
                continue;
            }
            let manifest: String = row.try_get(1)?;
            let digest: Option<String> = row.try_get(2)?;
            jobs.push(AuthorityJob {
                task_id: TaskId::new(task_id).map_err(|e| StoreError::Corrupt(e.to_string()))?,
                manifest: parse_manifest(task_id, &manifest)?,
                expect: digest.as_deref().map(hash).transpose()?,
            });
        }
        Ok(jobs)
    }

    /// Whether accepted task `task_id` is still believed with its runners weighed by their
    /// records as they are now ([`TaskState::still_believed`]).
    async fn still_believed(&self, task_id: i64) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        let mut p = Pending::default();
        let (state, _) = self.load(&mut tx, &mut p, task_id).await?;
        let mut weights = HashMap::new();
        tx.rollback().await?;
        for r in &state.replicas {
            let weight = match self.runner(&r.runner).await? {
                Some(runner) => self.policy.credibility.weight(&runner.reputation),
                None => credibility::Weight(0),
            };
            weights.insert(r.runner.clone(), weight);
        }
        Ok(state.still_believed(|runner| {
            weights
                .get(runner)
                .copied()
                .unwrap_or(credibility::Weight(0))
        }))
    }

    /// After the scheduler's own run of accepted task `task_id` (recovery, spot check or
    /// re-verification) in `tx`: it waits for no check now, and where it was a spot check
    /// the run confirmed (`confirmed`), each runner that reported `digest` passed one.
    pub(super) async fn checked(
        &self,
        tx: &mut Transaction<'static, Any>,
        p: &mut Pending,
        task_id: i64,
        state: &TaskState,
        confirmed: Option<Blake3Hash>,
    ) -> Result<()> {
        let was: i64 = sqlx::query("SELECT check_wanted FROM tasks WHERE id = $1")
            .bind(task_id)
            .fetch_one(&mut **tx)
            .await?
            .try_get(0)?;
        if was == 0 {
            return Ok(());
        }
        sqlx::query("UPDATE tasks SET check_wanted = 0 WHERE id = $1")
            .bind(task_id)
            .execute(&mut **tx)
            .await?;
        if let (CHECK_SPOT, Some(digest)) = (was, confirmed) {
            for r in state.reports() {
                if r.digest == Some(digest) {
                    p.reputation.entry(r.runner).or_default().spot_checks += 1;
                }
            }
        }
        Ok(())
    }
}
