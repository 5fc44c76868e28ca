//! Exits with the code given as its first argument.
fn main() {
    let code: i32 = helio_test_guest_bins::args()[0].parse().unwrap();
    println!("exiting with {code}");
    std::process::exit(code);
}
