//! Canonicalizing NaNs where they become observable gives the same results as canonicalizing
//! after every operation, for NaNs made by arithmetic.

use std::sync::Arc;

use helio_runner::{CANONICAL_F32, CANONICAL_F64, NanMode, RunOutput, Sandbox, SandboxConfig};
use helio_sdk::{Blake3Hash, TaskManifest};
use serde_json::json;

fn run(mode: NanMode, module: &[u8], outputs: serde_json::Value) -> RunOutput {
    let task = TaskManifest::from_value(json!({
        "schema_version": 1,
        "module": { "uri": "m.wasm", "blake3": Blake3Hash::of(module).to_hex() },
        "outputs": outputs,
        "limits": { "fuel": 100_000_000u64 }
    }))
    .unwrap();
    let sandbox = Sandbox::new(SandboxConfig {
        nan: mode,
        ..Default::default()
    })
    .unwrap();
    let prepared = sandbox.prepare(&Blake3Hash::of(module), module).unwrap();
    let out = sandbox
        .run(&prepared, &task, Vec::<(helio_sdk::Name, Arc<[u8]>)>::new())
        .unwrap();
    assert!(out.report.outcome.is_success(), "{:?}", out.report.outcome);
    out
}

/// A WAT module that runs `body` (with `$zero` an f64 0.0 and `$zero32` an f32 0.0 loaded
/// from memory, so nothing folds at compile time) and writes bytes 64..64+len to stdout.
fn wat(body: &str, len: u32) -> Vec<u8> {
    wat::parse_str(format!(
        r#"(module
            (import "wasi_snapshot_preview1" "fd_write" (func $w (param i32 i32 i32 i32) (result i32)))
            (memory (export "memory") 1)
            (func (export "_start") (local $zero f64) (local $zero32 f32)
                (local.set $zero (f64.load (i32.const 1024)))
                (local.set $zero32 (f32.load (i32.const 1024)))
                {body}
                (i32.store (i32.const 0) (i32.const 64))
                (i32.store (i32.const 4) (i32.const {len}))
                (drop (call $w (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))"#
    ))
    .unwrap()
}

fn words(bytes: &[u8]) -> Vec<u64> {
    bytes
        .chunks(8)
        .map(|c| u64::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

#[test]
fn every_sink_sees_the_canonical_nan_in_both_modes() {
    let nan = "(f64.div (local.get $zero) (local.get $zero))";
    let nan32 = "(f32.div (local.get $zero32) (local.get $zero32))";
    let body = format!(
        "(f64.store (i32.const 64) {nan})
         (i64.store (i32.const 72) (i64.reinterpret_f64 (f64.sqrt (f64.sub (local.get $zero) (f64.const 1)))))
         (f64.store (i32.const 80) (f64.copysign (f64.const 1) {nan}))
         (v128.store (i32.const 88) (f64x2.splat (f64.mul (f64.div (f64.const 1) (local.get $zero)) (local.get $zero))))
         (v128.store (i32.const 104) (f64x2.div (f64x2.splat (local.get $zero)) (f64x2.splat (local.get $zero))))
         (f32.store (i32.const 120) {nan32})
         (i32.store (i32.const 124) (i32.reinterpret_f32 (f32.sqrt (f32.const -2))))
         (v128.store (i32.const 128) (f32x4.sqrt (f32x4.splat (f32.sub (local.get $zero32) (f32.const 1)))))
         (v128.store (i32.const 144) (f64x2.replace_lane 1 (f64x2.splat (f64.const 2)) {nan}))"
    );
    let module = wat(&body, 96);
    let sinks = run(NanMode::AtSinks, &module, json!([]));
    let every = run(NanMode::EveryOperation, &module, json!([]));
    assert_eq!(sinks.stdout, every.stdout);
    let w = words(&sinks.stdout);
    let c32x2 = (CANONICAL_F32 as u64) << 32 | CANONICAL_F32 as u64;
    let expected = [
        CANONICAL_F64,
        CANONICAL_F64,
        1.0f64.to_bits(),
        CANONICAL_F64,
        CANONICAL_F64,
        CANONICAL_F64,
        CANONICAL_F64,
        c32x2,
        c32x2,
        c32x2,
        2.0f64.to_bits(),
        CANONICAL_F64,
    ];
    for (i, (got, want)) in w.iter().zip(expected).enumerate() {
        assert_eq!(*got, want, "word {i}: {got:016x} != {want:016x}");
    }
}

#[test]
fn a_rust_guest_making_nans_gives_the_same_bits_in_both_modes() {
    let module = helio_test_guests::bytes(helio_test_guests::NANS);
    let outputs = json!([{ "name": "nans.bin", "max_bytes": 4096 }]);
    let sinks = run(NanMode::AtSinks, &module, outputs.clone());
    let every = run(NanMode::EveryOperation, &module, outputs);
    assert_eq!(sinks.stdout, every.stdout);
    let bytes = |o: &RunOutput| {
        o.outputs
            .iter()
            .map(|f| f.read_all().unwrap())
            .collect::<Vec<_>>()
    };
    assert_eq!(bytes(&sinks), bytes(&every));
    let text = String::from_utf8(sinks.stdout).unwrap();
    assert!(
        text.lines().any(|l| l == format!("{CANONICAL_F64:016x}")),
        "{text}"
    );
    // x86-64 hardware makes 0xfff8… for 0/0; nothing of that sign survives.
    assert!(!text.contains("fff8000000000000"), "{text}");
}

#[test]
fn float_kernels_give_the_same_answer_in_both_modes() {
    let module = helio_test_guests::bytes(helio_test_guests::NBODY);
    let sinks = run(NanMode::AtSinks, &module, json!([]));
    let every = run(NanMode::EveryOperation, &module, json!([]));
    assert_eq!(sinks.stdout, every.stdout);
}

#[test]
fn where_the_modes_differ_both_are_deterministic() {
    // Negating a NaN is a bit operation: canonicalizing after every operation keeps the sign
    // it gives; canonicalizing at the store clears it. Both are the same on every machine.
    let module = wat(
        "(f64.store (i32.const 64) (f64.neg (f64.div (local.get $zero) (local.get $zero))))",
        8,
    );
    let sinks = run(NanMode::AtSinks, &module, json!([]));
    let every = run(NanMode::EveryOperation, &module, json!([]));
    assert_eq!(words(&sinks.stdout), [CANONICAL_F64]);
    assert_eq!(words(&every.stdout), [CANONICAL_F64 | 1 << 63]);
}
