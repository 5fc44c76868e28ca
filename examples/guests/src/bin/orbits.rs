//! Integrates the Sun and the four giant planets for `--years Y` with a leapfrog step of
//! `--dt D` years and writes `/out/energy.json`: the total energy before and after and its
//! relative drift, which a symplectic integrator keeps small.
fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |flag: &str, default: f64| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .map(|v| v.parse::<f64>().unwrap_or_else(|_| panic!("{flag} takes a number, got {v}")))
            .unwrap_or(default)
    };
    let (years, dt) = (arg("--years", 100.0), arg("--dt", 0.001));
    let e = helio_example_guests::orbits::integrate(years, dt);
    let drift = ((e.after - e.before) / e.before).abs();
    let json = format!(
        "{{\"years\": {years}, \"dt\": {dt}, \"steps\": {}, \"energy_before\": {:e}, \"energy_after\": {:e}, \"relative_drift\": {drift:e}}}\n",
        e.steps, e.before, e.after
    );
    std::fs::write("/out/energy.json", &json).expect("write /out/energy.json");
    print!("{json}");
}
