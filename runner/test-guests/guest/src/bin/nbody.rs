//! The example n-body integrator (`jobs/nbody/src/lib.rs`) for `years` given as the
//! first argument; prints the energy before and after as numbers and as bits.
#[path = "../../../../../jobs/nbody/src/lib.rs"]
// This guest integrates in one go; the job's checkpointing half goes unused here.
#[allow(dead_code)]
mod orbits;

fn main() {
    let years: f64 = helio_test_guest_bins::args()
        .first()
        .map_or(1.0, |s| s.parse().unwrap());
    let e = orbits::integrate(years, 0.001);
    println!(
        "{} steps {:.12} {:.12} {:016x} {:016x}",
        e.steps,
        e.before,
        e.after,
        e.before.to_bits(),
        e.after.to_bits()
    );
}
