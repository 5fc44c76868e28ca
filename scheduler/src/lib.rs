//! The Helio scheduler. For now its pure core: no clock, no I/O, no randomness inside.
//!
//! - [`consensus::decide`]: given a task's redundancy and the replicas reported and still out,
//!   whether the task is accepted (and by whom), needs more replicas, or must be decided by
//!   the scheduler's own run.
//! - [`ledger`]: the append-only, hash-chained credit ledger, and its verification.
//!
//! The service around it (database, HTTP API, `scheduler serve`) is issue 4's next step.
#![deny(missing_docs)]

pub mod consensus;
pub mod ledger;
pub mod task;
