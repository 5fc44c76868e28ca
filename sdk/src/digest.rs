use serde::{Deserialize, Serialize};

use crate::types::{Blake3Hash, Name};

/// The determinism profile: names everything that fixes how a runner turns a task into a
/// result (NaN canonicalization, the virtual clocks and `random_get` stream, the file
/// system's metadata, how fuel is metered and charged for host calls and stack exhaustion).
/// It keys the result digest, so runners with different profiles can never agree by accident.
///
/// `helio-det-2` meters fuel with checks the module rewrite inserts instead of wasmtime's.
/// `helio-det-3` also counts the fuel of a function left by a branch to its own label (before,
/// such a call's fuel was lost to its caller).
/// `helio-det-4` prices host calls by their work (path steps, listed entries, poll
/// subscriptions, iovec entries, path bytes), bounds the guest's file-system metadata (a task
/// past it ends with `memory_limit`) and counts symlinks followed per lookup, not per level.
pub const DETERMINISM_PROFILE: &str = "helio-det-4";

/// How one run ended. Every variant but [`Outcome::Timeout`] is deterministic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// The guest returned from `_start` or called `proc_exit`.
    Exited {
        /// The exit code (0 when `_start` returned).
        exit_code: i32,
    },
    /// The guest trapped.
    Trapped {
        /// A stable name for the trap, such as `unreachable` or `stack_overflow`.
        trap: String,
    },
    /// The guest burned all of `limits.fuel`.
    OutOfFuel,
    /// The guest tried to grow memory past `limits.memory_bytes`.
    MemoryLimit,
    /// The outputs broke the contract.
    ContractViolation {
        /// What was wrong, naming the output.
        error: String,
    },
    /// The wall-clock safety net fired. Never used for consensus.
    Timeout,
}

impl Outcome {
    /// The outcome's name as in the contract (`exited`, `trapped`, ...).
    pub fn name(&self) -> &'static str {
        match self {
            Outcome::Exited { .. } => "exited",
            Outcome::Trapped { .. } => "trapped",
            Outcome::OutOfFuel => "out_of_fuel",
            Outcome::MemoryLimit => "memory_limit",
            Outcome::ContractViolation { .. } => "contract_violation",
            Outcome::Timeout => "timeout",
        }
    }

    /// Whether every honest runner reaches this outcome (all but `timeout`).
    pub fn is_deterministic(&self) -> bool {
        !matches!(self, Outcome::Timeout)
    }

    /// Whether this is `exited` with exit code 0.
    pub fn is_success(&self) -> bool {
        matches!(self, Outcome::Exited { exit_code: 0 })
    }
}

/// One declared output as the run left it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OutputRecord {
    /// The output's declared name.
    pub name: Name,
    /// Its size in bytes.
    pub bytes: u64,
    /// The BLAKE3 of its bytes.
    pub blake3: Blake3Hash,
}

/// What one run of one task produced; the JSON form is what `runner exec --json` prints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RunReport {
    /// How the run ended.
    #[serde(flatten)]
    pub outcome: Outcome,
    /// The fuel the guest burned.
    pub fuel_consumed: u64,
    /// The canonical result digest (see [`RunReport::compute_digest`]).
    pub digest: Blake3Hash,
    /// The declared outputs that exist, in name order.
    pub outputs: Vec<OutputRecord>,
    /// The BLAKE3 of the captured standard output.
    pub stdout_blake3: Blake3Hash,
    /// Wall-clock time of the run in milliseconds (not part of the digest).
    pub wall_ms: u64,
}

impl RunReport {
    /// Builds a report and computes its digest. `outputs` are sorted by name here.
    pub fn new(
        outcome: Outcome,
        fuel_consumed: u64,
        stdout_blake3: Blake3Hash,
        mut outputs: Vec<OutputRecord>,
        wall_ms: u64,
    ) -> Self {
        outputs.sort_by(|a, b| a.name.cmp(&b.name));
        let digest = Self::compute_digest(&outcome, fuel_consumed, &stdout_blake3, &outputs);
        RunReport {
            outcome,
            fuel_consumed,
            digest,
            outputs,
            stdout_blake3,
            wall_ms,
        }
    }

    /// The result digest: BLAKE3, keyed by the [`DETERMINISM_PROFILE`], over a canonical
    /// encoding of the outcome, its exit code or trap, the fuel consumed, the BLAKE3 of
    /// standard output and each present declared output's name, size and BLAKE3 in name
    /// order (`outputs` must already be in name order). Integers are little-endian; strings
    /// are length-prefixed, so no two different results share an encoding.
    pub fn compute_digest(
        outcome: &Outcome,
        fuel_consumed: u64,
        stdout_blake3: &Blake3Hash,
        outputs: &[OutputRecord],
    ) -> Blake3Hash {
        let mut h = blake3::Hasher::new_derive_key(&format!(
            "helio result digest, determinism profile {DETERMINISM_PROFILE}"
        ));
        let put_str = |h: &mut blake3::Hasher, s: &str| {
            h.update(&(s.len() as u64).to_le_bytes());
            h.update(s.as_bytes());
        };
        put_str(&mut h, outcome.name());
        match outcome {
            Outcome::Exited { exit_code } => {
                h.update(&exit_code.to_le_bytes());
            }
            Outcome::Trapped { trap } => put_str(&mut h, trap),
            _ => {}
        }
        h.update(&fuel_consumed.to_le_bytes());
        h.update(stdout_blake3.as_bytes());
        h.update(&(outputs.len() as u64).to_le_bytes());
        for out in outputs {
            put_str(&mut h, out.name.as_str());
            h.update(&out.bytes.to_le_bytes());
            h.update(out.blake3.as_bytes());
        }
        h.finalize().into()
    }

    /// Whether the stored digest matches the report's fields.
    pub fn digest_is_consistent(&self) -> bool {
        self.digest
            == Self::compute_digest(
                &self.outcome,
                self.fuel_consumed,
                &self.stdout_blake3,
                &self.outputs,
            )
    }
}
