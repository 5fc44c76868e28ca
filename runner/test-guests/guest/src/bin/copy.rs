//! The trivial task: copies /in/data to /out/data.
fn main() {
    let data = std::fs::read("/in/data").unwrap();
    std::fs::write("/out/data", data).unwrap();
}
