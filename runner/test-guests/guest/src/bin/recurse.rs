//! Recurses without end, so the stack overflows.
#![allow(unconditional_recursion)]
fn deep(n: u64) -> u64 {
    let pad = std::hint::black_box([n; 16]);
    deep(n + 1) + pad[(n % 16) as usize]
}
fn main() {
    println!("{}", deep(0));
}
