//! The agent's main loop as a state machine, with no network, clock, tasks or display inside:
//! [`Loop::next`] says what to do now; the agent does it, waits for something to happen, and
//! tells the machine ([`Loop::answered`], [`Loop::finished`], [`Loop::offer`]). Time is a
//! [`Duration`] on whatever clock the caller keeps, so a test drives the loop step by step.

use std::collections::BTreeSet;
use std::time::Duration;

use helio_sdk::wire::{Lease, Leases};

use backon::BackoffBuilder;
use helio_sdk::client::away_backoff;

use super::Stop;

/// What the agent's main loop knows: its slots, the tasks running in them, work offered and
/// not started, and whether and when it asks the scheduler for more.
#[derive(Debug)]
pub struct Loop {
    slots: u32,
    /// Free slots, numbered from 1; a task takes the lowest.
    free: BTreeSet<u32>,
    /// The tasks running, with their slots.
    running: Vec<(u32, i64)>,
    /// Tasks leased with the last answer, to start before asking again.
    offered: Vec<Lease>,
    /// Whether a lease request is in flight (it may wait at the scheduler for work).
    asking: bool,
    /// When to ask again, after an answer that says to wait.
    ask_at: Option<Duration>,
    /// Answers in a row that brought nothing and did not wait.
    idle: u32,
    /// The waits after failed requests in a row ([`away_backoff`]), drawn from `seed`.
    away: backon::ExponentialBackoff,
    seed: u64,
}

/// What to do now, in this order.
#[derive(Debug, Default)]
pub struct Next {
    /// Drop the lease request in flight: a request leases nothing after its wait, so
    /// dropping it loses nothing.
    pub drop_request: bool,
    /// Hand back work that was offered and will not start (told to stop).
    pub give_back: Vec<i64>,
    /// Hand back the tasks running, abandoning them (told to stop now).
    pub abandon: Vec<i64>,
    /// Stop the loop.
    pub exit: bool,
    /// Start these leases, each in its slot.
    pub start: Vec<(u32, Lease)>,
    /// Ask the scheduler for this many tasks.
    pub ask: Option<u32>,
}

impl Loop {
    /// A runner with `slots` slots, nothing running and nothing asked; `seed` draws its
    /// waits while the scheduler is away (each runner its own, so that runners cut off
    /// together do not come back together).
    pub fn new(slots: u32, seed: u64) -> Loop {
        Loop {
            slots,
            free: (1..=slots).collect(),
            running: Vec::new(),
            offered: Vec::new(),
            asking: false,
            ask_at: None,
            idle: 0,
            away: Self::backoff(seed),
            seed,
        }
    }

    fn backoff(seed: u64) -> backon::ExponentialBackoff {
        away_backoff().with_jitter_seed(seed).build()
    }

    /// What to do at `now`, told to `stop` as far as it says.
    pub fn next(&mut self, stop: Stop, now: Duration) -> Next {
        let mut next = Next::default();
        if stop != Stop::Run {
            next.drop_request = std::mem::take(&mut self.asking);
            next.give_back = self.offered.drain(..).map(|l| l.task_id).collect();
        }
        if stop == Stop::Now {
            next.abandon = self.running.drain(..).map(|(_, id)| id).collect();
            next.exit = true;
            return next;
        }
        if stop == Stop::Drain && self.running.is_empty() {
            next.exit = true;
            return next;
        }
        for lease in self.offered.drain(..) {
            let slot = self.free.pop_first().unwrap_or(0);
            self.running.push((slot, lease.task_id));
            next.start.push((slot, lease));
        }
        // Ask for work while slots are free: the scheduler answers at once with tasks, or
        // holds the request until work appears (a batch submitted, a lease ended).
        if self.may_ask(stop) && self.ask_at.is_none_or(|t| t <= now) {
            self.ask_at = None;
            self.asking = true;
            next.ask = Some(self.free_slots());
        }
        next
    }

    /// When to call [`Loop::next`] again if nothing else happens first: when the runner may
    /// ask for work again.
    pub fn wake_at(&self, stop: Stop) -> Option<Duration> {
        self.ask_at.filter(|_| self.may_ask(stop))
    }

    /// The lease request in flight was answered at `now`: with leases (or none, after a wait
    /// or at once), or with a failure worth retrying (`Err`). Returns how long the runner
    /// waits before asking again after a failure.
    pub fn answered(&mut self, answer: Result<Leases, ()>, now: Duration) -> Option<Duration> {
        self.asking = false;
        match answer {
            Ok(answer) => {
                // Back: the next failure starts from the shortest wait again.
                self.seed = self.seed.wrapping_add(1);
                self.away = Self::backoff(self.seed);
                if answer.leases.is_empty() && !answer.waited {
                    // A scheduler that does not wait for work (or one shutting down): poll,
                    // more slowly while there is none.
                    self.ask_at = Some(now + Duration::from_millis(25u64 << self.idle.min(5)));
                    self.idle += 1;
                } else {
                    self.idle = 0;
                }
                self.offered = answer.leases;
                None
            }
            Err(()) => {
                let wait = self.away.next().expect("tries go on without end");
                self.ask_at = Some(now + wait);
                Some(wait)
            }
        }
    }

    /// The tasks `done` (slot, task id) finished. Returns how many tasks to ask for with
    /// their results: the free slots, unless stopping. A request for work still waiting may
    /// have looked before this runner could take work (a health check outstanding), and a
    /// report does not wake it; the scheduler never leases more than the runner's slots.
    pub fn finished(&mut self, done: &[(u32, i64)], stop: Stop) -> u32 {
        for (slot, id) in done {
            self.running.retain(|(_, running)| running != id);
            self.free.insert(*slot);
        }
        if stop == Stop::Run {
            self.free_slots()
        } else {
            0
        }
    }

    /// Work came with the answer to a report: it starts at the next step.
    pub fn offer(&mut self, leases: Vec<Lease>) {
        self.offered = leases;
    }

    /// The tasks running.
    pub fn running(&self) -> usize {
        self.running.len()
    }

    fn free_slots(&self) -> u32 {
        self.slots.saturating_sub(self.running.len() as u32)
    }

    fn may_ask(&self, stop: Stop) -> bool {
        stop == Stop::Run && self.free_slots() > 0 && !self.asking
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use helio_sdk::{Blake3Hash, TaskManifest};

    fn lease(id: i64) -> Lease {
        let manifest = TaskManifest::from_value(serde_json::json!({
            "schema_version": 1,
            "name": format!("t{id}"),
            "module": { "uri": "m.wasm", "blake3": Blake3Hash::of(b"m").to_string() },
            "limits": { "fuel": 1000 },
        }))
        .unwrap();
        Lease {
            task_id: id,
            batch: "b".into(),
            manifest,
            deadline_ms: 0,
            resume: None,
        }
    }

    fn answer(ids: &[i64], waited: bool) -> Result<Leases, ()> {
        Ok(Leases {
            leases: ids.iter().map(|&id| lease(id)).collect(),
            waited,
        })
    }

    const T0: Duration = Duration::ZERO;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn started(next: &Next) -> Vec<(u32, i64)> {
        next.start.iter().map(|(s, l)| (*s, l.task_id)).collect()
    }

    #[test]
    fn it_asks_once_for_its_free_slots_and_starts_what_comes_in_the_lowest_slots() {
        let mut m = Loop::new(3, 7);
        assert_eq!(m.next(Stop::Run, T0).ask, Some(3));
        // One request at a time.
        assert_eq!(m.next(Stop::Run, T0).ask, None);
        m.answered(answer(&[7, 8], false), T0);
        let next = m.next(Stop::Run, T0);
        assert_eq!(started(&next), [(1, 7), (2, 8)]);
        assert_eq!(next.ask, Some(1));
        m.answered(answer(&[], true), T0);
        // Nothing came after a wait: it asks again at once.
        assert_eq!(m.next(Stop::Run, T0).ask, Some(1));
        // A task ends: its slot is freed and asked for with the result.
        assert_eq!(m.finished(&[(1, 7)], Stop::Run), 2);
        m.offer(vec![lease(9)]);
        assert_eq!(started(&m.next(Stop::Run, T0)), [(1, 9)]);
    }

    #[test]
    fn held_work_keeps_its_tasks_takes_none_and_goes_on_when_let_go() {
        let mut m = Loop::new(2, 7);
        m.next(Stop::Run, T0);
        m.answered(answer(&[1, 2], false), T0);
        assert_eq!(started(&m.next(Stop::Run, T0)).len(), 2);
        // Held: the request in flight is dropped, and nothing is asked for or started.
        m.finished(&[(2, 2)], Stop::Hold);
        m.offer(vec![lease(3)]);
        let next = m.next(Stop::Hold, T0);
        assert_eq!(
            (next.give_back, next.ask, next.exit),
            (vec![3], None, false)
        );
        assert!(next.abandon.is_empty() && next.start.is_empty());
        assert_eq!(m.finished(&[(1, 1)], Stop::Hold), 0);
        // Nothing runs, and it still does not stop; let go, it asks for both slots.
        let next = m.next(Stop::Hold, T0);
        assert!(!next.exit && next.ask.is_none());
        assert_eq!(m.wake_at(Stop::Hold), None);
        assert_eq!(m.next(Stop::Run, T0).ask, Some(2));
    }

    #[test]
    fn a_full_runner_asks_for_nothing() {
        let mut m = Loop::new(1, 7);
        m.next(Stop::Run, T0);
        m.answered(answer(&[1], false), T0);
        let next = m.next(Stop::Run, T0);
        assert_eq!(started(&next), [(1, 1)]);
        assert_eq!(next.ask, None);
        assert_eq!(m.wake_at(Stop::Run), None);
    }

    #[test]
    fn against_a_scheduler_that_does_not_wait_it_polls_more_slowly_while_idle() {
        let mut m = Loop::new(1, 7);
        let mut now = T0;
        let mut waits = Vec::new();
        for _ in 0..8 {
            assert_eq!(m.next(Stop::Run, now).ask, Some(1));
            m.answered(answer(&[], false), now);
            // Not before its time.
            assert_eq!(m.next(Stop::Run, now).ask, None);
            let at = m.wake_at(Stop::Run).expect("a time to ask again");
            waits.push((at - now).as_millis());
            now = at;
        }
        assert_eq!(waits, [25, 50, 100, 200, 400, 800, 800, 800]);
        // Work resets the pace.
        m.next(Stop::Run, now);
        m.answered(answer(&[3], false), now);
        m.next(Stop::Run, now);
        m.finished(&[(1, 3)], Stop::Run);
        m.next(Stop::Run, now);
        m.answered(answer(&[], false), now);
        assert_eq!(m.wake_at(Stop::Run), Some(now + ms(25)));
    }

    #[test]
    fn while_the_scheduler_is_away_it_backs_off_doubling() {
        let mut m = Loop::new(2, 7);
        let mut now = T0;
        let mut waits = Vec::new();
        for _ in 0..4 {
            assert!(m.next(Stop::Run, now).ask.is_some());
            waits.push(m.answered(Err(()), now).unwrap().as_millis());
            now = m.wake_at(Stop::Run).unwrap();
        }
        // Doubling from 250 ms, each wait drawn between its step and twice it.
        for (wait, step) in waits.iter().zip([250, 500, 1000, 2000]) {
            assert!((step..2 * step).contains(wait), "{waits:?}");
        }
        m.next(Stop::Run, now);
        m.answered(answer(&[], true), now);
        m.next(Stop::Run, now);
        // Back: the next failure starts from the shortest wait again.
        let again = m.answered(Err(()), now).unwrap();
        assert!(again >= ms(250) && again < ms(500), "{again:?}");
    }

    #[test]
    fn runners_seeded_differently_wait_differently() {
        let waits = |seed| {
            let mut m = Loop::new(1, seed);
            (0..6)
                .map(|_| {
                    m.next(Stop::Run, T0);
                    m.answered(Err(()), T0).unwrap()
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(waits(3), waits(3));
        assert_ne!(waits(3), waits(4));
    }

    #[test]
    fn draining_hands_back_work_not_started_and_ends_when_the_last_task_does() {
        let mut m = Loop::new(2, 7);
        m.next(Stop::Run, T0);
        m.answered(answer(&[1], false), T0);
        m.next(Stop::Run, T0);
        // Told to drain with a request out and new work offered by a report.
        assert_eq!(m.finished(&[], Stop::Drain), 0);
        m.offer(vec![lease(2)]);
        let next = m.next(Stop::Drain, T0);
        assert!(next.drop_request);
        assert_eq!(next.give_back, [2]);
        assert!(next.start.is_empty() && next.ask.is_none() && !next.exit);
        assert_eq!(m.wake_at(Stop::Drain), None);
        // Its running task ends: it asks for nothing with the result, and stops.
        assert_eq!(m.finished(&[(1, 1)], Stop::Drain), 0);
        assert!(m.next(Stop::Drain, T0).exit);
    }

    #[test]
    fn stopping_now_hands_back_every_running_task() {
        let mut m = Loop::new(3, 7);
        m.next(Stop::Run, T0);
        m.answered(answer(&[4, 5], false), T0);
        m.next(Stop::Run, T0);
        let next = m.next(Stop::Now, T0);
        assert!(next.exit && next.drop_request);
        let mut abandoned = next.abandon.clone();
        abandoned.sort();
        assert_eq!(abandoned, [4, 5]);
        assert_eq!(m.running(), 0);
    }
}
