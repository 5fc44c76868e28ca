//! Health checks: the one lease a cold runner gets, and their outcome.

use super::*;
use crate::checks;
use crate::rules::{self, CheckLease};

/// Drops `runner`'s pending health checks: it registered again or went offline (and the
/// statement that records that makes it cold).
pub(super) async fn drop_checks_in(
    tx: &mut Transaction<'static, Any>,
    runner: &str,
    now: i64,
) -> Result<()> {
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

impl Store {
    /// A cold runner's lease: one health check, unless it holds one still running or must
    /// wait after failing (`check_after`). A check past its deadline is marked `expired`
    /// and replaced.
    pub(super) async fn check_lease_in(
        &self,
        tx: &mut Transaction<'static, Any>,
        runner: &RunnerRecord,
        check_after: i64,
        now: i64,
    ) -> Result<Vec<Lease>> {
        // Whether a check of its is running matters only once it may have one.
        let running = now >= check_after
            && sqlx::query(
                "SELECT 1 FROM health_checks WHERE runner_id = $1 AND state = 'pending' \
                 AND deadline_ms >= $2",
            )
            .bind(&runner.id)
            .bind(now)
            .fetch_optional(&mut **tx)
            .await?
            .is_some();
        if rules::check_lease(now, check_after, running) != CheckLease::Issue {
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
        let deadline = checks::deadline(now);
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
        Ok(vec![
            checks::lease(
                CheckId::new(id).map_err(|e| StoreError::Corrupt(e.to_string()))?,
                seed,
                deadline,
            )
            .map_err(StoreError::Corrupt)?,
        ])
    }

    /// The health check `id`, if it exists.
    pub async fn health_check(&self, id: CheckId) -> Result<Option<HealthCheck>> {
        let row = sqlx::query(
            "SELECT runner_id, seed, deadline_ms, state, digest FROM health_checks WHERE id = $1",
        )
        .bind(id.get())
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
        id: CheckId,
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
        .bind(id.get())
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
            let wait = rules::retry_after_ms(failed as u64);
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
}
