//! `nbody [--years Y] [--dt D]`: integrates the Sun and the four giant planets for Y years
//! (default 100) with a leapfrog step of D years (default 0.001) and writes
//! `/out/energy.json`: the total energy before and after and its relative drift, which a
//! symplectic integrator keeps small.
use helio_guest::{output, params};
use serde::Serialize;

#[derive(Serialize)]
struct Energy {
    years: f64,
    dt: f64,
    steps: u64,
    energy_before: f64,
    energy_after: f64,
    relative_drift: f64,
}

fn main() {
    helio_guest::run(|| {
        let params = params();
        let years: f64 = params.get_or("years", 100.0)?;
        let dt: f64 = params.get_or("dt", 0.001)?;
        params.finish()?;
        if !(years > 0.0 && dt > 0.0 && years / dt <= 1e10) {
            return Err(helio_guest::Error::msg(format!(
                "--years {years} and --dt {dt} must be positive, with at most 10¹⁰ steps"
            )));
        }
        let e = nbody::integrate(years, dt);
        let energy = Energy {
            years,
            dt,
            steps: e.steps,
            energy_before: e.before,
            energy_after: e.after,
            relative_drift: ((e.after - e.before) / e.before).abs(),
        };
        let mut out = output("energy.json")?;
        out.json(&energy)?;
        out.finish()?;
        println!(
            "{} steps, relative energy drift {:e}",
            energy.steps, energy.relative_drift
        );
        Ok(())
    })
}
