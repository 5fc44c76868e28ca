//! Compute kernels run both as guests and natively (by the benchmarks), so that the sandbox's
//! slowdown is measured on the same code. The float kernel is the example n-body integrator,
//! `jobs/nbody/src/lib.rs`.

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
