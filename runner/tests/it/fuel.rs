//! Fuel: Helio meters it with checks its module rewrite inserts, in wasmtime's unit, and
//! stops loops and recursion alike when it runs out.

use serde_json::json;
use wasmtime::{Config, Engine, Instance, Module, Store};

use super::check::task;

/// Runs `wat` (a module importing nothing) in plain wasmtime with wasmtime's own fuel, and
/// returns the fuel `_start` consumed.
fn wasmtime_fuel(wat: &str) -> u64 {
    let mut config = Config::new();
    config.consume_fuel(true);
    let engine = Engine::new(&config).unwrap();
    let module = Module::new(&engine, wat::parse_str(wat).unwrap()).unwrap();
    let mut store = Store::new(&engine, ());
    let budget = 1_000_000_000;
    store.set_fuel(budget).unwrap();
    let instance = Instance::new(&mut store, &module, &[]).unwrap();
    let start = instance
        .get_typed_func::<(), ()>(&mut store, "_start")
        .unwrap();
    start.call(&mut store, ()).unwrap();
    budget - store.get_fuel().unwrap()
}

fn module(funcs: &str) -> String {
    format!(r#"(module (memory (export "memory") 1) {funcs})"#)
}

#[test]
fn fuel_is_counted_in_wasmtimes_unit() {
    let programs = [
        // A counted loop.
        r#"(func (export "_start") (local i32)
            (loop (local.set 0 (i32.add (local.get 0) (i32.const 1)))
                  (br_if 0 (i32.lt_u (local.get 0) (i32.const 1000)))))"#,
        // Both arms of an if, a block left early, a br_table, select and drop.
        r#"(func (export "_start") (local i32 i32)
            (loop
              (if (i32.and (local.get 0) (i32.const 1))
                (then (local.set 1 (i32.add (local.get 1) (i32.const 3))))
                (else (local.set 1 (i32.sub (local.get 1) (i32.const 1)))))
              (block (br_if 0 (i32.eqz (local.get 0))) (drop (i32.const 7)) (nop))
              (block (block (block
                (br_table 0 1 2 (i32.rem_u (local.get 0) (i32.const 3))))
                (local.set 1 (select (local.get 1) (i32.const 0) (local.get 0))))
                (br 0))
              (local.set 0 (i32.add (local.get 0) (i32.const 1)))
              (br_if 0 (i32.lt_u (local.get 0) (i32.const 500)))))"#,
        // A function left by branches to its own label (br, br_if, br_table), called in a
        // loop: its fuel must reach the caller as a return's does.
        r#"(func $f (param i32)
            (br_if 0 (i32.eqz (local.get 0)))
            (block (block
              (br_table 0 1 2 (i32.rem_u (local.get 0) (i32.const 3)))))
            (br 0))
           (func (export "_start") (local i32)
            (loop
              (call $f (local.get 0))
              (local.set 0 (i32.add (local.get 0) (i32.const 1)))
              (br_if 0 (i32.lt_u (local.get 0) (i32.const 300)))))"#,
        // Calls, returns and recursion.
        r#"(func $fib (param i32) (result i32)
            (if (i32.lt_u (local.get 0) (i32.const 2)) (then (return (local.get 0))))
            (i32.add (call $fib (i32.sub (local.get 0) (i32.const 1)))
                     (call $fib (i32.sub (local.get 0) (i32.const 2)))))
           (func (export "_start") (drop (call $fib (i32.const 18))))"#,
        // Bulk memory: a fill of a size known only at run time, a constant-size copy.
        r#"(func (export "_start") (local i32)
            (loop
              (memory.fill (i32.const 64) (local.get 0) (i32.mul (local.get 0) (i32.const 7)))
              (memory.copy (i32.const 9000) (i32.const 64) (i32.const 100))
              (local.set 0 (i32.add (local.get 0) (i32.const 1)))
              (br_if 0 (i32.lt_u (local.get 0) (i32.const 300)))))"#,
        // Memory traffic and floats.
        r#"(func (export "_start") (local i32 f64)
            (loop
              (f64.store (i32.shl (local.get 0) (i32.const 3))
                 (local.tee 1 (f64.add (local.get 1) (f64.sqrt (f64.convert_i32_u (local.get 0))))))
              (local.set 0 (i32.add (local.get 0) (i32.const 1)))
              (br_if 0 (i32.lt_u (local.get 0) (i32.const 4000)))))"#,
    ];
    for funcs in programs {
        let wat = module(funcs);
        let ours = task(&wat).exec();
        assert_eq!(ours.outcome(), "exited", "{wat}\n{:#}", ours.json);
        let theirs = wasmtime_fuel(&wat);
        assert!(theirs > 1000, "{wat}: the program does real work");
        assert_eq!(ours.fuel(), theirs, "{wat}");
    }
}

#[test]
fn recursion_without_loops_runs_out_of_fuel() {
    // No loop anywhere: only the check before each call can stop it.
    let wat = module(
        r#"(func $fib (param i64) (result i64)
            (if (result i64) (i64.lt_u (local.get 0) (i64.const 2))
              (then (local.get 0))
              (else (i64.add (call $fib (i64.sub (local.get 0) (i64.const 1)))
                             (call $fib (i64.sub (local.get 0) (i64.const 2)))))))
           (func (export "_start") (drop (call $fib (i64.const 90))))"#,
    );
    let run = task(&wat).set("/limits/fuel", json!(3_000_000)).exec();
    assert_eq!(
        (run.status, run.outcome()),
        (1, "out_of_fuel"),
        "{:#}",
        run.json
    );
    assert_eq!(run.fuel(), 3_000_000);
}

#[test]
fn a_guests_own_unreachable_is_a_trap_even_with_fuel_nearly_gone() {
    // The loop burns all but a little of the budget, then the guest traps by itself.
    let wat = module(
        r#"(func (export "_start") (local i32)
            (loop (local.set 0 (i32.add (local.get 0) (i32.const 1)))
                  (br_if 0 (i32.lt_u (local.get 0) (i32.const 1000))))
            unreachable)"#,
    );
    let full = task(&wat).exec();
    assert_eq!(full.json["trap"], "unreachable", "{:#}", full.json);
    let tight = task(&wat)
        .set("/limits/fuel", json!(full.fuel() + 1))
        .exec();
    assert_eq!(tight.json["trap"], "unreachable", "{:#}", tight.json);
    let short = task(&wat)
        .set("/limits/fuel", json!(full.fuel() / 2))
        .exec();
    assert_eq!(short.outcome(), "out_of_fuel", "{:#}", short.json);
}

#[test]
fn a_module_cannot_reach_what_the_rewrite_adds() {
    // Global 0, memory 1 and local 0 do not exist in these modules; after Helio's rewrite
    // they would, so the module must be validated as written.
    use wasm_encoder::{Instruction as I, MemArg};
    let load_from_1 = I::I32Load8U(MemArg {
        offset: 0,
        align: 0,
        memory_index: 1,
    });
    for (body, words) in [
        (I::GlobalGet(0), ["module", "global"]),
        (I::LocalGet(0), ["module", "local"]),
        (load_from_1, ["module", "memory"]),
    ] {
        let bytes = start_doing(&body);
        super::check::task_bytes(&bytes)
            .exec()
            .assert_rejected(&words);
    }
}

/// A module whose `_start` pushes one `i32` with `push` and drops it, encoded by hand
/// because the text format refuses to name what does not exist.
fn start_doing(push: &wasm_encoder::Instruction<'_>) -> Vec<u8> {
    use wasm_encoder::{Function, Instruction};
    let mut f = Function::new([]);
    if matches!(push, Instruction::I32Load8U(_)) {
        f.instruction(&Instruction::I32Const(0));
    }
    f.instruction(push)
        .instruction(&Instruction::Drop)
        .instruction(&Instruction::End);
    super::check::command([f])
}

#[test]
fn a_start_section_is_rejected_by_name() {
    let wat = module(r#"(func $init) (start $init) (func (export "_start"))"#);
    task(&wat).exec().assert_rejected(&["start section"]);
}

/// A watched task tells its fuel as it runs, and being watched changes nothing in its result.
#[test]
fn a_watched_task_shows_its_fuel_as_it_runs_and_the_same_result() {
    use std::sync::Arc;

    use helio_runner::{LoadedTask, Progress, Sandbox, SandboxConfig};
    use helio_sdk::{Blake3Hash, TaskManifest};

    let limit = 40_000_000_000u64;
    let module = helio_test_guests::bytes(helio_test_guests::SPIN);
    let manifest = TaskManifest::from_value(json!({
        "schema_version": 1,
        "name": "spin",
        "module": { "uri": "spin.wasm", "blake3": Blake3Hash::of(&module).to_string() },
        "limits": { "fuel": limit, "wall_seconds": 120 },
    }))
    .unwrap();
    let task = Arc::new(LoadedTask {
        manifest,
        module: module.into(),
        inputs: Vec::new(),
    });
    let sandbox = Arc::new(Sandbox::new(SandboxConfig::default()).unwrap());
    // Compiled before the watched run, so that it measures only running.
    let unwatched = task.run(&sandbox).unwrap();
    assert_eq!(unwatched.report.outcome.name(), "out_of_fuel");

    let progress = Arc::new(Progress::default());
    let run = {
        let (task, sandbox, progress) = (task.clone(), sandbox.clone(), progress.clone());
        std::thread::spawn(move || task.run_watched(&sandbox, Some(progress)))
    };
    let mut seen: Vec<u64> = Vec::new();
    while !run.is_finished() {
        let used = progress.fuel_used();
        if seen.last() != Some(&used) {
            seen.push(used);
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let watched = run.join().unwrap().unwrap();
    assert_eq!(progress.fuel_limit(), limit);
    let during: Vec<u64> = seen.into_iter().filter(|&u| u > 0 && u < limit).collect();
    assert!(
        during.len() >= 3,
        "fewer than three readings while the task ran: {during:?}"
    );
    assert!(
        during.windows(2).all(|w| w[0] < w[1]),
        "fuel used went backwards: {during:?}"
    );
    assert_eq!(watched.report.digest, unwatched.report.digest);
    assert_eq!(watched.report.fuel_consumed, unwatched.report.fuel_consumed);
}

/// The calibration figure a runner registers with is a real measurement.
#[test]
fn calibration_measures_fuel_per_second() {
    use helio_runner::{Sandbox, SandboxConfig, agent};

    let sandbox = Sandbox::new(SandboxConfig::default()).unwrap();
    let rate = agent::calibrate(&sandbox).unwrap();
    // The loop burns tens of millions of fuel; any machine this runs on does more than a
    // million a second, and none a hundred trillion.
    assert!((1_000_000..100_000_000_000_000).contains(&rate), "{rate}");
}
