//! One task's life at the scheduler, as a state machine with no clock or I/O inside: leases
//! go out to distinct runners of distinct owners, results come back, leases expire or are
//! handed back, and after each event [`consensus::decide`] says whether the task is
//! accepted, needs more replicas, or must be decided by the scheduler's own run.
//!
//! The storage layer loads a [`TaskState`] from its rows, applies one event and writes back
//! what the returned [`Effect`] says, in one transaction.

use helio_sdk::{Blake3Hash, Redundancy};

use crate::consensus::{self, Decision, Report};
use crate::credibility::Weight;

/// Where one replica stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplicaState {
    /// Leased, until `deadline_ms`.
    Leased {
        /// When the lease ends.
        deadline_ms: i64,
    },
    /// The runner reported; `None` is a `timeout`, which never counts. `seq` orders reports
    /// by arrival.
    Reported {
        /// The digest.
        digest: Option<Blake3Hash>,
        /// Arrival order among the task's reports.
        seq: u32,
    },
    /// The lease ended without a report.
    Expired,
    /// The runner handed the lease back.
    Returned,
    /// The scheduler took the lease back: the task's batch was cancelled.
    Withdrawn,
}

/// Leases a task may have in all, per replica its redundancy allows: leases that expire or
/// are handed back are replaced, up to this bound; then the scheduler decides.
pub const LEASES_PER_REPLICA: u32 = 3;

/// One replica: a lease of the task to one runner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replica {
    /// The runner.
    pub runner: String,
    /// Its owner.
    pub owner: String,
    /// The runner's credibility, as it was when it leased (0: it counts for nothing).
    pub weight: Weight,
    /// Where it stands.
    pub state: ReplicaState,
}

impl Replica {
    /// Whether its runner holds the task or reported it (its lease neither expired nor was
    /// handed back).
    pub fn holds(&self) -> bool {
        matches!(
            self.state,
            ReplicaState::Leased { .. } | ReplicaState::Reported { .. }
        )
    }
}

/// How far the task is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Replicas are wanted or out.
    Open,
    /// Every replica allowed was tried without a quorum: the scheduler runs it itself.
    Deciding,
    /// Accepted with this digest.
    Accepted {
        /// The accepted digest.
        digest: Blake3Hash,
        /// Whether the scheduler's own run decided (rather than a quorum).
        by_scheduler: bool,
    },
    /// Its batch was cancelled before it was accepted: nothing more is leased, reported,
    /// accepted or credited.
    Cancelled,
}

/// Where a task stands, as its batch's status counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// Open, and no runner holds or has reported a replica.
    Pending,
    /// Open, with a replica out or reported.
    Running,
    /// Waiting for the scheduler's own run.
    Deciding,
    /// Accepted.
    Accepted,
    /// Cancelled.
    Cancelled,
}

/// A task as the scheduler holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskState {
    /// Its batch's redundancy.
    pub redundancy: Redundancy,
    /// Every lease ever made, in lease order.
    pub replicas: Vec<Replica>,
    /// Replicas to issue that no runner holds yet.
    pub wanted: u32,
    /// How far it is.
    pub phase: Phase,
    /// The credibility a group of agreeing runners needs for its digest to be accepted
    /// ([`crate::credibility`]); `None`: the quorum alone decides.
    pub need: Option<Weight>,
}

/// Why an event was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The task wants no more replicas.
    #[error("the task wants no more replicas")]
    NotWanted,
    /// The runner, or another runner of its owner, already holds or held a replica.
    #[error("runner {runner} or another runner of owner {owner} already ran this task")]
    SameRunnerOrOwner {
        /// The runner.
        runner: String,
        /// Its owner.
        owner: String,
    },
    /// The runner holds no lease of the task.
    #[error("runner {0} holds no lease of this task")]
    NoLease(String),
    /// The lease ended before the report came.
    #[error("the lease of runner {0} ended before its result came")]
    LeaseEnded(String),
    /// The task's batch was cancelled.
    #[error("the task's batch was cancelled; its results are no longer taken")]
    Cancelled,
}

/// What the scheduler must do after an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Nothing beyond recording the event.
    Nothing,
    /// The runner had already reported: nothing changed.
    Duplicate,
    /// The task is accepted: credit `agreeing` (once each), flag `disagreeing`.
    Accepted {
        /// The accepted digest.
        digest: Blake3Hash,
        /// Runners whose digest matched.
        agreeing: Vec<String>,
        /// Runners whose digest differed.
        disagreeing: Vec<String>,
    },
    /// A report came after acceptance: credit the runner if `agreed`, else flag it.
    Late {
        /// The runner.
        runner: String,
        /// Whether its digest matched the accepted one.
        agreed: bool,
    },
    /// The scheduler's own run of an accepted task gave another digest: its run wins. The
    /// task is accepted with `digest`; flag `vouched` (they reported the overruled digest) and
    /// credit `vindicated` (they reported `digest` and were outvoted).
    Overruled {
        /// The digest the scheduler's run gave, now the accepted one.
        digest: Blake3Hash,
        /// The overruled digest.
        overruled: Blake3Hash,
        /// Runners that reported the overruled digest.
        vouched: Vec<String>,
        /// Runners that reported `digest`.
        vindicated: Vec<String>,
    },
    /// `n` more replicas are wanted.
    Issue(u32),
    /// The scheduler must run the task itself.
    RunAuthority,
}

impl TaskState {
    /// A new task: it wants its first `replicas` replicas.
    pub fn new(redundancy: Redundancy) -> TaskState {
        let mut task = TaskState {
            redundancy,
            replicas: Vec::new(),
            wanted: 0,
            phase: Phase::Open,
            need: None,
        };
        task.decide();
        task
    }

    /// A new task whose digest is accepted only with the credibility `need` asks (and its
    /// quorum, as a floor).
    pub fn with_need(redundancy: Redundancy, need: Weight) -> TaskState {
        let mut task = TaskState::new(redundancy);
        task.need = Some(need);
        task
    }

    /// Whether `runner` of `owner` may take a replica now.
    pub fn may_lease(&self, runner: &str, owner: &str) -> Result<(), Refusal> {
        if self.phase != Phase::Open || self.wanted == 0 {
            return Err(Refusal::NotWanted);
        }
        if self
            .replicas
            .iter()
            .any(|r| r.runner == runner || r.owner == owner)
        {
            return Err(Refusal::SameRunnerOrOwner {
                runner: runner.into(),
                owner: owner.into(),
            });
        }
        Ok(())
    }

    /// Leases a replica to `runner` until `deadline_ms`.
    pub fn lease(&mut self, runner: &str, owner: &str, deadline_ms: i64) -> Result<(), Refusal> {
        self.lease_weighing(runner, owner, Weight(0), deadline_ms)
    }

    /// Leases a replica to `runner`, whose credibility is `weight`, until `deadline_ms`.
    pub fn lease_weighing(
        &mut self,
        runner: &str,
        owner: &str,
        weight: Weight,
        deadline_ms: i64,
    ) -> Result<(), Refusal> {
        self.may_lease(runner, owner)?;
        self.wanted -= 1;
        self.replicas.push(Replica {
            runner: runner.into(),
            owner: owner.into(),
            weight,
            state: ReplicaState::Leased { deadline_ms },
        });
        Ok(())
    }

    /// `runner` reports `digest` (`None` for a timeout) at `now_ms`.
    pub fn report(
        &mut self,
        runner: &str,
        digest: Option<Blake3Hash>,
        now_ms: i64,
    ) -> Result<Effect, Refusal> {
        if self.phase == Phase::Cancelled {
            return Err(Refusal::Cancelled);
        }
        let seq = self.reports().len() as u32;
        let Some(replica) = self.replicas.iter_mut().find(|r| r.runner == runner) else {
            return Err(Refusal::NoLease(runner.into()));
        };
        match replica.state {
            ReplicaState::Reported { .. } => return Ok(Effect::Duplicate),
            ReplicaState::Leased { deadline_ms } if now_ms <= deadline_ms => {}
            ReplicaState::Leased { .. } | ReplicaState::Expired => {
                return Err(Refusal::LeaseEnded(runner.into()));
            }
            ReplicaState::Returned => return Err(Refusal::NoLease(runner.into())),
            ReplicaState::Withdrawn => return Err(Refusal::Cancelled),
        }
        replica.state = ReplicaState::Reported { digest, seq };
        if let Phase::Accepted {
            digest: accepted, ..
        } = self.phase
        {
            return Ok(match digest {
                Some(d) => Effect::Late {
                    runner: runner.into(),
                    agreed: d == accepted,
                },
                None => Effect::Nothing,
            });
        }
        Ok(self.decide())
    }

    /// Ends every lease whose deadline is before `now_ms`; returns the runners that missed
    /// their deadline and what the task needs now.
    pub fn expire(&mut self, now_ms: i64) -> (Vec<String>, Effect) {
        let mut missed = Vec::new();
        for r in &mut self.replicas {
            if let ReplicaState::Leased { deadline_ms } = r.state
                && deadline_ms < now_ms
            {
                r.state = ReplicaState::Expired;
                missed.push(r.runner.clone());
            }
        }
        let effect = if missed.is_empty() {
            Effect::Nothing
        } else {
            self.decide()
        };
        (missed, effect)
    }

    /// `runner` hands its lease back unfinished.
    pub fn give_back(&mut self, runner: &str) -> Result<Effect, Refusal> {
        let Some(replica) = self
            .replicas
            .iter_mut()
            .find(|r| r.runner == runner && matches!(r.state, ReplicaState::Leased { .. }))
        else {
            return Err(Refusal::NoLease(runner.into()));
        };
        replica.state = ReplicaState::Returned;
        Ok(self.decide())
    }

    /// Its batch is cancelled: a task not yet accepted wants nothing more, and the leases
    /// out are taken back. Returns the runners whose leases were withdrawn; an accepted
    /// task (credited already) is left as it is.
    pub fn cancel(&mut self) -> Vec<String> {
        if matches!(self.phase, Phase::Accepted { .. } | Phase::Cancelled) {
            return Vec::new();
        }
        self.phase = Phase::Cancelled;
        self.wanted = 0;
        let mut withdrawn = Vec::new();
        for r in &mut self.replicas {
            if let ReplicaState::Leased { .. } = r.state {
                r.state = ReplicaState::Withdrawn;
                withdrawn.push(r.runner.clone());
            }
        }
        withdrawn
    }

    /// The scheduler's own run gave `digest`: it decides the task.
    pub fn authority(&mut self, digest: Blake3Hash) -> Effect {
        if let Phase::Accepted { .. } | Phase::Cancelled = self.phase {
            return Effect::Nothing;
        }
        self.phase = Phase::Accepted {
            digest,
            by_scheduler: true,
        };
        self.wanted = 0;
        self.accepted_effect(digest)
    }

    /// The scheduler's own run of the task (to recover its outputs, or as a spot check) gave
    /// `digest`. Where the task is accepted with another digest, the scheduler's run wins:
    /// it is the one party the grid trusts, and agreeing runners may have colluded.
    pub fn overrule(&mut self, digest: Blake3Hash) -> Effect {
        let Phase::Accepted {
            digest: overruled, ..
        } = self.phase
        else {
            return Effect::Nothing;
        };
        if overruled == digest {
            // Confirmed: from now on the scheduler's run stands behind it.
            self.phase = Phase::Accepted {
                digest,
                by_scheduler: true,
            };
            return Effect::Nothing;
        }
        self.phase = Phase::Accepted {
            digest,
            by_scheduler: true,
        };
        let reported = |d: Blake3Hash| -> Vec<String> {
            self.replicas
                .iter()
                .filter(
                    |r| matches!(r.state, ReplicaState::Reported { digest: Some(x), .. } if x == d),
                )
                .map(|r| r.runner.clone())
                .collect()
        };
        Effect::Overruled {
            digest,
            overruled,
            vouched: reported(overruled),
            vindicated: reported(digest),
        }
    }

    /// Whether its accepted digest is still believed when its runners weigh as `weigh` says
    /// now (a runner found false since weighs nothing): if not, the scheduler must verify
    /// it again ([`TaskState::overrule`]). A task the scheduler's own run decided, or whose
    /// quorum alone decides, always is.
    pub fn still_believed(&self, weigh: impl Fn(&str) -> Weight) -> bool {
        let (
            Some(need),
            Phase::Accepted {
                digest,
                by_scheduler: false,
            },
        ) = (self.need, self.phase)
        else {
            return true;
        };
        let (mut group, mut others) = (Weight(0), Vec::new());
        for r in &self.replicas {
            if let ReplicaState::Reported {
                digest: Some(d), ..
            } = r.state
            {
                let w = weigh(&r.runner).min(r.weight);
                if d == digest {
                    group = Weight(group.0 + w.0);
                } else {
                    others.push(w);
                }
            }
        }
        crate::credibility::believed(group, &others, need)
    }

    /// The reports so far, in arrival order.
    pub fn reports(&self) -> Vec<Report<String>> {
        let mut reports: Vec<(u32, Report<String>)> = self
            .replicas
            .iter()
            .filter_map(|r| match r.state {
                ReplicaState::Reported { digest, seq } => Some((
                    seq,
                    Report {
                        runner: r.runner.clone(),
                        digest,
                        weight: r.weight,
                    },
                )),
                _ => None,
            })
            .collect();
        reports.sort_by_key(|(seq, _)| *seq);
        reports.into_iter().map(|(_, r)| r).collect()
    }

    /// Whether two runners reported different digests (a `timeout`, which never counts, is
    /// no digest); what the dashboard counts as a disputed task.
    pub fn disputed(&self) -> bool {
        let mut digests = self.replicas.iter().filter_map(|r| match r.state {
            ReplicaState::Reported { digest, .. } => digest,
            _ => None,
        });
        match digests.next() {
            Some(first) => digests.any(|d| d != first),
            None => false,
        }
    }

    /// Where the task stands (see [`Progress`]).
    pub fn progress(&self) -> Progress {
        match self.phase {
            Phase::Accepted { .. } => Progress::Accepted,
            Phase::Cancelled => Progress::Cancelled,
            Phase::Deciding => Progress::Deciding,
            Phase::Open
                if self.replicas.iter().any(|r| {
                    matches!(
                        r.state,
                        ReplicaState::Leased { .. } | ReplicaState::Reported { .. }
                    )
                }) =>
            {
                Progress::Running
            }
            Phase::Open => Progress::Pending,
        }
    }

    /// Leases out and not reported.
    pub fn leased(&self) -> u32 {
        self.replicas
            .iter()
            .filter(|r| matches!(r.state, ReplicaState::Leased { .. }))
            .count() as u32
    }

    fn decide(&mut self) -> Effect {
        if self.phase != Phase::Open {
            return Effect::Nothing;
        }
        let reports = self.reports();
        // Replicas the consensus counts as tried: reported, out, or still wanted. Expired
        // and returned leases are not: the task may go to another runner in their place.
        let outstanding = self.leased() + self.wanted;
        match consensus::decide(&self.redundancy, &reports, outstanding, self.need) {
            Decision::Accept { digest, .. } => {
                self.phase = Phase::Accepted {
                    digest,
                    by_scheduler: false,
                };
                self.wanted = 0;
                self.accepted_effect(digest)
            }
            Decision::Wait => Effect::Nothing,
            Decision::Issue(n) => {
                // Expired and returned leases do not count against `max_replicas`, but
                // leases in all are bounded, so a task no runner finishes still ends.
                let used = self.replicas.len() as u32 + self.wanted;
                let room = (self.redundancy.max_replicas * LEASES_PER_REPLICA).saturating_sub(used);
                let n = n.min(room);
                if n == 0 {
                    return self.stalled();
                }
                self.wanted += n;
                Effect::Issue(n)
            }
            Decision::SchedulerDecides => {
                self.phase = Phase::Deciding;
                self.wanted = 0;
                Effect::RunAuthority
            }
        }
    }

    /// Every attempt allowed is used (some expired or were handed back) and no quorum is
    /// possible: wait for leases still out, else the scheduler decides.
    fn stalled(&mut self) -> Effect {
        if self.leased() + self.wanted > 0 {
            Effect::Nothing
        } else {
            self.phase = Phase::Deciding;
            Effect::RunAuthority
        }
    }

    fn accepted_effect(&self, digest: Blake3Hash) -> Effect {
        match consensus::accept(digest, &self.reports()) {
            Decision::Accept {
                digest,
                agreeing,
                disagreeing,
            } => Effect::Accepted {
                digest,
                agreeing,
                disagreeing,
            },
            _ => unreachable!("consensus::accept always accepts"),
        }
    }
}

/// What the scheduler remembers of a runner's conduct.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reputation {
    /// Results that matched an accepted digest.
    pub agreements: u64,
    /// Results that did not.
    pub disagreements: u64,
    /// Leases that ended without a result.
    pub missed_deadlines: u64,
    /// The scheduler's unannounced re-runs of its accepted results that agreed.
    pub spot_checks: u64,
    /// Leases it handed back unfinished.
    pub returns: u64,
}

impl Reputation {
    /// Agreements a runner needs before it gets single-replica work.
    pub const TRUST_AFTER: u64 = 10;

    /// Whether the runner may run tasks whose batch accepts one runner's result alone
    /// (`quorum` 1): it has agreed at least [`Reputation::TRUST_AFTER`] times, never
    /// disagreed, and missed at most one deadline in ten.
    pub fn trusted(&self) -> bool {
        self.agreements >= Self::TRUST_AFTER
            && self.disagreements == 0
            && self.missed_deadlines * 10 <= self.agreements
    }

    /// Whether the runner ever reported a digest that disagreed with an accepted one.
    pub fn flagged(&self) -> bool {
        self.disagreements > 0
    }
}

/// The deadline of a lease made at `now_ms` for a task with `wall_seconds`: its wall-clock
/// limit plus `grace_ms` for fetching, compiling and reporting.
pub fn lease_deadline(now_ms: i64, wall_seconds: u64, grace_ms: i64) -> i64 {
    now_ms
        .saturating_add((wall_seconds as i64).saturating_mul(1000))
        .saturating_add(grace_ms)
}

/// How many tasks to lease to a runner with `slots` that holds `active` and asks for `max`.
pub fn lease_count(slots: u32, active: u32, max: u32) -> u32 {
    slots.saturating_sub(active).min(max)
}
