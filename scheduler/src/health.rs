//! Health checks for cold runners. A runner is cold when it is new, has registered again
//! (a restart, other hardware) or comes back from offline; its next lease request gets one
//! health-check task ([`helio_runner::health`]) with a seed chosen for that check instead of
//! work. The scheduler runs the same task in its own sandbox when the result comes in: the
//! same digest makes the runner warm, another keeps it cold and makes it wait before its
//! next check. Real results still need a quorum; the check keeps a broken machine from
//! taking (and holding up) tasks in the first place.
//!
//! A check's lease carries the check's id negated as its task id (task ids are positive),
//! so a runner runs and reports it like any task.

use std::sync::{Arc, OnceLock};

use helio_runner::LoadedTask;
use helio_runner::health::{HEALTH_CHECK_BATCH, health_check_manifest, health_check_module};
use helio_sdk::wire::{self, Lease, ReportAck, ReportStatus, ResultReport};
use helio_sdk::{Blake3Hash, RunReport};

use crate::api::App;
use crate::store::{RunnerRecord, StoreError};

/// Time past a check's wall-clock limit before its lease ends, in milliseconds.
pub const GRACE_MS: i64 = 30_000;

/// The check module's bytes and hash, built once.
pub fn module() -> &'static (Arc<[u8]>, Blake3Hash) {
    static MODULE: OnceLock<(Arc<[u8]>, Blake3Hash)> = OnceLock::new();
    MODULE.get_or_init(|| {
        let bytes = health_check_module();
        let hash = Blake3Hash::of(&bytes);
        (bytes.into(), hash)
    })
}

/// Whether a reported task id names a health check rather than a task.
pub fn is_check(task_id: i64) -> bool {
    task_id < 0
}

/// The lease of health check `id` with `seed`.
pub fn lease(id: i64, seed: u64, deadline_ms: i64) -> Result<Lease, StoreError> {
    let manifest = health_check_manifest(&module().1, seed)
        .map_err(|e| StoreError::Corrupt(format!("the health-check manifest: {e}")))?;
    Ok(Lease {
        task_id: -id,
        batch: HEALTH_CHECK_BATCH.into(),
        manifest,
        deadline_ms,
    })
}

/// How long a runner that failed `failed` checks in a row waits for its next one: a
/// minute, doubling with each failure, at most an hour.
pub fn retry_after_ms(failed: u64) -> i64 {
    let minutes = 1i64 << failed.saturating_sub(1).min(6);
    minutes.min(60) * 60_000
}

/// What the scheduler's own run of check `seed` reports.
pub async fn expected(app: &App, seed: u64) -> anyhow::Result<RunReport> {
    let (bytes, hash) = module();
    let task = LoadedTask {
        manifest: health_check_manifest(hash, seed)?,
        module: bytes.clone(),
        inputs: Vec::new(),
    };
    let output = app
        .run_own(task)
        .await
        .map_err(|e| anyhow::anyhow!("the health check was {e}"))?;
    Ok(output.report)
}

/// Takes `runner`'s report `r` of a health check: checks it is the runner's pending check,
/// that the report is consistent and signed, runs the check itself, and records the result.
pub async fn report(
    app: &App,
    runner: &RunnerRecord,
    r: &ResultReport,
    now: i64,
) -> Result<ReportAck, StoreError> {
    let ack = |status, error: Option<String>| ReportAck {
        task_id: r.task_id,
        status,
        error,
        micro_credits: 0,
        upload: Vec::new(),
    };
    let refuse = |error: String| ack(ReportStatus::Refused, Some(error));
    let Some(id) = r.task_id.checked_neg() else {
        return Ok(refuse(format!("task {} not found", r.task_id)));
    };
    let check = match app.store.health_check(id).await? {
        Some(c) if c.runner == runner.id => c,
        _ => {
            return Ok(refuse(format!(
                "health check {id} of this runner not found"
            )));
        }
    };
    let report = &r.report;
    if check.state != "pending" {
        return Ok(if check.digest == Some(report.digest) {
            ack(ReportStatus::Duplicate, None)
        } else {
            refuse(format!(
                "health check {id} is {}, no longer waiting for a result",
                check.state
            ))
        });
    }
    if now > check.deadline_ms {
        return Ok(refuse(format!(
            "health check {id} ended at {} ms; the next lease request gets a new one",
            check.deadline_ms
        )));
    }
    if let Some(error) = crate::store::inconsistent(report) {
        return Ok(refuse(error));
    }
    let message = wire::result_message(HEALTH_CHECK_BATCH, "health-check", &report.digest);
    if !runner.public_key.verifies(&message, &r.signature) {
        return Ok(refuse(
            "the result's signature does not verify with this runner's key".into(),
        ));
    }
    let expected = expected(app, check.seed)
        .await
        .map_err(|e| StoreError::Corrupt(format!("the scheduler's own health check: {e}")))?;
    if !app
        .store
        .finish_check(id, &runner.id, &report.digest, &expected.digest, now)
        .await?
    {
        // Another report of it was recorded a moment ago.
        return Ok(ack(ReportStatus::Duplicate, None));
    }
    if report.digest == expected.digest {
        tracing::info!(runner = %runner.id, check = id, "health check passed");
        Ok(ack(ReportStatus::Accepted, None))
    } else {
        tracing::warn!(runner = %runner.id, check = id, digest = %report.digest, expected = %expected.digest, "health check failed");
        Ok(ack(
            ReportStatus::Disagreed,
            Some(format!(
                "health check failed: digest {} ({}, {} fuel), the scheduler's run gave {} ({}, {} fuel); \
                 this runner gets no task until it passes a check",
                report.digest,
                report.outcome.name(),
                report.fuel_consumed,
                expected.digest,
                expected.outcome.name(),
                expected.fuel_consumed
            )),
        ))
    }
}
