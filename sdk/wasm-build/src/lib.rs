//! Builds guest crates for `wasm32-wasip1`: for build scripts ([`build_guests`]) and for
//! `helio pack` ([`build`]). Installs the target with rustup first where it is missing, since
//! rustup does not do it by itself where `RUSTUP_AUTO_INSTALL=0`.
//!
//! ```no_run
//! // build.rs
//! let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("guest");
//! helio_wasm_build::build_guests(&dir, "guests.rs");
//! ```
#![deny(missing_docs)]

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The target guests are built for.
pub const TARGET: &str = "wasm32-wasip1";

/// One binary built for [`TARGET`].
#[derive(Debug, Clone)]
pub struct Guest {
    /// The binary's name.
    pub name: String,
    /// The `.wasm` file.
    pub wasm: PathBuf,
}

/// How to call [`build`].
#[derive(Debug, Clone, Default)]
pub struct BuildOptions {
    /// Where cargo puts its output; `None` is the crate's own `target/`.
    pub target_dir: Option<PathBuf>,
    /// Pass `--locked` (the lock file must exist and be up to date).
    pub locked: bool,
    /// Build only this binary.
    pub bin: Option<String>,
}

/// `--remap-path-prefix` flags that name the sources of the guest whose manifest is
/// `manifest` independently of the machine: the outermost directory above it that holds a
/// `Cargo.toml` (the checkout's root) becomes `/helio`, and cargo's home `/cargo`.
fn remap_flags(manifest: &Path) -> Vec<String> {
    let manifest = manifest
        .canonicalize()
        .unwrap_or_else(|_| manifest.to_path_buf());
    let mut flags = Vec::new();
    if let Some(root) = manifest
        .parent()
        .into_iter()
        .flat_map(Path::ancestors)
        .filter(|dir| dir.join("Cargo.toml").is_file())
        .last()
    {
        flags.push(format!("--remap-path-prefix={}=/helio", root.display()));
    }
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cargo")));
    if let Some(home) = cargo_home {
        flags.push(format!("--remap-path-prefix={}=/cargo", home.display()));
    }
    flags
}

/// Builds the crate or workspace whose manifest is `manifest` in release mode for [`TARGET`]
/// and returns every binary built. Cargo's diagnostics go to standard error.
pub fn build(manifest: &Path, options: &BuildOptions) -> Result<Vec<Guest>, String> {
    ensure_target()?;
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "--release", "--target", TARGET])
        .args(["--message-format", "json-render-diagnostics"])
        .arg("--manifest-path")
        .arg(manifest);
    if options.locked {
        cmd.arg("--locked");
    }
    if let Some(dir) = &options.target_dir {
        cmd.arg("--target-dir").arg(dir);
    }
    if let Some(bin) = &options.bin {
        cmd.args(["--bin", bin]);
    }
    // The module's bytes name source files (in panic locations): name them from where the
    // sources sit, not where this checkout or the cargo registry happens to be, so that the
    // same sources give the same module, digest and fuel on every machine.
    cmd.env(
        "CARGO_ENCODED_RUSTFLAGS",
        remap_flags(manifest).join("\x1f"),
    );
    // An outer build's settings are for the host, not for the guests.
    for var in [
        "RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "RUSTC_WORKSPACE_WRAPPER",
    ] {
        cmd.env_remove(var);
    }
    let mut child = cmd
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    let mut guests = Vec::new();
    for line in std::io::BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.map_err(|e| format!("reading cargo's output: {e}"))?;
        let Ok(msg) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        let is_bin = msg["target"]["kind"]
            .as_array()
            .is_some_and(|kinds| kinds.iter().any(|k| k == "bin"));
        if msg["reason"] == "compiler-artifact"
            && is_bin
            && let (Some(name), Some(wasm)) =
                (msg["target"]["name"].as_str(), msg["executable"].as_str())
        {
            guests.push(Guest {
                name: name.to_string(),
                wasm: PathBuf::from(wasm),
            });
        }
    }
    let status = child
        .wait()
        .map_err(|e| format!("waiting for cargo: {e}"))?;
    if !status.success() {
        return Err(format!(
            "building {} for {TARGET} failed (see cargo's messages above)",
            manifest.display()
        ));
    }
    guests.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(guests)
}

/// For build scripts: builds the workspace at `guest_dir` (with `--locked`) under `OUT_DIR`,
/// and writes `OUT_DIR/<file>` declaring `pub const NAME: &str` (the `.wasm` path) for every
/// binary, its name in upper case with `-` as `_`. Asks cargo to rerun the script when
/// anything in `guest_dir` or any source file a guest was built from changes.
pub fn build_guests(guest_dir: &Path, file: &str) -> Vec<Guest> {
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("run from a build script"));
    println!("cargo:rerun-if-changed={}", guest_dir.display());
    let options = BuildOptions {
        target_dir: Some(out.join("wasm-target")),
        locked: true,
        bin: None,
    };
    let guests = build(&guest_dir.join("Cargo.toml"), &options).unwrap_or_else(|e| panic!("{e}"));
    let mut code = String::new();
    for guest in &guests {
        code.push_str(&format!(
            "/// The `{}` binary, built for {TARGET}.\npub const {}: &str = {:?};\n",
            guest.name,
            guest.name.to_uppercase().replace('-', "_"),
            guest.wasm.display().to_string()
        ));
        // Cargo's dep-info file beside the binary lists every source file it was built from,
        // path dependencies outside `guest_dir` included.
        if let Ok(deps) = std::fs::read_to_string(guest.wasm.with_extension("d")) {
            for source in deps
                .lines()
                .flat_map(|l| l.split_once(": ").map(|(_, d)| d))
            {
                for path in source.split_whitespace() {
                    if !path.contains("/.cargo/registry/") && !path.contains("/rustlib/") {
                        println!("cargo:rerun-if-changed={path}");
                    }
                }
            }
        }
    }
    std::fs::write(out.join(file), code).expect("cannot write the guest list");
    guests
}

/// Installs the `wasm32-wasip1` standard library with rustup when it is missing.
pub fn ensure_target() -> Result<(), String> {
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let libdir = Command::new(&rustc)
        .args(["--print", "target-libdir", "--target", TARGET])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    if libdir.as_deref().is_some_and(Path::is_dir) {
        return Ok(());
    }
    eprintln!("installing the {TARGET} target with rustup");
    let status = Command::new("rustup")
        .args(["target", "add", TARGET])
        .status();
    if matches!(status, Ok(s) if s.success()) {
        Ok(())
    } else {
        Err(format!(
            "the {TARGET} target is missing and `rustup target add {TARGET}` failed"
        ))
    }
}
