//! Credibility in the store (decision 059): newcomers cross-checked by established runners,
//! spot checks, and the re-verification of what a runner found false vouched for.

use super::*;
use helio_sdk::{Outcome, wire::ReportStatus};

/// A store whose batch of `tasks` tasks asks for a target error of 1e-4 (one replica at
/// first), spot-checking at `spot_rate`, with warm runners of `owners`; the first
/// `established` of them have a long record.
async fn fixture(
    tasks: usize,
    owners: &[&str],
    established: usize,
    spot_rate: f64,
) -> (
    tempfile::TempDir,
    Store,
    Vec<(RunnerRecord, wire::RunnerKey)>,
) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("s.db").display());
    let mut policy = CreditPolicy::default();
    policy.credibility.spot_rate = spot_rate;
    let store = Store::open(&url).await.unwrap().with_policy(policy);
    let tasks: Vec<_> = (0..tasks)
        .map(|i| serde_json::json!({ "name": format!("t{i}") }))
        .collect();
    let batch = BatchManifest::from_value(serde_json::json!({
        "schema_version": 1,
        "batch": "credible",
        "defaults": {
            "module": { "uri": "m.wasm", "blake3": Blake3Hash::of(b"module").to_string() },
            "limits": { "fuel": 1000 },
        },
        "redundancy": { "replicas": 1, "quorum": 1, "max_replicas": 4 },
        "target_error": 1e-4,
        "tasks": tasks,
    }))
    .unwrap();
    store
        .submit(&batch, "test", &Steer::default(), 0)
        .await
        .unwrap();
    let mut runners = Vec::new();
    for (i, owner) in owners.iter().enumerate() {
        let (runner, key) = super::tests::warm_runner(&store, i, owner, 1).await;
        if i < established {
            sqlx::query("UPDATE runners SET agreements = 5000 WHERE id = $1")
                .bind(&runner.id)
                .execute(&store.pool)
                .await
                .unwrap();
        }
        runners.push((runner, key));
    }
    (dir, store, runners)
}

/// The true result of task `lease`, or a forged one.
fn result(lease: &Lease, key: &wire::RunnerKey, forged: bool) -> ResultReport {
    let stdout = format!(
        "{} {}",
        if forged { "forged" } else { "true" },
        lease.task_id
    );
    let report = RunReport::new(
        Outcome::Exited { exit_code: 0 },
        100,
        Blake3Hash::of(stdout.as_bytes()),
        Vec::new(),
        1,
    );
    ResultReport {
        task_id: lease.task_id,
        signature: key.sign(&wire::result_message(
            &lease.batch,
            lease.manifest.name.as_str(),
            &report.digest,
        )),
        report,
    }
}

async fn record(store: &Store, runner: &RunnerRecord) -> Reputation {
    store.runner(&runner.id).await.unwrap().unwrap().reputation
}

async fn check_jobs(store: &Store) -> Vec<AuthorityJob> {
    let mut turns = Turns::default();
    store
        .authority_jobs(10, 1_000_000, &mut turns)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_newcomer_is_cross_checked_by_an_established_runner() {
    let (_dir, store, runners) = fixture(1, &["est", "new1", "new2"], 1, 0.0).await;
    let [(est, est_key), (new1, key1), (new2, _)] = &runners[..] else {
        unreachable!()
    };
    let lease = store.lease(new1, 1, 1, 60_000).await.unwrap().remove(0);
    let (acks, _) = store
        .report(new1, &[result(&lease, key1, false)], None, 2)
        .await
        .unwrap();
    assert_eq!(acks[0].status, ReportStatus::Recorded, "not enough alone");
    // The task wants one more runner: not the other newcomer while an established runner
    // is online, but the established one.
    assert!(store.lease(new2, 1, 3, 60_000).await.unwrap().is_empty());
    let second = store.lease(est, 1, 3, 60_000).await.unwrap().remove(0);
    assert_eq!(second.task_id, lease.task_id);
    let (acks, _) = store
        .report(est, &[result(&second, est_key, false)], None, 4)
        .await
        .unwrap();
    assert_eq!(acks[0].status, ReportStatus::Accepted, "{acks:?}");
    assert_eq!(record(&store, new1).await.agreements, 1);
    assert_eq!(record(&store, est).await.agreements, 5001);
}

#[tokio::test]
async fn a_spot_check_passed_counts_on_the_record_and_is_done_once() {
    let (_dir, store, runners) = fixture(1, &["est"], 1, 1.0).await;
    let (est, key) = &runners[0];
    let lease = store.lease(est, 1, 1, 60_000).await.unwrap().remove(0);
    let r = result(&lease, key, false);
    let (acks, _) = store
        .report(est, std::slice::from_ref(&r), None, 2)
        .await
        .unwrap();
    assert_eq!(acks[0].status, ReportStatus::Accepted, "alone: {acks:?}");
    // Its word alone is no agreement; the scheduler's check, drawn at rate 1, is due.
    assert_eq!(record(&store, est).await.agreements, 5000);
    let jobs = check_jobs(&store).await;
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].expect, Some(r.report.digest));
    let task = jobs[0].task_id;
    assert!(!store.overrule(task, &r.report, 3).await.unwrap());
    assert_eq!(record(&store, est).await.spot_checks, 1);
    assert!(check_jobs(&store).await.is_empty(), "checked once");
}

/// A trusted runner forges three tasks alone, an honest runner runs a fourth; the
/// scheduler's run of the first (a spot check, or a recovery) catches the forger: the two
/// others it vouched for wait for the scheduler's re-verification and are corrected, their
/// credits reversed; the honest runner's is not touched.
#[tokio::test]
async fn a_runner_found_false_has_what_it_vouched_for_verified_again() {
    let (_dir, store, runners) = fixture(4, &["forger", "honest"], 2, 0.0).await;
    let [(forger, fkey), (honest, hkey)] = &runners[..] else {
        unreachable!()
    };
    let mut forged = Vec::new();
    for now in 1..=3 {
        let lease = store.lease(forger, 1, now, 60_000).await.unwrap().remove(0);
        let r = result(&lease, fkey, true);
        let (acks, _) = store.report(forger, &[r], None, now).await.unwrap();
        assert_eq!(acks[0].status, ReportStatus::Accepted);
        forged.push(lease);
    }
    // The fourth: the honest runner's.
    let lease = store.lease(honest, 1, 4, 60_000).await.unwrap().remove(0);
    let (acks, _) = store
        .report(honest, &[result(&lease, hkey, false)], None, 4)
        .await
        .unwrap();
    assert_eq!(acks[0].status, ReportStatus::Accepted);
    assert!(check_jobs(&store).await.is_empty(), "no spot checks drawn");

    let first = TaskId::new(forged[0].task_id).unwrap();
    let truth = result(&forged[0], hkey, false).report;
    assert!(store.overrule(first, &truth, 5).await.unwrap());
    assert!(record(&store, forger).await.flagged());
    let jobs = check_jobs(&store).await;
    let mut due: Vec<i64> = jobs.iter().map(|j| j.task_id.get()).collect();
    due.sort_unstable();
    let mut expected: Vec<i64> = forged[1..].iter().map(|l| l.task_id).collect();
    expected.sort_unstable();
    assert_eq!(due, expected, "the forger's other results are due again");
    for lease in &forged[1..] {
        let truth = result(lease, hkey, false).report;
        let task = TaskId::new(lease.task_id).unwrap();
        assert!(store.overrule(task, &truth, 6).await.unwrap());
    }
    assert!(check_jobs(&store).await.is_empty());
    let batch: BatchId = forged[0].batch.parse().unwrap();
    let results = store.batch_results(&batch).await.unwrap();
    for t in &results.tasks {
        let digest = t.result.as_ref().unwrap().digest;
        let lease = forged
            .iter()
            .chain([&lease])
            .find(|l| l.manifest.name.as_str() == t.task)
            .unwrap();
        assert_eq!(digest, result(lease, hkey, false).report.digest, "{t:?}");
    }
    // Every credit the forger was given is taken back; the ledger still verifies.
    let by_runner = store.credits("runner").await.unwrap();
    let kept = by_runner.iter().find(|r| r.key == forger.id);
    assert!(kept.is_none_or(|r| r.micro_credits == 0), "{by_runner:?}");
    let (entries, len, head) = store.ledger().await.unwrap();
    crate::ledger::verify_anchored(&entries, len, &head).unwrap();
}
