//! The n-body kernel; prints the energy before and after as bits and as numbers.
fn main() {
    let steps: u32 = helio_test_guest_bins::args().first().map_or(1000, |s| s.parse().unwrap());
    let (before, after) = helio_test_guest_bins::kernels::nbody(steps, 0.001);
    println!("{before:.12} {after:.12} {:016x} {:016x}", before.to_bits(), after.to_bits());
}
