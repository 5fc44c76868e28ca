//! Writes outputs as its first argument says: `ok` writes /out/result.txt; `missing` writes
//! nothing; `undeclared` also writes /out/extra.txt; `symlink` plants /out/result.txt as a
//! symlink to an input; `dir` makes /out/result.txt a directory; `temp` writes a temporary
//! file and renames it onto /out/result.txt.
fn main() {
    let mode = helio_test_guest_bins::args().first().cloned().unwrap_or_default();
    let fs = std::fs::write;
    match mode.as_str() {
        "ok" => fs("/out/result.txt", "result\n").unwrap(),
        "missing" => {}
        "undeclared" => {
            fs("/out/result.txt", "result\n").unwrap();
            fs("/out/extra.txt", "extra\n").unwrap();
        }
        "symlink" => helio_test_guest_bins::symlink_in_out("../in/secret.txt", "result.txt").unwrap(),
        "dir" => std::fs::create_dir("/out/result.txt").unwrap(),
        "temp" => {
            fs("/out/result.tmp", "renamed\n").unwrap();
            std::fs::rename("/out/result.tmp", "/out/result.txt").unwrap();
        }
        other => panic!("unknown mode {other}"),
    }
}
