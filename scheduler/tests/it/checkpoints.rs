//! Checkpoints on the grid: a runner that stops mid-task leaves its last checkpoint with the
//! scheduler, and the task's next runner goes on from it, to the digest a run in one go gives.
//! The scheduler takes a checkpoint only from the runner holding the lease, only of that
//! task, and only later than the last.

use std::ops::ControlFlow;

use helio_runner::agent::{Client, Stop};
use helio_runner::{LoadedTask, Resumable, Segments};
use helio_scheduler::service;
use helio_sdk::wire::BatchStatus;
use helio_sdk::{Blake3Hash, TaskManifest};

use super::grid::{Db, TestGrid, rogue, sandbox};

/// A batch of one nbody task that saves a checkpoint every 20,000 of its 100,000 steps. Its
/// `wall_seconds` is far beyond what it takes even on a loaded machine: the runner that
/// stops hands its lease back (as a runner stopped with Ctrl-C does) rather than letting it
/// expire.
fn nbody_batch(dir: &std::path::Path) -> std::path::PathBuf {
    let module = helio_jobs::bytes(helio_jobs::NBODY);
    std::fs::write(dir.join("nbody.wasm"), &module).unwrap();
    let batch = serde_json::json!({
        "schema_version": 1,
        "batch": "orbits",
        "defaults": {
            "module": { "uri": "nbody.wasm", "blake3": Blake3Hash::of(&module).to_string() },
            "outputs": [{ "name": "energy.json", "max_bytes": 4096 }],
            "limits": { "fuel": 10_000_000_000u64, "wall_seconds": 120 },
            "checkpoint": { "max_bytes": 272 },
        },
        "redundancy": { "replicas": 2, "quorum": 2, "max_replicas": 4 },
        "tasks": [{ "name": "orbit", "args": ["--years", "100", "--checkpoint-steps", "20000"] }],
    });
    let path = dir.join("batch.json");
    std::fs::write(&path, serde_json::to_string_pretty(&batch).unwrap()).unwrap();
    path
}

async fn a_task_whose_runner_stops_goes_on_from_its_checkpoint(db: Db) {
    let grid = TestGrid::start(db, 500).await;
    let batch = grid.submit(&nbody_batch(grid.dir.path())).await;
    // A runner leases the task, runs it to its second checkpoint, hands in both and stops.
    let quitter = rogue(&grid.url, "quitter").await;
    let lease = quitter.lease(1).await.unwrap().remove(0);
    assert_eq!(lease.resume, None, "nobody began the task before");
    let module = quitter.blob(&lease.manifest.module.blake3).await.unwrap();
    let task = LoadedTask {
        manifest: lease.manifest.clone(),
        module: module.into(),
        inputs: Vec::new(),
    };
    let mut saved = Vec::new();
    let run = Resumable {
        on_checkpoint: Box::new(|bytes| {
            saved.push(bytes.to_vec());
            if saved.len() == 2 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        }),
        ..Resumable::default()
    };
    let stopped = task.run_resumable(sandbox(), run).unwrap();
    assert!(matches!(stopped, Segments::Stopped(_)));
    let id = lease.task_id;
    quitter.checkpoint(id, saved[0].clone()).await.unwrap();

    // What the scheduler refuses: an earlier checkpoint, bytes that are none, and anything
    // from a runner without the lease.
    quitter.checkpoint(id, saved[1].clone()).await.unwrap();
    let again = quitter.checkpoint(id, saved[0].clone()).await.unwrap_err();
    assert!(again.to_string().contains("not later"), "{again}");
    // A stale checkpoint of new bytes (the first, with its standard error grown) is refused
    // before its bytes are stored.
    let mut forged =
        helio_sandbox::checkpoint::Checkpoint::decode(&saved[0], &lease.manifest).unwrap();
    forged.stderr.extend_from_slice(b"filler");
    let forged = forged.encode();
    let refused = quitter.checkpoint(id, forged.clone()).await.unwrap_err();
    assert!(refused.to_string().contains("not later"), "{refused}");
    let submitter = helio_sdk::client::SubmitterClient::new(&grid.url, &grid.token);
    let absent = submitter.blob(&Blake3Hash::of(&forged)).await.unwrap_err();
    assert!(absent.to_string().contains("not found"), "{absent}");
    assert!(submitter.blob(&Blake3Hash::of(&saved[1])).await.is_ok());
    let garbage = quitter
        .checkpoint(id, b"not a checkpoint".to_vec())
        .await
        .unwrap_err();
    assert!(garbage.to_string().contains("checkpoint"), "{garbage}");
    let outsider = rogue(&grid.url, "outsider").await;
    let refused = outsider.checkpoint(id, saved[1].clone()).await.unwrap_err();
    assert!(refused.to_string().contains("holds no lease"), "{refused}");
    drop(outsider);

    // The quitter hands its lease back; two volunteers run the replicas, one from the
    // checkpoint.
    quitter.give_back(vec![id]).await.unwrap();
    let (stop_a, task_a) = grid.runner("alice", 1);
    let (stop_b, task_b) = grid.runner("bob", 1);
    let status = grid.wait_for(&batch, BatchStatus::done).await;
    assert_eq!(status.succeeded, 1, "{status:?}");
    for (stop, task) in [(stop_a, task_a), (stop_b, task_b)] {
        stop.send(Stop::Drain).unwrap();
        task.await.unwrap().unwrap();
    }
    let store = service::open_store(&grid.config).await.unwrap();
    let kept = store.checkpoints(id).await.unwrap();
    let left = kept
        .iter()
        .find(|c| c.runner == quitter.runner_id())
        .expect("the quitter's checkpoint is kept");
    assert_eq!(left.resume.saved, 2);
    assert_eq!(left.resume.blake3, Blake3Hash::of(&saved[1]));
    let taker = left.taken_by.clone().expect("a lease went on from it");
    // The runner that went on handed in the checkpoints after it, up to the last (four in all).
    let went_on = kept.iter().find(|c| c.runner == taker).unwrap();
    assert_eq!(went_on.resume.saved, 4);
    assert!(went_on.resume.fuel_used > left.resume.fuel_used);

    // The digest the grid accepted, with the resumed replica agreeing, is a run in one go's.
    let manifest: TaskManifest = lease.manifest.clone();
    let one_go = task_in_one_go(&manifest, &quitter).await;
    let results = grid.submitter().results(&batch).await.unwrap();
    let orbit = &results.tasks[0];
    assert!(orbit.agreeing.contains(&taker), "{orbit:?}");
    assert_eq!(orbit.result.as_ref().unwrap().digest, one_go);
    grid.stop().await;
}

/// The digest of `manifest` run in one go here.
async fn task_in_one_go(manifest: &TaskManifest, client: &Client) -> Blake3Hash {
    let module = client.blob(&manifest.module.blake3).await.unwrap();
    let task = LoadedTask {
        manifest: manifest.clone(),
        module: module.into(),
        inputs: Vec::new(),
    };
    task.run(sandbox()).unwrap().report.digest
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_whose_runner_stops_goes_on_from_its_checkpoint_sqlite() {
    a_task_whose_runner_stops_goes_on_from_its_checkpoint(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_whose_runner_stops_goes_on_from_its_checkpoint_postgres() {
    a_task_whose_runner_stops_goes_on_from_its_checkpoint(Db::Postgres).await;
}
