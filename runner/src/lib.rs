//! The Helio runner: the volunteer agent that joins a grid ([`agent`]) and its terminal view
//! ([`display`]), over the sandbox of [`helio_sandbox`], which it re-exports whole so that
//! `runner exec` and the agent run tasks exactly as the scheduler's own runs do.
#![deny(missing_docs)]

pub mod agent;
pub mod anywhere;
pub mod controls;
pub mod display;
pub mod memory_cap;
pub mod status;

pub use helio_sandbox::*;
