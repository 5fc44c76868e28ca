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

/// Integrates for `years` with a step of `dt` years and returns the energies.
pub fn integrate(years: f64, dt: f64) -> Energies {
    // Positions in AU, velocities in AU/year, G·mass in AU³/year² (G·M_sun = 4π²).
    let gm_sun = 4.0 * std::f64::consts::PI * std::f64::consts::PI;
    let gm = [
        gm_sun,
        gm_sun * 9.546e-4,
        gm_sun * 2.858e-4,
        gm_sun * 4.366e-5,
        gm_sun * 5.151e-5,
    ];
    let mut pos = [
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
        let p: f64 = (0..5).map(|i| gm[i] * vel[i][k]).sum();
        vel[0][k] -= p / gm[0];
    }
    let energy = |pos: &[[f64; 3]; 5], vel: &[[f64; 3]; 5]| {
        let mut e = 0.0;
        for i in 0..5 {
            let v2: f64 = vel[i].iter().map(|v| v * v).sum();
            e += 0.5 * gm[i] * v2;
            for j in i + 1..5 {
                let r2: f64 = (0..3).map(|k| (pos[i][k] - pos[j][k]).powi(2)).sum();
                e -= gm[i] * gm[j] / r2.sqrt();
            }
        }
        e
    };
    let kick = |pos: &[[f64; 3]; 5], vel: &mut [[f64; 3]; 5], h: f64| {
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
                    vel[i][k] -= d[k] * gm[j] * f;
                    vel[j][k] += d[k] * gm[i] * f;
                }
            }
        }
    };
    let steps = (years / dt).round() as u64;
    let before = energy(&pos, &vel);
    kick(&pos, &mut vel, dt / 2.0);
    for step in 0..steps {
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
    Energies {
        before,
        after: energy(&pos, &vel),
        steps,
    }
}
