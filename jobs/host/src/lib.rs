//! Helio's scientific workloads, built for `wasm32-wasip1`: one constant per job naming its
//! module (`NBODY`, `ISING`, `HPFOLD`, `BUSINESSES`, `THUMBNAILS`, `HASHCHAIN`), for the
//! examples, the tests and the benchmarks.
#![deny(missing_docs)]

include!(concat!(env!("OUT_DIR"), "/jobs.rs"));

/// The bytes of a job's module.
pub fn bytes(path: &str) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("cannot read {path}: {e}"))
}
