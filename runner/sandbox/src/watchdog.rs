//! The wall-clock safety net: one thread that sets a running task's interrupt flag once its
//! `wall_seconds` have passed. The instrumented guest reads the flag at every loop header
//! and call (see [`crate::instrument`]) and stops with `timeout`. The same thread asks
//! watched tasks for their fuel every [`PROGRESS_EVERY`] ticks, for progress displays.

use std::sync::atomic::{AtomicI64, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use crate::throttle::{Paused, Throttle};

/// How often the watchdog looks at the clock.
pub const TICK: Duration = Duration::from_millis(10);

/// Ticks between two progress requests to a task.
pub const PROGRESS_EVERY: u32 = 10;

/// Ticks between two pause requests to a throttled task.
const PAUSE_EVERY: u32 = (crate::throttle::PERIOD.as_millis() / TICK.as_millis()) as u32;

/// How far a running task is, as its guest last said: fuel used of its limit. Updated about
/// ten times a second while the task runs; never part of its result.
#[derive(Debug, Default)]
pub struct Progress {
    used: AtomicU64,
    limit: AtomicU64,
}

impl Progress {
    /// Fuel used so far.
    pub fn fuel_used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    /// The task's fuel limit (0 before it starts).
    pub fn fuel_limit(&self) -> u64 {
        self.limit.load(Ordering::Relaxed)
    }

    /// A new run with fuel `limit`: nothing used yet.
    pub(crate) fn begin(&self, limit: u64) {
        self.used.store(0, Ordering::Relaxed);
        self.limit.store(limit, Ordering::Relaxed);
    }

    /// `fuel_used / fuel_limit`, from 0 to 1.
    pub fn fraction(&self) -> f64 {
        match self.fuel_limit() {
            0 => 0.0,
            limit => (self.fuel_used() as f64 / limit as f64).min(1.0),
        }
    }
}

/// The tasks being watched.
pub struct Watchdog {
    watches: Mutex<Vec<Watch>>,
    next: AtomicU64,
    throttle: Arc<Throttle>,
}

struct Watch {
    id: u64,
    deadline: Instant,
    /// The time the task spent paused by the throttle, which moves its deadline on.
    paused: Arc<Paused>,
    /// The address of the interrupt flag: byte 0 of the task's one-page interrupt memory.
    flag: usize,
    /// Where to publish the task's fuel, with its limit.
    progress: Option<(Arc<Progress>, i64)>,
}

/// Watches one task until dropped.
pub struct Guard<'a> {
    dog: &'a Watchdog,
    id: u64,
}

impl Watchdog {
    /// A watchdog whose thread runs for as long as the returned `Arc` lives, asking the tasks
    /// it watches to pause while `throttle` limits them.
    pub fn start(throttle: Arc<Throttle>) -> Arc<Watchdog> {
        let dog = Arc::new(Watchdog {
            watches: Mutex::new(Vec::new()),
            next: AtomicU64::new(0),
            throttle,
        });
        let weak: Weak<Watchdog> = Arc::downgrade(&dog);
        std::thread::Builder::new()
            .name("helio-watchdog".into())
            .spawn(move || {
                let mut ticks = 0u32;
                while let Some(dog) = weak.upgrade() {
                    ticks = ticks.wrapping_add(1);
                    dog.tick(Instant::now(), ticks);
                    drop(dog);
                    std::thread::sleep(TICK);
                }
            })
            .expect("cannot start the watchdog thread");
        dog
    }

    /// Sets the flag at `flag` once `deadline`, moved on by the time in `paused`, passes,
    /// until the guard is dropped; asks the task to pause while the throttle limits it; with
    /// `progress`, also asks for the fuel left now and then and publishes the fuel used of
    /// the limit given.
    ///
    /// # Safety
    ///
    /// `flag` must point at the start of the task's interrupt memory and stay valid for
    /// reads and writes of its first 16 bytes until the guard is dropped, and nothing may
    /// hold a Rust reference to those bytes meanwhile. The sandbox passes its task's
    /// interrupt memory: one page that cannot grow (so it never moves), that only the
    /// inserted checks use, and that lives as long as the task's store, which outlives the
    /// guard.
    pub unsafe fn watch(
        &self,
        deadline: Instant,
        paused: Arc<Paused>,
        flag: *mut u8,
        progress: Option<(Arc<Progress>, i64)>,
    ) -> Guard<'_> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.watches.lock().unwrap().push(Watch {
            id,
            deadline,
            paused,
            flag: flag as usize,
            progress,
        });
        Guard { dog: self, id }
    }

    fn tick(&self, now: Instant, ticks: u32) {
        let ask = ticks.is_multiple_of(PROGRESS_EVERY);
        // Throttled tasks pause once a period (off the progress requests' ticks), suspended
        // ones at once.
        let pause = self.throttle.limits()
            && (self.throttle.suspended_now() || ticks % PAUSE_EVERY == PAUSE_EVERY / 2);
        for watch in self.watches.lock().unwrap().iter() {
            // SAFETY: `watch`'s contract keeps the interrupt memory's first 16 bytes valid
            // while the watch is listed, and the list is locked. The guest reads and writes
            // the flag with one-byte accesses and the fuel slot (8-aligned: a memory's base
            // is page-aligned) with one aligned 8-byte store; neither can tear.
            let base = watch.flag as *mut u8;
            // SAFETY: as above.
            let flag = unsafe { AtomicU8::from_ptr(base) };
            if ask && let Some((progress, limit)) = &watch.progress {
                let slot = base.wrapping_add(crate::instrument::PROGRESS_FUEL as usize);
                // SAFETY: as above.
                let left = unsafe { AtomicI64::from_ptr(slot.cast()) }.load(Ordering::Relaxed);
                progress
                    .used
                    .store((limit - left).clamp(0, *limit) as u64, Ordering::Relaxed);
                // Ask again, unless the flag is already set (a deadline is never overwritten;
                // a pending request stays pending).
                let _ = flag.compare_exchange(
                    0,
                    crate::instrument::PROGRESS_REQUEST,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                );
            }
            if pause {
                let _ = flag.compare_exchange(
                    0,
                    crate::instrument::PAUSE_REQUEST,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                );
            }
            let (paused, pausing) = watch.paused.get();
            if !pausing && now >= watch.deadline + paused {
                // Set at every tick past the deadline: a guest answering a progress request
                // at the same moment may clear it once, and then sees it 10 ms later.
                flag.store(1, Ordering::Relaxed);
            }
        }
    }
}

impl Drop for Guard<'_> {
    fn drop(&mut self) {
        self.dog.watches.lock().unwrap().retain(|w| w.id != self.id);
    }
}
