//! Allocates 1 MiB blocks until memory runs out.
fn main() {
    let mut blocks = Vec::new();
    loop {
        blocks.push(std::hint::black_box(vec![1u8; 1 << 20]));
    }
}
