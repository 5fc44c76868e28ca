//! The `helio` command's library: what `helio pack` and `helio validate` do, callable from
//! tests and tools. The binary (`src/main.rs`) only parses arguments and prints.
#![deny(missing_docs)]

/// Reading and writing local files, `http(s)://` and `s3://` objects (the SDK's).
pub use helio_sdk::fetch;
pub mod grid;
pub mod module;
pub mod pack;
pub mod sweep;
pub mod validate;
