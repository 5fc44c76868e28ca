//! Builds the example guests in `guests/` for wasm32-wasip1.
fn main() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("guests");
    helio_wasm_build::build_guests(&dir, "guests.rs");
}
