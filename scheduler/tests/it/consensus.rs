use helio_scheduler::consensus::{Decision, Report, decide};
use helio_sdk::{Blake3Hash, Redundancy};
use proptest::prelude::*;

fn d(n: u8) -> Blake3Hash {
    Blake3Hash::from_bytes([n; 32])
}

fn r(runner: u32, digest: Option<u8>) -> Report<u32> {
    Report {
        runner,
        digest: digest.map(d),
    }
}

const RED: Redundancy = Redundancy {
    replicas: 2,
    quorum: 2,
    max_replicas: 5,
};

#[test]
fn a_new_task_goes_to_replicas_runners() {
    assert_eq!(decide::<u32>(&RED, &[], 0), Decision::Issue(2));
}

#[test]
fn agreement_accepts_and_names_who_agreed_and_who_did_not() {
    let reports = [r(1, Some(7)), r(2, Some(9)), r(3, Some(7))];
    assert_eq!(
        decide(&RED, &reports, 0),
        Decision::Accept {
            digest: d(7),
            agreeing: vec![1, 3],
            disagreeing: vec![2],
        }
    );
}

#[test]
fn waits_while_a_quorum_is_still_possible() {
    assert_eq!(decide(&RED, &[r(1, Some(7))], 1), Decision::Wait);
}

#[test]
fn disagreement_and_timeouts_send_more_replicas() {
    assert_eq!(
        decide(&RED, &[r(1, Some(7)), r(2, Some(9))], 0),
        Decision::Issue(1)
    );
    // A timeout never counts.
    assert_eq!(
        decide(&RED, &[r(1, None), r(2, None)], 0),
        Decision::Issue(2)
    );
}

#[test]
fn when_replicas_run_out_the_scheduler_decides() {
    let reports: Vec<_> = (0..5).map(|i| r(i, Some(i as u8))).collect();
    assert_eq!(decide(&RED, &reports, 0), Decision::SchedulerDecides);
    assert_eq!(decide(&RED, &reports[..4], 1), Decision::Wait);
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
        match decide(&red, &reports, outstanding) {
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
