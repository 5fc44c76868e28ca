//! Checkpoints: a long task saves its state now and then, so that a runner that stops (Ctrl-C,
//! a missed deadline, a machine switched off) costs the work since the last save, not all
//! of it.
//!
//! A task that may checkpoint declares `"checkpoint": { "max_bytes": N }` in its manifest.
//! Its `main` starts from [`load`] and calls [`save`] between units of work:
//!
//! ```no_run
//! use helio_guest::checkpoint;
//!
//! fn main() {
//!     helio_guest::run(|| {
//!         let total = 1_000_000u64;
//!         let (mut done, mut sum) = match checkpoint::load()? {
//!             Some(state) => {
//!                 let words: [u8; 16] = state.try_into().map_err(|_| {
//!                     helio_guest::Error::msg("the saved state is not 16 bytes")
//!                 })?;
//!                 let (a, b) = words.split_at(8);
//!                 (u64::from_le_bytes(a.try_into()?), u64::from_le_bytes(b.try_into()?))
//!             }
//!             None => (0, 0),
//!         };
//!         while done < total {
//!             sum = sum.wrapping_add(done * done);
//!             done += 1;
//!             if done % 100_000 == 0 {
//!                 let mut state = done.to_le_bytes().to_vec();
//!                 state.extend_from_slice(&sum.to_le_bytes());
//!                 checkpoint::save(&state)?;
//!             }
//!         }
//!         println!("{sum}");
//!         Ok(())
//!     })
//! }
//! ```
//!
//! In the sandbox, [`save`] does not return: the run goes on by starting `main` afresh, where
//! [`load`] returns the state saved, with `/out` and standard output as they were and the
//! fuel that was left. A run in one go passes through the same restarts as a run resumed on
//! other runners, so both give the same result and the same fuel. What is not in the state is
//! lost at a save: open files, memory, the position in an input being read (the state must
//! say where to go on). Where the task declares no checkpoint, or natively when `HELIO_CKPT`
//! names no directory, [`save`] does nothing and returns, and the task runs in one go.

use std::io::ErrorKind;
use std::path::PathBuf;

use crate::{Error, Result};

/// Where the runner keeps the task's checkpoint: `/ckpt` in the sandbox, `HELIO_CKPT`
/// natively.
fn dir() -> PathBuf {
    if cfg!(all(target_arch = "wasm32", target_os = "wasi")) {
        return PathBuf::from("/ckpt");
    }
    std::env::var_os("HELIO_CKPT").map_or_else(|| PathBuf::from("/ckpt"), PathBuf::from)
}

/// The state the task saved last, or `None` when it starts from the beginning.
pub fn load() -> Result<Option<Vec<u8>>> {
    match std::fs::read(dir().join("state")) {
        Ok(state) => Ok(Some(state)),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::from(e).context("cannot read the saved checkpoint")),
    }
}

/// Saves `state` as the task's checkpoint (at most the manifest's `checkpoint.max_bytes`).
/// In the sandbox it does not return; see the module's documentation.
pub fn save(state: &[u8]) -> Result<()> {
    let dir = dir();
    if !dir.is_dir() {
        return Ok(());
    }
    let next = dir.join("next");
    std::fs::write(&next, state)
        .map_err(|e| Error::from(e).context("cannot write the checkpoint"))?;
    std::fs::rename(&next, dir.join("state"))
        .map_err(|e| Error::from(e).context("cannot save the checkpoint"))
}

/// The state the task saved last, read as JSON.
#[cfg(feature = "json")]
pub fn load_json<T: serde::de::DeserializeOwned>() -> Result<Option<T>> {
    match load()? {
        Some(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| Error::from(e).context("the saved checkpoint is not the JSON expected")),
        None => Ok(None),
    }
}

/// Saves `state` as JSON; see [`save`].
#[cfg(feature = "json")]
pub fn save_json<T: serde::Serialize>(state: &T) -> Result<()> {
    save(&serde_json::to_vec(state)?)
}
