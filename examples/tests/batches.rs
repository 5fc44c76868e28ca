//! The example batches: each is valid, holds 10 to 1000 tasks, and its first task runs to a
//! success in the sandbox, straight from the batch manifest.

use helio_runner::{Sandbox, SandboxConfig, load_batch_task};

#[test]
fn every_example_batch_is_valid_and_its_first_task_runs() {
    let dir = tempfile::tempdir().unwrap();
    let examples = helio_examples::batches::write_batches(dir.path()).unwrap();
    let jobs: Vec<&str> = examples.iter().map(|e| e.job).collect();
    assert_eq!(
        jobs,
        [
            "nbody",
            "ising",
            "hpfold",
            "businesses",
            "thumbnails",
            "hashchain"
        ]
    );
    let sandbox = Sandbox::new(SandboxConfig::default()).unwrap();
    for e in &examples {
        assert!(
            (10..=1000).contains(&e.packed.tasks),
            "{}: {} tasks",
            e.job,
            e.packed.tasks
        );
        let report = helio_cli::validate::validate(&e.packed.manifest).unwrap();
        assert!(
            report.problems.is_empty(),
            "{}: {:?}",
            e.job,
            report.problems
        );
        assert_eq!(report.tasks, e.packed.tasks);
        let batch = helio_sdk::BatchManifest::from_json(
            &std::fs::read_to_string(&e.packed.manifest).unwrap(),
        )
        .unwrap();
        let first = batch.tasks[0].name.as_str();
        let task = load_batch_task(&e.packed.manifest, first).unwrap();
        let run = task.run(&sandbox).unwrap();
        assert!(
            run.report.outcome.is_success(),
            "{} {first}: {:?}\n{}",
            e.job,
            run.report.outcome,
            String::from_utf8_lossy(&run.stderr)
        );
    }
}

#[test]
fn the_business_list_is_the_same_every_time() {
    let a = helio_examples::batches::businesses_csv(100);
    assert_eq!(a, helio_examples::batches::businesses_csv(100));
    assert_eq!(a.lines().count(), 101);
}
