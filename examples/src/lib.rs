//! Helio's runnable examples: a ready batch per job in `jobs/` (`batches`) and the Quick
//! start's grid in one process (`demo`).
#![deny(missing_docs)]

pub mod batches;
pub mod demo;
