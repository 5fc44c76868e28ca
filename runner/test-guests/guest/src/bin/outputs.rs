//! Writes outputs as its first argument says: `ok` writes /out/result.txt; `missing` writes
//! nothing; `undeclared` also writes /out/extra.txt; `symlink` plants /out/result.txt as a
//! symlink to an input; `dir` makes /out/result.txt a directory; `temp` writes a temporary
//! file and renames it onto /out/result.txt; `big N` writes N pattern bytes (byte i is
//! i % 251), overwrites bytes 3..8 with "HELIO", prints the last 4 bytes as read back,
//! and cuts the file to N - 1000 bytes.
fn main() {
    let mode = helio_test_guest_bins::args()
        .first()
        .cloned()
        .unwrap_or_default();
    let fs = std::fs::write;
    match mode.as_str() {
        "ok" => fs("/out/result.txt", "result\n").unwrap(),
        "missing" => {}
        "undeclared" => {
            fs("/out/result.txt", "result\n").unwrap();
            fs("/out/extra.txt", "extra\n").unwrap();
        }
        "symlink" => {
            helio_test_guest_bins::symlink_in_out("../in/secret.txt", "result.txt").unwrap()
        }
        "dir" => std::fs::create_dir("/out/result.txt").unwrap(),
        "temp" => {
            fs("/out/result.tmp", "renamed\n").unwrap();
            std::fs::rename("/out/result.tmp", "/out/result.txt").unwrap();
        }
        "big" => {
            use std::io::{Read, Seek, SeekFrom, Write};
            let n: usize = helio_test_guest_bins::args()[1].parse().unwrap();
            let mut f = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true)
                .open("/out/result.txt")
                .unwrap();
            let pattern: Vec<u8> = (0..n).map(|i| (i % 251) as u8).collect();
            for chunk in pattern.chunks(65536) {
                f.write_all(chunk).unwrap();
            }
            f.seek(SeekFrom::Start(3)).unwrap();
            f.write_all(b"HELIO").unwrap();
            f.seek(SeekFrom::End(-4)).unwrap();
            let mut tail = [0u8; 4];
            f.read_exact(&mut tail).unwrap();
            println!("tail {tail:?}");
            f.set_len((n - 1000) as u64).unwrap();
        }
        other => panic!("unknown mode {other}"),
    }
}
