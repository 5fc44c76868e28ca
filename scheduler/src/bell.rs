//! The work bell. A runner with free slots whose lease request finds no task may ask the
//! scheduler to hold the request open (long polling): the request waits on this bell, which
//! rings after every commit that made work appear (a batch submitted; a lease ended, handed
//! back or expired; a task that needs more replicas), and then answers with no tasks so that
//! the runner asks again at once. A runner thus starts a batch within a round trip of its
//! submission, and an idle grid makes one request per runner per wait instead of polling.
//!
//! The waiting request never leases after its wait: a runner that went away in the meantime
//! (stopped, its connection cut) must not be given tasks it will never report.
//!
//! Several schedulers may share one PostgreSQL: there a commit that rings also sends a
//! `NOTIFY` on [`CHANNEL`] (delivered when it commits), and each scheduler listens and rings
//! its own bell for the others' ([`crate::store::Store::listen_for_work`]).

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::watch;

/// The PostgreSQL notification channel of work appearing.
pub const CHANNEL: &str = "helio_work";

/// The bell. Rings are counted, so that a waiter that listened before looking for work
/// misses none rung after.
#[derive(Debug)]
pub struct Bell {
    rounds: watch::Sender<u64>,
    closed: AtomicBool,
    /// Names this bell in notifications, so that it can tell its own from others'.
    id: String,
}

impl Default for Bell {
    fn default() -> Self {
        // Two schedulers drawing the same id would only miss each other's rings (and
        // their runners wait out their wait); the clock is a fallback good enough for that.
        let id = getrandom::u64().unwrap_or_else(|_| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64)
        });
        Bell {
            rounds: watch::Sender::new(0),
            closed: AtomicBool::new(false),
            id: format!("{id:016x}"),
        }
    }
}

impl Bell {
    /// This bell's name in the notifications it sends.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Wakes every waiter.
    pub fn ring(&self) {
        self.rounds.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Wakes every waiter for good: the scheduler is shutting down, and a request holding
    /// on would keep it from finishing.
    pub fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.ring();
    }

    /// Whether [`Bell::close`] was called.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// A listener that hears every ring from now on. Listen before looking for work.
    pub fn listen(&self) -> Listener<'_> {
        Listener {
            bell: self,
            rounds: self.rounds.subscribe(),
        }
    }

    /// How many listeners wait now.
    pub fn listeners(&self) -> usize {
        self.rounds.receiver_count()
    }
}

/// Hears a [`Bell`].
#[derive(Debug)]
pub struct Listener<'b> {
    bell: &'b Bell,
    rounds: watch::Receiver<u64>,
}

impl Listener<'_> {
    /// Waits until the bell rings (or rang since [`Bell::listen`]) or `timeout` passes;
    /// returns whether the bell is still open. A closed bell answers at once.
    pub async fn wait(&mut self, timeout: Duration) -> bool {
        if self.bell.is_closed() {
            return false;
        }
        // The sender lives as long as the bell, which outlives this listener.
        let _ = tokio::time::timeout(timeout, self.rounds.changed()).await;
        !self.bell.is_closed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_ring_after_listening_ends_the_wait_and_one_before_does_not() {
        let bell = Bell::default();
        bell.ring();
        let mut listener = bell.listen();
        // Rung before listening: the wait runs to its end.
        let start = tokio::time::Instant::now();
        assert!(listener.wait(Duration::from_secs(5)).await);
        assert_eq!(start.elapsed(), Duration::from_secs(5));
        // Rung between listening and waiting (work appeared while the request looked):
        // the wait ends at once.
        let mut listener = bell.listen();
        bell.ring();
        let start = tokio::time::Instant::now();
        assert!(listener.wait(Duration::from_secs(5)).await);
        assert_eq!(start.elapsed(), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn closing_ends_every_wait_and_the_next_at_once() {
        let bell = std::sync::Arc::new(Bell::default());
        let waiter = {
            let bell = bell.clone();
            tokio::spawn(async move {
                let mut listener = bell.listen();
                listener.wait(Duration::from_secs(30)).await
            })
        };
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(bell.listeners(), 1);
        bell.close();
        assert!(!waiter.await.unwrap(), "a closed bell says so");
        let start = tokio::time::Instant::now();
        assert!(!bell.listen().wait(Duration::from_secs(30)).await);
        assert_eq!(start.elapsed(), Duration::ZERO);
    }
}
