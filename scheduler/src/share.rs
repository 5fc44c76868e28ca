//! Whose work a runner gets: fair share between submitters, priority among one submitter's
//! batches, and each submitter's quota of leases out. Pure: the store reads the batches
//! that may be given work and the leases each submitter has out; [`Shares::next`] says
//! which batch is served next; the random draw of a task within that batch stays
//! [`crate::rules::Asker::choose`]'s.
//!
//! As in HTCondor, a batch's priority orders only its own submitter's batches: no submitter
//! can raise its batches above another's. Between submitters the grid is shared by leases
//! out: the next lease goes to the submitter with the fewest per unit of its share (an
//! operator grants shares; everyone's is 1 unless set), so one submitter's million-task
//! batch holds back another's ten tasks by at most the time a lease takes to end.

use std::collections::BTreeMap;

/// A batch that may be given work (active, not finished).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Queue {
    /// The batch's id.
    pub batch: String,
    /// Who submitted it.
    pub submitter: String,
    /// Higher first among its submitter's batches.
    pub priority: i64,
    /// When it was submitted: earlier first among equal priorities.
    pub since_ms: i64,
}

/// What an operator grants a submitter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grant {
    /// Its weight in fair share (at least 1): a submitter of share 2 is served until it has
    /// twice the leases out of a submitter of share 1.
    pub share: u32,
    /// The most leases it may have out at once; `None`: no limit.
    pub max_running: Option<u64>,
}

impl Default for Grant {
    fn default() -> Grant {
        Grant {
            share: 1,
            max_running: None,
        }
    }
}

/// Leases out per submitter (by [`Shares`]' submitter index): what [`Shares::next`] weighs.
pub type Tally = Vec<u64>;

/// The batches that may be given work, grouped by submitter, and what each submitter is
/// granted and has out.
#[derive(Debug, Clone, Default)]
pub struct Shares {
    /// Best first within each submitter: priority, then age, then id.
    queues: Vec<Queue>,
    /// Each queue's submitter (an index into `submitters`).
    of: Vec<usize>,
    /// Each submitter's name and grant.
    submitters: Vec<(String, Grant)>,
    /// Each submitter's leases out.
    running: Tally,
    /// Queue index by batch id.
    index: BTreeMap<String, usize>,
}

impl Shares {
    /// The grid's `queues`, with each submitter's grant (`grants`; the default where none)
    /// and leases out (`running`; none where missing).
    pub fn new(
        mut queues: Vec<Queue>,
        grants: &BTreeMap<String, Grant>,
        running: &BTreeMap<String, u64>,
    ) -> Shares {
        queues.sort_by(|a, b| {
            (
                &a.submitter,
                std::cmp::Reverse(a.priority),
                a.since_ms,
                &a.batch,
            )
                .cmp(&(
                    &b.submitter,
                    std::cmp::Reverse(b.priority),
                    b.since_ms,
                    &b.batch,
                ))
        });
        let mut submitters: Vec<(String, Grant)> = Vec::new();
        let mut of = Vec::with_capacity(queues.len());
        for q in &queues {
            if submitters
                .last()
                .is_none_or(|(name, _)| *name != q.submitter)
            {
                let mut grant = grants.get(&q.submitter).copied().unwrap_or_default();
                grant.share = grant.share.max(1);
                submitters.push((q.submitter.clone(), grant));
            }
            of.push(submitters.len() - 1);
        }
        let running = submitters
            .iter()
            .map(|(name, _)| running.get(name).copied().unwrap_or(0))
            .collect();
        let index = queues
            .iter()
            .enumerate()
            .map(|(i, q)| (q.batch.clone(), i))
            .collect();
        Shares {
            queues,
            of,
            submitters,
            running,
            index,
        }
    }

    /// The queues, best first within each submitter.
    pub fn queues(&self) -> &[Queue] {
        &self.queues
    }

    /// The queue of `batch`, if it may be given work.
    pub fn queue(&self, batch: &str) -> Option<usize> {
        self.index.get(batch).copied()
    }

    /// Each submitter's leases out, to weigh picks not yet made against.
    pub fn tally(&self) -> Tally {
        self.running.clone()
    }

    /// Counts `by` more leases out (fewer where negative) for `batch`'s submitter.
    pub fn count(&mut self, batch: &str, by: i64) {
        if let Some(q) = self.queue(batch) {
            let n = &mut self.running[self.of[q]];
            *n = n.saturating_add_signed(by);
        }
    }

    /// Whether queue `q`'s submitter may have another lease out, with `tally` out.
    pub fn below_quota(&self, tally: &Tally, q: usize) -> bool {
        let s = self.of[q];
        self.submitters[s]
            .1
            .max_running
            .is_none_or(|max| tally[s] < max)
    }

    /// The queue to serve next, with `tally` out, among those `open` says have work: of the
    /// submitters below their quota with an open queue, the one with the fewest leases out
    /// per unit of share (ties: the one whose best open batch is oldest, then by name); of
    /// its open queues, the best (priority, then age). `None`: no open queue's submitter is
    /// below its quota.
    pub fn next(&self, tally: &Tally, open: impl Fn(usize) -> bool) -> Option<usize> {
        // Each submitter's best open queue: its first, as they are sorted best first.
        let mut best: Option<(usize, usize)> = None; // (submitter, queue)
        let mut seen = usize::MAX;
        for q in 0..self.queues.len() {
            let s = self.of[q];
            if s == seen || !open(q) || !self.below_quota(tally, q) {
                continue;
            }
            seen = s;
            let better = match best {
                None => true,
                Some((b, bq)) => {
                    let (share, share_b) = (
                        u128::from(self.submitters[s].1.share),
                        u128::from(self.submitters[b].1.share),
                    );
                    // tally[s] / share < tally[b] / share_b, without division.
                    let (mine, theirs) =
                        (u128::from(tally[s]) * share_b, u128::from(tally[b]) * share);
                    mine < theirs
                        || (mine == theirs
                            && (self.queues[q].since_ms, &self.submitters[s].0)
                                < (self.queues[bq].since_ms, &self.submitters[b].0))
                }
            };
            if better {
                best = Some((s, q));
            }
        }
        best.map(|(_, q)| q)
    }

    /// Serves `n` leases from `tally` where `open` (a queue's work left, `None`: as much as
    /// asked) allows: how many go to each queue, in the order first served. What the store
    /// reads a group's pool by.
    pub fn plan(&self, n: u32, tally: &mut Tally, open: &mut [Option<u64>]) -> Vec<(usize, u32)> {
        let mut plan: Vec<(usize, u32)> = Vec::new();
        for _ in 0..n {
            let Some(q) = self.next(tally, |q| open[q] != Some(0)) else {
                break;
            };
            if let Some(left) = &mut open[q] {
                *left -= 1;
            }
            tally[self.of[q]] += 1;
            match plan.iter_mut().find(|(p, _)| *p == q) {
                Some((_, k)) => *k += 1,
                None => plan.push((q, 1)),
            }
        }
        plan
    }

    /// Takes one lease for queue `q` into `tally`.
    pub fn take(&self, tally: &mut Tally, q: usize) {
        tally[self.of[q]] += 1;
    }
}
