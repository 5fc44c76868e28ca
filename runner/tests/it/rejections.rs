//! Everything that is rejected before guest code runs, with exit status 2.

use super::check::{hash, task, task_bytes};
use helio_test_guests as g;
use serde_json::json;

#[test]
fn manifests_that_break_the_contract_name_the_field() {
    for (pointer, value, words) in [
        (
            "/schema_version",
            json!(2),
            &["schema_version", "not supported"][..],
        ),
        ("/limits/fuel", json!(0), &["limits.fuel"]),
        ("/limits/memory_bytes", json!(100), &["limits.memory_bytes"]),
        ("/name", json!("has space"), &["name"]),
        ("/tier", json!("quantum"), &["tier", "quantum"]),
        (
            "/outputs",
            json!([{ "name": "../x", "max_bytes": 1 }]),
            &["outputs[0].name"],
        ),
        (
            "/outputs",
            json!([{ "name": "a", "max_bytes": 1 }, { "name": "a", "max_bytes": 2 }]),
            &["outputs[1].name", "twice"],
        ),
        ("/limts", json!({}), &["unknown field", "limts"]),
        ("/module/blake3", json!("abc"), &["module.blake3", "64"]),
        ("/env", json!({ "A=B": "x" }), &["env.A=B"]),
        ("/module/uri", json!("ftp://x/y"), &["module.uri", "ftp"]),
    ] {
        let run = task(g::HELLO).set(pointer, value).exec();
        run.assert_rejected(words);
    }
}

#[test]
fn text_that_is_not_json_is_rejected() {
    let t = task(g::HELLO);
    let path = t.manifest_path();
    std::fs::write(&path, "{ not json").unwrap();
    let out = super::check::runner()
        .arg("exec")
        .arg(&path)
        .arg("--json")
        .arg("--no-cache")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stdout).contains("not valid JSON"));
}

#[test]
fn a_module_hash_mismatch_is_rejected_before_anything_runs() {
    let run = task(g::HELLO)
        .set("/module/blake3", json!(hash(b"something else")))
        .exec();
    run.assert_rejected(&["module", "BLAKE3 mismatch"]);
}

#[test]
fn an_input_hash_mismatch_names_the_input() {
    let t = task(g::HELLO)
        .input("name.txt", b"Ada")
        .output("greeting.txt", 100);
    std::fs::write(t.dir.path().join("name.txt"), b"Eve").unwrap();
    t.exec()
        .assert_rejected(&["input \"name.txt\"", "BLAKE3 mismatch"]);
}

#[test]
fn a_missing_input_is_rejected() {
    let t = task(g::HELLO)
        .input("name.txt", b"Ada")
        .output("greeting.txt", 100);
    std::fs::remove_file(t.dir.path().join("name.txt")).unwrap();
    t.exec()
        .assert_rejected(&["input \"name.txt\"", "cannot read"]);
}

/// An input or a module that is a FIFO (or a device) is rejected at once: the runner never
/// waits at `open` for a writer that will not come.
#[cfg(unix)]
#[test]
fn a_fifo_or_a_device_is_rejected_at_once() {
    use std::time::{Duration, Instant};
    let t = task(g::HELLO)
        .input("name.txt", b"Ada")
        .output("greeting.txt", 100);
    let fifo = t.dir.path().join("name.txt");
    std::fs::remove_file(&fifo).unwrap();
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    let mut manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(t.manifest_path()).unwrap()).unwrap();
    manifest["module"]["uri"] = json!("/dev/zero");
    let device = t.dir.path().join("device.json");
    std::fs::write(&device, manifest.to_string()).unwrap();
    for (path, words) in [
        (t.manifest_path(), ["(name.txt)", "not a regular file"]),
        (device, ["module", "not a regular file"]),
    ] {
        let mut child = super::check::runner()
            .args(["exec", "--json", "--no-cache"])
            .arg(&path)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let start = Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if start.elapsed() > Duration::from_secs(60) {
                child.kill().unwrap();
                panic!("runner exec still waits on {words:?} after a minute");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut out = String::new();
        std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut out).unwrap();
        assert_eq!(status.code(), Some(2), "{out}");
        for w in words {
            assert!(out.contains(w), "{w}: {out}");
        }
    }
}

/// A module file larger than the compile bound on module size is refused from its size,
/// before a byte of it is read: a sparse file of 1 GiB here, which the runner could not read
/// into memory within half of that. (The peak measured also holds this test process's own
/// peak, see `run_measured`, so the bound stays far above it.)
#[test]
fn a_module_past_the_size_bound_is_refused_before_it_is_read() {
    let t = task(g::HELLO);
    let module = std::fs::File::options()
        .write(true)
        .open(t.dir.path().join("module.wasm"))
        .unwrap();
    module.set_len(1 << 30).unwrap();
    let run = t.exec();
    run.assert_rejected(&["module", "1073741824 bytes, more than the 67108864"]);
    assert!(run.peak_kib < 512 << 10, "{} KiB", run.peak_kib);
}

#[test]
fn invalid_and_truncated_modules_are_rejected() {
    task_bytes(b"this is not wasm")
        .exec()
        .assert_rejected(&["module", "not a WebAssembly binary"]);
    let hello = helio_test_guests::bytes(g::HELLO);
    task_bytes(&hello[..hello.len() / 2])
        .exec()
        .assert_rejected(&["module:"]);
    task_bytes(&[]).exec().assert_rejected(&["module"]);
}

/// A module of `n` functions, each with `locals` i32 locals and a body that pushes `consts`
/// constants before dropping them all (so that many operands are live at once), and a
/// `_start` that returns.
fn compile_bomb(n: u32, locals: u32, consts: u32) -> Vec<u8> {
    use wasm_encoder::{Function, Instruction, ValType};
    super::check::command((0..n).map(|_| {
        let mut f = Function::new([(locals, ValType::I32)]);
        for _ in 0..consts {
            f.instruction(&Instruction::I32Const(1));
        }
        for _ in 0..consts {
            f.instruction(&Instruction::Drop);
        }
        f.instruction(&Instruction::End);
        f
    }))
}

/// A compile bomb of each shape (very many functions, one huge body, a function of very many
/// locals) is refused before wasmtime compiles it, naming the bound: in the child's peak
/// resident memory, far below the gigabytes compiling them took.
#[cfg(unix)]
#[test]
fn compile_bombs_are_refused_before_compiling() {
    for (bytes, words) in [
        (compile_bomb(999_999, 0, 0), "defines 999999 functions"),
        (compile_bomb(1, 0, 2_000_000), "function 0's body is"),
        (compile_bomb(1, 40_000, 0), "has 40000 locals"),
    ] {
        let run = task_bytes(&bytes).exec();
        run.assert_rejected(&["module", words, "more than the"]);
        // A generous bound, where compiling the first bomb took 5.35 GB.
        assert!(run.peak_kib < 256 << 10, "{words}: {} KiB", run.peak_kib);
    }
}

/// Each shape of bomb just inside the bounds compiles, and runs, in bounded memory: the
/// bounds are what keeps compiling small, not luck.
#[cfg(unix)]
#[test]
fn compile_bombs_inside_the_bounds_compile_in_bounded_memory() {
    let bounds = helio_runner::CompileBounds::default();
    // An i32.const of 1 is two bytes, a drop one.
    let operands = (bounds.body_bytes as u32 - 16) / 3;
    for (bytes, what) in [
        (compile_bomb(bounds.functions, 0, 0), "the most functions"),
        (compile_bomb(1, 0, operands), "the longest body"),
        (compile_bomb(1, bounds.locals as u32, 0), "the most locals"),
    ] {
        let run = task_bytes(&bytes).exec();
        assert_eq!(run.outcome(), "exited", "{what}: {:#}", run.json);
        assert!(run.peak_kib < 1 << 20, "{what}: {} KiB", run.peak_kib);
    }
}

#[test]
fn imports_outside_wasi_preview1_are_rejected() {
    for (import, words) in [
        (r#"(import "env" "now" (func))"#, &["`env`.`now`"][..]),
        (
            r#"(import "wasi_snapshot_preview1" "not_a_function" (func))"#,
            &["not_a_function"],
        ),
        (
            r#"(import "wasi_snapshot_preview1" "fd_write" (func (param i64)))"#,
            &["fd_write"],
        ),
        (
            r#"(import "wasi_snapshot_preview1" "mem" (memory 1))"#,
            &["`mem`"],
        ),
        // The pause the sandbox's rewrite adds is its own: a module may not call it.
        (
            r#"(import "helio:sandbox" "pause" (func))"#,
            &["helio:sandbox.pause", "only the sandbox"],
        ),
    ] {
        let module =
            format!(r#"(module {import} (memory (export "memory") 1) (func (export "_start")))"#);
        task(&module).exec().assert_rejected(words);
    }
}

#[test]
fn a_module_that_is_not_a_wasi_command_is_rejected() {
    task(r#"(module (memory (export "memory") 1))"#)
        .exec()
        .assert_rejected(&["_start"]);
    task(r#"(module (func (export "_start")))"#)
        .exec()
        .assert_rejected(&["memory"]);
    task(r#"(module (memory (export "memory") 1) (func (export "_start") (param i32)))"#)
        .exec()
        .assert_rejected(&["_start"]);
}

#[test]
fn threads_and_shared_memory_are_refused() {
    task(r#"(module (memory (export "memory") 1 1 shared) (func (export "_start")))"#)
        .exec()
        .assert_rejected(&["module"]);
}
