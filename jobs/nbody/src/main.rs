//! `nbody [--years Y] [--dt D] [--checkpoint-steps N]`: integrates the Sun and the four giant
//! planets for Y years (default 100) with a leapfrog step of D years (default 0.001) and
//! writes `/out/energy.json`: the total energy before and after and its relative drift, which
//! a symplectic integrator keeps small.
//!
//! It saves a checkpoint every N steps (default ten million, about a second) where the task
//! declares one, and takes up a saved integration where it finds one: the result is the same
//! bits however many times the run was stopped and resumed.
use helio_guest::{Error, checkpoint, output, params};
use nbody::Orbit;
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
        let every: u64 = params.get_or("checkpoint-steps", 10_000_000)?;
        params.finish()?;
        if !(years > 0.0 && dt > 0.0 && years / dt <= 1e10) {
            return Err(Error::msg(format!(
                "--years {years} and --dt {dt} must be positive, with at most 10¹⁰ steps"
            )));
        }
        if every == 0 {
            return Err(Error::msg("--checkpoint-steps must be at least 1"));
        }
        let fresh = Orbit::start(years, dt);
        let mut orbit = match checkpoint::load()? {
            Some(state) => Orbit::from_bytes(&state)
                .filter(|saved| saved.continues(&fresh))
                .ok_or_else(|| {
                    Error::msg(
                        "the saved checkpoint is not an integration of these --years and --dt",
                    )
                })?,
            None => fresh,
        };
        loop {
            orbit.advance(every);
            let (done, steps) = orbit.progress();
            if done == steps {
                break;
            }
            checkpoint::save(&orbit.to_bytes())?;
        }
        let e = orbit.energies();
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
