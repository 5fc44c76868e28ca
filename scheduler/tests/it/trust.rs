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
    let store = service::open_store(&grid.config).await.unwrap();
    let (entries, len, head) = store.ledger().await.unwrap();
    ledger::verify_anchored(&entries, len, &head).unwrap();
    let reversed = entries
        .iter()
        .filter(|e| e.credit.kind == ledger::Kind::Reversal)
        .count();
    assert_eq!(reversed, 2, "one reversal per forger: {entries:?}");
}
