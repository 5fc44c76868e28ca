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

/// A pool's address-space mappings grow with its slots, not with wasmtime's defaults: many
/// runners (or one runner with many slots) in one process must stay far from the kernel's
/// limit on mappings per process (65,530 by default).
#[cfg(target_os = "linux")]
#[test]
fn a_pool_maps_memory_in_proportion_to_its_slots() {
    let mappings = || {
        std::fs::read_to_string("/proc/self/maps")
            .unwrap()
            .lines()
            .count()
    };
    let before = mappings();
    let sandboxes: Vec<Sandbox> = (0..4)
        .map(|_| {
            Sandbox::new(SandboxConfig {
                pool_slots: 4,
                ..Default::default()
            })
            .unwrap()
        })
        .collect();
    let added = mappings().saturating_sub(before);
    // Other tests' threads map and unmap at the same time; a pool that kept wasmtime's
    // default of 1,000 fiber stacks added about 1,000 mappings each.
    assert!(added < 4 * 250, "four 4-slot pools added {added} mappings");
    drop(sandboxes);
}

/// A sandbox keeps at most `PREPARED_HELD` prepared modules in memory, dropping the least
/// recently used: one prepared again between the others stays, the first others go.
#[test]
fn prepared_modules_in_memory_are_bounded_least_recently_used_first() {
    let sandbox = Sandbox::new(SandboxConfig::default()).unwrap();
    // The same command with a custom section naming it: a distinct module each.
    let module = |i: u32| {
        let mut bytes = super::check::command([{
            let mut f = wasm_encoder::Function::new([]);
            f.instruction(&wasm_encoder::Instruction::End);
            f
        }]);
        let name = format!("m{i}");
        bytes.extend([0, 1 + name.len() as u8, name.len() as u8]);
        bytes.extend(name.as_bytes());
        bytes
    };
    let prepare = |bytes: &[u8]| sandbox.prepare(&Blake3Hash::of(bytes), bytes).unwrap();
    let keep = module(0);
    let kept = prepare(&keep);
    let first_other = prepare(&module(1));
    for i in 2..(helio_runner::PREPARED_HELD as u32 + 20) {
        prepare(&module(i));
        assert!(std::sync::Arc::ptr_eq(&kept, &prepare(&keep)));
        assert!(sandbox.prepared_held() <= helio_runner::PREPARED_HELD);
    }
    assert_eq!(sandbox.prepared_held(), helio_runner::PREPARED_HELD);
    // The first other was dropped: prepared again, it is compiled anew.
    assert!(!std::sync::Arc::ptr_eq(&first_other, &prepare(&module(1))));
}
