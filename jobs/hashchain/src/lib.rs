//! A BLAKE3 hash chain: `h₀ = start`, `hᵢ₊₁ = BLAKE3(hᵢ)`. Every round does the same work,
//! so the fuel a chain burns is an exact affine function of its length: a calibration
//! kernel for runners and benchmarks.

/// The chain's last link after `rounds` rounds from `start`.
pub fn chain(start: [u8; 32], rounds: u64) -> [u8; 32] {
    let mut h = start;
    for _ in 0..rounds {
        h = *blake3::hash(&h).as_bytes();
    }
    h
}

/// Lower-case hexadecimal, by table lookup: the same work for every value, so that the
/// chain's fuel does not depend on the digits of its result.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(2 * bytes.len());
    for b in bytes {
        out.push(DIGITS[(b >> 4) as usize] as char);
        out.push(DIGITS[(b & 15) as usize] as char);
    }
    out
}

/// Parses 64 hexadecimal digits.
pub fn parse_hex32(text: &str) -> Option<[u8; 32]> {
    let text = text.trim();
    if text.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}
