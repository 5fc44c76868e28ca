//! Cooperating rogues against the real runner code: honest volunteers (the agent, as
//! `runner` runs it) with long records, and rogue runners of owners of their own that pass
//! their health checks honestly, then ask for work in lock-step. Some lie only when a fellow
//! rogue holds the same task (and hand back every task they hold alone); the others lie on
//! every task, all agreeing on one forgery per task.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use helio_runner::agent::{Client, Stop};
use helio_sdk::wire::{Lease, ReportStatus};

use super::grid::{Db, TestGrid, chain, hashchain_batch, lie, rogue};
use super::nodes::runner_list;
use super::trust::{adaptive, establish};

/// Waits until `owners`' runners are registered and warm; returns their ids.
async fn warm(grid: &TestGrid, owners: &[&str]) -> Vec<String> {
    let start = Instant::now();
    loop {
        let runners = runner_list(&grid.url).await;
        let ids: Vec<String> = runners
            .iter()
            .filter(|r| owners.contains(&r.owner.as_str()) && r.warm)
            .map(|r| r.id.clone())
            .collect();
        if ids.len() == owners.len() {
            return ids;
        }
        assert!(start.elapsed() < Duration::from_secs(60), "{runners:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cooperating_rogues_get_nothing_forged_accepted_and_keep_nothing() {
    let grid = TestGrid::start(Db::Sqlite, 60_000).await;
    let honest = ["honest-a", "honest-b"];
    let agents: Vec<_> = honest.iter().map(|o| grid.runner(o, 2)).collect();
    let honest_ids = warm(&grid, &honest).await;
    for id in &honest_ids {
        establish(&grid, id).await;
    }
    let (tasks, rounds) = (12, 10);
    let mut pairers = Vec::new();
    let mut liars = Vec::new();
    for i in 0..3 {
        pairers.push(rogue(&grid.url, &format!("pairer-{i}")).await);
        liars.push(rogue(&grid.url, &format!("liar-{i}")).await);
    }
    let batch = grid
        .submit(&adaptive(hashchain_batch(
            grid.dir.path(),
            tasks,
            rounds,
            60,
        )))
        .await;

    // In lock-step: every rogue asks, one right after the other; then each answers. They
    // share what they hold: which rogues hold a lease of each task or reported it.
    let mut held: BTreeMap<i64, BTreeSet<String>> = BTreeMap::new();
    let mut paired_leases = Vec::new();
    let start = Instant::now();
    loop {
        let status = grid.submitter().status(&batch).await.unwrap();
        if status.done() {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(90), "{status:?}");
        let mut round: Vec<(&Client, bool, Lease)> = Vec::new();
        for (rogue, pairs) in pairers
            .iter()
            .map(|r| (r, true))
            .chain(liars.iter().map(|r| (r, false)))
        {
            for lease in rogue.lease(1).await.unwrap() {
                let holders = held.entry(lease.task_id).or_default();
                if !holders.is_empty() {
                    paired_leases.push((lease.task_id, holders.clone()));
                }
                holders.insert(rogue.runner_id().to_string());
                round.push((rogue, pairs, lease));
            }
        }
        for (rogue, pairs, lease) in &round {
            let paired = held[&lease.task_id].len() > 1;
            if *pairs && !paired {
                rogue.give_back(vec![lease.task_id]).await.unwrap();
                held.get_mut(&lease.task_id)
                    .unwrap()
                    .remove(&rogue.runner_id());
                continue;
            }
            let acks = rogue.report(vec![lie(rogue, lease)]).await.unwrap();
            assert_ne!(acks[0].status, ReportStatus::Accepted, "{acks:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // No rogue ever got a task another rogue held or had reported: a newcomer's task goes
    // next to an established runner.
    assert!(paired_leases.is_empty(), "rogues paired: {paired_leases:?}");
    let results = grid.submitter().results(&batch).await.unwrap();
    for task in &results.tasks {
        let result = task.result.as_ref().expect("accepted");
        assert!(result.outcome.is_success(), "{task:?}");
        assert!(
            task.agreeing.iter().all(|r| honest_ids.contains(r)),
            "only honest runners vouch for a result: {task:?}"
        );
    }
    let out = grid.dir.path().join("results");
    grid.submitter()
        .download(&batch, out.to_str().unwrap())
        .await
        .unwrap();
    for i in 0..tasks {
        let written =
            std::fs::read_to_string(out.join(format!("chain-{i:03}")).join("digest.txt")).unwrap();
        assert_eq!(
            written.trim(),
            chain([i as u8; 32], rounds),
            "no forgery stands"
        );
    }
    // The rogues earned nothing; every liar that reported was caught.
    let credits = grid.submitter().credits("owner").await.unwrap();
    for row in &credits.rows {
        assert!(
            honest.contains(&row.key.as_str()) || row.micro_credits == 0,
            "{credits:?}"
        );
    }
    let runners = runner_list(&grid.url).await;
    for liar in &liars {
        let info = runners.iter().find(|r| r.id == liar.runner_id()).unwrap();
        assert!(info.agreements == 0, "{info:?}");
        if info.disagreements == 0 {
            // It never reported: every task it asked for went to someone else.
            continue;
        }
        assert!(info.flagged, "{info:?}");
    }
    // Each runner's record says why it is believed or not.
    for id in &honest_ids {
        let info = runners.iter().find(|r| &r.id == id).unwrap();
        assert!(info.established && info.verified >= 5_000, "{info:?}");
    }
    for pairer in &pairers {
        let info = runners.iter().find(|r| r.id == pairer.runner_id()).unwrap();
        assert!(!info.established && info.verified == 0, "{info:?}");
        assert!(
            info.returns > 0,
            "its hand-backs are on its record: {info:?}"
        );
    }
    assert!(
        liars
            .iter()
            .any(|l| runners.iter().any(|r| r.id == l.runner_id() && r.flagged)),
        "some liar reported and was caught: {runners:?}"
    );
    for (stop, _) in &agents {
        let _ = stop.send(Stop::Now);
    }
    for (_, task) in agents {
        let _ = task.await;
    }
}
