//! Many tasks through one pooled sandbox: every task starts from fresh memory, however its
//! slot was reset after the task before.

use helio_runner::{Sandbox, SandboxConfig};
use helio_sdk::{Blake3Hash, TaskManifest};
use serde_json::json;

#[test]
fn a_reused_pool_slot_starts_from_zeroed_memory() {
    // Fails (exit 1) if the words it is about to dirty are not zero, in the first page and
    // in pages past the part a slot keeps resident.
    let wat = r#"(module
        (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
        (memory (export "memory") 1)
        (func (export "_start") (local $p i32)
          (drop (memory.grow (i32.const 160)))
          (local.set $p (i32.const 1000))
          (loop
            (if (i32.load (local.get $p)) (then (call $exit (i32.const 1))))
            (i32.store (local.get $p) (i32.const 42))
            (local.set $p (i32.add (local.get $p) (i32.const 65536)))
            (br_if 0 (i32.lt_u (local.get $p) (i32.const 10485760))))))"#;
    let module = wat::parse_str(wat).unwrap();
    let hash = Blake3Hash::of(&module);
    let task = TaskManifest::from_value(json!({
        "schema_version": 1,
        "module": { "uri": "m.wasm", "blake3": hash.to_string() },
        "limits": { "fuel": 10_000_000 }
    }))
    .unwrap();
    let sandbox = Sandbox::new(SandboxConfig {
        pool_slots: 2,
        ..Default::default()
    })
    .unwrap();
    let prepared = sandbox.prepare(&hash, &module).unwrap();
    let first = sandbox.run(&prepared, &task, vec![]).unwrap();
    for _ in 0..20 {
        let run = sandbox.run(&prepared, &task, vec![]).unwrap();
        assert!(run.report.outcome.is_success(), "{:?}", run.report.outcome);
        assert_eq!(run.report.digest, first.report.digest);
    }
}
