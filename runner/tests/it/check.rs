//! The one place tests build a task and call `runner exec`.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};

/// A task being set up in a temporary directory.
pub struct Task {
    pub dir: tempfile::TempDir,
    pub manifest: Value,
    cache: Option<PathBuf>,
}

/// What `runner exec --json` said.
#[derive(Debug)]
pub struct Exec {
    pub status: i32,
    pub json: Value,
    /// The child's peak resident memory, in KiB, from its own rusage.
    pub peak_kib: i64,
}

impl Exec {
    pub fn outcome(&self) -> &str {
        self.json["outcome"].as_str().unwrap()
    }

    pub fn digest(&self) -> &str {
        self.json["digest"].as_str().unwrap()
    }

    pub fn error(&self) -> &str {
        self.json["error"].as_str().unwrap_or("")
    }

    pub fn fuel(&self) -> u64 {
        self.json["fuel_consumed"].as_u64().unwrap()
    }

    /// Asserts the run was rejected with a message containing every one of `words`.
    pub fn assert_rejected(&self, words: &[&str]) {
        assert_eq!(self.status, 2, "{:#}", self.json);
        assert_eq!(self.outcome(), "rejected", "{:#}", self.json);
        for w in words {
            assert!(
                self.error().contains(w),
                "error {:?} lacks {w:?}",
                self.error()
            );
        }
    }
}

/// A WASI command: one page of memory exported as `memory`, and `functions`, each of type
/// `() -> ()`, the first exported as `_start`.
pub fn command(functions: impl IntoIterator<Item = wasm_encoder::Function>) -> Vec<u8> {
    use wasm_encoder::{
        CodeSection, ExportKind, ExportSection, FunctionSection, MemorySection, MemoryType, Module,
        TypeSection,
    };
    let mut types = TypeSection::new();
    types.ty().function([], []);
    let mut declared = FunctionSection::new();
    let mut code = CodeSection::new();
    for f in functions {
        declared.function(0);
        code.function(&f);
    }
    let mut memory = MemorySection::new();
    memory.memory(MemoryType {
        minimum: 1,
        maximum: None,
        memory64: false,
        shared: false,
        page_size_log2: None,
    });
    let mut exports = ExportSection::new();
    exports.export("_start", ExportKind::Func, 0);
    exports.export("memory", ExportKind::Memory, 0);
    let mut m = Module::new();
    m.section(&types)
        .section(&declared)
        .section(&memory)
        .section(&exports)
        .section(&code);
    m.finish()
}

pub fn hash(bytes: &[u8]) -> String {
    blake3::hash(bytes).to_hex().to_string()
}

/// A task running `module` (a path to a `.wasm`, or WAT text) with ample fuel and no I/O.
pub fn task(module: &str) -> Task {
    let bytes = if module.ends_with(".wasm") {
        helio_test_guests::bytes(module)
    } else {
        wat::parse_str(module).expect("test WAT parses")
    };
    task_bytes(&bytes)
}

/// A task running a module given as bytes.
pub fn task_bytes(bytes: &[u8]) -> Task {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("module.wasm"), bytes).unwrap();
    let manifest = json!({
        "schema_version": 1,
        "name": "test",
        "module": { "uri": "module.wasm", "blake3": hash(bytes) },
        "limits": { "fuel": 2_000_000_000u64 }
    });
    Task {
        dir,
        manifest,
        cache: None,
    }
}

impl Task {
    /// Adds an input file with the right hash.
    pub fn input(mut self, name: &str, bytes: &[u8]) -> Self {
        std::fs::write(self.dir.path().join(name), bytes).unwrap();
        let entry = json!({ "name": name, "uri": name, "blake3": hash(bytes) });
        self.push("inputs", entry);
        self
    }

    /// Declares an output.
    pub fn output(mut self, name: &str, max_bytes: u64) -> Self {
        self.push("outputs", json!({ "name": name, "max_bytes": max_bytes }));
        self
    }

    pub fn args(mut self, args: &[&str]) -> Self {
        self.manifest["args"] = json!(args);
        self
    }

    /// Sets a field by a `/`-separated JSON pointer.
    pub fn set(mut self, pointer: &str, value: Value) -> Self {
        let (parent, key) = pointer.rsplit_once('/').unwrap();
        let target = if parent.is_empty() {
            &mut self.manifest
        } else {
            self.manifest.pointer_mut(parent).unwrap()
        };
        target[key] = value;
        self
    }

    pub fn cache(mut self, dir: &Path) -> Self {
        self.cache = Some(dir.to_path_buf());
        self
    }

    fn push(&mut self, field: &str, entry: Value) {
        if self.manifest.get(field).is_none() {
            self.manifest[field] = json!([]);
        }
        self.manifest[field].as_array_mut().unwrap().push(entry);
    }

    pub fn manifest_path(&self) -> PathBuf {
        let path = self.dir.path().join("task.json");
        std::fs::write(&path, serde_json::to_string_pretty(&self.manifest).unwrap()).unwrap();
        path
    }

    /// Runs `runner exec --json` on the task.
    pub fn exec(&self) -> Exec {
        self.exec_with(&[], |_| {})
    }

    /// Runs `runner exec` without `--json` and returns what it printed on standard output:
    /// the guest's own output, then the summary.
    pub fn exec_text(&self) -> String {
        let out = runner()
            .args(["exec", "--no-cache"])
            .arg(self.manifest_path())
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs `runner exec --json` with extra flags and a chance to adjust the command.
    pub fn exec_with(&self, flags: &[&str], adjust: impl FnOnce(&mut Command)) -> Exec {
        let mut cmd = runner();
        cmd.arg("exec")
            .arg(self.manifest_path())
            .arg("--json")
            .args(flags);
        match &self.cache {
            Some(dir) => cmd.arg("--cache-dir").arg(dir),
            None => cmd.arg("--no-cache"),
        };
        adjust(&mut cmd);
        let (status, stdout, stderr, peak_kib) = run_measured(cmd);
        let json: Value = serde_json::from_str(stdout.trim())
            .unwrap_or_else(|e| panic!("runner printed no JSON ({e}): {stdout}\nstderr: {stderr}"));
        assert_eq!(
            stdout.trim().lines().count(),
            1,
            "--json prints one line: {stdout}"
        );
        Exec {
            status,
            json,
            peak_kib,
        }
    }
}

/// Runs `cmd` to its end and returns its exit status, standard output and error, and its peak
/// resident memory (waited for with `wait4`, so no other child's is counted). The peak is at
/// least this test process's own: the child is started by `posix_spawn`, which shares this
/// process's memory until `exec`, and the kernel keeps that memory's high-water mark as the
/// child's starting peak. So a bound checked against it must stay well above what the test
/// binary itself uses (tens of MiB with every test running).
#[allow(clippy::zombie_processes)] // reaped by `wait4`, which `Child::wait` cannot replace
fn run_measured(mut cmd: Command) -> (i32, String, String, i64) {
    use std::io::Read;
    use std::process::Stdio;
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err_pipe = child.stderr.take().unwrap();
    let errors = std::thread::spawn(move || {
        let mut text = String::new();
        err_pipe.read_to_string(&mut text).unwrap();
        text
    });
    let mut stdout = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    let stderr = errors.join().unwrap();
    let mut status = 0;
    // SAFETY: an all-zero rusage is valid, and `wait4` reaps only this child, which `child`
    // never waits for after this.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let pid = child.id() as libc::pid_t;
    // SAFETY: the pointers are to live locals.
    let reaped = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(
        reaped,
        pid,
        "wait4 failed: {}",
        std::io::Error::last_os_error()
    );
    assert!(
        libc::WIFEXITED(status),
        "the runner died: status {status}\n{stderr}"
    );
    (libc::WEXITSTATUS(status), stdout, stderr, usage.ru_maxrss)
}

pub fn runner() -> Command {
    Command::new(env!("CARGO_BIN_EXE_runner"))
}
