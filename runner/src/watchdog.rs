//! The wall-clock safety net: one thread that sets a running task's interrupt flag once its
//! `wall_seconds` have passed. The instrumented guest reads the flag at every loop header
//! and call (see [`crate::instrument`]) and stops with `timeout`.

use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

/// How often the watchdog looks at the clock.
pub const TICK: Duration = Duration::from_millis(10);

/// The tasks being watched.
pub struct Watchdog {
    watches: Mutex<Vec<Watch>>,
    next: AtomicU64,
}

struct Watch {
    id: u64,
    deadline: Instant,
    /// The address of the interrupt flag: byte 0 of the task's one-page interrupt memory.
    flag: usize,
}

/// Watches one task until dropped.
pub struct Guard<'a> {
    dog: &'a Watchdog,
    id: u64,
}

impl Watchdog {
    /// A watchdog whose thread runs for as long as the returned `Arc` lives.
    pub fn start() -> Arc<Watchdog> {
        let dog = Arc::new(Watchdog {
            watches: Mutex::new(Vec::new()),
            next: AtomicU64::new(0),
        });
        let weak: Weak<Watchdog> = Arc::downgrade(&dog);
        std::thread::Builder::new()
            .name("helio-watchdog".into())
            .spawn(move || {
                while let Some(dog) = weak.upgrade() {
                    dog.tick(Instant::now());
                    drop(dog);
                    std::thread::sleep(TICK);
                }
            })
            .expect("cannot start the watchdog thread");
        dog
    }

    /// Sets the flag at `flag` once `deadline` passes, until the guard is dropped.
    ///
    /// # Safety
    ///
    /// `flag` must stay valid for writes of one byte until the guard is dropped, and nothing
    /// may hold a Rust reference to that byte meanwhile. The sandbox passes byte 0 of the
    /// task's interrupt memory: a one-page memory that cannot grow (so it never moves), that
    /// only the inserted checks read, and that lives as long as the task's store, which
    /// outlives the guard.
    pub unsafe fn watch(&self, deadline: Instant, flag: *mut u8) -> Guard<'_> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.watches.lock().unwrap().push(Watch {
            id,
            deadline,
            flag: flag as usize,
        });
        Guard { dog: self, id }
    }

    fn tick(&self, now: Instant) {
        for watch in self.watches.lock().unwrap().iter() {
            if now >= watch.deadline {
                // SAFETY: `watch`'s contract keeps the byte valid while the watch is listed,
                // and the list is locked. The guest reads the byte with a plain aligned
                // load; a one-byte store cannot tear.
                unsafe { AtomicU8::from_ptr(watch.flag as *mut u8) }.store(1, Ordering::Relaxed);
            }
        }
    }
}

impl Drop for Guard<'_> {
    fn drop(&mut self) {
        self.dog.watches.lock().unwrap().retain(|w| w.id != self.id);
    }
}
