//! Consensus over result digests, as the job contract's `redundancy` says.
//!
//! A task first goes to `replicas` distinct runners. It is accepted as soon as `quorum` of
//! them reported the same digest. Deterministic failures (a trap, `out_of_fuel`, a contract
//! violation) are results like any other and are agreed on the same way; a `timeout` never
//! counts. While a quorum is still possible with the replicas still out, the task waits;
//! when it is not, more replicas are issued, up to `max_replicas` in all; when those run out,
//! the scheduler runs the task itself and its result decides.
//!
//! With a credibility target ([`crate::credibility`]), a quorum is a floor: the digest is
//! accepted only once its agreeing runners' credibility, against the runners who reported
//! other digests, meets the target; until then more replicas are issued, one at a time.

use helio_sdk::{Blake3Hash, Redundancy};

use crate::credibility::{Weight, believed};

/// One replica's report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report<R> {
    /// The runner that reported.
    pub runner: R,
    /// The result digest, or `None` for a `timeout`, which never counts.
    pub digest: Option<Blake3Hash>,
    /// The runner's credibility.
    pub weight: Weight,
}

/// What the scheduler should do next with a task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision<R> {
    /// Accept `digest`: credit `agreeing`, flag `disagreeing` (runners whose digest differs).
    Accept {
        /// The accepted digest.
        digest: Blake3Hash,
        /// Runners that reported it, in report order.
        agreeing: Vec<R>,
        /// Runners that reported another digest, in report order.
        disagreeing: Vec<R>,
    },
    /// Replicas still out can still make a quorum: wait for them.
    Wait,
    /// Issue this many more replicas.
    Issue(u32),
    /// Every replica allowed was tried without a quorum: the scheduler runs the task itself.
    SchedulerDecides,
}

/// Decides what to do with a task from its reports (in arrival order), the number of
/// replicas leased and not yet reported or expired, and the weight a group of agreeing
/// runners needs alone (`None`: the quorum alone decides).
pub fn decide<R: Clone>(
    red: &Redundancy,
    reports: &[Report<R>],
    outstanding: u32,
    need: Option<Weight>,
) -> Decision<R> {
    // The first digest (in report order) to reach the quorum, and the credibility asked,
    // wins.
    let mut groups: Vec<(Blake3Hash, u32, Weight)> = Vec::new();
    for report in reports {
        let Some(digest) = report.digest else {
            continue;
        };
        let at = match groups.iter().position(|(d, _, _)| *d == digest) {
            Some(at) => at,
            None => {
                groups.push((digest, 0, Weight(0)));
                groups.len() - 1
            }
        };
        groups[at].1 += 1;
        groups[at].2 = Weight(groups[at].2.0 + report.weight.0);
        if groups[at].1 >= red.quorum && credible(&groups, at, need) {
            return accept(digest, reports);
        }
    }
    let best = groups.iter().map(|(_, n, _)| *n).max().unwrap_or(0);
    let mut short = red.quorum.saturating_sub(best + outstanding);
    if short == 0 && need.is_some() && outstanding == 0 {
        // The quorum is there but not the credibility: one more runner.
        short = 1;
    }
    if short == 0 {
        return Decision::Wait;
    }
    let issued = reports.len() as u32 + outstanding;
    if issued < red.max_replicas {
        // At first, the task goes to `replicas` runners at once.
        let wanted = if reports.is_empty() && outstanding == 0 {
            red.replicas.max(short)
        } else {
            short
        };
        return Decision::Issue(wanted.min(red.max_replicas - issued));
    }
    if outstanding > 0 {
        Decision::Wait
    } else {
        Decision::SchedulerDecides
    }
}

/// Whether group `at` of `groups` (digest, runners, their weight) is believed, if a weight
/// is needed at all.
fn credible(groups: &[(Blake3Hash, u32, Weight)], at: usize, need: Option<Weight>) -> bool {
    let Some(need) = need else {
        return true;
    };
    let others: Vec<Weight> = groups
        .iter()
        .enumerate()
        .filter(|&(i, _)| i != at)
        .map(|(_, g)| g.2)
        .collect();
    believed(groups[at].2, &others, need)
}

/// The decision once `digest` is known to be the result: the scheduler's own run, or a
/// quorum.
pub fn accept<R: Clone>(digest: Blake3Hash, reports: &[Report<R>]) -> Decision<R> {
    let (mut agreeing, mut disagreeing) = (Vec::new(), Vec::new());
    for report in reports {
        match report.digest {
            Some(d) if d == digest => agreeing.push(report.runner.clone()),
            Some(_) => disagreeing.push(report.runner.clone()),
            None => {}
        }
    }
    Decision::Accept {
        digest,
        agreeing,
        disagreeing,
    }
}
