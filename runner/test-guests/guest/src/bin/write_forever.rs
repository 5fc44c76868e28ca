//! Writes to /out/result.bin without end.
use std::io::Write;
fn main() {
    let mut f = std::fs::File::create("/out/result.bin").unwrap();
    let block = [7u8; 4096];
    loop {
        if let Err(e) = f.write_all(&block) {
            println!("write failed: {e}");
            return;
        }
    }
}
