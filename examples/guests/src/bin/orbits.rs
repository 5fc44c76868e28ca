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
    let steps = (years / dt).round() as u64;

    // Positions in AU, velocities in AU/year, G·mass in AU³/year² (G·M_sun = 4π²).
    let gm_sun = 4.0 * std::f64::consts::PI * std::f64::consts::PI;
    let gm = [gm_sun, gm_sun * 9.546e-4, gm_sun * 2.858e-4, gm_sun * 4.366e-5, gm_sun * 5.151e-5];
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
    let accelerate = |pos: &[[f64; 3]; 5], vel: &mut [[f64; 3]; 5], h: f64| {
        for i in 0..5 {
            for j in i + 1..5 {
                let d = [pos[i][0] - pos[j][0], pos[i][1] - pos[j][1], pos[i][2] - pos[j][2]];
                let r2 = d[0] * d[0] + d[1] * d[1] + d[2] * d[2];
                let f = h / (r2 * r2.sqrt());
                for k in 0..3 {
                    vel[i][k] -= d[k] * gm[j] * f;
                    vel[j][k] += d[k] * gm[i] * f;
                }
            }
        }
    };
    let before = energy(&pos, &vel);
    accelerate(&pos, &mut vel, dt / 2.0);
    for step in 0..steps {
        for i in 0..5 {
            for k in 0..3 {
                pos[i][k] += dt * vel[i][k];
            }
        }
        accelerate(&pos, &mut vel, if step + 1 == steps { dt / 2.0 } else { dt });
    }
    let after = energy(&pos, &vel);
    let drift = ((after - before) / before).abs();
    let json = format!(
        "{{\"years\": {years}, \"dt\": {dt}, \"steps\": {steps}, \"energy_before\": {before:e}, \"energy_after\": {after:e}, \"relative_drift\": {drift:e}}}\n"
    );
    std::fs::write("/out/energy.json", &json).expect("write /out/energy.json");
    print!("{json}");
}
