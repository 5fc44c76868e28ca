//! Compute kernels run both as guests and natively (by the benchmarks), so that the sandbox's
//! slowdown is measured on the same code.

/// Integrates a five-body system with `steps` leapfrog steps of `dt` and returns the total
/// energy before and after (f64 throughout).
pub fn nbody(steps: u32, dt: f64) -> (f64, f64) {
    const N: usize = 5;
    // Sun, Jupiter, Saturn, Uranus, Neptune: positions in AU, velocities in AU/year.
    let mut pos = [
        [0.0, 0.0, 0.0],
        [4.84, -1.16, -0.10],
        [8.34, 4.12, -0.40],
        [12.89, -15.11, -0.22],
        [15.38, -25.92, 0.18],
    ];
    let mut vel = [
        [0.0, 0.0, 0.0],
        [0.606, 2.812, -0.025],
        [-1.010, 1.825, 0.008],
        [1.083, 0.868, -0.011],
        [0.979, 0.594, -0.035],
    ];
    // Masses in solar masses times G = 4π² (AU³/year²).
    let solar = 4.0 * std::f64::consts::PI * std::f64::consts::PI;
    let mass = [
        solar,
        solar * 9.55e-4,
        solar * 2.86e-4,
        solar * 4.37e-5,
        solar * 5.15e-5,
    ];
    let energy = |pos: &[[f64; 3]; N], vel: &[[f64; 3]; N]| {
        let mut e = 0.0;
        for i in 0..N {
            let v = &vel[i];
            e += 0.5 * mass[i] * (v[0] * v[0] + v[1] * v[1] + v[2] * v[2]);
            for j in i + 1..N {
                let d: Vec<f64> = (0..3).map(|k| pos[i][k] - pos[j][k]).collect();
                e -= mass[i] * mass[j] / (d[0] * d[0] + d[1] * d[1] + d[2] * d[2]).sqrt();
            }
        }
        e
    };
    let before = energy(&pos, &vel);
    for _ in 0..steps {
        for i in 0..N {
            for j in i + 1..N {
                let d = [
                    pos[i][0] - pos[j][0],
                    pos[i][1] - pos[j][1],
                    pos[i][2] - pos[j][2],
                ];
                let d2 = d[0] * d[0] + d[1] * d[1] + d[2] * d[2];
                let mag = dt / (d2 * d2.sqrt());
                for k in 0..3 {
                    vel[i][k] -= d[k] * mass[j] * mag;
                    vel[j][k] += d[k] * mass[i] * mag;
                }
            }
        }
        for i in 0..N {
            for k in 0..3 {
                pos[i][k] += dt * vel[i][k];
            }
        }
    }
    (before, energy(&pos, &vel))
}

/// An integer mixing kernel (xorshift-multiply rounds over a small table); returns a checksum.
pub fn intmix(rounds: u32, seed: u64) -> u64 {
    let mut table = [0u64; 256];
    let mut x = seed | 1;
    for slot in table.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *slot = x;
    }
    let mut acc = seed;
    for r in 0..rounds as u64 {
        let i = (acc as usize ^ r as usize) & 255;
        acc = acc.rotate_left(17) ^ table[i].wrapping_mul(0x9e37_79b9_7f4a_7c15);
        table[i] = table[i].wrapping_add(acc | 1);
    }
    acc
}
