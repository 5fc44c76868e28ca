//! How much of the processor a sandbox's running tasks may use, and whether they may run at
//! all: the volunteer's CPU cap (a duty cycle) and the suspensions its time windows, battery
//! and idle rules call for.
//!
//! A throttled task is paused from inside: while the throttle limits anything, the watchdog
//! asks each running task to pause every [`PERIOD`]; the guest's next check (about once a
//! millisecond, see [`crate::instrument`]) calls the host's `pause`, which sleeps its thread
//! for the rest the time it ran owes at the duty cycle, or until a suspension is lifted.
//! Pausing touches neither the guest's state nor its fuel, so a throttled run's result is the
//! one an unthrottled run gives; only its wall time grows, and the time paused is added to the
//! task's wall-clock deadline (its `wall_seconds` bound the time it was let run).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

/// How often a throttled task is asked to pause: about this long between pauses at a duty
/// cycle, which keeps each slice short enough to feel smooth and long enough that pausing
/// costs nothing measurable.
pub const PERIOD: Duration = Duration::from_millis(100);

/// The most run time one pause makes up for: a task that ran long unthrottled and is then
/// capped rests a moment, not for everything it ran before.
const MAX_OWED_FOR: Duration = Duration::from_secs(1);

/// The share of the processor each running task may use, and whether tasks are suspended.
#[derive(Debug)]
pub struct Throttle {
    state: Mutex<State>,
    changed: Condvar,
    /// Whether the duty is below 1 or tasks are suspended: read at every watchdog tick.
    limits: AtomicBool,
}

#[derive(Debug, Clone, Copy)]
struct State {
    duty: f64,
    suspended: bool,
}

impl Default for Throttle {
    fn default() -> Self {
        Throttle {
            state: Mutex::new(State {
                duty: 1.0,
                suspended: false,
            }),
            changed: Condvar::new(),
            limits: AtomicBool::new(false),
        }
    }
}

impl Throttle {
    /// Lets each running task use `duty` of a processor (above 0, at most 1; out-of-range
    /// values are clamped to `[0.01, 1]`).
    pub fn set_duty(&self, duty: f64) {
        let duty = if duty.is_nan() {
            1.0
        } else {
            duty.clamp(0.01, 1.0)
        };
        self.update(|s| s.duty = duty);
    }

    /// Suspends running tasks (they pause at their next check and wait), or lets them go on.
    pub fn suspend(&self, suspended: bool) {
        self.update(|s| s.suspended = suspended);
    }

    /// Whether tasks are suspended now.
    pub fn is_suspended(&self) -> bool {
        self.state.lock().unwrap().suspended
    }

    fn update(&self, change: impl FnOnce(&mut State)) {
        let mut state = self.state.lock().unwrap();
        change(&mut state);
        self.limits
            .store(state.suspended || state.duty < 1.0, Ordering::Relaxed);
        self.changed.notify_all();
    }

    /// Whether running tasks must be asked to pause now and then.
    pub(crate) fn limits(&self) -> bool {
        self.limits.load(Ordering::Relaxed)
    }

    /// Whether tasks are suspended, read under the lock only while the throttle limits
    /// anything (the watchdog asks at every tick).
    pub(crate) fn suspended_now(&self) -> bool {
        self.limits() && self.is_suspended()
    }

    /// Pauses the calling task's thread: for as long as `ran` (the time it ran since it last
    /// paused) owes at the duty cycle, and for as long as tasks are suspended. Returns how
    /// long it paused.
    pub(crate) fn pause(&self, ran: Duration) -> Duration {
        let start = Instant::now();
        let ran = ran.min(MAX_OWED_FOR);
        let mut state = self.state.lock().unwrap();
        loop {
            if state.suspended {
                state = self.changed.wait(state).unwrap();
                continue;
            }
            let owed = ran.mul_f64((1.0 - state.duty) / state.duty);
            let rested = start.elapsed();
            if rested >= owed {
                break;
            }
            state = self.changed.wait_timeout(state, owed - rested).unwrap().0;
        }
        start.elapsed()
    }
}

/// One run's time paused, shared by the host that pauses it and the watchdog that moves its
/// deadline on by that time.
#[derive(Debug, Default)]
pub struct Paused {
    ns: AtomicU64,
    now: AtomicBool,
}

impl Paused {
    /// The time paused so far, and whether it is paused now (its deadline waits meanwhile).
    pub(crate) fn get(&self) -> (Duration, bool) {
        let now = self.now.load(Ordering::SeqCst);
        (Duration::from_nanos(self.ns.load(Ordering::SeqCst)), now)
    }

    /// Runs `pause`, counting the time it returns as paused.
    pub(crate) fn during(&self, pause: impl FnOnce() -> Duration) -> Duration {
        self.now.store(true, Ordering::SeqCst);
        let rested = pause();
        self.ns
            .fetch_add(rested.as_nanos() as u64, Ordering::SeqCst);
        self.now.store(false, Ordering::SeqCst);
        rested
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unthrottled_task_does_not_pause() {
        let throttle = Throttle::default();
        assert!(!throttle.limits());
        assert!(throttle.pause(Duration::from_millis(100)) < Duration::from_millis(20));
    }

    #[test]
    fn a_half_duty_rests_as_long_as_it_ran() {
        let throttle = Throttle::default();
        throttle.set_duty(0.5);
        assert!(throttle.limits());
        let rested = throttle.pause(Duration::from_millis(60));
        assert!(rested >= Duration::from_millis(60), "{rested:?}");
    }

    #[test]
    fn a_suspended_task_waits_until_resumed() {
        let throttle = std::sync::Arc::new(Throttle::default());
        throttle.suspend(true);
        assert!(throttle.suspended_now());
        // The waiter says when it begins, so that a thread slow to start (a loaded machine)
        // does not shorten the wait measured.
        let (began, begins) = std::sync::mpsc::channel();
        let waiter = {
            let throttle = throttle.clone();
            std::thread::spawn(move || {
                began.send(()).unwrap();
                throttle.pause(Duration::ZERO)
            })
        };
        begins.recv().unwrap();
        std::thread::sleep(Duration::from_millis(80));
        assert!(!waiter.is_finished(), "a suspended task went on");
        throttle.suspend(false);
        let rested = waiter.join().unwrap();
        assert!(rested >= Duration::from_millis(60), "{rested:?}");
        assert!(!throttle.limits());
    }
}
