//! Builds the guest workspace in `guest/` for wasm32-wasip1 and names each guest's path.
fn main() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("guest");
    helio_wasm_build::build_guests(&dir, "guests.rs");
}
