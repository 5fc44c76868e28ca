//! The integer kernel; prints its checksum.
fn main() {
    let rounds: u32 = helio_test_guest_bins::args()
        .first()
        .map_or(1000, |s| s.parse().unwrap());
    println!(
        "{:016x}",
        helio_test_guest_bins::kernels::intmix(rounds, 42)
    );
}
