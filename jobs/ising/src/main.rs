//! `ising --temperature T [--size L] [--sweeps N] [--thermalise K]`: Metropolis sampling of
//! the 2D Ising model from the task's random stream (its `seed`). Writes `/out/sample.json`
//! with ⟨|m|⟩, ⟨m²⟩, ⟨e⟩, ⟨e²⟩ and, for reference, Onsager's infinite-lattice magnetisation.
//! Tasks with different seeds are independent samples; a batch averages them.
use helio_guest::{Error, output, params, progress, rng};
use ising::{Lattice, onsager_magnetisation};
use serde::Serialize;

#[derive(Serialize)]
struct Result {
    size: usize,
    temperature: f64,
    thermalise: u64,
    sweeps: u64,
    abs_magnetisation: f64,
    magnetisation_sq: f64,
    energy: f64,
    energy_sq: f64,
    onsager_magnetisation: f64,
}

fn main() {
    helio_guest::run(|| {
        let params = params();
        let temperature: f64 = params.get("temperature")?;
        let size: usize = params.get_or("size", 32)?;
        let sweeps: u64 = params.get_or("sweeps", 2000)?;
        let thermalise: u64 = params.get_or("thermalise", 500)?;
        params.finish()?;
        if !(temperature > 0.0 && temperature.is_finite() && (2..=4096).contains(&size)) {
            return Err(Error::msg(
                "--temperature must be positive and --size between 2 and 4096",
            ));
        }
        let mut rng = rng();
        let total = thermalise + sweeps;
        let every = (total / 20).max(1);
        let s = Lattice::ordered(size).sample(
            temperature,
            thermalise,
            sweeps,
            &mut || rng.f64(),
            &mut |done| {
                if done % every == 0 {
                    progress(done, total);
                }
            },
        );
        let result = Result {
            size,
            temperature,
            thermalise,
            sweeps,
            abs_magnetisation: s.abs_magnetisation,
            magnetisation_sq: s.magnetisation_sq,
            energy: s.energy,
            energy_sq: s.energy_sq,
            onsager_magnetisation: onsager_magnetisation(temperature),
        };
        let mut out = output("sample.json")?;
        out.json(&result)?;
        out.finish()?;
        println!(
            "T = {temperature}: <|m|> = {:.5} (Onsager, infinite lattice: {:.5})",
            result.abs_magnetisation, result.onsager_magnetisation
        );
        Ok(())
    })
}
