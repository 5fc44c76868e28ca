//! Every outcome of the contract, with its exit status.

use super::check::{hash, task};
use helio_test_guests as g;
use serde_json::json;

#[test]
fn hello_exits_zero_with_its_output_and_a_consistent_digest() {
    let run = task(g::HELLO)
        .input("name.txt", b"Ada\n")
        .output("greeting.txt", 1024)
        .exec();
    assert_eq!(run.status, 0, "{:#}", run.json);
    assert_eq!(run.outcome(), "exited");
    assert_eq!(run.json["exit_code"], 0);
    let greeting = b"hello, Ada!\n";
    assert_eq!(
        run.json["outputs"],
        json!([{ "name": "greeting.txt", "bytes": 12, "blake3": hash(greeting) }])
    );
    assert_eq!(run.json["stdout_blake3"], hash(greeting));
    assert!(run.fuel() > 0);
    assert!(run.json["stderr"].as_str().unwrap().contains("greeted Ada"));
    let report: helio_sdk::RunReport = serde_json::from_value(run.json.clone()).unwrap();
    assert!(report.digest_is_consistent());
}

#[test]
fn a_task_of_a_batch_runs_by_name() {
    let mut t = task(g::EXIT_CODE);
    let mut defaults = t.manifest.clone();
    defaults.as_object_mut().unwrap().remove("schema_version");
    defaults.as_object_mut().unwrap().remove("name");
    t.manifest = json!({
        "schema_version": 1,
        "batch": "codes",
        "defaults": defaults,
        "tasks": [ { "name": "zero", "args": ["0"] }, { "name": "five", "args": ["5"] } ]
    });
    let five = t.exec_with(&["--task", "five"], |_| {});
    assert_eq!((five.status, five.json["exit_code"].as_i64()), (1, Some(5)));
    let zero = t.exec_with(&["--task", "zero"], |_| {});
    assert_eq!(zero.status, 0);
    t.exec_with(&["--task", "seven"], |_| {}).assert_rejected(&[
        "task \"seven\"",
        "codes",
        "zero, five",
    ]);
}

#[test]
fn exit_codes_are_reported_and_only_zero_succeeds() {
    let ok = task(g::EXIT_CODE).args(&["0"]).exec();
    assert_eq!((ok.status, ok.outcome()), (0, "exited"));
    let three = task(g::EXIT_CODE).args(&["3"]).exec();
    assert_eq!((three.status, three.outcome()), (1, "exited"));
    assert_eq!(three.json["exit_code"], 3);
    assert_ne!(ok.digest(), three.digest());
}

#[test]
fn an_infinite_loop_runs_out_of_fuel_at_exactly_the_limit() {
    let run = task(g::SPIN).set("/limits/fuel", json!(5_000_000)).exec();
    assert_eq!((run.status, run.outcome()), (1, "out_of_fuel"));
    assert_eq!(run.fuel(), 5_000_000);
    let again = task(g::SPIN).set("/limits/fuel", json!(5_000_000)).exec();
    assert_eq!(run.digest(), again.digest());
}

#[test]
fn the_wall_clock_safety_net_reports_timeout() {
    let run = task(g::SPIN)
        .set("/limits/fuel", json!(1u64 << 60))
        .set("/limits/wall_seconds", json!(1))
        .exec();
    assert_eq!((run.status, run.outcome()), (1, "timeout"));
}

#[test]
fn a_memory_bomb_stops_at_the_memory_limit() {
    let run = task(g::MEMORY_BOMB)
        .set("/limits/memory_bytes", json!(16 << 20))
        .exec();
    assert_eq!(
        (run.status, run.outcome()),
        (1, "memory_limit"),
        "{:#}",
        run.json
    );
    let again = task(g::MEMORY_BOMB)
        .set("/limits/memory_bytes", json!(16 << 20))
        .exec();
    assert_eq!(run.digest(), again.digest());
    assert_eq!(run.fuel(), again.fuel());
}

#[test]
fn initial_memory_above_the_limit_is_memory_limit() {
    let run = task(r#"(module (memory (export "memory") 20) (func (export "_start")))"#)
        .set("/limits/memory_bytes", json!(10 * 65536))
        .exec();
    assert_eq!(run.outcome(), "memory_limit", "{:#}", run.json);
}

#[test]
fn native_stack_exhaustion_traps_and_charges_the_whole_budget() {
    let wat = r#"(module (memory (export "memory") 1)
        (func $deep (param i64) (call $deep (i64.add (local.get 0) (i64.const 1))))
        (func (export "_start") (call $deep (i64.const 0))))"#;
    let run = task(wat).set("/limits/fuel", json!(1_000_000_000)).exec();
    assert_eq!(
        (run.status, run.outcome()),
        (1, "trapped"),
        "{:#}",
        run.json
    );
    assert_eq!(run.json["trap"], "stack_overflow");
    assert_eq!(run.fuel(), 1_000_000_000);
}

#[test]
fn rust_recursion_overflows_its_shadow_stack_the_same_way_every_time() {
    // A Rust guest keeps its frames in linear memory; running off the bottom is an
    // out-of-bounds access at a point that does not depend on the host.
    let first = task(g::RECURSE).exec();
    let second = task(g::RECURSE).exec();
    assert_eq!(
        (first.status, first.outcome()),
        (1, "trapped"),
        "{:#}",
        first.json
    );
    assert_eq!(first.json["trap"], "memory_out_of_bounds");
    assert_eq!(first.digest(), second.digest());
    assert!(first.fuel() < 2_000_000_000);
}

fn wat_trap(body: &str) -> super::check::Exec {
    task(&format!(
        r#"(module (memory (export "memory") 1) (func (export "_start") {body}))"#
    ))
    .exec()
}

#[test]
fn traps_carry_stable_names() {
    for (body, name) in [
        ("unreachable", "unreachable"),
        (
            "(drop (i32.div_s (i32.const 1) (i32.const 0)))",
            "integer_division_by_zero",
        ),
        (
            "(drop (i32.load (i32.const 70000)))",
            "memory_out_of_bounds",
        ),
        (
            "(drop (i32.trunc_f32_s (f32.const nan)))",
            "bad_conversion_to_integer",
        ),
    ] {
        let run = wat_trap(body);
        assert_eq!((run.status, run.outcome()), (1, "trapped"), "{body}");
        assert_eq!(run.json["trap"], name, "{body}");
    }
}

#[test]
fn returning_from_start_is_exit_zero_and_fuel_counts_instructions() {
    let short = wat_trap("nop");
    let long = wat_trap(
        "(local i32) (loop (local.set 0 (i32.add (local.get 0) (i32.const 1))) (br_if 0 (i32.lt_u (local.get 0) (i32.const 1000))))",
    );
    assert_eq!((short.status, long.status), (0, 0));
    assert!(
        long.fuel() > short.fuel() + 3000,
        "{} vs {}",
        long.fuel(),
        short.fuel()
    );
}

/// A run's `wall_ms` counts from before its module was compiled (so compiling shows in it),
/// while `wall_seconds` bound the run itself: a module that took long to compile on a slow
/// machine does not make its first run time out.
#[test]
fn compiling_shows_in_wall_ms_and_does_not_eat_wall_seconds() {
    use helio_runner::{Sandbox, SandboxConfig};
    use helio_sdk::{Blake3Hash, TaskManifest};
    use std::time::{Duration, Instant};
    let module =
        wat::parse_str(r#"(module (memory (export "memory") 1) (func (export "_start")))"#)
            .unwrap();
    let hash = Blake3Hash::of(&module);
    let task = TaskManifest::from_value(json!({
        "schema_version": 1,
        "module": { "uri": "m.wasm", "blake3": hash.to_string() },
        "limits": { "fuel": 1_000_000, "wall_seconds": 1 }
    }))
    .unwrap();
    let sandbox = Sandbox::new(SandboxConfig::default()).unwrap();
    let prepared = sandbox.prepare(&hash, &module).unwrap();
    let compiled_for_2s = Instant::now() - Duration::from_secs(2);
    let run = sandbox
        .run_from(&prepared, &task, vec![], None, compiled_for_2s)
        .unwrap();
    assert!(run.report.outcome.is_success(), "{:?}", run.report);
    assert!(run.report.wall_ms >= 2_000, "{:?}", run.report);
}

/// The runner's cap on its own memory lets a task within its limits run, and turns a guest
/// memory the machine cannot give into a fault of the runner (the task would be handed
/// back), never a result: the runner stays under its cap.
#[cfg(target_os = "linux")]
#[test]
fn the_runner_s_memory_cap_stops_growth_as_a_runner_fault() {
    let capped = |t: super::check::Task| t.exec_with(&["--memory-cap", "256M"], |_| {});
    let hello = capped(
        task(g::HELLO)
            .input("name.txt", b"Ada\n")
            .output("greeting.txt", 1024),
    );
    assert_eq!(hello.outcome(), "exited", "{:#}", hello.json);
    let bomb = capped(task(g::MEMORY_BOMB).set("/limits/memory_bytes", json!(2u64 << 30)));
    bomb.assert_rejected(&["could not give the guest memory"]);
    assert!(bomb.peak_kib < 320 << 10, "{} KiB", bomb.peak_kib);
    // Uncapped, the same bomb stops at its own limit, as a result.
    let own = task(g::MEMORY_BOMB)
        .set("/limits/memory_bytes", json!(64 << 20))
        .exec_with(&["--memory-cap", "off"], |_| {});
    assert_eq!(own.outcome(), "memory_limit", "{:#}", own.json);
}
