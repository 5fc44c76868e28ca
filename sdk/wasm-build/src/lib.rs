//! For build scripts: builds a separate Cargo workspace of guest crates for `wasm32-wasip1`
//! (installing the target with rustup first where it is missing, since rustup does not do it
//! by itself where `RUSTUP_AUTO_INSTALL=0`) and writes a Rust file with one path constant per
//! guest binary.
//!
//! ```no_run
//! // build.rs
//! let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("guest");
//! helio_wasm_build::build_guests(&dir, "guests.rs");
//! ```
#![deny(missing_docs)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// The target guests are built for.
pub const TARGET: &str = "wasm32-wasip1";

/// Builds the workspace at `guest_dir` in release mode for [`TARGET`] under `OUT_DIR`, and
/// writes `OUT_DIR/<file>` declaring `pub const NAME: &str` (the `.wasm` path) for every
/// `src/bin/<name>.rs`. Returns the guests' names and paths.
pub fn build_guests(guest_dir: &Path, file: &str) -> Vec<(String, PathBuf)> {
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("run from a build script"));
    for watched in ["src", "Cargo.toml", "Cargo.lock"] {
        println!(
            "cargo:rerun-if-changed={}",
            guest_dir.join(watched).display()
        );
    }
    ensure_target();
    let target_dir = out.join("wasm-target");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args([
        "build",
        "--release",
        "--locked",
        "--target",
        TARGET,
        "--manifest-path",
    ])
    .arg(guest_dir.join("Cargo.toml"))
    .arg("--target-dir")
    .arg(&target_dir);
    // The outer build's settings are for the host, not for the guests.
    for var in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "RUSTC_WORKSPACE_WRAPPER",
    ] {
        cmd.env_remove(var);
    }
    let status = cmd.status().expect("cannot run cargo to build the guests");
    assert!(
        status.success(),
        "building {} for {TARGET} failed",
        guest_dir.display()
    );

    let bin_dir = target_dir.join(TARGET).join("release");
    let mut names: Vec<String> = std::fs::read_dir(guest_dir.join("src/bin"))
        .expect("a guest workspace has src/bin")
        .map(|e| e.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "rs"))
        .map(|path| path.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let mut code = String::new();
    let mut guests = Vec::new();
    for name in names {
        let wasm = bin_dir.join(format!("{name}.wasm"));
        assert!(wasm.exists(), "{} was not built", wasm.display());
        code.push_str(&format!(
            "/// `src/bin/{name}.rs`, built for {TARGET}.\npub const {}: &str = {:?};\n",
            name.to_uppercase(),
            wasm.display().to_string()
        ));
        guests.push((name, wasm));
    }
    std::fs::write(out.join(file), code).expect("cannot write the guest list");
    guests
}

/// Installs the `wasm32-wasip1` standard library with rustup when it is missing.
fn ensure_target() {
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let libdir = Command::new(&rustc)
        .args(["--print", "target-libdir", "--target", TARGET])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    if libdir.as_deref().is_some_and(Path::is_dir) {
        return;
    }
    println!("cargo:warning=installing the {TARGET} target with rustup");
    let status = Command::new("rustup")
        .args(["target", "add", TARGET])
        .status();
    assert!(
        matches!(status, Ok(s) if s.success()),
        "the {TARGET} target is missing and `rustup target add {TARGET}` failed"
    );
}
