//! The Helio sandbox: executes one task of the job contract in a deterministic,
//! fuel-metered wasmtime sandbox, and reports its outcome and result digest. It knows
//! nothing of HTTP or of a scheduler: the volunteer agent (`helio-runner`) and the
//! scheduler's own runs both use it.
//!
//! - [`Sandbox`] holds the engine configured for the determinism profile, the compiled-module
//!   caches, and [`Sandbox::run`].
//! - [`load_task`] reads a task manifest, its module and its inputs, and verifies every hash
//!   before anything runs.
//! - The guest's world — WASI preview 1 over an in-memory `/in` and `/out`, virtual clocks, a
//!   seeded random stream — is built in the private `wasi` and `vfs` modules.
//!
//! ```no_run
//! use helio_sandbox::{load_task, Sandbox, SandboxConfig};
//!
//! let sandbox = Sandbox::new(SandboxConfig::default()).unwrap();
//! let task = load_task("task.json".as_ref()).unwrap();
//! let output = task.run(&sandbox).unwrap();
//! println!("{} {}", output.report.outcome.name(), output.report.digest);
//! ```
#![deny(missing_docs)]

mod bounds;
mod cache;
pub mod checkpoint;
pub mod disk_limit;
mod errno;
pub mod health;
mod instrument;
mod load;
mod nan;
mod sandbox;
pub mod throttle;
mod vfs;
mod wasi;
mod watchdog;

pub use bounds::CompileBounds;
pub use cache::write_atomically;
pub use instrument::{Pause, instrument};
pub use load::{
    Fetch, LoadedTask, LocalFiles, MAX_MANIFEST_BYTES, load_batch_task, load_task, load_text,
    read_regular,
};
pub use nan::{CANONICAL_F32, CANONICAL_F64, NanMode};
pub use sandbox::{
    MAX_WASM_STACK, OnCheckpoint, OutputFile, PREPARED_HELD, Prepared, Resumable, RunOutput,
    Sandbox, SandboxConfig, Segments, engine_config,
};
pub use vfs::{MAX_OUT_NODES, MAX_PATH_BYTES, META_BUDGET, SPILL_BYTES};
pub use wasi::{
    HOST_BYTES_PER_FUEL, HOST_CALL_FUEL, IOVEC_FUEL, MAX_IOVS, REALTIME_EPOCH_NS, STDERR_CAP,
    STDOUT_CAP, STEP_FUEL, SUBSCRIPTION_FUEL,
};
pub use watchdog::Progress;

use helio_sdk::{Blake3Hash, ManifestError};

/// Why a task was rejected before any guest code ran (or, for [`Rejection::Sandbox`], why
/// the runner itself could not run it).
#[derive(Debug, thiserror::Error)]
pub enum Rejection {
    /// The manifest breaks the contract.
    #[error("manifest {path}: {error}")]
    Manifest {
        /// The manifest's path or URI.
        path: String,
        /// What is wrong, naming the field.
        error: ManifestError,
    },
    /// A module or input could not be read.
    #[error("{what} ({uri}): cannot read it: {reason}")]
    Read {
        /// `module` or `input "name"`.
        what: String,
        /// Where it was looked for.
        uri: String,
        /// Why it could not be read.
        reason: String,
    },
    /// Bytes did not hash to what the manifest pins.
    #[error("{what}: BLAKE3 mismatch: the manifest says {expected}, the bytes hash to {actual}")]
    HashMismatch {
        /// `module` or `input "name"`.
        what: String,
        /// The manifest's hash.
        expected: Blake3Hash,
        /// The bytes' hash.
        actual: Blake3Hash,
    },
    /// The module is not valid WebAssembly or not a WASI command.
    #[error("module: {0}")]
    InvalidModule(String),
    /// The module imports something outside `wasi_snapshot_preview1`.
    #[error(
        "module imports `{module}`.`{name}`; a Helio module may import only the functions of wasi_snapshot_preview1"
    )]
    ForbiddenImport {
        /// The import's module name.
        module: String,
        /// The import's field name.
        name: String,
    },
    /// A checkpoint to resume from is not one of this task's, or does not fit its limits.
    #[error("checkpoint: {0}")]
    Checkpoint(String),
    /// The runner cannot run the task (a fault of this machine, not of the task).
    #[error("runner: {0}")]
    Sandbox(String),
}
