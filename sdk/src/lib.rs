//! The Helio job contract, version 1, in code.
//!
//! Everything a runner, the scheduler and a scientist's tools must agree on lives here:
//!
//! - [`TaskManifest`] and [`BatchManifest`]: parsed and validated once, at the edge, into
//!   types that cannot hold an invalid value. Every error names the field and the reason.
//! - [`Blake3Hash`], [`Name`], [`Tier`], [`Uri`]: the small parsed types the manifests are made of.
//! - [`RunReport`] and [`Outcome`]: what one run of one task produced, and its canonical
//!   [result digest](RunReport::digest), tagged with the [`DETERMINISM_PROFILE`].
//!
//! ```
//! use helio_sdk::TaskManifest;
//!
//! let json = r#"{
//!   "schema_version": 1,
//!   "module": { "uri": "hello.wasm", "blake3": "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262" },
//!   "outputs": [ { "name": "greeting.txt", "max_bytes": 1024 } ],
//!   "limits": { "fuel": 1000000 }
//! }"#;
//! let task = TaskManifest::from_json(json).unwrap();
//! assert_eq!(task.name.as_str(), "task");
//! assert_eq!(task.limits.memory_bytes, 256 * 1024 * 1024);
//!
//! let bad = TaskManifest::from_json(r#"{ "schema_version": 2 }"#).unwrap_err();
//! assert!(bad.to_string().contains("schema_version"));
//! ```
#![deny(missing_docs)]

mod batch;
#[cfg(feature = "client")]
pub mod client;
#[cfg(feature = "config")]
pub mod config;
mod contract;
mod digest;
mod error;
#[cfg(feature = "fetch")]
pub mod fetch;
pub mod ids;
mod manifest;
#[cfg(feature = "openapi")]
mod openapi;
#[cfg(feature = "storage")]
pub mod storage;
mod types;
pub mod wire;

pub use batch::{BatchManifest, Redundancy};
pub use contract::{WASI_FUNCTIONS, WASI_MODULE};
pub use digest::{DETERMINISM_PROFILE, Outcome, OutputRecord, RunReport};
pub use error::ManifestError;
pub use manifest::{CheckpointSpec, ContentRef, InputSpec, Limits, OutputSpec, TaskManifest};
pub use types::{Blake3Hash, Name, Tier, Uri};

/// The only `schema_version` this crate reads and writes.
pub const SCHEMA_VERSION: u64 = 1;
