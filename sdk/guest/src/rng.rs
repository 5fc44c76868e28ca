//! A seeded random generator: xoshiro256** (Blackman and Vigna), seeded from the task's
//! `random_get` stream, which the sandbox derives from the task's `seed`. The same seed gives
//! the same numbers on every runner; different seeds give independent streams.

/// 32 bytes of the task's random stream: the same for the same `seed`, on every runner.
pub fn seed_bytes() -> [u8; 32] {
    let mut seed = [0u8; 32];
    fill(&mut seed);
    seed
}

#[cfg(all(target_arch = "wasm32", target_os = "wasi"))]
fn fill(buf: &mut [u8]) {
    #[link(wasm_import_module = "wasi_snapshot_preview1")]
    unsafe extern "C" {
        fn random_get(buf: *mut u8, len: usize) -> i32;
    }
    // SAFETY: `buf` is valid for writes of `buf.len()` bytes.
    let errno = unsafe { random_get(buf.as_mut_ptr(), buf.len()) };
    assert_eq!(errno, 0, "random_get failed with errno {errno}");
}

#[cfg(not(all(target_arch = "wasm32", target_os = "wasi")))]
fn fill(buf: &mut [u8]) {
    // Natively (tests, benchmarks): a stream from `HELIO_SEED`, default 0.
    let seed: u64 = std::env::var("HELIO_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let mut state = seed;
    for chunk in buf.chunks_mut(8) {
        let word = splitmix64(&mut state).to_le_bytes();
        chunk.copy_from_slice(&word[..chunk.len()]);
    }
}

fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The task's random generator.
pub fn rng() -> Rng {
    Rng::from_seed(seed_bytes())
}

/// A fast generator of uniformly distributed numbers (xoshiro256**). Not for cryptography.
#[derive(Debug, Clone)]
pub struct Rng {
    s: [u64; 4],
}

impl Rng {
    /// A generator started from `seed`.
    pub fn from_seed(seed: [u8; 32]) -> Rng {
        let mut s = [0u64; 4];
        for (word, bytes) in s.iter_mut().zip(seed.chunks(8)) {
            *word = u64::from_le_bytes(bytes.try_into().unwrap());
        }
        if s == [0; 4] {
            // The all-zero state is a fixed point; any other start will do.
            let mut state = 0;
            s = [(); 4].map(|_| splitmix64(&mut state));
        }
        Rng { s }
    }

    /// A generator started from a number (for tests and for sub-streams).
    pub fn from_u64(seed: u64) -> Rng {
        let mut state = seed;
        let mut bytes = [0u8; 32];
        for chunk in bytes.chunks_mut(8) {
            chunk.copy_from_slice(&splitmix64(&mut state).to_le_bytes());
        }
        Rng::from_seed(bytes)
    }

    /// The next 64 random bits.
    pub fn u64(&mut self) -> u64 {
        let result = self.s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = self.s[1] << 17;
        self.s[2] ^= self.s[0];
        self.s[3] ^= self.s[1];
        self.s[1] ^= self.s[2];
        self.s[0] ^= self.s[3];
        self.s[2] ^= t;
        self.s[3] = self.s[3].rotate_left(45);
        result
    }

    /// A number in `[0, 1)` with 53 random bits.
    pub fn f64(&mut self) -> f64 {
        (self.u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// A number in `[0, n)`, without modulo bias. `n` must not be 0.
    pub fn below(&mut self, n: u64) -> u64 {
        assert!(n > 0, "Rng::below(0)");
        // Lemire's multiply-and-reject.
        loop {
            let m = (self.u64() as u128) * (n as u128);
            let low = m as u64;
            if low >= n.wrapping_neg() % n {
                return (m >> 64) as u64;
            }
        }
    }

    /// `true` with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        self.f64() < p
    }

    /// A standard normal deviate (Marsaglia's polar method).
    pub fn normal(&mut self) -> f64 {
        loop {
            let u = 2.0 * self.f64() - 1.0;
            let v = 2.0 * self.f64() - 1.0;
            let s = u * u + v * v;
            if s > 0.0 && s < 1.0 {
                return u * (-2.0 * s.ln() / s).sqrt();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uniform_numbers_look_uniform() {
        let mut r = Rng::from_u64(7);
        let n = 100_000;
        let mean = (0..n).map(|_| r.f64()).sum::<f64>() / n as f64;
        assert!((mean - 0.5).abs() < 0.01, "{mean}");
        let mut counts = [0u32; 6];
        for _ in 0..60_000 {
            counts[r.below(6) as usize] += 1;
        }
        assert!(
            counts.iter().all(|&c| (9_000..11_000).contains(&c)),
            "{counts:?}"
        );
        let normals: Vec<f64> = (0..n).map(|_| r.normal()).collect();
        let var = normals.iter().map(|x| x * x).sum::<f64>() / n as f64;
        assert!((var - 1.0).abs() < 0.02, "{var}");
    }

    #[test]
    fn seeds_give_different_streams_and_the_same_seed_the_same() {
        let a: Vec<u64> = (0..4)
            .map({
                let mut r = Rng::from_u64(1);
                move |_| r.u64()
            })
            .collect();
        let b: Vec<u64> = (0..4)
            .map({
                let mut r = Rng::from_u64(1);
                move |_| r.u64()
            })
            .collect();
        let c: Vec<u64> = (0..4)
            .map({
                let mut r = Rng::from_u64(2);
                move |_| r.u64()
            })
            .collect();
        assert_eq!(a, b);
        assert_ne!(a, c);
    }
}
