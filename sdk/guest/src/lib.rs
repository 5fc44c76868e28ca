//! Helio's guest API: what a job's `main` uses inside the sandbox.
//!
//! A Helio task sees its declared inputs under `/in`, writes its declared outputs under
//! `/out`, gets its parameters as command-line arguments and a random stream derived from the
//! task's `seed`. This crate turns those into a few calls, so that a job reads like its
//! science:
//!
//! ```no_run
//! use std::io::Write;
//!
//! fn main() {
//!     helio_guest::run(|| {
//!         let params = helio_guest::params();
//!         let samples: u64 = params.get("samples")?;
//!         params.finish()?;
//!         let mut rng = helio_guest::rng();
//!         let inside = (0..samples)
//!             .filter(|_| {
//!                 let (x, y) = (rng.f64(), rng.f64());
//!                 x * x + y * y < 1.0
//!             })
//!             .count();
//!         let mut out = helio_guest::output("pi.txt")?;
//!         writeln!(out, "{}", 4.0 * inside as f64 / samples as f64)?;
//!         out.finish()
//!     })
//! }
//! ```
//!
//! Parameters are `--name value` or `--name=value` pairs (as `helio pack` writes them for
//! sweeps); a bare `--name` is a flag. Errors name what is wrong (`parameter --samples: "x"
//! is not a valid u64`), and [`run`] prints them to standard error and exits with status 1.
//!
//! Built for anything but `wasm32-wasip1` (to test or benchmark a job natively), inputs and
//! outputs are looked up under the directories `HELIO_IN` and `HELIO_OUT` (default `/in` and
//! `/out`) and the random stream is seeded from `HELIO_SEED`.
#![deny(missing_docs)]

pub mod checkpoint;
mod error;
mod files;
mod params;
mod rng;

pub use error::{Error, Result};
pub use files::{Input, Output, input, output, read_input, write_output};
pub use params::{Params, params};
pub use rng::{Rng, rng, seed_bytes};

use std::io::Write;

/// Runs a job's body; on error, prints `error: ...` to standard error and exits with status 1.
pub fn run(body: impl FnOnce() -> Result<()>) {
    if let Err(e) = body() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

/// Reports progress as a line `helio:progress DONE/TOTAL` on standard error, where a runner
/// or a person watching can read it. Each line costs a host call; report at most a few
/// hundred times per task.
pub fn progress(done: u64, total: u64) {
    let _ = writeln!(std::io::stderr(), "helio:progress {done}/{total}");
}

/// Writes a log line to standard error (captured, up to 64 KiB, with the task's result).
#[macro_export]
macro_rules! log {
    ($($arg:tt)*) => {
        ::std::eprintln!($($arg)*)
    };
}
