//! Tasks that checkpoint, on a grid: each checkpoint the guest saves is handed to the
//! scheduler as it is made (only the latest, when uploads fall behind, and the last before
//! the result), so that if this runner stops, the task's next runner goes on from there; and
//! a lease that another runner began starts from the checkpoint it left.
//!
//! A run from a checkpoint gives what a run from the start gives, so a checkpoint that cannot
//! be fetched or is refused (one a lying runner made up, say) costs only time: the task runs
//! from the start instead.

use std::ops::ControlFlow;
use std::sync::Arc;

use helio_sdk::wire::Lease;
use tokio::sync::mpsc;

use super::Client;
use crate::{LoadedTask, Progress, Rejection, Resumable, RunOutput, Sandbox, Segments};

/// Runs `task` of `lease` from the lease's checkpoint, if it has one, handing each new
/// checkpoint to the scheduler.
pub(super) async fn run(
    client: &Client,
    sandbox: &Arc<Sandbox>,
    task: LoadedTask,
    lease: &Lease,
    progress: Arc<Progress>,
) -> Result<RunOutput, String> {
    let resume = match &lease.resume {
        Some(from) => match client.blob(&from.blake3).await {
            Ok(bytes) => Some(bytes),
            Err(e) => {
                tracing::warn!(task = lease.task_id, error = %e,
                    "cannot fetch the checkpoint to go on from; running from the start");
                None
            }
        },
        None => None,
    };
    let (saved, uploads) = mpsc::unbounded_channel::<Vec<u8>>();
    let uploader = tokio::spawn(upload(client.clone(), lease.task_id, uploads));
    let sandbox = sandbox.clone();
    let task_id = lease.task_id;
    let ended = tokio::task::spawn_blocking(move || {
        let run = |resume| {
            let saved = saved.clone();
            let run = Resumable {
                progress: Some(progress.clone()),
                resume,
                on_checkpoint: Box::new(move |bytes: &[u8]| {
                    let _ = saved.send(bytes.to_vec());
                    ControlFlow::Continue(())
                }),
                ..Resumable::default()
            };
            task.run_resumable(&sandbox, run)
        };
        match run(resume) {
            Err(Rejection::Checkpoint(why)) => {
                tracing::warn!(
                    task = task_id,
                    why,
                    "the checkpoint is refused; running from the start"
                );
                run(None)
            }
            other => other,
        }
    })
    .await
    .map_err(|e| e.to_string())?;
    // Every checkpoint is handed in, the latest at least, before the result: should the
    // report not get through, the task's next runner finishes from the last one.
    let _ = uploader.await;
    match ended.map_err(|e| e.to_string())? {
        Segments::Ended(output) => Ok(output),
        Segments::Stopped(_) => Err("the run stopped at a checkpoint unasked".into()),
    }
}

/// Hands the scheduler each checkpoint of task `task_id` as it comes, skipping to the latest
/// when several wait. A checkpoint that cannot be handed in costs only the work since the
/// one before, should this runner stop.
async fn upload(client: Client, task_id: i64, mut saved: mpsc::UnboundedReceiver<Vec<u8>>) {
    while let Some(mut bytes) = saved.recv().await {
        while let Ok(later) = saved.try_recv() {
            bytes = later;
        }
        if let Err(e) = client.checkpoint(task_id, bytes).await {
            tracing::warn!(task = task_id, error = %e, "cannot hand the scheduler a checkpoint");
        }
    }
}
