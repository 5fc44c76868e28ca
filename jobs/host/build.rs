//! Builds the job workspace in `jobs/` for wasm32-wasip1 and names each job's module.
fn main() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("jobs/host lives in jobs/")
        .to_path_buf();
    helio_wasm_build::build_guests(&dir, "jobs.rs");
}
