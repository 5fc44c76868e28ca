//! Consensus over result digests, as the job contract's `redundancy` says.
//!
//! A task first goes to `replicas` distinct runners. It is accepted as soon as `quorum` of
//! them reported the same digest. Deterministic failures (a trap, `out_of_fuel`, a contract
//! violation) are results like any other and are agreed on the same way; a `timeout` never
//! counts. While a quorum is still possible with the replicas still out, the task waits;
//! when it is not, more replicas are issued, up to `max_replicas` in all; when those run out,
//! the scheduler runs the task itself and its result decides.

use helio_sdk::{Blake3Hash, Redundancy};

/// One replica's report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report<R> {
    /// The runner that reported.
    pub runner: R,
    /// The result digest, or `None` for a `timeout`, which never counts.
    pub digest: Option<Blake3Hash>,
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

/// Decides what to do with a task from its reports (in arrival order) and the number of
/// replicas leased and not yet reported or expired.
pub fn decide<R: Clone>(red: &Redundancy, reports: &[Report<R>], outstanding: u32) -> Decision<R> {
    // The first digest (in report order) to reach the quorum wins.
    let mut counts: Vec<(Blake3Hash, u32)> = Vec::new();
    for report in reports {
        let Some(digest) = report.digest else {
            continue;
        };
        let count = match counts.iter_mut().find(|(d, _)| *d == digest) {
            Some((_, n)) => {
                *n += 1;
                *n
            }
            None => {
                counts.push((digest, 1));
                1
            }
        };
        if count >= red.quorum {
            return accept(digest, reports);
        }
    }
    let best = counts.iter().map(|(_, n)| *n).max().unwrap_or(0);
    if best + outstanding >= red.quorum {
        return Decision::Wait;
    }
    let issued = reports.len() as u32 + outstanding;
    if issued < red.max_replicas {
        let short = red.quorum - best - outstanding;
        // At first, the task goes to `replicas` runners at once.
        let wanted = if reports.is_empty() && outstanding == 0 {
            red.replicas
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
