//! Tries every way out of the sandbox it knows and prints what happened to each, one line per
//! attempt: `ok <what>` when it got through, `denied <what>` otherwise.
use std::path::Path;

fn attempt(what: &str, result: std::io::Result<String>) {
    match result {
        Ok(text) => println!("ok {what}: {}", text.len()),
        Err(_) => println!("denied {what}"),
    }
}

fn main() {
    let read = |p: &str| std::fs::read_to_string(p);
    attempt("absolute /etc/passwd", read("/etc/passwd"));
    attempt("dotdot from /in", read("/in/../../etc/passwd"));
    attempt("dotdot from /out", read("/out/../../../etc/hostname"));
    attempt("relative escape", read("../etc/passwd"));
    // A symlink planted in /out that points outside, then read through.
    let planted = helio_test_guest_bins::symlink_in_out("/etc/passwd", "abs-link");
    attempt(
        "symlink to absolute path",
        planted.and_then(|_| read("/out/abs-link")),
    );
    let planted = helio_test_guest_bins::symlink_in_out("../../../../etc/passwd", "up-link");
    attempt(
        "symlink up and out",
        planted.and_then(|_| read("/out/up-link")),
    );
    attempt(
        "write into /in",
        std::fs::write("/in/new.txt", "x").map(|_| String::new()),
    );
    attempt(
        "overwrite an input",
        std::fs::OpenOptions::new()
            .write(true)
            .open("/in/secret.txt")
            .map(|_| String::new()),
    );
    attempt("read the input", read("/in/secret.txt"));
    let _ = std::fs::remove_file("/out/abs-link");
    let _ = std::fs::remove_file("/out/up-link");
    attempt(
        "list /",
        std::fs::read_dir("/").map(|d| format!("{}", d.count())),
    );
    println!("exists /etc: {}", Path::new("/etc").exists());
}
