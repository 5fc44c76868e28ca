//! Health checks for cold runners. A runner is cold when it is new, has registered again
//! (a restart, other hardware) or comes back from offline; its next lease request gets one
//! health-check task ([`helio_sandbox::health`]) with a seed chosen for that check instead of
//! work. The scheduler runs the same task in its own sandbox when the result comes in: the
//! same digest makes the runner warm, another keeps it cold and makes it wait before its
//! next check. Real results still need a quorum; the check keeps a broken machine from
//! taking (and holding up) tasks in the first place.
//!
//! A check is a kind of lease ([`LeaseId::Check`]); on the wire its lease carries the
//! check's id negated as its task id, so a runner runs and reports it like any task.

use std::sync::{Arc, OnceLock};

use helio_sandbox::health::{
    HEALTH_CHECK_BATCH, HEALTH_CHECK_WALL_SECONDS, health_check_manifest, health_check_module,
};
use helio_sandbox::{LoadedTask, RunOutput, Sandbox};
use helio_sdk::ids::{CheckId, LeaseId};
use helio_sdk::wire::Lease;
use helio_sdk::{Blake3Hash, RunReport};

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

/// When a check leased at `now_ms` ends.
pub fn deadline(now_ms: i64) -> i64 {
    crate::task::lease_deadline(now_ms, u64::from(HEALTH_CHECK_WALL_SECONDS), GRACE_MS)
}

/// The lease of health check `id` with `seed`.
pub fn lease(id: CheckId, seed: u64, deadline_ms: i64) -> Result<Lease, String> {
    let manifest = health_check_manifest(&module().1, seed)
        .map_err(|e| format!("the health-check manifest: {e}"))?;
    Ok(Lease {
        task_id: LeaseId::Check(id).wire(),
        batch: HEALTH_CHECK_BATCH.into(),
        manifest,
        deadline_ms,
        resume: None,
    })
}

/// Runs `task` in the scheduler's own sandbox, on a blocking thread: a health check, or a
/// task the scheduler decides or recovers the outputs of.
pub async fn run_own(sandbox: &Arc<Sandbox>, task: LoadedTask) -> anyhow::Result<RunOutput> {
    let sandbox = sandbox.clone();
    tokio::task::spawn_blocking(move || task.run(&sandbox))
        .await?
        .map_err(|e| anyhow::anyhow!("rejected: {e}"))
}

/// What the scheduler's own run of check `seed` reports.
pub async fn expected(sandbox: &Arc<Sandbox>, seed: u64) -> anyhow::Result<RunReport> {
    let (bytes, hash) = module();
    let task = LoadedTask {
        manifest: health_check_manifest(hash, seed)?,
        module: bytes.clone(),
        inputs: Vec::new(),
    };
    let output = run_own(sandbox, task)
        .await
        .map_err(|e| anyhow::anyhow!("the health check was {e}"))?;
    Ok(output.report)
}
