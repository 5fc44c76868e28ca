//! The grid against runners that lie (issue 30): what no honest runner could report is
//! refused and counts against its runner.

use helio_sdk::wire::{Lease, ReportStatus, ResultReport};
use helio_sdk::{Blake3Hash, Name, Outcome, OutputRecord, RunReport};

use super::grid::{Db, TestGrid, hashchain_batch, rogue};
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
