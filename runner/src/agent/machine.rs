//! What a runner knows of its own machine: its key (kept in its state directory), its speed in
//! fuel per second, and its memory.

use super::*;

const CALIBRATION_ITERATIONS: i64 = 2_000_000;

/// Reads the runner's key from `dir/runner.key`, or makes one and keeps it there (readable
/// by its owner only).
pub fn load_or_create_key(dir: &Path) -> std::io::Result<RunnerKey> {
    let (secret, _) = load_or_create_secret(&dir.join("runner.key"), "a runner key")?;
    Ok(RunnerKey::from_secret(secret))
}

/// The owner key kept at `path`, made (and kept, readable by its owner only) when there is
/// none; with whether it was made now.
pub fn load_or_create_owner_key(path: &Path) -> std::io::Result<(OwnerKey, bool)> {
    let (secret, made) = load_or_create_secret(path, "an owner key")?;
    Ok((OwnerKey::from_secret(secret), made))
}

/// Makes a new owner key at `path`; refuses to replace one (it holds an owner's name and
/// credits: a lost key is a lost account).
pub fn create_owner_key(path: &Path) -> std::io::Result<OwnerKey> {
    if path.exists() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::AlreadyExists,
            format!(
                "{} already holds an owner key; it is never replaced (move it away first to make a new owner)",
                path.display()
            ),
        ));
    }
    load_or_create_owner_key(path).map(|(key, _)| key)
}

/// The 32 secret bytes kept in hex at `path`, made and kept (written whole, then renamed)
/// when the file is not there.
fn load_or_create_secret(path: &Path, what: &str) -> std::io::Result<([u8; 32], bool)> {
    match std::fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let secret = wire::from_hex(text.trim())
                .and_then(|b| <[u8; 32]>::try_from(b).ok())
                .ok_or_else(|| {
                    std::io::Error::other(format!(
                        "{} does not hold {what} (64 hex digits)",
                        path.display()
                    ))
                })?;
            Ok((secret, false))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)?;
            }
            let mut secret = [0u8; 32];
            getrandom::fill(&mut secret).map_err(|e| std::io::Error::other(e.to_string()))?;
            let mut tmp = path.as_os_str().to_owned();
            tmp.push(".tmp");
            let tmp = std::path::PathBuf::from(tmp);
            {
                use std::io::Write;
                let mut options = std::fs::OpenOptions::new();
                options.write(true).create(true).truncate(true);
                #[cfg(unix)]
                std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
                let mut file = options.open(&tmp)?;
                file.write_all(wire::to_hex(&secret).as_bytes())?;
                file.sync_all()?;
            }
            std::fs::rename(&tmp, path)?;
            Ok((secret, true))
        }
        Err(e) => Err(e),
    }
}

/// A small counting loop, run at start to measure this machine's speed in fuel per second.
pub(super) fn calibration_module() -> Vec<u8> {
    use wasm_encoder::{
        BlockType, CodeSection, ExportKind, ExportSection, Function, FunctionSection,
        Instruction as I, MemorySection, MemoryType, Module, TypeSection, ValType,
    };
    let mut module = Module::new();
    let mut types = TypeSection::new();
    types.ty().function([], []);
    module.section(&types);
    let mut funcs = FunctionSection::new();
    funcs.function(0);
    module.section(&funcs);
    let mut memories = MemorySection::new();
    memories.memory(MemoryType {
        minimum: 1,
        maximum: Some(1),
        memory64: false,
        shared: false,
        page_size_log2: None,
    });
    module.section(&memories);
    let mut exports = ExportSection::new();
    exports.export("_start", ExportKind::Func, 0);
    exports.export("memory", ExportKind::Memory, 0);
    module.section(&exports);
    let mut code = CodeSection::new();
    let mut f = Function::new([(2, ValType::I64)]);
    f.instruction(&I::I64Const(CALIBRATION_ITERATIONS))
        .instruction(&I::LocalSet(0))
        .instruction(&I::Loop(BlockType::Empty))
        .instruction(&I::LocalGet(1))
        .instruction(&I::LocalGet(0))
        .instruction(&I::I64Xor)
        .instruction(&I::I64Const(0x9e37_79b9))
        .instruction(&I::I64Mul)
        .instruction(&I::LocalSet(1))
        .instruction(&I::LocalGet(0))
        .instruction(&I::I64Const(1))
        .instruction(&I::I64Sub)
        .instruction(&I::LocalTee(0))
        .instruction(&I::I64Eqz)
        .instruction(&I::BrIf(1))
        .instruction(&I::Br(0))
        .instruction(&I::End)
        .instruction(&I::End);
    code.function(&f);
    module.section(&code);
    module.finish()
}

/// Runs the calibration task and returns this machine's fuel per second.
pub fn calibrate(sandbox: &Sandbox) -> Result<u64, String> {
    let wasm = calibration_module();
    let hash = Blake3Hash::of(&wasm);
    let manifest = TaskManifest::from_value(serde_json::json!({
        "schema_version": 1,
        "name": "calibration",
        "module": { "uri": "calibration.wasm", "blake3": hash.to_string() },
        "limits": { "fuel": 1_000_000_000u64, "wall_seconds": 10 },
    }));
    let manifest = manifest.map_err(|e| format!("the calibration task: {e}"))?;
    let task = LoadedTask {
        manifest,
        module: wasm.into(),
        inputs: Vec::new(),
    };
    // The first run compiles; the second measures.
    task.run(sandbox)
        .map_err(|e| format!("the calibration task: {e}"))?;
    let start = Instant::now();
    let out = task
        .run(sandbox)
        .map_err(|e| format!("the calibration task: {e}"))?;
    if !out.report.outcome.is_success() {
        return Err(format!(
            "the calibration task ended {:?}",
            out.report.outcome
        ));
    }
    let secs = start.elapsed().as_secs_f64().max(1e-6);
    Ok((out.report.fuel_consumed as f64 / secs) as u64)
}

/// The machine's memory in bytes, on every platform `sysinfo` knows (Linux, macOS,
/// Windows, the BSDs); 0 where it cannot tell.
pub fn total_memory() -> u64 {
    use sysinfo::{MemoryRefreshKind, RefreshKind, System};
    System::new_with_specifics(
        RefreshKind::nothing().with_memory(MemoryRefreshKind::nothing().with_ram()),
    )
    .map_or(0, |s| s.total_memory())
}

#[cfg(test)]
mod tests {
    /// On Linux, the machine's memory is what the kernel says in `/proc/meminfo`.
    #[cfg(target_os = "linux")]
    #[test]
    fn the_machines_memory_is_the_kernels_figure() {
        let info = std::fs::read_to_string("/proc/meminfo").unwrap();
        let line = info.lines().find(|l| l.starts_with("MemTotal:")).unwrap();
        let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
        assert_eq!(super::total_memory(), kib * 1024);
    }
}
