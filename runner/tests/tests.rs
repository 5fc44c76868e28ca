//! The runner's integration tests: every outcome and rejection of the job contract, driven
//! through `runner exec` with guests from `helio-test-guests` and WAT.

mod it;
