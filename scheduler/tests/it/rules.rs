//! The grid's rules driven through random sequences of events, with no database: runners
//! join (some of them liars), ask for work, report, hand leases back and miss deadlines, and
//! the scheduler decides what no quorum did. After every step the grid's invariants hold.

use std::collections::{BTreeMap, BTreeSet};

use helio_scheduler::credibility::{self, Policy, Weight};
use helio_scheduler::ledger;
use helio_scheduler::rules::{Asker, BatchDelta, report_status};
use helio_scheduler::task::{
    Effect, Phase, Progress, Refusal, ReplicaState, Reputation, TaskState,
};
use helio_sdk::wire::ReportStatus;
use helio_sdk::{Blake3Hash, Redundancy, Tier};
use proptest::prelude::*;

/// The batch's credit rate and the cooperative fund's share, as a deployment might set.
const RATE: f64 = 1.5;
const SHARE: f64 = 0.1;
/// A lease lasts this long.
const LEASE_MS: i64 = 50;

#[derive(Debug, Clone)]
enum Event {
    Join {
        owner: u8,
        tier: u8,
        slots: u8,
        liar: bool,
        /// Verified results on its record (0: a newcomer; from 920: established).
        record: u16,
    },
    Lease {
        runner: u8,
        max: u8,
        /// The scheduler's random draw for the choice.
        draw: u64,
    },
    Report {
        runner: u8,
        lease: u8,
        timeout: bool,
    },
    GiveBack {
        runner: u8,
        lease: u8,
    },
    Tick(u8),
    Authority {
        task: u8,
    },
    /// The scheduler's own run of an accepted task, as when it recovers its outputs.
    Recover {
        task: u8,
    },
    /// The task's batch is cancelled.
    Cancel {
        task: u8,
    },
}

fn event() -> impl Strategy<Value = Event> {
    prop_oneof![
        2 => (0..5u8, 0..3u8, 1..4u8, prop::bool::weighted(0.3), prop_oneof![Just(0u16), 0..2_000u16])
            .prop_map(|(owner, tier, slots, liar, record)| Event::Join { owner, tier, slots, liar, record }),
        5 => (any::<u8>(), 1..4u8, any::<u64>())
            .prop_map(|(runner, max, draw)| Event::Lease { runner, max, draw }),
        5 => (any::<u8>(), any::<u8>(), prop::bool::weighted(0.1))
            .prop_map(|(runner, lease, timeout)| Event::Report { runner, lease, timeout }),
        1 => (any::<u8>(), any::<u8>()).prop_map(|(runner, lease)| Event::GiveBack { runner, lease }),
        1 => (0..80u8).prop_map(Event::Tick),
        1 => any::<u8>().prop_map(|task| Event::Authority { task }),
        1 => any::<u8>().prop_map(|task| Event::Recover { task }),
        1 => any::<u8>().prop_map(|task| Event::Cancel { task }),
    ]
}

fn redundancy() -> impl Strategy<Value = Redundancy> {
    (1..4u32, 1..4u32, 0..3u32).prop_map(|(replicas, quorum, extra)| Redundancy {
        replicas,
        quorum: quorum.min(replicas),
        max_replicas: replicas + extra,
    })
}

struct Runner {
    id: String,
    owner: String,
    tier: Tier,
    slots: u32,
    reputation: Reputation,
    liar: bool,
}

struct Task {
    state: TaskState,
    tier: Tier,
    fuel: u64,
}

/// The grid as the scheduler would hold it, changed only through the pure core.
struct Grid {
    runners: Vec<Runner>,
    tasks: Vec<Task>,
    now: i64,
    /// What the batch's kept counts add up to, moved only by [`BatchDelta`].
    kept: BatchDelta,
    /// Every task credit granted: (runner, task).
    credited: BTreeSet<(String, usize)>,
    granted: u64,
    /// Credits taken back because the scheduler's own run overruled the digest they were
    /// granted for: (runner, task).
    reversed: BTreeSet<(String, usize)>,
    /// How runners are weighed, when the batch asks for credibility.
    policy: Option<Policy>,
}

/// The chance that `digest` is the wrong result of `task`, from its reports' error
/// probabilities directly: `1 - Π_g (1 - e) Π_not g e / (Σ_h Π_h (1 - e) Π_not h e + Π e)`.
fn group_error(task: &TaskState, digest: Blake3Hash) -> f64 {
    let reports: Vec<(Blake3Hash, f64)> = task
        .replicas
        .iter()
        .filter_map(|r| match r.state {
            ReplicaState::Reported {
                digest: Some(d), ..
            } => Some((d, r.weight.error())),
            _ => None,
        })
        .collect();
    let right = |g: Blake3Hash| -> f64 {
        reports
            .iter()
            .map(|&(d, e)| if d == g { 1.0 - e } else { e })
            .product()
    };
    let mut digests: Vec<Blake3Hash> = Vec::new();
    for (d, _) in &reports {
        if !digests.contains(d) {
            digests.push(*d);
        }
    }
    let none: f64 = reports.iter().map(|(_, e)| e).product();
    let total: f64 = digests.iter().map(|&g| right(g)).sum::<f64>() + none;
    1.0 - right(digest) / total
}

/// The honest result of a task, and the one liars agree on among themselves.
fn truth(task: usize) -> Blake3Hash {
    Blake3Hash::of(format!("true {task}").as_bytes())
}
fn forged(task: usize) -> Blake3Hash {
    Blake3Hash::of(format!("forged {task}").as_bytes())
}

impl Grid {
    fn asker(&self, r: usize) -> Asker<'_> {
        let runner = &self.runners[r];
        Asker {
            runner: &runner.id,
            owner: &runner.owner,
            tier: runner.tier,
            slots: runner.slots,
            reputation: runner.reputation,
            active: self.held(&runner.id).len() as u32,
            weight: self.weight(r),
            established_online: self
                .runners
                .iter()
                .enumerate()
                .any(|(o, _)| self.policy.is_some_and(|p| p.established(self.weight(o)))),
        }
    }

    /// Runner `r`'s credibility now (0 when the batch does not ask for credibility).
    fn weight(&self, r: usize) -> Weight {
        match self.policy {
            Some(p) => p.weight(&self.runners[r].reputation),
            None => Weight(0),
        }
    }

    /// The tasks `runner` holds a lease of, lowest first.
    fn held(&self, runner: &str) -> Vec<usize> {
        (0..self.tasks.len())
            .filter(|&t| {
                self.tasks[t]
                    .state
                    .replicas
                    .iter()
                    .any(|r| r.runner == runner && matches!(r.state, ReplicaState::Leased { .. }))
            })
            .collect()
    }

    /// Applies `change` to task `t` and moves the batch's counts as the store would.
    fn change<T>(&mut self, t: usize, change: impl FnOnce(&mut TaskState) -> T) -> T {
        let before = self.tasks[t].state.clone();
        let out = change(&mut self.tasks[t].state);
        let after = &self.tasks[t].state;
        let newly = !matches!(before.phase, Phase::Accepted { .. })
            && matches!(after.phase, Phase::Accepted { .. });
        // Every result in this grid succeeds.
        self.kept.task(&before, after, newly.then_some(true));
        out
    }

    fn runner_index(&self, id: &str) -> usize {
        self.runners
            .iter()
            .position(|r| r.id == id)
            .expect("a known runner")
    }

    fn credit(&mut self, runner: &str, t: usize) -> Result<(), TestCaseError> {
        prop_assert!(
            self.credited.insert((runner.to_string(), t)),
            "{} credited twice for task {}",
            runner,
            t
        );
        let fuel = self.tasks[t].fuel;
        let (own, fund) = helio_scheduler::rules::task_credit(fuel, RATE, SHARE);
        prop_assert_eq!(own + fund, ledger::micro_credits(fuel, RATE));
        self.kept.credited(own + fund);
        self.granted += own + fund;
        Ok(())
    }

    /// Counts an agreement on `runner`'s record (`by` 1, or -1 to take one back).
    fn agreed(&mut self, runner: &str, by: i64) {
        let r = self.runner_index(runner);
        let rep = &mut self.runners[r].reputation;
        rep.agreements = (rep.agreements as i64 + by).max(0) as u64;
    }

    fn flag(&mut self, runner: &str) {
        let r = self.runner_index(runner);
        self.runners[r].reputation.disagreements += 1;
    }

    /// Applies an effect's credits and flags, as the store does.
    fn apply(&mut self, t: usize, effect: &Effect) -> Result<(), TestCaseError> {
        match effect {
            Effect::Accepted {
                digest,
                agreeing,
                disagreeing,
            } => {
                let s = &self.tasks[t].state;
                let by_scheduler = matches!(
                    s.phase,
                    Phase::Accepted {
                        by_scheduler: true,
                        ..
                    }
                );
                if let (Some(need), false) = (s.need, by_scheduler) {
                    // Accepted only with the credibility the target asks, against the
                    // other digests reported (from error probabilities, directly).
                    let target = need.error();
                    let wrong = group_error(s, *digest);
                    prop_assert!(
                        wrong <= target * 1.01,
                        "accepted at error {} > {}",
                        wrong,
                        target
                    );
                }
                let verified = credibility::verifies(agreeing.len(), by_scheduler);
                for runner in agreeing {
                    self.credit(runner, t)?;
                    if verified {
                        self.agreed(runner, 1);
                    }
                }
                for runner in disagreeing {
                    self.flag(runner);
                }
            }
            Effect::Late {
                runner,
                agreed: true,
            } => {
                self.credit(runner, t)?;
                self.agreed(runner, 1);
            }
            Effect::Late {
                runner,
                agreed: false,
            } => self.flag(runner),
            Effect::Overruled {
                vouched,
                vindicated,
                ..
            } => {
                for runner in vouched {
                    if self.credited.contains(&(runner.clone(), t)) {
                        prop_assert!(
                            self.reversed.insert((runner.clone(), t)),
                            "{} reversed twice for task {}",
                            runner,
                            t
                        );
                        let fuel = self.tasks[t].fuel;
                        let (own, fund) = helio_scheduler::rules::task_credit(fuel, RATE, SHARE);
                        self.kept.reversed(own + fund);
                        self.granted -= own + fund;
                    }
                    if credibility::verifies(vouched.len(), false) {
                        self.agreed(runner, -1);
                    }
                    self.flag(runner);
                }
                for runner in vindicated {
                    let r = self.runner_index(runner);
                    let rep = &mut self.runners[r].reputation;
                    rep.disagreements = rep.disagreements.saturating_sub(1);
                    self.credit(runner, t)?;
                    self.agreed(runner, 1);
                }
            }
            Effect::Nothing | Effect::Duplicate | Effect::Issue(_) | Effect::RunAuthority => {}
        }
        Ok(())
    }

    fn step(&mut self, event: Event) -> Result<(), TestCaseError> {
        let pick = |n: u8, len: usize| (len > 0).then(|| n as usize % len);
        match event {
            Event::Join {
                owner,
                tier,
                slots,
                liar,
                record,
            } => {
                let id = format!("r{}", self.runners.len());
                self.runners.push(Runner {
                    id,
                    owner: format!("o{owner}"),
                    tier: Tier::ALL[tier as usize],
                    slots: u32::from(slots),
                    reputation: Reputation {
                        agreements: u64::from(record),
                        ..Reputation::default()
                    },
                    liar,
                });
            }
            Event::Lease { runner, max, draw } => {
                let Some(r) = pick(runner, self.runners.len()) else {
                    return Ok(());
                };
                let asker = self.asker(r);
                let n = asker.wants(u32::from(max));
                let tasks = self.tasks.iter().enumerate();
                let tasks = tasks.map(|(i, t)| (i as i64, t.tier, &t.state));
                let takeable = tasks
                    .clone()
                    .filter(|(_, tier, s)| asker.may_take(*tier, s))
                    .count();
                let chosen = asker.choose(tasks, n, draw);
                // As many as it wants of what it may take, each once, in id order.
                prop_assert_eq!(chosen.len(), (n as usize).min(takeable));
                prop_assert!(chosen.windows(2).all(|w| w[0] < w[1]));
                let (trusted, slots, active) =
                    (asker.reputation.trusted(), asker.slots(), asker.active);
                let (weight, established_online, flagged) = (
                    asker.weight,
                    asker.established_online,
                    asker.reputation.flagged(),
                );
                prop_assert!(chosen.len() as u32 <= n);
                prop_assert!(active + chosen.len() as u32 <= slots.max(active));
                let (id, owner, tier) = {
                    let runner = &self.runners[r];
                    (runner.id.clone(), runner.owner.clone(), runner.tier)
                };
                for t in chosen {
                    let t = t as usize;
                    prop_assert!(self.tasks[t].tier <= tier);
                    let state = &self.tasks[t].state;
                    match state.need {
                        None => prop_assert!(state.redundancy.quorum > 1 || trusted),
                        Some(need) => {
                            // No credibility-decided work for a runner found false; a
                            // newcomer never joins only newcomers while an established
                            // runner is online.
                            prop_assert!(!flagged);
                            let held: Vec<_> =
                                state.replicas.iter().filter(|r| r.holds()).collect();
                            prop_assert!(
                                weight >= need
                                    || !established_online
                                    || held.is_empty()
                                    || held.iter().any(|r| r.weight >= need),
                                "a newcomer joined only newcomers"
                            );
                        }
                    }
                    let deadline = self.now + LEASE_MS;
                    let leased =
                        self.change(t, |s| s.lease_weighing(&id, &owner, weight, deadline));
                    prop_assert!(
                        leased.is_ok(),
                        "a chosen task refused its lease: {:?}",
                        leased
                    );
                }
            }
            Event::Report {
                runner,
                lease,
                timeout,
            } => {
                let Some(r) = pick(runner, self.runners.len()) else {
                    return Ok(());
                };
                let id = self.runners[r].id.clone();
                let held = self.held(&id);
                let Some(t) = pick(lease, held.len()).map(|i| held[i]) else {
                    return Ok(());
                };
                let digest = if self.runners[r].liar {
                    forged(t)
                } else {
                    truth(t)
                };
                let now = self.now;
                let reported = if timeout { None } else { Some(digest) };
                let effect = self.change(t, |s| s.report(&id, reported, now));
                let Ok(effect) = effect else { return Ok(()) };
                let status = report_status(&effect, &id);
                if status == ReportStatus::Accepted {
                    let Phase::Accepted {
                        digest: accepted, ..
                    } = self.tasks[t].state.phase
                    else {
                        panic!("told accepted, but task {t} is not");
                    };
                    prop_assert_eq!(reported, Some(accepted));
                }
                self.apply(t, &effect)?;
            }
            Event::GiveBack { runner, lease } => {
                let Some(r) = pick(runner, self.runners.len()) else {
                    return Ok(());
                };
                let id = self.runners[r].id.clone();
                let held = self.held(&id);
                if let Some(t) = pick(lease, held.len()).map(|i| held[i]) {
                    let back = self.change(t, |s| s.give_back(&id));
                    prop_assert!(back.is_ok());
                }
            }
            Event::Tick(ms) => {
                self.now += i64::from(ms);
                let now = self.now;
                for t in 0..self.tasks.len() {
                    let (missed, _) = self.change(t, |s| s.expire(now));
                    for runner in missed {
                        let r = self.runner_index(&runner);
                        self.runners[r].reputation.missed_deadlines += 1;
                    }
                }
            }
            Event::Authority { task } => {
                let t = task as usize % self.tasks.len();
                if self.tasks[t].state.phase == Phase::Deciding {
                    let effect = self.change(t, |s| s.authority(truth(t)));
                    self.apply(t, &effect)?;
                }
            }
            Event::Cancel { task } => {
                let t = task as usize % self.tasks.len();
                let before = self.tasks[t].state.clone();
                let leased: Vec<String> = before
                    .replicas
                    .iter()
                    .filter(|r| matches!(r.state, ReplicaState::Leased { .. }))
                    .map(|r| r.runner.clone())
                    .collect();
                let withdrawn = self.change(t, |s| s.cancel());
                if let Phase::Accepted { .. } = before.phase {
                    // Accepted (and credited) before: it stays as it was.
                    prop_assert!(withdrawn.is_empty());
                    prop_assert_eq!(&self.tasks[t].state, &before);
                } else {
                    prop_assert_eq!(&withdrawn, &leased);
                    prop_assert_eq!(self.tasks[t].state.phase, Phase::Cancelled);
                    // A runner whose lease was withdrawn reports anyway: refused, and
                    // nothing changes (so nothing is credited).
                    let now = self.now;
                    for runner in &withdrawn {
                        let mut s = self.tasks[t].state.clone();
                        prop_assert_eq!(
                            s.report(runner, Some(truth(t)), now),
                            Err(Refusal::Cancelled)
                        );
                        prop_assert_eq!(&s, &self.tasks[t].state);
                    }
                }
            }
            Event::Recover { task } => {
                let t = task as usize % self.tasks.len();
                if let Phase::Accepted { digest, .. } = self.tasks[t].state.phase {
                    let effect = self.change(t, |s| s.overrule(truth(t)));
                    prop_assert_eq!(
                        digest == truth(t),
                        effect == Effect::Nothing,
                        "the scheduler's run overrules exactly a false result"
                    );
                    self.apply(t, &effect)?;
                    // Confirmed or overruled, the scheduler's run stands behind it now.
                    prop_assert_eq!(
                        self.tasks[t].state.phase,
                        Phase::Accepted {
                            digest: truth(t),
                            by_scheduler: true,
                        },
                    );
                }
            }
        }
        Ok(())
    }

    /// The invariants that hold after every event.
    fn check(&self) -> Result<(), TestCaseError> {
        let mut recount = BatchDelta::default();
        for (t, task) in self.tasks.iter().enumerate() {
            let s = &task.state;
            let owners: BTreeSet<_> = s.replicas.iter().map(|r| &r.owner).collect();
            prop_assert_eq!(
                owners.len(),
                s.replicas.len(),
                "an owner holds two replicas"
            );
            match s.phase {
                Phase::Accepted {
                    digest,
                    by_scheduler: false,
                } => {
                    // Accepted only with a quorum of matching digests from distinct owners.
                    let agreeing: BTreeSet<&str> = s
                        .replicas
                        .iter()
                        .filter(|r| {
                            matches!(r.state, ReplicaState::Reported { digest: Some(d), .. } if d == digest)
                        })
                        .map(|r| r.owner.as_str())
                        .collect();
                    prop_assert!(agreeing.len() as u32 >= s.redundancy.quorum);
                }
                Phase::Accepted {
                    digest,
                    by_scheduler: true,
                } => prop_assert_eq!(digest, truth(t)),
                Phase::Cancelled => {
                    // Nothing wanted, nothing out: no runner holds a lease of it.
                    prop_assert_eq!(s.wanted, 0);
                    prop_assert_eq!(s.leased(), 0);
                }
                Phase::Open | Phase::Deciding => {}
            }
            match s.progress() {
                Progress::Running => recount.running += 1,
                Progress::Deciding => recount.deciding += 1,
                Progress::Accepted => recount.ok += 1,
                Progress::Cancelled => recount.cancelled += 1,
                Progress::Pending => {}
            }
            recount.leased += i64::from(s.leased());
            for r in &s.replicas {
                // A credit only for a reported replica whose digest is the accepted one.
                if self.credited.contains(&(r.runner.clone(), t))
                    && !self.reversed.contains(&(r.runner.clone(), t))
                {
                    let Phase::Accepted { digest, .. } = s.phase else {
                        panic!("credit for task {t}, which is not accepted");
                    };
                    let agreed = matches!(
                        r.state,
                        ReplicaState::Reported { digest: Some(d), .. } if d == digest
                    );
                    prop_assert!(
                        agreed,
                        "{} credited for task {} without agreeing",
                        r.runner,
                        t
                    );
                }
            }
        }
        recount.micro_credits = self.granted as i64;
        // The counts kept as tasks move equal a recount.
        prop_assert_eq!(self.kept, recount);
        // No runner holds more leases than it registered slots for.
        let per_runner: BTreeMap<&str, u32> = self
            .runners
            .iter()
            .map(|r| (r.id.as_str(), self.held(&r.id).len() as u32))
            .collect();
        for r in &self.runners {
            prop_assert!(per_runner[r.id.as_str()] <= r.slots);
        }
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Whatever runners join and whatever they do, in any order: a task is accepted only
    /// with a quorum of matching digests from runners of distinct owners (or by the
    /// scheduler's own run, with the true result); a runner is credited at most once per
    /// task and only for the accepted digest; credits split without loss; single-result
    /// tasks go only to trusted runners; no runner takes more than its slots, nor a task
    /// above its tier; and the batch's kept counts always equal a recount. Where the batch
    /// asks for credibility (half the cases): no result is accepted without the credibility
    /// the target requires, a runner found false gets no such work, and a newcomer never
    /// joins only newcomers while an established runner is online.
    #[test]
    fn the_grid_keeps_its_invariants(
        red in redundancy(),
        credible in any::<bool>(),
        tiers in prop::collection::vec((0..3u8, 1..2_000_000u64), 1..8),
        events in prop::collection::vec(event(), 1..150),
    ) {
        let policy = credible.then(Policy::default);
        let mut grid = Grid {
            runners: Vec::new(),
            policy,
            tasks: tiers
                .into_iter()
                .map(|(tier, fuel)| Task {
                    state: match policy {
                        Some(p) => TaskState::with_need(red, p.need()),
                        None => TaskState::new(red),
                    },
                    tier: Tier::ALL[tier as usize],
                    fuel,
                })
                .collect(),
            now: 0,
            kept: BatchDelta::default(),
            credited: BTreeSet::new(),
            granted: 0,
            reversed: BTreeSet::new(),
        };
        for event in events {
            grid.step(event)?;
            grid.check()?;
        }
    }
}
