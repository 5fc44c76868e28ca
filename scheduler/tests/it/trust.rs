//! The grid against runners that lie (issue 30): what no honest runner could report is
//! refused and counts against its runner.

use helio_sdk::wire::{Lease, ReportStatus, ResultReport};
use helio_sdk::{Blake3Hash, Name, Outcome, OutputRecord, RunReport};

use helio_scheduler::ledger;
use helio_scheduler::service;

use super::grid::{Db, TestGrid, chain, hashchain_batch, lie, rogue};
use super::nodes::runner_list;

/// The fuel limit of [`hashchain_batch`]'s tasks, and their one output's `max_bytes`.
const FUEL_LIMIT: u64 = 10_000_000_000;
const DIGEST_MAX_BYTES: u64 = 128;

fn report(outcome: Outcome, fuel: u64, outputs: Vec<(&str, u64)>) -> RunReport {
    let outputs = outputs
        .into_iter()
        .map(|(name, bytes)| OutputRecord {
            name: Name::parse(name).unwrap(),
            bytes,
            blake3: Blake3Hash::of(name.as_bytes()),
        })
        .collect();
    RunReport::new(outcome, fuel, Blake3Hash::of(b"made up"), outputs, 1)
}

fn signed(client: &helio_runner::agent::Client, lease: &Lease, r: &RunReport) -> ResultReport {
    client.result(lease, r)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn impossible_reports_are_refused_and_count_against_their_runner() {
    let grid = TestGrid::start(Db::Sqlite, 60_000).await;
    grid.submit(&hashchain_batch(grid.dir.path(), 6, 10, 60))
        .await;
    let ok = Outcome::Exited { exit_code: 0 };
    let cases = [
        (
            report(ok.clone(), FUEL_LIMIT + 1, vec![]),
            "fuel, above the task's limit",
        ),
        (
            report(Outcome::OutOfFuel, FUEL_LIMIT - 1, vec![]),
            "charged the whole limit",
        ),
        (
            report(
                Outcome::Trapped {
                    trap: "stack_overflow".into(),
                },
                7,
                vec![],
            ),
            "charged the whole limit",
        ),
        (
            report(ok.clone(), 7, vec![("secret.bin", 1)]),
            "does not declare",
        ),
        (
            report(ok.clone(), 7, vec![("digest.txt", DIGEST_MAX_BYTES + 1)]),
            "above its max_bytes",
        ),
    ];
    for (i, (r, says)) in cases.iter().enumerate() {
        let liar = rogue(&grid.url, &format!("liar-{i}")).await;
        let lease = liar.lease(1).await.unwrap().remove(0);
        let acks = liar.report(vec![signed(&liar, &lease, r)]).await.unwrap();
        assert_eq!(acks[0].status, ReportStatus::Refused, "case {i}: {acks:?}");
        let error = acks[0].error.as_deref().unwrap_or_default();
        assert!(error.contains(says), "case {i}: {error}");
        assert_eq!(acks[0].micro_credits, 0);
        let info = runner_list(&grid.url)
            .await
            .into_iter()
            .find(|r| r.id == liar.runner_id())
            .unwrap();
        assert!(
            info.flagged && info.disagreements == 1,
            "case {i}: the liar is flagged: {info:?}"
        );
    }
    // A lie that keeps within the bounds is not refused by them: only a quorum can tell.
    let plausible = rogue(&grid.url, "plausible").await;
    let lease = plausible.lease(1).await.unwrap().remove(0);
    let within = report(
        Outcome::OutOfFuel,
        FUEL_LIMIT,
        vec![("digest.txt", DIGEST_MAX_BYTES)],
    );
    let acks = plausible
        .report(vec![signed(&plausible, &lease, &within)])
        .await
        .unwrap();
    assert_eq!(acks[0].status, ReportStatus::Recorded, "{acks:?}");
}

/// Two rogues of two owners agree on a forged result and are accepted with it; its outputs
/// never come, so the scheduler runs the task itself to recover them. Its run gives the
/// true digest and wins: the task is accepted with the scheduler's result, both rogues are
/// flagged, and the batch finishes with the true outputs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_schedulers_own_run_overrules_a_forged_acceptance() {
    let grid = TestGrid::start(Db::Sqlite, 60_000).await;
    let rounds = 10;
    let batch = grid
        .submit(&hashchain_batch(grid.dir.path(), 1, rounds, 60))
        .await;
    let (a, b) = (
        rogue(&grid.url, "forger-a").await,
        rogue(&grid.url, "forger-b").await,
    );
    let (la, lb) = (a.lease(1).await.unwrap(), b.lease(1).await.unwrap());
    assert_eq!((la.len(), lb.len()), (1, 1));
    assert_eq!(
        la[0].task_id, lb[0].task_id,
        "both replicas of the one task"
    );
    let first = a.report(vec![lie(&a, &la[0])]).await.unwrap();
    assert_eq!(first[0].status, ReportStatus::Recorded, "{first:?}");
    let second = b.report(vec![lie(&b, &lb[0])]).await.unwrap();
    assert_eq!(
        second[0].status,
        ReportStatus::Accepted,
        "the forgery is accepted: {second:?}"
    );

    // The forged result names a standard output no runner uploads: after upload_wait_ms
    // the scheduler runs the task itself, and its run overrules the forgery.
    let status = grid.wait_for(&batch, |s| s.done()).await;
    assert_eq!((status.succeeded, status.failed), (1, 0), "{status:?}");
    let results = grid.submitter().results(&batch).await.unwrap();
    let result = results.tasks[0].result.as_ref().unwrap();
    assert_ne!(
        result.digest,
        lie(&a, &la[0]).report.digest,
        "the forgery is gone"
    );
    let out = grid.dir.path().join("results");
    grid.submitter()
        .download(&batch, out.to_str().unwrap())
        .await
        .unwrap();
    let written = std::fs::read_to_string(out.join("chain-000").join("digest.txt")).unwrap();
    assert_eq!(written.trim(), chain([0; 32], rounds));
    for rogue in [&a, &b] {
        let info = runner_list(&grid.url)
            .await
            .into_iter()
            .find(|r| r.id == rogue.runner_id())
            .unwrap();
        assert!(info.flagged && !info.trusted, "{info:?}");
        assert_eq!(info.agreements, 0, "its agreement is taken back: {info:?}");
    }
    // And so are the forgers' credits, by compensating entries: the ledger still verifies,
    // and nobody holds a credit for the task.
    assert!(
        results.tasks[0].agreeing.is_empty(),
        "{:?}",
        results.tasks[0]
    );
    assert_eq!(
        (results.tasks[0].micro_credits, status.micro_credits),
        (0, 0)
    );
    let by_runner = grid.submitter().credits("runner").await.unwrap();
    assert!(by_runner.rows.iter().all(|r| r.tasks == 0), "{by_runner:?}");
    let by_batch = grid.submitter().credits("batch").await.unwrap();
    assert!(
        by_batch
            .rows
            .iter()
            .all(|r| r.micro_credits == 0 && r.fuel == 0),
        "{by_batch:?}"
    );
    assert_eq!(
        verified_reversals(&grid).await,
        2,
        "one reversal per forger"
    );
}

/// The ledger's reversals, once it verifies.
async fn verified_reversals(grid: &TestGrid) -> usize {
    let store = service::open_store(&grid.config).await.unwrap();
    let (entries, len, head) = store.ledger().await.unwrap();
    ledger::verify_anchored(&entries, len, &head).unwrap();
    entries
        .iter()
        .filter(|e| e.credit.kind == ledger::Kind::Reversal)
        .count()
}

/// The batch manifest at `path` made to ask for a target error of 1e-4, one replica at
/// first (credibility decides); returns `path`.
pub(super) fn adaptive(path: std::path::PathBuf) -> std::path::PathBuf {
    let mut manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    manifest["redundancy"] = serde_json::json!({ "replicas": 1, "quorum": 1, "max_replicas": 3 });
    manifest["target_error"] = serde_json::json!(1e-4);
    std::fs::write(&path, manifest.to_string()).unwrap();
    path
}

/// Runner `id`'s record made long (5,000 agreements), as if it had been verified for months:
/// established, its result alone believed at a target of 1e-4.
pub(super) async fn establish(grid: &TestGrid, id: &str) {
    use sqlx::Connection;
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(&grid.config.database_url())
        .await
        .unwrap();
    sqlx::query("UPDATE runners SET agreements = 5000 WHERE id = $1")
        .bind(id)
        .execute(&mut conn)
        .await
        .unwrap();
}

/// A runner behaves until it is trusted, then forges every result it gets, alone: with a
/// target error the grid accepts an established runner's result alone, and the scheduler's
/// own sandbox spot-checks it (every result here; none is recovered, outputs are waited
/// for an hour). Each forgery is overruled by the scheduler's run, the batch finishes with
/// the true outputs, the forger is flagged and its credits are reversed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spot_checks_catch_a_trusted_forger_and_correct_every_forgery() {
    let grid = TestGrid::start_with(Db::Sqlite, |c| {
        c.api.lease_grace_ms = 60_000;
        c.upload_wait_ms = 3_600_000;
        c.policy.credibility.spot_rate = 1.0;
    })
    .await;
    let rounds = 10;
    let path = adaptive(hashchain_batch(grid.dir.path(), 2, rounds, 60));
    let batch = grid.submit(&path).await;
    let forger = rogue(&grid.url, "trusted-forger").await;
    establish(&grid, &forger.runner_id()).await;
    let leases = forger.lease(2).await.unwrap();
    assert_eq!(leases.len(), 2, "both tasks, one runner each");
    let acks = forger
        .report(leases.iter().map(|l| lie(&forger, l)).collect())
        .await
        .unwrap();
    assert!(
        acks.iter().all(|a| a.status == ReportStatus::Accepted),
        "an established runner's word is accepted alone: {acks:?}"
    );

    // The scheduler's spot checks run both tasks in its sandbox and overrule the forgeries.
    let status = grid
        .wait_for(&batch, |s| s.done() && s.micro_credits == 0)
        .await;
    assert_eq!((status.succeeded, status.failed), (2, 0), "{status:?}");
    let results = grid.submitter().results(&batch).await.unwrap();
    for (task, lease) in results.tasks.iter().zip(&leases) {
        let result = task.result.as_ref().unwrap();
        assert_ne!(result.digest, lie(&forger, lease).report.digest, "{task:?}");
        assert_eq!(task.decided_by.as_deref(), Some("scheduler"), "{task:?}");
        assert!(task.agreeing.is_empty(), "{task:?}");
        // The submitter sees that it was corrected, when and why.
        let corrected = task.corrected.as_ref().expect("a corrected result says so");
        assert!(corrected.at_ms > 0, "{corrected:?}");
        let forged = lie(&forger, lease).report.digest.to_string();
        assert!(corrected.why.contains(&forged), "{corrected:?}");
    }
    let info = runner_list(&grid.url)
        .await
        .into_iter()
        .find(|r| r.id == forger.runner_id())
        .unwrap();
    assert!(info.flagged && !info.trusted, "{info:?}");
    assert_eq!(
        verified_reversals(&grid).await,
        2,
        "one reversal per forgery"
    );
}
