//! Fair share, priority and quotas ([`Shares`]) over random queues, grants and leases out:
//! who is served next, with no database.

use std::collections::BTreeMap;

use helio_scheduler::rules::Asker;
use helio_scheduler::share::{Grant, Queue, Shares};
use helio_scheduler::task::{Reputation, TaskState};
use helio_sdk::{Redundancy, Tier};
use proptest::prelude::*;

fn queue(batch: &str, submitter: &str, priority: i64, since_ms: i64) -> Queue {
    Queue {
        batch: batch.into(),
        submitter: submitter.into(),
        priority,
        since_ms,
    }
}

/// Random queues of up to five submitters, with shares, quotas and leases out.
fn grid() -> impl Strategy<Value = (Vec<Queue>, BTreeMap<String, Grant>, BTreeMap<String, u64>)> {
    (
        prop::collection::vec((0..5u8, -2..3i64, 0..100i64), 1..12),
        prop::collection::vec((1..4u32, prop::option::weighted(0.4, 0..20u64)), 5),
        prop::collection::vec(0..30u64, 5),
    )
        .prop_map(|(queues, grants, running)| {
            let queues = queues
                .into_iter()
                .enumerate()
                .map(|(i, (s, priority, since))| {
                    queue(&format!("b{i}"), &format!("s{s}"), priority, since)
                })
                .collect();
            let grants = grants
                .into_iter()
                .enumerate()
                .map(|(s, (share, max_running))| (format!("s{s}"), Grant { share, max_running }))
                .collect();
            let running = running
                .into_iter()
                .enumerate()
                .map(|(s, n)| (format!("s{s}"), n))
                .collect();
            (queues, grants, running)
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    /// Each pick, from any state: it goes to a submitter below its quota whose leases out
    /// per unit of share are the fewest among submitters below quota with open work; to
    /// that submitter's best open batch (no open batch of it has a higher priority, nor the
    /// same priority and an earlier submission); and there is a pick whenever some open
    /// batch's submitter is below its quota.
    #[test]
    fn each_pick_goes_to_the_least_served_submitters_best_batch(
        (queues, grants, running) in grid(),
        closed in prop::collection::vec(any::<bool>(), 12),
        picks in 1..60usize,
    ) {
        let shares = Shares::new(queues.clone(), &grants, &running);
        let sorted = shares.queues().to_vec();
        let open = |q: usize| !closed[q];
        let mut tally = shares.tally();
        let mut out: BTreeMap<String, u64> = running.clone();
        for _ in 0..picks {
            let eligible: Vec<usize> = (0..sorted.len())
                .filter(|&q| open(q) && shares.below_quota(&tally, q))
                .collect();
            let Some(q) = shares.next(&tally, open) else {
                prop_assert!(eligible.is_empty(), "no pick while {:?} could be served", eligible);
                break;
            };
            prop_assert!(eligible.contains(&q));
            let me = &sorted[q];
            let ratio = |name: &str| {
                let share = grants.get(name).map_or(1, |g| g.share.max(1));
                out.get(name).copied().unwrap_or(0) as f64 / f64::from(share)
            };
            for &e in &eligible {
                prop_assert!(
                    ratio(&me.submitter) <= ratio(&sorted[e].submitter) + 1e-9,
                    "{} served before {}, which has fewer out per share",
                    me.submitter,
                    sorted[e].submitter
                );
                if sorted[e].submitter == me.submitter {
                    prop_assert!(
                        (me.priority, -me.since_ms) >= (sorted[e].priority, -sorted[e].since_ms),
                        "batch {} served before its submitter's better batch {}",
                        me.batch,
                        sorted[e].batch
                    );
                }
            }
            shares.take(&mut tally, q);
            *out.entry(me.submitter.clone()).or_default() += 1;
            // No quota is passed.
            if let Some(max) = grants.get(&me.submitter).and_then(|g| g.max_running) {
                prop_assert!(
                    out[&me.submitter] <= max.max(running[&me.submitter]),
                    "{} past its quota of {}",
                    me.submitter,
                    max
                );
            }
        }
    }

    /// From no leases out, with every batch open and no quotas: after any number of picks,
    /// any two submitters' leases per unit of share differ by at most one lease's worth.
    #[test]
    fn shares_stay_even((queues, grants, _) in grid(), picks in 1..200usize) {
        let grants: BTreeMap<String, Grant> = grants
            .into_iter()
            .map(|(name, g)| (name, Grant { max_running: None, ..g }))
            .collect();
        let shares = Shares::new(queues, &grants, &BTreeMap::new());
        let mut tally = shares.tally();
        let mut out: BTreeMap<String, u64> = BTreeMap::new();
        for _ in 0..picks {
            let q = shares.next(&tally, |_| true).expect("open work, no quotas");
            shares.take(&mut tally, q);
            *out.entry(shares.queues()[q].submitter.clone()).or_default() += 1;
        }
        let submitters: std::collections::BTreeSet<&str> =
            shares.queues().iter().map(|q| q.submitter.as_str()).collect();
        let ratio = |name: &str| {
            out.get(name).copied().unwrap_or(0) as f64 / f64::from(grants[name].share)
        };
        for a in &submitters {
            for b in &submitters {
                prop_assert!(
                    ratio(a) - ratio(b) <= 1.0 + 1e-9,
                    "{} has {:?} per share, {} {:?}",
                    a, ratio(a), b, ratio(b)
                );
            }
        }
    }

    /// A plan serves at most `n`, never more from a queue than it has, and in sum as many
    /// as the picks it stands for.
    #[test]
    fn a_plan_keeps_to_what_each_queue_has(
        (queues, grants, running) in grid(),
        left in prop::collection::vec(prop::option::of(0..10u64), 12),
        n in 0..40u32,
    ) {
        let shares = Shares::new(queues, &grants, &running);
        let mut open: Vec<Option<u64>> = left[..shares.queues().len()].to_vec();
        let before = open.clone();
        let plan = shares.plan(n, &mut shares.tally(), &mut open);
        let total: u32 = plan.iter().map(|(_, k)| k).sum();
        prop_assert!(total <= n);
        for (q, k) in &plan {
            if let Some(had) = before[*q] {
                prop_assert!(u64::from(*k) <= had);
            }
            prop_assert!(plan.iter().filter(|(p, _)| p == q).count() == 1);
        }
        // Where it stopped short, nothing more could be served.
        if total < n {
            let tally = {
                let mut t = shares.tally();
                for (q, k) in &plan {
                    for _ in 0..*k {
                        shares.take(&mut t, *q);
                    }
                }
                t
            };
            prop_assert!(shares.next(&tally, |q| open[q] != Some(0)).is_none());
        }
    }
}

fn redundancy() -> Redundancy {
    Redundancy {
        replicas: 1,
        quorum: 1,
        max_replicas: 1,
    }
}

/// A trusted runner's request for `slots` tasks.
pub(super) fn trusted_asker<'a>(slots: u32) -> Asker<'a> {
    Asker {
        runner: "r",
        owner: "o",
        tier: Tier::Cpu,
        slots,
        reputation: Reputation {
            agreements: 100,
            ..Reputation::default()
        },
        active: 0,
        weight: helio_scheduler::credibility::Weight(0),
        established_online: false,
    }
}

/// One submitter's million-task batch fills every slot; another's ten tasks then go out as
/// the next ten leases, not after the million.
#[test]
fn ten_tasks_are_not_starved_by_a_million() {
    let queues = vec![queue("big", "alice", 0, 0), queue("small", "bob", 0, 1_000)];
    let running = BTreeMap::from([("alice".to_string(), 100)]);
    let shares = Shares::new(queues, &BTreeMap::new(), &running);
    let state = TaskState::new(redundancy());
    let (big, small) = (
        shares.queue("big").expect("a queue"),
        shares.queue("small").expect("a queue"),
    );
    // Alice's tasks first by id, as a first-come queue would serve them.
    let tasks: Vec<(i64, usize, Tier, &TaskState)> = (1..=1_000)
        .map(|id| (id, big, Tier::Cpu, &state))
        .chain((1_001..=1_010).map(|id| (id, small, Tier::Cpu, &state)))
        .collect();
    let chosen = trusted_asker(10).choose_fairly(tasks.iter().copied(), 10, 7, &shares);
    assert_eq!(chosen, (1_001..=1_010).collect::<Vec<i64>>());
    // With Bob even with Alice, they alternate.
    let running = BTreeMap::from([("alice".to_string(), 5), ("bob".to_string(), 5)]);
    let shares = Shares::new(shares.queues().to_vec(), &BTreeMap::new(), &running);
    let chosen = trusted_asker(10).choose_fairly(tasks.iter().copied(), 10, 7, &shares);
    let bobs = chosen.iter().filter(|&&id| id > 1_000).count();
    assert_eq!(bobs, 5, "{chosen:?}");
}

/// A quota holds within one request, and a paused or cancelled batch (no queue) is never
/// chosen; priority orders one submitter's batches only.
#[test]
fn quotas_and_priority_within_a_request() {
    let queues = vec![
        queue("low", "alice", 0, 0),
        queue("high", "alice", 5, 10),
        queue("bobs", "bob", -3, 20),
    ];
    let grants = BTreeMap::from([(
        "alice".to_string(),
        Grant {
            share: 1,
            max_running: Some(3),
        },
    )]);
    let shares = Shares::new(queues, &grants, &BTreeMap::new());
    let state = TaskState::new(redundancy());
    let q = |b: &str| shares.queue(b).expect("a queue");
    let tasks: Vec<(i64, usize, Tier, &TaskState)> = (1..=20)
        .map(|id| (id, q("low"), Tier::Cpu, &state))
        .chain((21..=40).map(|id| (id, q("high"), Tier::Cpu, &state)))
        .chain((41..=60).map(|id| (id, q("bobs"), Tier::Cpu, &state)))
        .collect();
    let chosen = trusted_asker(10).choose_fairly(tasks.iter().copied(), 10, 3, &shares);
    let of = |lo: i64, hi: i64| chosen.iter().filter(|&&id| (lo..=hi).contains(&id)).count();
    // Alice: three (her quota), all of her high-priority batch; Bob the rest, though his
    // batch's priority is lower than both of hers.
    assert_eq!((of(1, 20), of(21, 40), of(41, 60)), (0, 3, 7), "{chosen:?}");
}
