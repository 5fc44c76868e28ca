//! The credit ledger: append-only and hash-chained. Each entry carries the hash of the one
//! before it, and its own hash covers everything in it, so editing, dropping or reordering
//! any entry breaks the chain from there on, and [`verify`] says where.
//!
//! A chain alone cannot show that entries were cut off its end: [`verify_anchored`] also
//! checks the length and head hash the service records beside the accepted tasks.
//!
//! Credits are counted in micro-credits: one credit is 10⁹ units of fuel at a `credit_rate`
//! of 1.0, so a task's credit is `fuel × credit_rate / 1000` micro-credits, rounded down.

use std::collections::BTreeSet;

use helio_sdk::Blake3Hash;

/// The hash before the first entry.
pub const GENESIS: Blake3Hash = Blake3Hash::ZERO;

/// Micro-credits for `fuel` at `credit_rate`.
pub fn micro_credits(fuel: u64, credit_rate: f64) -> u64 {
    let credit = (fuel as f64 * credit_rate / 1000.0).floor();
    if credit.is_finite() && credit > 0.0 {
        credit.min(u64::MAX as f64) as u64
    } else {
        0
    }
}

/// What one credit is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credit {
    /// The batch.
    pub batch: String,
    /// The accepted task.
    pub task: String,
    /// The runner whose digest matched the accepted one.
    pub runner: String,
    /// The runner's owner.
    pub owner: String,
    /// The accepted digest.
    pub digest: Blake3Hash,
    /// The fuel the task consumed.
    pub fuel: u64,
    /// The credit, in micro-credits.
    pub micro_credits: u64,
}

/// One ledger entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Its position, from 0.
    pub seq: u64,
    /// The credit.
    pub credit: Credit,
    /// The hash of the entry before (or [`GENESIS`]).
    pub prev: Blake3Hash,
    /// The hash of this entry: `prev`, `seq` and the credit.
    pub hash: Blake3Hash,
}

/// Why the ledger refused an entry or failed verification.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LedgerError {
    /// The runner was already credited for this task.
    #[error("runner {runner} was already credited for task {task} of batch {batch}")]
    AlreadyCredited {
        /// The batch.
        batch: String,
        /// The task.
        task: String,
        /// The runner.
        runner: String,
    },
    /// The chain breaks at this entry.
    #[error("ledger entry {seq}: {reason}")]
    Broken {
        /// The first entry that does not check out.
        seq: u64,
        /// What is wrong with it.
        reason: String,
    },
}

/// The hash of an entry with these contents.
pub fn entry_hash(prev: &Blake3Hash, seq: u64, c: &Credit) -> Blake3Hash {
    let mut h = blake3::Hasher::new_derive_key("helio credit ledger v1");
    h.update(prev.as_bytes());
    h.update(&seq.to_le_bytes());
    for text in [&c.batch, &c.task, &c.runner, &c.owner] {
        h.update(&(text.len() as u64).to_le_bytes());
        h.update(text.as_bytes());
    }
    h.update(c.digest.as_bytes());
    h.update(&c.fuel.to_le_bytes());
    h.update(&c.micro_credits.to_le_bytes());
    h.finalize().into()
}

/// A ledger held in memory: the entries and which (batch, task, runner) were credited.
#[derive(Debug, Clone, Default)]
pub struct Ledger {
    entries: Vec<Entry>,
    credited: BTreeSet<(String, String, String)>,
}

impl Ledger {
    /// An empty ledger.
    pub fn new() -> Ledger {
        Ledger::default()
    }

    /// Appends `credit`, unless its runner was already credited for its task.
    pub fn append(&mut self, credit: Credit) -> Result<&Entry, LedgerError> {
        let key = (
            credit.batch.clone(),
            credit.task.clone(),
            credit.runner.clone(),
        );
        if self.credited.contains(&key) {
            return Err(LedgerError::AlreadyCredited {
                batch: key.0,
                task: key.1,
                runner: key.2,
            });
        }
        let seq = self.entries.len() as u64;
        let prev = self.entries.last().map_or(GENESIS, |e| e.hash);
        let hash = entry_hash(&prev, seq, &credit);
        self.credited.insert(key);
        self.entries.push(Entry {
            seq,
            credit,
            prev,
            hash,
        });
        Ok(self.entries.last().unwrap())
    }

    /// The entries, in order.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }
}

/// Checks that `entries` form an unbroken chain from [`GENESIS`] and that no runner is
/// credited twice for a task.
pub fn verify(entries: &[Entry]) -> Result<(), LedgerError> {
    let mut prev = GENESIS;
    let mut credited = BTreeSet::new();
    for (i, e) in entries.iter().enumerate() {
        let broken = |reason: String| LedgerError::Broken {
            seq: i as u64,
            reason,
        };
        if e.seq != i as u64 {
            return Err(broken(format!("says it is entry {}", e.seq)));
        }
        if e.prev != prev {
            return Err(broken(
                "does not follow the entry before it (one was dropped, added or moved)".into(),
            ));
        }
        if entry_hash(&e.prev, e.seq, &e.credit) != e.hash {
            return Err(broken("its contents do not match its hash (edited)".into()));
        }
        let c = &e.credit;
        if !credited.insert((c.batch.clone(), c.task.clone(), c.runner.clone())) {
            return Err(broken(format!(
                "credits runner {} a second time for task {}",
                c.runner, c.task
            )));
        }
        prev = e.hash;
    }
    Ok(())
}

/// [`verify`], and that the ledger still has `len` entries ending in `head`: the anchor the
/// service keeps apart from the entries, so that cutting entries off the end shows too.
pub fn verify_anchored(entries: &[Entry], len: u64, head: &Blake3Hash) -> Result<(), LedgerError> {
    verify(entries)?;
    let actual = entries.last().map_or(GENESIS, |e| e.hash);
    if entries.len() as u64 != len || actual != *head {
        return Err(LedgerError::Broken {
            seq: entries.len() as u64,
            reason: format!(
                "the ledger ends after {} entries, but {len} were recorded (entries were cut off its end)",
                entries.len()
            ),
        });
    }
    Ok(())
}
