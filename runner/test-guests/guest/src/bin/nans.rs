//! Makes NaNs by arithmetic in every way it can, and writes their bits to /out/nans.bin and
//! standard output.
// Making NaNs is the point: 0/0, ∞−∞ and the like are written out on purpose.
#![allow(clippy::eq_op)]
use std::hint::black_box as b;

fn main() {
    let (zero, inf, neg) = (b(0.0f64), b(f64::INFINITY), b(-1.0f64));
    let nan = zero / zero;
    let f64s = [
        zero / zero,
        inf - inf,
        inf * zero,
        neg.sqrt(),
        nan + 1.0,
        b(nan) * neg,
        (inf - inf).max(nan),
        (zero / zero).min(1.0) * nan,
        ((b(0.0f32) / b(0.0f32)) as f64),
        (inf % 2.0),
        neg.ln(),
        1.0f64.copysign(zero / zero),
        (zero / zero).sin(),
    ];
    let f32s = [
        b(0.0f32) / b(0.0f32),
        b(-4.0f32).sqrt(),
        (b(f32::INFINITY) - f32::INFINITY),
        (nan as f32) + 1.0,
    ];
    let mut bytes = Vec::new();
    for v in f64s {
        bytes.extend_from_slice(&v.to_bits().to_le_bytes());
        println!("{:016x}", v.to_bits());
    }
    for v in f32s {
        bytes.extend_from_slice(&v.to_bits().to_le_bytes());
        println!("{:08x}", v.to_bits());
    }
    std::fs::write("/out/nans.bin", bytes).unwrap();
}
