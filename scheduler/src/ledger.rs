//! The credit ledger: append-only and hash-chained. Each entry carries the hash of the one
//! before it, and its own hash covers everything in it, so editing, dropping or reordering
//! any entry breaks the chain from there on, and [`verify`] says where.
//!
//! A chain alone cannot show that entries were cut off its end: [`verify_anchored`] also
//! checks the length and head hash the service records beside the accepted tasks.
//!
//! Credits are counted in micro-credits: one credit is 10⁹ units of fuel at a `credit_rate`
//! of 1.0, so a task's credit is `fuel × credit_rate / 1000` micro-credits, rounded down.
//!
//! An entry is of one [`Kind`]: a runner's credit for an accepted task, the cooperative
//! fund's share of such a credit, a runner's credit for time online, a payout to an owner,
//! or the reversal of a task credit (or of the fund's share of it) for a result later found
//! false. Nothing is ever edited or removed: a reversal is a compensating entry. Each kind
//! has its own hash domain, so an entry cannot be passed off as another kind, and
//! [`verify`] checks that no owner was ever paid more than its balance, and that each
//! reversal takes back exactly one earlier credit. A reversal may follow a payout: the
//! owner's balance then goes below zero, and what it earns next pays that back first.

use std::collections::BTreeMap;

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

/// What an entry records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// A runner's credit for a task it ran and whose accepted digest it matched.
    Task,
    /// The cooperative fund's share of the task credit of the same batch, task and runner.
    Fund,
    /// A runner's credit for time online: `task` names the span of its online time
    /// (`uptime <from>..<to> ms`), `fuel` holds the milliseconds.
    Uptime,
    /// A payout of `micro_credits` to `owner`, taken from what it earned.
    Payout,
    /// A [`Kind::Task`] credit taken back: the same batch, task, runner, owner and amount.
    Reversal,
    /// A [`Kind::Fund`] share taken back, likewise.
    FundReversal,
}

impl Kind {
    /// Every kind.
    pub const ALL: [Kind; 6] = [
        Kind::Task,
        Kind::Fund,
        Kind::Uptime,
        Kind::Payout,
        Kind::Reversal,
        Kind::FundReversal,
    ];

    /// Its name, as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Task => "task",
            Kind::Fund => "fund",
            Kind::Uptime => "uptime",
            Kind::Payout => "payout",
            Kind::Reversal => "reversal",
            Kind::FundReversal => "fund_reversal",
        }
    }

    /// The kind named `name`.
    pub fn parse(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == name)
    }

    /// Whether the entry adds to its owner's earnings (a task, fund or uptime credit).
    pub fn earns(self) -> bool {
        matches!(self, Kind::Task | Kind::Fund | Kind::Uptime)
    }

    /// The kind of entry a reversal of this kind takes back, if it is one.
    pub fn reverses(self) -> Option<Kind> {
        match self {
            Kind::Reversal => Some(Kind::Task),
            Kind::FundReversal => Some(Kind::Fund),
            _ => None,
        }
    }

    /// The reversal of this kind of credit, if it can be reversed.
    pub fn reversal(self) -> Option<Kind> {
        match self {
            Kind::Task => Some(Kind::Reversal),
            Kind::Fund => Some(Kind::FundReversal),
            _ => None,
        }
    }
}

/// What one entry is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credit {
    /// What the entry records.
    pub kind: Kind,
    /// The batch (empty for uptime and payouts).
    pub batch: String,
    /// The accepted task; for uptime the span of online time, for a payout its name.
    pub task: String,
    /// The runner whose digest matched the accepted one (empty for a payout).
    pub runner: String,
    /// Who the credit goes to: the runner's owner, or the cooperative fund.
    pub owner: String,
    /// The accepted digest (zero for uptime and payouts).
    pub digest: Blake3Hash,
    /// The fuel the task consumed; for uptime, the milliseconds online.
    pub fuel: u64,
    /// The credit, in micro-credits.
    pub micro_credits: u64,
}

impl Credit {
    /// What may appear once in a ledger: a kind of entry for a batch, task and runner.
    pub fn key(&self) -> (Kind, String, String, String) {
        (
            self.kind,
            self.batch.clone(),
            self.task.clone(),
            self.runner.clone(),
        )
    }
}

/// Splits `micro_credits` between a runner's owner and the cooperative fund, which gets
/// `share` of it (0 to 1), rounded down: returns (owner's, fund's).
pub fn split(micro_credits: u64, share: f64) -> (u64, u64) {
    let fund = (micro_credits as f64 * share.clamp(0.0, 1.0)).floor() as u64;
    let fund = fund.min(micro_credits);
    (micro_credits - fund, fund)
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
    /// The runner was already credited for this task (or this span, or payout).
    #[error("runner {runner:?} was already credited for {task:?} of batch {batch:?}")]
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

/// The hash of an entry with these contents. Task credits keep the ledger's first hash
/// domain; every other kind hashes in its own, with its name.
pub fn entry_hash(prev: &Blake3Hash, seq: u64, c: &Credit) -> Blake3Hash {
    let mut h = match c.kind {
        Kind::Task => blake3::Hasher::new_derive_key("helio credit ledger v1"),
        kind => {
            let mut h = blake3::Hasher::new_derive_key("helio credit ledger v1 entry kind");
            h.update(kind.as_str().as_bytes());
            h.update(&[0]);
            h
        }
    };
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

/// A ledger held in memory: the entries, which (kind, batch, task, runner) were credited,
/// and each owner's balance.
#[derive(Debug, Clone, Default)]
pub struct Ledger {
    entries: Vec<Entry>,
    credited: BTreeMap<(Kind, String, String, String), Credit>,
    balances: BTreeMap<String, i64>,
}

impl Ledger {
    /// An empty ledger.
    pub fn new() -> Ledger {
        Ledger::default()
    }

    /// Appends `credit`, unless its runner was already credited for its task, or it is a
    /// payout of more than its owner's balance.
    pub fn append(&mut self, credit: Credit) -> Result<&Entry, LedgerError> {
        let key = credit.key();
        if self.credited.contains_key(&key) {
            return Err(LedgerError::AlreadyCredited {
                batch: key.1,
                task: key.2,
                runner: key.3,
            });
        }
        let seq = self.entries.len() as u64;
        let broken = |reason| LedgerError::Broken { seq, reason };
        reverses_one(&credit, &self.credited).map_err(broken)?;
        let balance = self.balances.entry(credit.owner.clone()).or_default();
        *balance = settle(*balance, &credit).map_err(broken)?;
        let prev = self.entries.last().map_or(GENESIS, |e| e.hash);
        let hash = entry_hash(&prev, seq, &credit);
        self.credited.insert(key, credit.clone());
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

    /// What `owner` has earned and not been paid nor had taken back, in micro-credits:
    /// below zero when a reversal followed a payout.
    pub fn balance(&self, owner: &str) -> i64 {
        self.balances.get(owner).copied().unwrap_or(0)
    }
}

/// An owner's balance after `c`: raised by what it earns, lowered by a reversal (to below
/// zero if need be) and by a payout, which may not exceed it.
fn settle(balance: i64, c: &Credit) -> Result<i64, String> {
    let amount = i64::try_from(c.micro_credits)
        .map_err(|_| format!("{} micro-credits is beyond any balance", c.micro_credits))?;
    match c.kind {
        k if k.earns() => Ok(balance.saturating_add(amount)),
        Kind::Payout if amount <= balance => Ok(balance - amount),
        Kind::Payout => Err(format!(
            "pays {} {amount} micro-credits, more than its balance of {balance}",
            c.owner
        )),
        _ => Ok(balance.saturating_sub(amount)),
    }
}

/// Whether `c`, if it is a reversal, takes back exactly one credit among `credited` (by
/// key): the same batch, task, runner, owner, digest and amount. The ledger's uniqueness
/// of (kind, batch, task, runner) keeps it to once.
fn reverses_one(
    c: &Credit,
    credited: &BTreeMap<(Kind, String, String, String), Credit>,
) -> Result<(), String> {
    let Some(kind) = c.kind.reverses() else {
        return Ok(());
    };
    let key = (kind, c.batch.clone(), c.task.clone(), c.runner.clone());
    match credited.get(&key) {
        Some(original) if *original == Credit { kind, ..c.clone() } => Ok(()),
        Some(original) => Err(format!(
            "reverses {} {} micro-credits of {:?}, but {} were credited",
            kind.as_str(),
            c.micro_credits,
            c.task,
            original.micro_credits
        )),
        None => Err(format!(
            "reverses a {} credit of runner {:?} for {:?} that was never made",
            kind.as_str(),
            c.runner,
            c.task
        )),
    }
}

/// Checks that `entries` form an unbroken chain from [`GENESIS`], that no runner is
/// credited twice for a task, and that no payout exceeds what its owner had earned.
pub fn verify(entries: &[Entry]) -> Result<(), LedgerError> {
    let mut prev = GENESIS;
    let mut credited = BTreeMap::new();
    let mut balances: BTreeMap<&str, i64> = BTreeMap::new();
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
        reverses_one(c, &credited).map_err(broken)?;
        if credited.insert(c.key(), c.clone()).is_some() {
            return Err(broken(format!(
                "a second {} entry for runner {:?} and {:?}",
                c.kind.as_str(),
                c.runner,
                c.task
            )));
        }
        let balance = balances.entry(&c.owner).or_default();
        *balance = settle(*balance, c).map_err(broken)?;
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
