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
