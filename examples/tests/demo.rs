//! The Quick start's grid: every task of the n-body batch is accepted by two runners of
//! different owners, with the digest a local sandbox run gives; credits add up between
//! tasks, owners and the ledger; and the downloaded outputs hold the science.

use std::collections::BTreeSet;

use helio_examples::demo;
use helio_runner::{Sandbox, SandboxConfig, load_batch_task};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_runs_a_batch_through_consensus_to_credits() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("demo");
    let lines = std::sync::Mutex::new(Vec::new());
    let demo = demo::run(&out, &["nbody".into()], &|l| lines.lock().unwrap().push(l))
        .await
        .unwrap();

    assert_eq!(demo.batches.len(), 1);
    let (status, results) = &demo.batches[0];
    assert_eq!((status.tasks, status.succeeded, status.failed), (10, 10, 0));
    assert_eq!(demo.owners.len(), demo::OWNERS.len());

    let manifest = out.join("batches/nbody/batch.json");
    let sandbox = Sandbox::new(SandboxConfig::default()).unwrap();
    let mut drifts = Vec::new();
    let mut credited = 0;
    for task in &results.tasks {
        let result = task.result.as_ref().expect("an accepted result");
        let owners: BTreeSet<&String> = task.agreeing.iter().map(|id| &demo.owners[id]).collect();
        assert_eq!(
            (task.agreeing.len(), owners.len()),
            (2, 2),
            "{}: {:?}",
            task.task,
            task.agreeing
        );
        let local = load_batch_task(&manifest, &task.task)
            .unwrap()
            .run(&sandbox)
            .unwrap();
        assert_eq!(result.digest, local.report.digest, "{}", task.task);
        // Both runners are credited fuel × credit_rate (1.0) / 1000 micro-credits each.
        assert_eq!(task.micro_credits, 2 * (result.fuel_consumed / 1000));
        credited += task.micro_credits;

        let energy: serde_json::Value = serde_json::from_slice(
            &std::fs::read(
                out.join("results/nbody")
                    .join(&task.task)
                    .join("energy.json"),
            )
            .unwrap(),
        )
        .unwrap();
        drifts.push((
            energy["dt"].as_f64().unwrap(),
            energy["relative_drift"].as_f64().unwrap().abs(),
        ));
    }
    assert_eq!(status.micro_credits, credited);
    let by_owner: u64 = demo.credits.rows.iter().map(|r| r.micro_credits).sum();
    assert_eq!(by_owner, credited);
    assert_eq!(demo.ledger_entries, 20);

    // Leapfrog's energy error grows with the step: the sweep shows it.
    drifts.sort_by(|a, b| a.0.total_cmp(&b.0));
    assert!(drifts.windows(2).all(|w| w[0].1 < w[1].1), "{drifts:?}");
    assert!(drifts[0].1 < 1e-6, "{drifts:?}");

    let lines = lines.into_inner().unwrap();
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("ledger ") && l.contains("verified"))
    );
}

#[tokio::test]
async fn an_unknown_job_is_named_in_the_error() {
    let dir = tempfile::tempdir().unwrap();
    let err = demo::run(&dir.path().join("demo"), &["nbdoy".into()], &|_| {})
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("\"nbdoy\"") && err.contains("hashchain"),
        "{err}"
    );
}
