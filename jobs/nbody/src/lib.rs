//! The Sun and the four giant planets, integrated with the leapfrog (kick-drift-kick) scheme.
//! Shared by the `nbody` job, the runner's `nbody` test guest and the native benchmark, so
//! that all three run the same code.
// Index loops over bodies and axes read like the physics; iterator chains would not.
#![allow(clippy::needless_range_loop)]

/// The result of an integration.
pub struct Energies {
    /// Total energy at the start (AU²·M☉/year², with G·M☉ = 4π²).
    pub before: f64,
    /// Total energy at the end.
    pub after: f64,
    /// Steps taken.
    pub steps: u64,
}

/// G·mass of each body in AU³/year² (G·M☉ = 4π²).
const GM_SUN: f64 = 4.0 * std::f64::consts::PI * std::f64::consts::PI;
const GM: [f64; 5] = [
    GM_SUN,
    GM_SUN * 9.546e-4,
    GM_SUN * 2.858e-4,
    GM_SUN * 4.366e-5,
    GM_SUN * 5.151e-5,
];

type Vectors = [[f64; 3]; 5];

/// Integrates for `years` with a step of `dt` years and returns the energies.
pub fn integrate(years: f64, dt: f64) -> Energies {
    let mut orbit = Orbit::start(years, dt);
    orbit.advance(u64::MAX);
    orbit.energies()
}

/// An integration under way: it can go on in pieces, and be saved between them and taken up
/// again with the very same bits.
#[derive(Debug, Clone, PartialEq)]
pub struct Orbit {
    /// Positions in AU.
    pos: Vectors,
    /// Velocities in AU/year, half a step ahead of the positions (leapfrog).
    vel: Vectors,
    dt: f64,
    steps: u64,
    done: u64,
    before: f64,
}

impl Orbit {
    /// The five bodies at the start, for `years` in steps of `dt` years.
    pub fn start(years: f64, dt: f64) -> Orbit {
        let pos = [
            [0.0, 0.0, 0.0],
            [4.841, -1.160, -0.104],
            [8.343, 4.125, -0.403],
            [12.894, -15.111, -0.223],
            [15.380, -25.919, 0.179],
        ];
        let mut vel = [
            [0.0, 0.0, 0.0],
            [0.6067, 2.8119, -0.0252],
            [-1.0102, 1.8251, 0.0084],
            [1.0827, 0.8687, -0.0108],
            [0.9799, 0.5948, -0.0348],
        ];
        // Move to the centre-of-momentum frame.
        for k in 0..3 {
            let p: f64 = (0..5).map(|i| GM[i] * vel[i][k]).sum();
            vel[0][k] -= p / GM[0];
        }
        let before = energy(&pos, &vel);
        kick(&pos, &mut vel, dt / 2.0);
        Orbit {
            pos,
            vel,
            dt,
            steps: (years / dt).round() as u64,
            done: 0,
            before,
        }
    }

    /// Takes up to `n` more steps (fewer if the integration ends first).
    pub fn advance(&mut self, n: u64) {
        let (mut pos, mut vel, dt, steps) = (self.pos, self.vel, self.dt, self.steps);
        let end = self.done.saturating_add(n).min(steps);
        for step in self.done..end {
            for i in 0..5 {
                for k in 0..3 {
                    pos[i][k] += dt * vel[i][k];
                }
            }
            kick(
                &pos,
                &mut vel,
                if step + 1 == steps { dt / 2.0 } else { dt },
            );
        }
        (self.pos, self.vel, self.done) = (pos, vel, end);
    }

    /// Whether this is a later point of the integration `fresh` starts (same step, same
    /// number of steps).
    pub fn continues(&self, fresh: &Orbit) -> bool {
        self.dt.to_bits() == fresh.dt.to_bits() && self.steps == fresh.steps
    }

    /// Steps taken, and steps in all.
    pub fn progress(&self) -> (u64, u64) {
        (self.done, self.steps)
    }

    /// The energies at the start and now.
    pub fn energies(&self) -> Energies {
        Energies {
            before: self.before,
            after: energy(&self.pos, &self.vel),
            steps: self.done,
        }
    }

    /// The integration's state as bytes: every number's bits, little-endian.
    pub fn to_bytes(&self) -> Vec<u8> {
        let numbers = self.pos.iter().chain(&self.vel).flatten();
        let mut out: Vec<u8> = numbers.flat_map(|x| x.to_le_bytes()).collect();
        for word in [
            self.dt.to_bits(),
            self.steps,
            self.done,
            self.before.to_bits(),
        ] {
            out.extend_from_slice(&word.to_le_bytes());
        }
        out
    }

    /// The state [`Orbit::to_bytes`] wrote, or `None` if `bytes` are not one.
    pub fn from_bytes(bytes: &[u8]) -> Option<Orbit> {
        if bytes.len() != Self::BYTES {
            return None;
        }
        let mut words = bytes
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes")));
        let mut vectors = [[[0.0; 3]; 5]; 2];
        for x in vectors.iter_mut().flatten().flatten() {
            *x = f64::from_bits(words.next()?);
        }
        let [pos, vel] = vectors;
        let dt = f64::from_bits(words.next()?);
        let (steps, done) = (words.next()?, words.next()?);
        let before = f64::from_bits(words.next()?);
        (done <= steps).then_some(Orbit {
            pos,
            vel,
            dt,
            steps,
            done,
            before,
        })
    }

    /// The size of the state in bytes.
    pub const BYTES: usize = (30 + 4) * 8;
}

/// The total energy.
fn energy(pos: &Vectors, vel: &Vectors) -> f64 {
    let mut e = 0.0;
    for i in 0..5 {
        let v2: f64 = vel[i].iter().map(|v| v * v).sum();
        e += 0.5 * GM[i] * v2;
        for j in i + 1..5 {
            let r2: f64 = (0..3).map(|k| (pos[i][k] - pos[j][k]).powi(2)).sum();
            e -= GM[i] * GM[j] / r2.sqrt();
        }
    }
    e
}

/// Changes the velocities by the accelerations at `pos` over `h` years.
#[inline(always)]
fn kick(pos: &Vectors, vel: &mut Vectors, h: f64) {
    for i in 0..5 {
        for j in i + 1..5 {
            let d = [
                pos[i][0] - pos[j][0],
                pos[i][1] - pos[j][1],
                pos[i][2] - pos[j][2],
            ];
            let r2 = d[0] * d[0] + d[1] * d[1] + d[2] * d[2];
            let f = h / (r2 * r2.sqrt());
            for k in 0..3 {
                vel[i][k] -= d[k] * GM[j] * f;
                vel[j][k] += d[k] * GM[i] * f;
            }
        }
    }
}
