//! Taking a cold runner's report of its health check ([`crate::checks`]): the scheduler
//! runs the same check in its own sandbox and records whether the digests match.

use std::sync::Arc;

use helio_sandbox::Sandbox;
use helio_sandbox::health::HEALTH_CHECK_BATCH;
use helio_sdk::ids::CheckId;
use helio_sdk::wire::{ReportAck, ReportStatus, ResultReport};

use crate::checks;
use crate::store::{RunnerRecord, Store, StoreError};

/// Takes `runner`'s report `r` of health check `id`: checks it is the runner's pending check,
/// that the report is consistent and signed, runs the check itself, and records the result.
pub async fn report(
    store: &Store,
    sandbox: &Arc<Sandbox>,
    runner: &RunnerRecord,
    id: CheckId,
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
    let check = match store.health_check(id).await? {
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
    if let Err(error) =
        crate::rules::check_report(&runner.public_key, HEALTH_CHECK_BATCH, "health-check", r)
    {
        return Ok(refuse(error));
    }
    let expected = checks::expected(sandbox, check.seed)
        .await
        .map_err(|e| StoreError::Corrupt(format!("the scheduler's own health check: {e}")))?;
    if !store
        .finish_check(id, &runner.id, &report.digest, &expected.digest, now)
        .await?
    {
        // Another report of it was recorded a moment ago.
        return Ok(ack(ReportStatus::Duplicate, None));
    }
    if report.digest == expected.digest {
        tracing::info!(runner = %runner.id, check = %id, "health check passed");
        Ok(ack(ReportStatus::Accepted, None))
    } else {
        tracing::warn!(runner = %runner.id, check = %id, digest = %report.digest, expected = %expected.digest, "health check failed");
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
