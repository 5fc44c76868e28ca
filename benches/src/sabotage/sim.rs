//! One batch run to the end under the scheduler's rules, with saboteurs among the runners.

use std::collections::HashMap;

use helio_scheduler::credibility::{self, Policy, Weight};
use helio_scheduler::rules::{Asker, Draws};
use helio_scheduler::task::{Effect, Phase, Reputation, TaskState};
use helio_sdk::{Blake3Hash, Redundancy, Tier};

/// Tasks the store's pool reads beyond a group's demand (`store/lease.rs`).
const POOL_SPARE: usize = 64;
/// The verified results of an established runner's record.
const RECORD: u64 = 2_000;

/// How the grid decides.
#[derive(Clone, Copy, PartialEq)]
pub enum Mode {
    /// Two replicas, both must agree; the quorum alone decides.
    Fixed,
    /// Credibility decides, with spot checks and re-verification.
    Adaptive,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Fixed => "fixed 2×",
            Mode::Adaptive => "adaptive",
        }
    }
}

/// What a saboteur does.
#[derive(Clone, Copy, PartialEq)]
pub enum Strategy {
    /// Lie (at the sabotage rate) on any task.
    Always,
    /// Lie only on a task a fellow saboteur also holds.
    WhenPaired,
    /// Build a record first (it starts with the honest runners' record), then lie on any task.
    TrustedThenLie,
    /// Lie on any task; once caught, come back as a new runner of a new owner.
    Flood,
}

impl Strategy {
    pub const ALL: [Strategy; 4] = [
        Strategy::Always,
        Strategy::WhenPaired,
        Strategy::TrustedThenLie,
        Strategy::Flood,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Strategy::Always => "always lie",
            Strategy::WhenPaired => "lie when paired",
            Strategy::TrustedThenLie => "trusted, then lie",
            Strategy::Flood => "fresh identities",
        }
    }
}

/// One case's settings.
pub struct Config {
    pub batch: usize,
    pub honest: usize,
    pub saboteurs: usize,
    pub strategy: Strategy,
    /// The sabotage rate s: the share of the tasks it would lie on that it lies on.
    pub rate: f64,
    pub mode: Mode,
    pub seed: u64,
    /// The spot-check rate, if not the policy's default.
    pub spot_rate: Option<f64>,
}

/// What batches came to.
#[derive(Default)]
pub struct Tally {
    pub accepted: u64,
    /// Accepted with a forged digest, once every re-verification is done.
    pub forged: u64,
    /// Runs: leases and the scheduler's own.
    pub runs: u64,
    /// Credit kept in all (one per task result credited, less those reversed).
    pub credit: i64,
    pub saboteur_credit: i64,
    /// Saboteur identities, and those caught.
    pub identities: u64,
    pub caught: u64,
    /// Tasks the caught reported until caught, in all, and the most by one.
    pub tasks_until_caught: u64,
    pub most_until_caught: u64,
    /// Honest runners found false (by a forged result accepted over theirs).
    pub honest_flagged: u64,
}

impl Tally {
    pub fn add(&mut self, o: &Tally) {
        self.accepted += o.accepted;
        self.forged += o.forged;
        self.runs += o.runs;
        self.credit += o.credit;
        self.saboteur_credit += o.saboteur_credit;
        self.identities += o.identities;
        self.caught += o.caught;
        self.tasks_until_caught += o.tasks_until_caught;
        self.most_until_caught = self.most_until_caught.max(o.most_until_caught);
        self.honest_flagged += o.honest_flagged;
    }
}

struct Runner {
    id: String,
    owner: String,
    saboteur: bool,
    reputation: Reputation,
    /// Tasks it reported.
    tasks: u64,
    credit: i64,
    /// Accepted tasks it agreed on.
    vouched: Vec<usize>,
}

struct Sim<'c> {
    c: &'c Config,
    policy: Policy,
    tasks: Vec<TaskState>,
    runners: Vec<Runner>,
    index: HashMap<String, usize>,
    draws: Draws,
    t: Tally,
    /// Tasks below this one are all accepted.
    first_open: usize,
    accepted: usize,
}

fn truth(task: usize) -> Blake3Hash {
    Blake3Hash::of(format!("true {task}").as_bytes())
}

fn forged(task: usize) -> Blake3Hash {
    Blake3Hash::of(format!("forged {task}").as_bytes())
}

/// Runs one batch to the end (or 100 rounds per task) and tallies it.
pub fn run(c: &Config) -> Tally {
    let mut policy = Policy::default();
    if let Some(rate) = c.spot_rate {
        policy.spot_rate = rate;
    }
    let tasks = (0..c.batch)
        .map(|_| match c.mode {
            Mode::Fixed => TaskState::new(Redundancy {
                replicas: 2,
                quorum: 2,
                max_replicas: 4,
            }),
            Mode::Adaptive => TaskState::with_need(
                Redundancy {
                    replicas: 1,
                    quorum: 1,
                    max_replicas: 4,
                },
                policy.need(),
            ),
        })
        .collect();
    let mut sim = Sim {
        c,
        policy,
        tasks,
        runners: Vec::new(),
        index: HashMap::new(),
        draws: Draws(c.seed.wrapping_mul(0x2545_f491_4f6c_dd1d) ^ 0xdead_beef),
        t: Tally::default(),
        first_open: 0,
        accepted: 0,
    };
    for i in 0..c.honest + c.saboteurs {
        let saboteur = i >= c.honest;
        let record = !saboteur || c.strategy == Strategy::TrustedThenLie;
        sim.join(saboteur, if record { RECORD } else { 0 });
    }
    sim.t.identities = c.saboteurs as u64;
    for round in 0..100 * c.batch as i64 {
        if sim.accepted == c.batch {
            break;
        }
        sim.round(round);
    }
    sim.finish()
}

impl Sim<'_> {
    fn join(&mut self, saboteur: bool, record: u64) {
        let n = self.runners.len();
        self.index.insert(format!("r{n}"), n);
        self.runners.push(Runner {
            id: format!("r{n}"),
            owner: format!("o{n}"),
            saboteur,
            reputation: Reputation {
                agreements: record,
                ..Reputation::default()
            },
            tasks: 0,
            credit: 0,
            vouched: Vec::new(),
        });
    }

    fn weight(&self, r: usize) -> Weight {
        match self.c.mode {
            Mode::Fixed => Weight(0),
            Mode::Adaptive => self.policy.weight(&self.runners[r].reputation),
        }
    }

    fn round(&mut self, round: i64) {
        let order = self.order();
        let mut held = Vec::new();
        for &r in &order {
            if let Some(i) = self.ask(r, order.len()) {
                held.push((r, i));
            }
        }
        for (r, i) in held {
            let lie = self.lies(r, i);
            let digest = if lie { forged(i) } else { truth(i) };
            self.runners[r].tasks += 1;
            let id = self.runners[r].id.clone();
            if let Ok(effect) = self.tasks[i].report(&id, Some(digest), round) {
                self.settle(i, effect);
            }
        }
        if self.c.strategy == Strategy::Flood {
            // Each caught saboteur comes back as a newcomer.
            let caught = (0..self.runners.len())
                .filter(|&r| self.runners[r].saboteur && self.runners[r].reputation.flagged())
                .count() as u64;
            let back = caught - (self.t.identities - self.c.saboteurs as u64);
            for _ in 0..back {
                self.join(true, 0);
                self.t.identities += 1;
            }
        }
    }

    /// Runner `r` asks for one task in a round of `asking` requests; the task it got.
    fn ask(&mut self, r: usize, asking: usize) -> Option<usize> {
        while self.first_open < self.tasks.len()
            && matches!(self.tasks[self.first_open].phase, Phase::Accepted { .. })
        {
            self.first_open += 1;
        }
        let weight = self.weight(r);
        let runner = &self.runners[r];
        if runner.saboteur && self.c.strategy == Strategy::Flood && runner.reputation.flagged() {
            return None; // Gone: it came back as another runner.
        }
        let asker = Asker {
            runner: &runner.id,
            owner: &runner.owner,
            tier: Tier::Cpu,
            slots: 1,
            reputation: runner.reputation,
            active: 0,
            weight,
            established_online: true,
        };
        let first = self.first_open;
        let pool = self.tasks[first..]
            .iter()
            .enumerate()
            .filter(|(_, s)| s.wanted > 0)
            .take(asking + POOL_SPARE)
            .map(|(i, s)| ((first + i) as i64, Tier::Cpu, s));
        let i = *asker.choose(pool, 1, self.draws.next()).first()? as usize;
        let (id, owner) = (runner.id.clone(), runner.owner.clone());
        self.tasks[i]
            .lease_weighing(&id, &owner, weight, i64::MAX)
            .ok()?;
        self.t.runs += 1;
        Some(i)
    }

    /// Whether runner `r` lies about task `i`.
    fn lies(&mut self, r: usize, i: usize) -> bool {
        let runner = &self.runners[r];
        if !runner.saboteur {
            return false;
        }
        let would = match self.c.strategy {
            Strategy::Always | Strategy::TrustedThenLie | Strategy::Flood => true,
            Strategy::WhenPaired => self.tasks[i].replicas.iter().any(|x| {
                x.runner != runner.id && x.holds() && self.runners[self.index[&x.runner]].saboteur
            }),
        };
        would && (self.draws.next() as f64) < self.c.rate * u64::MAX as f64
    }

    /// Does what `effect` on task `i` asks.
    fn settle(&mut self, i: usize, effect: Effect) {
        match effect {
            Effect::RunAuthority => {
                self.t.runs += 1;
                let effect = self.tasks[i].authority(truth(i));
                self.settle(i, effect);
            }
            Effect::Accepted {
                agreeing,
                disagreeing,
                ..
            } => {
                self.accepted += 1;
                let mut found = Vec::new();
                for d in &disagreeing {
                    found.extend(self.flag(d));
                }
                for a in &agreeing {
                    let r = self.index[a];
                    self.runners[r].credit += 1;
                    self.runners[r].vouched.push(i);
                }
                let by_scheduler = matches!(
                    self.tasks[i].phase,
                    Phase::Accepted {
                        by_scheduler: true,
                        ..
                    }
                );
                let checked = self.c.mode == Mode::Adaptive
                    && !by_scheduler
                    && self.policy.spot_checked(self.draws.next());
                if checked {
                    if !self.own_run(i, &mut found) {
                        for a in &agreeing {
                            self.runners[self.index[a]].reputation.spot_checks += 1;
                        }
                    }
                } else if credibility::verifies(agreeing.len(), by_scheduler) {
                    for a in &agreeing {
                        self.runners[self.index[a]].reputation.agreements += 1;
                    }
                }
                self.backtrack(found);
            }
            _ => {}
        }
    }

    /// The scheduler runs accepted task `i` itself; whether its run overruled the result.
    /// The runners it finds false are added to `found`.
    fn own_run(&mut self, i: usize, found: &mut Vec<usize>) -> bool {
        self.t.runs += 1;
        let Effect::Overruled {
            vouched,
            vindicated,
            ..
        } = self.tasks[i].overrule(truth(i))
        else {
            return false;
        };
        for v in &vouched {
            self.runners[self.index[v]].credit -= 1;
            found.extend(self.flag(v));
        }
        for v in &vindicated {
            self.runners[self.index[v]].credit += 1;
        }
        true
    }

    /// Flags `runner` as found false; returns it if it was not flagged before.
    fn flag(&mut self, runner: &str) -> Option<usize> {
        let r = self.index[runner];
        let it = &mut self.runners[r];
        it.reputation.disagreements += 1;
        if it.reputation.disagreements > 1 {
            return None;
        }
        if it.saboteur {
            self.t.caught += 1;
            self.t.tasks_until_caught += it.tasks;
            self.t.most_until_caught = self.t.most_until_caught.max(it.tasks);
        } else {
            self.t.honest_flagged += 1;
        }
        Some(r)
    }

    /// Re-verifies every result that runners found false vouched for and that is no longer
    /// believed without them, and so on for the runners that finds false.
    fn backtrack(&mut self, mut found: Vec<usize>) {
        if self.c.mode != Mode::Adaptive {
            return;
        }
        while let Some(r) = found.pop() {
            for i in std::mem::take(&mut self.runners[r].vouched) {
                let believed = {
                    let (runners, index, policy) = (&self.runners, &self.index, &self.policy);
                    self.tasks[i].still_believed(|id| policy.weight(&runners[index[id]].reputation))
                };
                if !believed {
                    self.own_run(i, &mut found);
                }
            }
        }
    }

    /// The order runners ask in a round: the honest shuffled, the saboteurs one after the
    /// other at a place drawn among them.
    fn order(&mut self) -> Vec<usize> {
        let runners = &self.runners;
        let mut honest: Vec<usize> = (0..runners.len())
            .filter(|&r| !runners[r].saboteur)
            .collect();
        for i in (1..honest.len()).rev() {
            let j = (self.draws.next() % (i as u64 + 1)) as usize;
            honest.swap(i, j);
        }
        let at = (self.draws.next() % (honest.len() as u64 + 1)) as usize;
        let saboteurs = (0..runners.len()).filter(|&r| runners[r].saboteur);
        honest.splice(at..at, saboteurs);
        honest
    }

    fn finish(mut self) -> Tally {
        for (i, task) in self.tasks.iter().enumerate() {
            if let Phase::Accepted { digest, .. } = task.phase {
                self.t.accepted += 1;
                self.t.forged += u64::from(digest != truth(i));
            }
        }
        for r in &self.runners {
            self.t.credit += r.credit;
            if r.saboteur {
                self.t.saboteur_credit += r.credit;
            }
        }
        self.t
    }
}
