use helio_scheduler::consensus::{Decision, Report, decide};
use helio_scheduler::credibility::{Policy, Weight};
use helio_sdk::{Blake3Hash, Redundancy};
use proptest::prelude::*;

fn d(n: u8) -> Blake3Hash {
    Blake3Hash::from_bytes([n; 32])
}

fn r(runner: u32, digest: Option<u8>) -> Report<u32> {
    Report {
        runner,
        digest: digest.map(d),
        weight: Weight(0),
    }
}

/// A report by a runner of credibility `weight`.
fn w(runner: u32, digest: u8, weight: Weight) -> Report<u32> {
    Report {
        runner,
        digest: Some(d(digest)),
        weight,
    }
}

const RED: Redundancy = Redundancy {
    replicas: 2,
    quorum: 2,
    max_replicas: 5,
};

#[test]
fn a_new_task_goes_to_replicas_runners() {
    assert_eq!(decide::<u32>(&RED, &[], 0, None), Decision::Issue(2));
}

#[test]
fn agreement_accepts_and_names_who_agreed_and_who_did_not() {
    let reports = [r(1, Some(7)), r(2, Some(9)), r(3, Some(7))];
    assert_eq!(
        decide(&RED, &reports, 0, None),
        Decision::Accept {
            digest: d(7),
            agreeing: vec![1, 3],
            disagreeing: vec![2],
        }
    );
}

#[test]
fn waits_while_a_quorum_is_still_possible() {
    assert_eq!(decide(&RED, &[r(1, Some(7))], 1, None), Decision::Wait);
}

#[test]
fn disagreement_and_timeouts_send_more_replicas() {
    assert_eq!(
        decide(&RED, &[r(1, Some(7)), r(2, Some(9))], 0, None),
        Decision::Issue(1)
    );
    // A timeout never counts.
    assert_eq!(
        decide(&RED, &[r(1, None), r(2, None)], 0, None),
        Decision::Issue(2)
    );
}

#[test]
fn when_replicas_run_out_the_scheduler_decides() {
    let reports: Vec<_> = (0..5).map(|i| r(i, Some(i as u8))).collect();
    assert_eq!(decide(&RED, &reports, 0, None), Decision::SchedulerDecides);
    assert_eq!(decide(&RED, &reports[..4], 1, None), Decision::Wait);
}

const SOLO: Redundancy = Redundancy {
    replicas: 1,
    quorum: 1,
    max_replicas: 4,
};

#[test]
fn with_a_target_an_established_runner_alone_decides_and_a_newcomer_does_not() {
    let policy = Policy::default();
    let need = Some(policy.need());
    let newcomer = Weight::of_error(0.2);
    let established = Weight::of_error(1e-5);
    assert_eq!(decide::<u32>(&SOLO, &[], 0, need), Decision::Issue(1));
    assert_eq!(
        decide(&SOLO, &[w(1, 7, established)], 0, need),
        Decision::Accept {
            digest: d(7),
            agreeing: vec![1],
            disagreeing: vec![],
        }
    );
    // A newcomer's result alone is not enough: one more runner.
    assert_eq!(
        decide(&SOLO, &[w(1, 7, newcomer)], 0, need),
        Decision::Issue(1)
    );
    // Nor are two newcomers who agree, whatever the quorum says.
    let two = [w(1, 7, newcomer), w(2, 7, newcomer)];
    assert_eq!(decide(&SOLO, &two, 0, need), Decision::Issue(1));
    assert_eq!(
        decide(&SOLO, &two, 0, None),
        Decision::Accept {
            digest: d(7),
            agreeing: vec![1, 2],
            disagreeing: vec![],
        }
    );
    // A newcomer and an established runner who agree are.
    let paired = [w(1, 7, newcomer), w(2, 7, established)];
    assert!(matches!(
        decide(&SOLO, &paired, 0, need),
        Decision::Accept { .. }
    ));
    // Two runners of some history who disagree: more runners; when they run out, the
    // scheduler decides.
    let some = Weight::of_error(1e-3);
    let split = [w(1, 7, some), w(2, 8, some)];
    assert_eq!(decide(&SOLO, &split, 0, need), Decision::Issue(1));
    // Had they agreed, they would have been believed together.
    let agreed = [w(1, 7, some), w(2, 7, some)];
    assert!(matches!(
        decide(&SOLO, &agreed, 0, need),
        Decision::Accept { .. }
    ));
    let all: Vec<_> = (0..4).map(|i| w(i, i as u8, some)).collect();
    assert_eq!(decide(&SOLO, &all, 0, need), Decision::SchedulerDecides);
}

/// The chance that group `digest` is wrong, from the runners' error probabilities directly
/// (Sarmenta's formula): `P(g) = Π_g (1 - e) Π_not g e / (Σ_h Π_h (1 - e) Π_not h e + Π e)`.
fn group_error(reports: &[Report<u32>], digest: Blake3Hash) -> f64 {
    let errors: Vec<(Blake3Hash, f64)> = reports
        .iter()
        .filter_map(|r| r.digest.map(|d| (d, r.weight.error())))
        .collect();
    let mut digests: Vec<Blake3Hash> = Vec::new();
    for (d, _) in &errors {
        if !digests.contains(d) {
            digests.push(*d);
        }
    }
    let right = |g: Blake3Hash| -> f64 {
        errors
            .iter()
            .map(|&(d, e)| if d == g { 1.0 - e } else { e })
            .product()
    };
    let none: f64 = errors.iter().map(|(_, e)| e).product();
    let total: f64 = digests.iter().map(|&g| right(g)).sum::<f64>() + none;
    1.0 - right(digest) / total
}

proptest! {
    /// With a target, no result is accepted unless its runners' credibility, against the
    /// others', meets it (the chance it is wrong, computed from error probabilities
    /// directly, is at most the target); and credibility never lowers the quorum.
    #[test]
    fn no_accepted_result_without_the_credibility_the_target_requires(
        quorum in 1u32..3,
        target_exp in 2i32..7,
        reports in proptest::collection::vec((0u8..3, 0.0f64..12.0), 0..6),
        outstanding in 0u32..2,
    ) {
        let red = Redundancy { replicas: quorum, quorum, max_replicas: 8 };
        let target = 10f64.powi(-target_exp);
        let need = Policy { target, ..Policy::default() }.need();
        let reports: Vec<Report<u32>> = reports.iter().enumerate()
            .map(|(i, &(g, nats))| w(i as u32, g, Weight((nats * 1000.0) as i64)))
            .collect();
        match decide(&red, &reports, outstanding, Some(need)) {
            Decision::Accept { digest, agreeing, .. } => {
                prop_assert!(agreeing.len() as u32 >= quorum);
                // The first prefix of reports that accepts is the one that decided.
                let decided = (1..=reports.len()).find(|&n| matches!(
                    decide(&red, &reports[..n], 0, Some(need)), Decision::Accept { .. }
                )).unwrap();
                // Weights are kept in thousandths of a nat: allow that rounding.
                let error = group_error(&reports[..decided], digest);
                prop_assert!(error <= target * 1.01, "wrong {error} > {target}");
            }
            Decision::Wait => prop_assert!(outstanding > 0),
            Decision::Issue(k) => prop_assert!(k >= 1),
            Decision::SchedulerDecides => prop_assert_eq!(outstanding, 0),
        }
    }
}

proptest! {
    /// Whatever the reports, an accepted digest was reported by a quorum, its runners are
    /// exactly those who reported it, and no more than max_replicas are ever issued.
    #[test]
    fn decisions_respect_the_redundancy(
        replicas in 1u32..5,
        extra_quorum in 0u32..5,
        extra_max in 0u32..5,
        digests in proptest::collection::vec(proptest::option::of(0u8..3), 0..12),
        outstanding in 0u32..3,
    ) {
        let quorum = 1 + extra_quorum % replicas;
        let red = Redundancy { replicas, quorum, max_replicas: replicas + extra_max };
        let n = digests.len().min(red.max_replicas as usize);
        let outstanding = outstanding.min(red.max_replicas - n as u32);
        let reports: Vec<Report<u32>> =
            digests[..n].iter().enumerate().map(|(i, g)| r(i as u32, *g)).collect();
        match decide(&red, &reports, outstanding, None) {
            Decision::Accept { digest, agreeing, disagreeing } => {
                let matching: Vec<u32> = reports.iter()
                    .filter(|x| x.digest == Some(digest)).map(|x| x.runner).collect();
                prop_assert!(matching.len() as u32 >= red.quorum);
                prop_assert_eq!(agreeing, matching);
                prop_assert!(disagreeing.iter().all(|x| reports[*x as usize].digest.is_some()
                    && reports[*x as usize].digest != Some(digest)));
            }
            Decision::Issue(k) => {
                prop_assert!(k >= 1);
                prop_assert!(n as u32 + outstanding + k <= red.max_replicas);
            }
            Decision::Wait => prop_assert!(outstanding > 0),
            Decision::SchedulerDecides => {
                prop_assert_eq!(outstanding, 0);
                prop_assert_eq!(n as u32, red.max_replicas);
            }
        }
    }
}
