//! The two-dimensional Ising model on an L×L square lattice with periodic boundaries
//! (J = 1, no field, k_B = 1), sampled by single-spin-flip Metropolis Monte Carlo.
//!
//! Below the critical temperature T_c = 2 / ln(1 + √2) ≈ 2.269 the infinite lattice has the
//! spontaneous magnetisation M(T) = (1 − sinh(2/T)⁻⁴)^(1/8) (Onsager, Yang); above it, 0.

/// The critical temperature of the square-lattice Ising model.
pub fn critical_temperature() -> f64 {
    2.0 / (1.0 + 2f64.sqrt()).ln()
}

/// Onsager's spontaneous magnetisation per spin of the infinite lattice at `t`.
pub fn onsager_magnetisation(t: f64) -> f64 {
    if t >= critical_temperature() {
        return 0.0;
    }
    (1.0 - (2.0 / t).sinh().powi(-4)).powf(0.125)
}

/// A lattice of spins ±1.
pub struct Lattice {
    size: usize,
    spins: Vec<i8>,
}

/// Averages measured over the sampling sweeps.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    /// ⟨|m|⟩, the mean absolute magnetisation per spin.
    pub abs_magnetisation: f64,
    /// ⟨m²⟩.
    pub magnetisation_sq: f64,
    /// ⟨e⟩, the mean energy per spin.
    pub energy: f64,
    /// ⟨e²⟩.
    pub energy_sq: f64,
    /// Sweeps averaged over.
    pub sweeps: u64,
}

impl Lattice {
    /// An ordered lattice (all spins up), which reaches equilibrium below T_c quickest.
    pub fn ordered(size: usize) -> Lattice {
        assert!(size >= 2, "the lattice needs at least 2×2 spins");
        Lattice {
            size,
            spins: vec![1; size * size],
        }
    }

    fn neighbours_sum(&self, i: usize) -> i32 {
        let l = self.size;
        let (x, y) = (i % l, i / l);
        let at = |x: usize, y: usize| self.spins[y * l + x] as i32;
        at((x + 1) % l, y) + at((x + l - 1) % l, y) + at(x, (y + 1) % l) + at(x, (y + l - 1) % l)
    }

    /// One Metropolis sweep: L² proposed flips in sequence, each accepted with probability
    /// min(1, exp(−ΔE/T)). `uniform` gives numbers in [0, 1).
    pub fn sweep(&mut self, t: f64, uniform: &mut impl FnMut() -> f64) {
        // ΔE = 2·s·Σneighbours ∈ {−8, −4, 0, 4, 8}; only 4 and 8 can be rejected.
        let accept = [(-4.0 / t).exp(), (-8.0 / t).exp()];
        for i in 0..self.spins.len() {
            let de = 2 * self.spins[i] as i32 * self.neighbours_sum(i);
            let flip = match de {
                d if d <= 0 => true,
                4 => uniform() < accept[0],
                _ => uniform() < accept[1],
            };
            if flip {
                self.spins[i] = -self.spins[i];
            }
        }
    }

    /// The magnetisation per spin.
    pub fn magnetisation(&self) -> f64 {
        self.spins.iter().map(|&s| s as i64).sum::<i64>() as f64 / self.spins.len() as f64
    }

    /// The energy per spin, −Σ⟨ij⟩ sᵢsⱼ / N.
    pub fn energy(&self) -> f64 {
        let l = self.size;
        let mut e = 0i64;
        for y in 0..l {
            for x in 0..l {
                let s = self.spins[y * l + x] as i64;
                e -= s
                    * (self.spins[y * l + (x + 1) % l] as i64
                        + self.spins[((y + 1) % l) * l + x] as i64);
            }
        }
        e as f64 / self.spins.len() as f64
    }

    /// Runs `thermalise` sweeps, then averages over `sweeps` more. `progress` is told each
    /// sweep done.
    pub fn sample(
        &mut self,
        t: f64,
        thermalise: u64,
        sweeps: u64,
        uniform: &mut impl FnMut() -> f64,
        progress: &mut impl FnMut(u64),
    ) -> Sample {
        for i in 0..thermalise {
            self.sweep(t, uniform);
            progress(i + 1);
        }
        let (mut m, mut m2, mut e, mut e2) = (0.0, 0.0, 0.0, 0.0);
        for i in 0..sweeps {
            self.sweep(t, uniform);
            let (mi, ei) = (self.magnetisation(), self.energy());
            m += mi.abs();
            m2 += mi * mi;
            e += ei;
            e2 += ei * ei;
            progress(thermalise + i + 1);
        }
        let n = sweeps.max(1) as f64;
        Sample {
            abs_magnetisation: m / n,
            magnetisation_sq: m2 / n,
            energy: e / n,
            energy_sq: e2 / n,
            sweeps,
        }
    }
}
