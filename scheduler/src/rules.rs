//! The grid's rules beyond one task's state machine ([`crate::task`]): which tasks a runner
//! may take and how many, what a report's [`Effect`] tells its runner, how a batch's kept
//! counts move, how a task's credit is split, and when a cold runner gets a health check.
//!
//! **Pure**: no SQL, no tokio, no clock, no randomness inside. Whatever they depend on (the
//! time, a runner's reputation as stored, the tasks read) is passed in, so the store reads,
//! asks these functions, and writes what they decide; and a test can drive them through any
//! sequence of events without a database (`tests/it/rules.rs`).

use helio_sdk::wire::{self, PublicKey, ReportStatus, ResultReport};
use helio_sdk::{Outcome, RunReport, TaskManifest, Tier};

use crate::credibility::Weight;
use crate::ledger;
use crate::share::Shares;
use crate::task::{Effect, Progress, Reputation, TaskState};
use std::collections::BTreeMap;

/// A runner as leasing sees it when it asks for work.
#[derive(Debug, Clone, Copy)]
pub struct Asker<'a> {
    /// The runner's id.
    pub runner: &'a str,
    /// Its owner.
    pub owner: &'a str,
    /// Its tier: it runs tasks of this tier and below.
    pub tier: Tier,
    /// The tasks it runs at once, as it registered.
    pub slots: u32,
    /// Its conduct so far.
    pub reputation: Reputation,
    /// The leases it holds now.
    pub active: u32,
    /// Its credibility ([`crate::credibility`]).
    pub weight: Weight,
    /// Whether established runners (whose credibility alone meets a task's need) are online:
    /// then a newcomer's task waits for one of them rather than go to another newcomer.
    pub established_online: bool,
}

impl Asker<'_> {
    /// The slots it may fill: one while it is flagged, since its results are checked anyway
    /// and it must not tie up many tasks until their deadlines.
    pub fn slots(&self) -> u32 {
        if self.reputation.flagged() {
            1
        } else {
            self.slots
        }
    }

    /// How many tasks it gets when it asks for at most `max`: never more than its free
    /// slots.
    pub fn wants(&self, max: u32) -> u32 {
        crate::task::lease_count(self.slots(), self.active, max)
    }

    /// Whether it may take a replica of `task`, whose least tier is `tier`: the task wants
    /// one, its tier is no higher than the runner's, and no runner of the same owner held a
    /// replica of it. Where the quorum alone decides, a task one result decides (quorum 1)
    /// goes only to a trusted runner. Where credibility decides, a task whose runners so far
    /// are all newcomers goes to an established runner when one is online, so that
    /// newcomers are cross-checked by runners with a history, never only by each other.
    pub fn may_take(&self, tier: Tier, task: &TaskState) -> bool {
        let placed = match task.need {
            None => task.redundancy.quorum > 1 || self.reputation.trusted(),
            // A runner found false gets no work whose result credibility decides.
            Some(_) if self.reputation.flagged() => false,
            Some(need) => {
                self.weight >= need
                    || !self.established_online
                    || !task.replicas.iter().any(|r| r.holds())
                    || task.replicas.iter().any(|r| r.holds() && r.weight >= need)
            }
        };
        tier <= self.tier && placed && task.may_lease(self.runner, self.owner).is_ok()
    }

    /// `n` of `tasks` (each with its least tier) that it may take, drawn at random by
    /// `draw` (a seed the caller takes from its random source), in id order. Which of them
    /// a runner gets is the scheduler's choice, not the order of requests: two runners that
    /// ask one right after the other do not get the same tasks for it, and a runner cannot
    /// pick which task it shares with whom.
    pub fn choose<'t, I>(&self, tasks: I, n: u32, draw: u64) -> Vec<i64>
    where
        I: IntoIterator<Item = (i64, Tier, &'t TaskState)>,
    {
        let mut ids: Vec<i64> = tasks
            .into_iter()
            .filter(|(_, tier, task)| self.may_take(*tier, task))
            .map(|(id, _, _)| id)
            .collect();
        let k = (n as usize).min(ids.len());
        let mut draws = Draws(draw);
        for i in 0..k {
            let j = i + (draws.next() % (ids.len() - i) as u64) as usize;
            ids.swap(i, j);
        }
        ids.truncate(k);
        ids.sort_unstable();
        ids
    }

    /// `n` of `tasks` (each with its queue in `shares`, its least tier and its state) that it
    /// may take, in id order: for each, the queue [`Shares::next`] serves (fair share between
    /// submitters, priority within one, quotas), then a task of that queue drawn at random
    /// by `draw`, as [`Asker::choose`] draws.
    pub fn choose_fairly<'t, I>(&self, tasks: I, n: u32, draw: u64, shares: &Shares) -> Vec<i64>
    where
        I: IntoIterator<Item = (i64, usize, Tier, &'t TaskState)>,
    {
        let offers = tasks.into_iter().map(|(id, queue, tier, state)| Offer {
            id,
            queue,
            tier,
            memory: 0,
            state,
        });
        self.choose_within(offers, n, draw, shares, u64::MAX)
    }

    /// [`Asker::choose_fairly`] for a runner with `free` bytes of memory for new leases
    /// ([`memory_free`]): each task chosen fits in what the ones chosen before it left, and
    /// a queue whose tasks no longer fit is passed over for the next one fair share serves.
    pub fn choose_within<'t, I>(
        &self,
        offers: I,
        n: u32,
        draw: u64,
        shares: &Shares,
        free: u64,
    ) -> Vec<i64>
    where
        I: IntoIterator<Item = Offer<'t>>,
    {
        let mut open: BTreeMap<usize, Vec<(i64, u64)>> = BTreeMap::new();
        for o in offers {
            if self.may_take(o.tier, o.state) {
                open.entry(o.queue).or_default().push((o.id, o.memory));
            }
        }
        let mut left = free;
        let mut tally = shares.tally();
        let mut draws = Draws(draw);
        let mut chosen = Vec::new();
        while (chosen.len() as u32) < n {
            let fits = |q: usize| {
                open.get(&q)
                    .is_some_and(|t| t.iter().any(|&(_, m)| m <= left))
            };
            let Some(q) = shares.next(&tally, fits) else {
                break;
            };
            let tasks = open.get_mut(&q).expect("an open queue");
            tasks.retain(|&(_, m)| m <= left);
            let j = (draws.next() % tasks.len() as u64) as usize;
            let (id, memory) = tasks.swap_remove(j);
            left -= memory;
            chosen.push(id);
            shares.take(&mut tally, q);
        }
        chosen.sort_unstable();
        chosen
    }
}

/// The memory a runner has for new leases: what it may use (`memory`, as it registered)
/// less the `limits.memory_bytes` of the tasks it holds (`leased`), so that every task it
/// holds may grow to its limit at once (for tasks alike, slots × `memory_bytes` within its
/// memory). A runner that did not say its memory (0) has no bound.
pub fn memory_free(memory: u64, leased: u64) -> u64 {
    match memory {
        0 => u64::MAX,
        m => m.saturating_sub(leased),
    }
}

/// A task one lease request may take, as [`Asker::choose_within`] weighs it.
#[derive(Debug, Clone, Copy)]
pub struct Offer<'t> {
    /// Its id.
    pub id: i64,
    /// Its queue in the shares.
    pub queue: usize,
    /// The least tier that may run it.
    pub tier: Tier,
    /// Its `limits.memory_bytes` (0 for a task submitted before the scheduler recorded it).
    pub memory: u64,
    /// Its state.
    pub state: &'t TaskState,
}

/// A stream of pseudo-random numbers from one seed (SplitMix64): the draws the core makes
/// from a seed it is passed, so that the same seed makes the same choices.
pub struct Draws(pub u64);

impl Draws {
    /// The next draw.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// Why a report's digest cannot be taken: it does not match the report's own fields (so a
/// runner cannot claim fuel, outputs or an outcome other than the ones it agreed on).
pub fn inconsistent(report: &RunReport) -> Option<String> {
    let computed = RunReport::compute_digest(
        &report.outcome,
        report.fuel_consumed,
        &report.stdout_blake3,
        &report.outputs,
    );
    (computed != report.digest).then(|| {
        format!(
            "the digest {} does not match the report's own fields (they give {computed})",
            report.digest
        )
    })
}

/// Whether `result`'s signature, over task `name` of `batch` and its digest, verifies with
/// `key`.
pub fn signed(key: &PublicKey, batch: &str, name: &str, result: &ResultReport) -> bool {
    let message = wire::result_message(batch, name, &result.report.digest);
    key.verifies(&message, &result.signature)
}

/// Whether a result of task `name` of `batch`, sent by the runner with `key`, may be
/// recorded at all: its digest matches its fields and it is signed by that runner. The
/// reason to refuse it, if not.
pub fn check_report(
    key: &PublicKey,
    batch: &str,
    name: &str,
    result: &ResultReport,
) -> Result<(), String> {
    if let Some(error) = inconsistent(&result.report) {
        return Err(error);
    }
    if !signed(key, batch, name, result) {
        return Err("the result's signature does not verify with this runner's key".into());
    }
    Ok(())
}

/// What a task's manifest bounds in every honest report of it: its fuel limit and its
/// declared outputs (name and `max_bytes`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bounds {
    /// `limits.fuel`.
    pub fuel: u64,
    /// Each declared output's name and `max_bytes`.
    pub outputs: Vec<(String, u64)>,
}

impl Bounds {
    /// The bounds of `task`.
    pub fn of(task: &TaskManifest) -> Bounds {
        Bounds {
            fuel: task.limits.fuel,
            outputs: task
                .outputs
                .iter()
                .map(|o| (o.name.to_string(), o.max_bytes))
                .collect(),
        }
    }
}

/// Why no honest runner could have sent `report` for a task with `bounds`, if so: fuel above
/// the limit (an honest run stops at it); `out_of_fuel`, or a `stack_overflow` trap (which the
/// sandbox charges the whole budget so that every machine reports the same), with other than
/// the whole budget; an output that is not declared or larger than declared. Such a report is
/// refused, and as it is signed, it counts against its runner.
pub fn impossible(report: &RunReport, bounds: &Bounds) -> Option<String> {
    let fuel = report.fuel_consumed;
    if fuel > bounds.fuel {
        return Some(format!(
            "it reports {fuel} fuel, above the task's limit of {}",
            bounds.fuel
        ));
    }
    let whole_budget = match &report.outcome {
        Outcome::OutOfFuel => true,
        Outcome::Trapped { trap } => trap == "stack_overflow",
        _ => false,
    };
    if whole_budget && fuel != bounds.fuel {
        return Some(format!(
            "it reports `{}` after {fuel} fuel; that outcome is charged the whole limit of {}",
            report.outcome.name(),
            bounds.fuel
        ));
    }
    for output in &report.outputs {
        let name = output.name.as_str();
        match bounds.outputs.iter().find(|(n, _)| n == name) {
            None => {
                return Some(format!(
                    "it reports output {name:?}, which the task does not declare"
                ));
            }
            Some((_, max)) if output.bytes > *max => {
                return Some(format!(
                    "it reports output {name:?} of {} bytes, above its max_bytes of {max}",
                    output.bytes
                ));
            }
            Some(_) => {}
        }
    }
    None
}

/// What a report's runner is told, given the effect its report had on the task.
pub fn report_status(effect: &Effect, runner: &str) -> ReportStatus {
    match effect {
        Effect::Duplicate => ReportStatus::Duplicate,
        Effect::Accepted { agreeing, .. } if agreeing.iter().any(|r| r == runner) => {
            ReportStatus::Accepted
        }
        Effect::Accepted { .. } | Effect::Late { agreed: false, .. } => ReportStatus::Disagreed,
        Effect::Late { agreed: true, .. } => ReportStatus::Accepted,
        Effect::Nothing | Effect::Issue(_) | Effect::RunAuthority | Effect::Overruled { .. } => {
            ReportStatus::Recorded
        }
    }
}

/// What a set of changes adds to a batch's kept counts (migrations 5 and 7): its accepted
/// tasks by outcome, its credits, and its tasks running and deciding. Pending tasks are
/// not counted: they are what the others leave of the batch.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct BatchDelta {
    /// Tasks newly accepted with a successful outcome.
    pub ok: i64,
    /// Tasks newly accepted with a failed one.
    pub failed: i64,
    /// Micro-credits newly granted for its tasks (owners' and the fund's).
    pub micro_credits: i64,
    /// Change in tasks running.
    pub running: i64,
    /// Change in tasks waiting for the scheduler's own run.
    pub deciding: i64,
    /// Tasks newly cancelled.
    pub cancelled: i64,
    /// Change in leases out (a task may have several): what fair share counts a
    /// submitter's use of the grid by.
    pub leased: i64,
}

impl BatchDelta {
    /// A task of the batch went from `before` to `after`; `succeeded` is its accepted
    /// result's outcome, when these changes accepted it.
    pub fn task(&mut self, before: &TaskState, after: &TaskState, succeeded: Option<bool>) {
        let (from, to) = (before.progress(), after.progress());
        if let Some(ok) = succeeded
            && from != Progress::Accepted
        {
            if ok {
                self.ok += 1;
            } else {
                self.failed += 1;
            }
        }
        if from != to {
            self.moved(from, -1);
            self.moved(to, 1);
        }
        self.leased += i64::from(after.leased()) - i64::from(before.leased());
    }

    /// An accepted task's result replaced by one that `succeeded` or not, where the one
    /// replaced `was` a success or not ([`Effect::Overruled`]).
    pub fn regraded(&mut self, was: bool, succeeded: bool) {
        let by = |ok: bool| if ok { (1, 0) } else { (0, 1) };
        let (was_ok, was_failed) = by(was);
        let (ok, failed) = by(succeeded);
        self.ok += ok - was_ok;
        self.failed += failed - was_failed;
    }

    /// A credit of `micro_credits` for one of the batch's tasks.
    pub fn credited(&mut self, micro_credits: u64) {
        self.micro_credits += micro_credits as i64;
    }

    /// A credit of `micro_credits` for one of the batch's tasks taken back.
    pub fn reversed(&mut self, micro_credits: u64) {
        self.micro_credits -= micro_credits as i64;
    }

    fn moved(&mut self, progress: Progress, by: i64) {
        match progress {
            Progress::Running => self.running += by,
            Progress::Deciding => self.deciding += by,
            // A task is cancelled once and never leaves it.
            Progress::Cancelled => self.cancelled += by.max(0),
            // Accepted tasks are counted with their outcome, which only the acceptance knows.
            Progress::Pending | Progress::Accepted => {}
        }
    }
}

/// A runner's credit for an accepted task that consumed `fuel` in a batch paying
/// `credit_rate`: its owner's part and the cooperative fund's `share` of it, which add up
/// to the whole.
pub fn task_credit(fuel: u64, credit_rate: f64, share: f64) -> (u64, u64) {
    ledger::split(ledger::micro_credits(fuel, credit_rate), share)
}

/// The credit for `ms` online at `per_hour` micro-credits an hour.
pub fn uptime_credit(ms: u64, per_hour: u64) -> u64 {
    (u128::from(ms) * u128::from(per_hour) / 3_600_000) as u64
}

/// What an owner with `balance` (earned less paid) is paid when payouts are due at
/// `threshold`: its whole balance once it reaches the threshold (and is above zero).
pub fn payout(balance: i64, threshold: u64) -> Option<u64> {
    (balance > 0 && balance as u64 >= threshold.max(1)).then_some(balance as u64)
}

/// What a cold runner's lease request gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckLease {
    /// Nothing: it failed its last check and waits until `check_after`.
    Wait,
    /// Nothing: its check is still running.
    Running,
    /// A new check (any pending one past its deadline is marked expired).
    Issue,
}

/// What a cold runner asking for work at `now` gets, when it may have its next check from
/// `check_after` on and `running` says whether a check of its is pending and in time.
pub fn check_lease(now: i64, check_after: i64, running: bool) -> CheckLease {
    if now < check_after {
        CheckLease::Wait
    } else if running {
        CheckLease::Running
    } else {
        CheckLease::Issue
    }
}

/// How long a runner that failed `failed` checks in a row waits for its next one: a
/// minute, doubling with each failure, at most an hour.
pub fn retry_after_ms(failed: u64) -> i64 {
    let minutes = 1i64 << failed.saturating_sub(1).min(6);
    minutes.min(60) * 60_000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failing_runner_waits_a_minute_doubling_to_an_hour() {
        let waits: Vec<i64> = (1..=8).map(|n| retry_after_ms(n) / 60_000).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 60, 60]);
    }

    #[test]
    fn a_payout_needs_the_threshold_and_a_positive_balance() {
        assert_eq!(payout(0, 0), None);
        assert_eq!(payout(-5, 0), None);
        assert_eq!(payout(1, 0), Some(1));
        assert_eq!(payout(99, 100), None);
        assert_eq!(payout(100, 100), Some(100));
    }

    #[test]
    fn the_choice_of_tasks_is_the_draws_and_spread_over_all_of_them() {
        let asker = Asker {
            runner: "r",
            owner: "o",
            tier: Tier::Cpu,
            slots: 4,
            reputation: crate::task::Reputation::default(),
            active: 0,
            weight: Weight(0),
            established_online: false,
        };
        let red = helio_sdk::Redundancy {
            replicas: 2,
            quorum: 2,
            max_replicas: 3,
        };
        let state = TaskState::new(red);
        let tasks = || (1..=100i64).map(|id| (id, Tier::Cpu, &state));
        assert_eq!(asker.choose(tasks(), 3, 7), asker.choose(tasks(), 3, 7));
        let mut times = [0u32; 101];
        for draw in 0..2_000 {
            for id in asker.choose(tasks(), 1, draw) {
                times[id as usize] += 1;
            }
        }
        // 2,000 draws of one of 100: about 20 each, none never and none far more.
        let counts = &times[1..];
        assert!(counts.iter().all(|&k| (3..=50).contains(&k)), "{counts:?}");
        // More wanted than there are: every task, once, in id order.
        assert_eq!(asker.choose(tasks().take(3), 5, 1), vec![1, 2, 3]);
    }

    #[test]
    fn a_cold_runner_waits_then_is_checked_once_at_a_time() {
        assert_eq!(check_lease(10, 20, false), CheckLease::Wait);
        assert_eq!(check_lease(20, 20, true), CheckLease::Running);
        assert_eq!(check_lease(20, 20, false), CheckLease::Issue);
    }
}
