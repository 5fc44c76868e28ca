//! Paths of the runner's test guests, built for `wasm32-wasip1` by this crate's build
//! script from `guest/src/bin/*.rs`: one constant per guest, named after it in upper case.
#![deny(missing_docs)]

include!(concat!(env!("OUT_DIR"), "/guests.rs"));

/// The bytes of a guest module.
pub fn bytes(path: &str) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("test guest {path}: {e}"))
}
