//! The Helio scheduler: takes batches from submitters, leases their tasks to volunteer
//! runners, accepts a result only when a quorum of independent runners agree on its digest,
//! and only then grants credits, in an append-only, hash-chained ledger.
//!
//! - The pure core, with no clock, I/O or randomness inside: [`consensus::decide`],
//!   [`task::TaskState`] (a task's leases, reports, expiry and acceptance as a state
//!   machine), [`rules`] (who may lease what, what a report's runner is told, a batch's
//!   kept counts, the credit split, when a cold runner is checked), [`ledger`] (the hash
//!   chain and its verification), [`credibility`] (a runner's credibility from its history,
//!   and when agreeing runners are believed), [`owners`] (who holds an owner name, and how
//!   new owners are admitted).
//! - [`store::Store`]: the state in SQLite or PostgreSQL. The only module that speaks SQL.
//! - [`api`]: the HTTP API under `/v1`. The only module that knows routes.
//! - [`bell::Bell`]: wakes lease requests that wait for work (long polling).
//! - [`limits::RateLimiter`]: per-runner request rates.
//! - [`blobs::Blobs`]: content-addressed modules, inputs and outputs.
//! - [`checks`]: what a health check is (its module, lease and deadline), and the
//!   scheduler's own runs; [`health`]: taking a cold runner's report of its check.
//! - [`dashboard::Pulse`]: the dashboard's snapshots of the grid, read once for every viewer.
//! - [`metrics::Metrics`]: what `/metrics` shows, in the Prometheus (OpenMetrics) format.
//! - [`service`]: `scheduler serve`: all of the above and the background loops.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! let mut config = helio_scheduler::service::Config::new("helio-data".into());
//! config.listen = "127.0.0.1:0".parse()?;
//! let running = helio_scheduler::service::start(config, std::future::pending()).await?;
//! println!("listening on http://{}", running.addr);
//! # Ok(()) }
//! ```
#![deny(missing_docs)]

pub mod api;
pub mod bell;
pub mod blobs;
pub mod checks;
pub mod consensus;
pub mod credibility;
pub mod dashboard;
pub mod health;
pub mod ledger;
pub mod limits;
pub mod metrics;
pub mod owners;
pub mod rules;
pub mod service;
pub mod share;
pub mod store;
pub mod task;
