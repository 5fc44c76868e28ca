use std::collections::BTreeSet;

use helio_scheduler::task::{
    Effect, LEASES_PER_REPLICA, Phase, Refusal, ReplicaState, Reputation, TaskState,
};
use helio_sdk::{Blake3Hash, Redundancy};
use proptest::prelude::*;

fn d(n: u8) -> Blake3Hash {
    Blake3Hash::from_bytes([n; 32])
}

const RED: Redundancy = Redundancy {
    replicas: 2,
    quorum: 2,
    max_replicas: 5,
};

#[test]
fn two_agreeing_runners_accept_and_both_are_credited() {
    let mut t = TaskState::new(RED);
    assert_eq!(t.wanted, 2);
    t.lease("a", "alice", 100).unwrap();
    t.lease("b", "bob", 100).unwrap();
    assert_eq!(t.may_lease("c", "carol"), Err(Refusal::NotWanted));
    assert_eq!(t.report("a", Some(d(1)), 10), Ok(Effect::Nothing));
    assert_eq!(
        t.report("b", Some(d(1)), 20),
        Ok(Effect::Accepted {
            digest: d(1),
            agreeing: vec!["a".into(), "b".into()],
            disagreeing: vec![],
        })
    );
    assert_eq!(t.report("b", Some(d(1)), 30), Ok(Effect::Duplicate));
}

#[test]
fn a_timeout_beside_a_digest_is_no_dispute() {
    let mut t = TaskState::new(RED);
    t.lease("a", "alice", 100).unwrap();
    t.lease("b", "bob", 100).unwrap();
    t.report("a", None, 1).unwrap();
    t.report("b", Some(d(1)), 2).unwrap();
    assert!(!t.disputed());
}

#[test]
fn a_runner_or_owner_never_gets_two_replicas_of_one_task() {
    let mut t = TaskState::new(RED);
    t.lease("a", "alice", 100).unwrap();
    assert!(matches!(
        t.lease("a", "alice", 100),
        Err(Refusal::SameRunnerOrOwner { .. })
    ));
    assert!(matches!(
        t.lease("a2", "alice", 100),
        Err(Refusal::SameRunnerOrOwner { .. })
    ));
    t.lease("b", "bob", 100).unwrap();
}

#[test]
fn disagreement_issues_one_more_and_the_tie_breaker_decides() {
    let mut t = TaskState::new(RED);
    t.lease("a", "alice", 100).unwrap();
    t.lease("liar", "mallory", 100).unwrap();
    t.report("a", Some(d(1)), 1).unwrap();
    assert!(!t.disputed(), "one digest is no dispute");
    assert_eq!(t.report("liar", Some(d(9)), 2), Ok(Effect::Issue(1)));
    assert!(t.disputed());
    t.lease("c", "carol", 100).unwrap();
    assert_eq!(
        t.report("c", Some(d(1)), 3),
        Ok(Effect::Accepted {
            digest: d(1),
            agreeing: vec!["a".into(), "c".into()],
            disagreeing: vec!["liar".into()],
        })
    );
}

#[test]
fn an_expired_lease_is_replaced_and_its_late_result_refused() {
    let mut t = TaskState::new(RED);
    t.lease("a", "alice", 100).unwrap();
    t.lease("b", "bob", 100).unwrap();
    t.report("a", Some(d(1)), 50).unwrap();
    assert_eq!(t.expire(100), (vec![], Effect::Nothing));
    assert_eq!(t.expire(101), (vec!["b".to_string()], Effect::Issue(1)));
    assert_eq!(
        t.report("b", Some(d(1)), 102),
        Err(Refusal::LeaseEnded("b".into()))
    );
    t.lease("c", "carol", 300).unwrap();
    assert!(matches!(
        t.report("c", Some(d(1)), 200),
        Ok(Effect::Accepted { .. })
    ));
}

#[test]
fn a_returned_lease_goes_to_another_runner() {
    let mut t = TaskState::new(RED);
    t.lease("a", "alice", 100).unwrap();
    assert_eq!(t.give_back("a"), Ok(Effect::Issue(1)));
    assert_eq!(t.wanted, 2);
    assert_eq!(t.give_back("a"), Err(Refusal::NoLease("a".into())));
}

#[test]
fn when_replicas_run_out_the_scheduler_decides_and_credits_who_agreed_with_it() {
    let red = Redundancy {
        replicas: 2,
        quorum: 2,
        max_replicas: 3,
    };
    let mut t = TaskState::new(red);
    for (runner, owner) in [("a", "o1"), ("b", "o2")] {
        t.lease(runner, owner, 100).unwrap();
    }
    t.report("a", Some(d(1)), 1).unwrap();
    assert_eq!(t.report("b", Some(d(2)), 1), Ok(Effect::Issue(1)));
    t.lease("c", "o3", 100).unwrap();
    assert_eq!(t.report("c", Some(d(3)), 1), Ok(Effect::RunAuthority));
    assert_eq!(t.phase, Phase::Deciding);
    assert_eq!(
        t.authority(d(2)),
        Effect::Accepted {
            digest: d(2),
            agreeing: vec!["b".into()],
            disagreeing: vec!["a".into(), "c".into()],
        }
    );
    assert_eq!(t.authority(d(2)), Effect::Nothing);
}

#[test]
fn a_report_after_acceptance_is_credited_only_if_it_agrees() {
    let red = Redundancy {
        replicas: 3,
        quorum: 2,
        max_replicas: 5,
    };
    let mut t = TaskState::new(red);
    for (runner, owner) in [("a", "o1"), ("b", "o2"), ("c", "o3")] {
        t.lease(runner, owner, 100).unwrap();
    }
    t.report("a", Some(d(1)), 1).unwrap();
    assert!(matches!(
        t.report("b", Some(d(1)), 1),
        Ok(Effect::Accepted { .. })
    ));
    assert_eq!(
        t.report("c", Some(d(2)), 1),
        Ok(Effect::Late {
            runner: "c".into(),
            agreed: false
        })
    );
}

#[test]
fn trust_needs_agreements_and_no_disagreement() {
    let mut rep = Reputation {
        agreements: Reputation::TRUST_AFTER,
        ..Reputation::default()
    };
    assert!(rep.trusted());
    rep.missed_deadlines = 2;
    assert!(!rep.trusted());
    rep.missed_deadlines = 0;
    rep.disagreements = 1;
    assert!(!rep.trusted() && rep.flagged());
}

#[derive(Debug, Clone)]
enum Op {
    Lease { runner: u8, owner: u8 },
    Report { runner: u8, digest: Option<u8> },
    Expire,
    GiveBack { runner: u8 },
    Authority { digest: u8 },
    Tick(u8),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..8u8, 0..6u8).prop_map(|(runner, owner)| Op::Lease { runner, owner }),
        4 => (0..8u8, prop::option::weighted(0.9, 0..3u8))
            .prop_map(|(runner, digest)| Op::Report { runner, digest }),
        1 => Just(Op::Expire),
        1 => (0..8u8).prop_map(|runner| Op::GiveBack { runner }),
        1 => (0..3u8).prop_map(|digest| Op::Authority { digest }),
        2 => (0..40u8).prop_map(Op::Tick),
    ]
}

fn redundancy() -> impl Strategy<Value = Redundancy> {
    (1..4u32, 1..4u32, 0..4u32).prop_map(|(replicas, quorum, extra)| {
        let quorum = quorum.min(replicas);
        Redundancy {
            replicas,
            quorum,
            max_replicas: replicas + extra,
        }
    })
}

proptest! {
    /// Whatever happens, in any order: a task is accepted at most once, and by a quorum of
    /// matching digests from distinct runners unless the scheduler's own run decided; a
    /// runner is credited at most once; no runner or owner holds two replicas; leases in
    /// all stay bounded.
    #[test]
    fn the_task_machine_keeps_its_invariants(red in redundancy(), ops in prop::collection::vec(op(), 1..80)) {
        let mut t = TaskState::new(red);
        let mut now = 0i64;
        let mut accepted = 0;
        let mut credited = BTreeSet::new();
        for op in ops {
            let runner = |n: u8| format!("r{n}");
            let effect = match op {
                Op::Lease { runner: r, owner } => {
                    let owner = format!("o{}", owner.min(r));
                    t.lease(&runner(r), &owner, now + 30).ok();
                    None
                }
                Op::Report { runner: r, digest } => t.report(&runner(r), digest.map(d), now).ok(),
                Op::Expire => Some(t.expire(now).1),
                Op::GiveBack { runner: r } => t.give_back(&runner(r)).ok(),
                Op::Authority { digest } => {
                    (t.phase == Phase::Deciding).then(|| t.authority(d(digest)))
                }
                Op::Tick(n) => {
                    now += i64::from(n);
                    None
                }
            };
            match effect {
                Some(Effect::Accepted { digest, agreeing, disagreeing }) => {
                    accepted += 1;
                    let Phase::Accepted { digest: phase_digest, by_scheduler } = t.phase else {
                        panic!("accepted, but the phase is {:?}", t.phase);
                    };
                    prop_assert_eq!(digest, phase_digest);
                    let distinct: BTreeSet<_> = agreeing.iter().collect();
                    prop_assert_eq!(distinct.len(), agreeing.len());
                    if !by_scheduler {
                        prop_assert!(agreeing.len() as u32 >= red.quorum);
                    }
                    for r in &agreeing {
                        prop_assert!(!disagreeing.contains(r));
                        prop_assert!(credited.insert(r.clone()), "{} credited twice", r);
                    }
                }
                Some(Effect::Late { runner, agreed: true }) => {
                    prop_assert!(credited.insert(runner.clone()), "{} credited twice", runner);
                }
                _ => {}
            }
            prop_assert!(accepted <= 1);
            let runners: BTreeSet<_> = t.replicas.iter().map(|r| &r.runner).collect();
            let owners: BTreeSet<_> = t.replicas.iter().map(|r| &r.owner).collect();
            prop_assert_eq!(runners.len(), t.replicas.len());
            prop_assert_eq!(owners.len(), t.replicas.len());
            prop_assert!(t.replicas.len() as u32 + t.wanted <= red.max_replicas * LEASES_PER_REPLICA);
            let counted = t.replicas.iter().filter(|r| matches!(r.state, ReplicaState::Reported { .. } | ReplicaState::Leased { .. })).count() as u32;
            if matches!(t.phase, Phase::Open) {
                prop_assert!(counted + t.wanted <= red.max_replicas);
            } else {
                prop_assert_eq!(t.wanted, 0);
            }
            if t.phase == Phase::Deciding {
                prop_assert_eq!(t.leased(), 0);
            }
        }
    }
}

const SOLO: Redundancy = Redundancy {
    replicas: 1,
    quorum: 1,
    max_replicas: 4,
};

#[test]
fn with_a_target_a_newcomer_is_cross_checked_by_an_established_runner() {
    use helio_scheduler::credibility::{Policy, Weight};
    use helio_scheduler::rules::Asker;
    let policy = Policy::default();
    let newcomer = policy.weight(&Reputation::default());
    let record = Reputation {
        agreements: 5_000,
        ..Reputation::default()
    };
    let established = policy.weight(&record);
    let mut t = TaskState::with_need(SOLO, policy.need());
    t.lease_weighing("n1", "nora", newcomer, 100).unwrap();
    assert_eq!(t.report("n1", Some(d(1)), 10), Ok(Effect::Issue(1)));
    let asker =
        |runner: &'static str, reputation: Reputation, weight: Weight, online: bool| Asker {
            runner,
            owner: runner,
            tier: helio_sdk::Tier::Cpu,
            slots: 1,
            reputation,
            active: 0,
            weight,
            established_online: online,
        };
    let tier = helio_sdk::Tier::Cpu;
    // Another newcomer may not take it while an established runner is online; it may
    // when none is.
    let other = asker("n2", Reputation::default(), newcomer, true);
    assert!(!other.may_take(tier, &t));
    assert!(asker("n2", Reputation::default(), newcomer, false).may_take(tier, &t));
    assert!(asker("e1", record, established, true).may_take(tier, &t));
    // A runner found false gets no such work at all.
    let caught = Reputation {
        disagreements: 1,
        ..record
    };
    assert!(!asker("c1", caught, Weight(0), false).may_take(tier, &t));
    t.lease_weighing("e1", "erin", established, 100).unwrap();
    assert!(matches!(
        t.report("e1", Some(d(1)), 20),
        Ok(Effect::Accepted { agreeing, .. }) if agreeing.len() == 2
    ));
}

#[test]
fn a_result_no_longer_believed_is_confirmed_or_overruled_by_the_scheduler() {
    use helio_scheduler::credibility::{Policy, Weight};
    let policy = Policy::default();
    let established = Weight::of_error(1e-6);
    let mut t = TaskState::with_need(SOLO, policy.need());
    t.lease_weighing("e1", "erin", established, 100).unwrap();
    assert!(matches!(
        t.report("e1", Some(d(1)), 10),
        Ok(Effect::Accepted { .. })
    ));
    assert!(t.still_believed(|_| established));
    // Its runner is found false elsewhere: it weighs nothing now.
    assert!(!t.still_believed(|_| Weight(0)));
    let mut confirmed = t.clone();
    assert_eq!(confirmed.overrule(d(1)), Effect::Nothing);
    assert_eq!(
        confirmed.phase,
        Phase::Accepted {
            digest: d(1),
            by_scheduler: true
        }
    );
    assert!(confirmed.still_believed(|_| Weight(0)));
    assert_eq!(
        t.overrule(d(2)),
        Effect::Overruled {
            digest: d(2),
            overruled: d(1),
            vouched: vec!["e1".into()],
            vindicated: vec![],
        }
    );
}
