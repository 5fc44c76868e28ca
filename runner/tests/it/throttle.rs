//! The volunteer's CPU cap: a throttled task uses no more than its share of the processor, gives
//! the same result as an unthrottled one, and a suspended task waits without losing its
//! wall-clock budget.

use std::sync::Arc;
use std::time::{Duration, Instant};

use helio_runner::{Pause, Prepared, Sandbox, SandboxConfig};
use helio_sdk::{Blake3Hash, Outcome, TaskManifest};
use serde_json::json;

/// A loop that counts until its fuel runs out.
const SPIN: &str = r#"(module
    (memory (export "memory") 1)
    (func (export "_start") (local $i i64)
      (loop (local.set $i (i64.add (local.get $i) (i64.const 1))) (br 0))))"#;

fn spin(sandbox: &Sandbox) -> (Arc<Prepared>, Blake3Hash) {
    let module = wat::parse_str(SPIN).unwrap();
    let hash = Blake3Hash::of(&module);
    (sandbox.prepare(&hash, &module).unwrap(), hash)
}

/// A sandbox whose tasks can be paused, as a runner with controls builds.
fn pausable() -> Sandbox {
    Sandbox::new(SandboxConfig {
        pause: Pause::OnRequest,
        ..SandboxConfig::default()
    })
    .unwrap()
}

fn manifest(hash: &Blake3Hash, fuel: u64, wall_seconds: u64) -> TaskManifest {
    TaskManifest::from_value(json!({
        "schema_version": 1,
        "module": { "uri": "m.wasm", "blake3": hash.to_string() },
        "limits": { "fuel": fuel, "wall_seconds": wall_seconds }
    }))
    .unwrap()
}

/// Fuel per second of the spin loop with `fuel` to burn, and its report's digest.
fn rate(sandbox: &Sandbox, prepared: &Prepared, task: &TaskManifest) -> (f64, Blake3Hash) {
    let start = Instant::now();
    let run = sandbox.run(prepared, task, vec![]).unwrap();
    let seconds = start.elapsed().as_secs_f64();
    assert_eq!(run.report.outcome, Outcome::OutOfFuel);
    (task.limits.fuel as f64 / seconds, run.report.digest)
}

#[cfg(unix)]
/// The processor time this thread has used so far.
fn thread_cpu() -> Duration {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid timespec for the call to fill.
    let ok = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) };
    assert_eq!(ok, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID) failed");
    Duration::new(now.tv_sec as u64, now.tv_nsec as u32)
}

#[cfg(unix)]
/// The share of its wall time a run of `task` spent on the processor (the run is on this
/// thread), and its report's digest. Another load on the machine can only lower the share,
/// never raise it, so a share above the cap is the throttle's fault.
fn share(sandbox: &Sandbox, prepared: &Prepared, task: &TaskManifest) -> (f64, Blake3Hash) {
    let (cpu, wall) = (thread_cpu(), Instant::now());
    let run = sandbox.run(prepared, task, vec![]).unwrap();
    let (cpu, wall) = (thread_cpu() - cpu, wall.elapsed());
    assert_eq!(run.report.outcome, Outcome::OutOfFuel);
    (cpu.as_secs_f64() / wall.as_secs_f64(), run.report.digest)
}

#[cfg(unix)]
#[test]
fn a_capped_task_uses_no_more_than_its_share_and_gives_the_same_result() {
    let sandbox = pausable();
    let (prepared, hash) = spin(&sandbox);
    // About a second of the loop on this machine, unthrottled: the last slice, run after the
    // last pause and owing a rest it never takes (a tenth of a second, more on a loaded
    // machine), must stay small beside the whole.
    let (probe, _) = rate(&sandbox, &prepared, &manifest(&hash, 50_000_000, 60));
    let task = manifest(&hash, probe as u64, 60);
    let (_, free_digest) = share(&sandbox, &prepared, &task);
    let throttle = sandbox
        .throttle()
        .expect("a pausable sandbox has a throttle");
    throttle.set_duty(0.5);
    let (half, half_digest) = share(&sandbox, &prepared, &task);
    throttle.set_duty(0.25);
    let (quarter, quarter_digest) = share(&sandbox, &prepared, &task);
    // Pausing changes nothing the result holds.
    assert_eq!(half_digest, free_digest);
    assert_eq!(quarter_digest, free_digest);
    // The processor time the run took against its wall time, measured by the kernel: at
    // most the cap, with room for the slice between pauses (a tenth of a second).
    assert!(
        half <= 0.6,
        "at a 50% cap the task was on the processor {half:.2} of its wall time"
    );
    assert!(
        quarter <= 0.33,
        "at a 25% cap the task was on the processor {quarter:.2} of its wall time"
    );
}

#[test]
fn a_suspended_task_waits_and_its_wall_seconds_wait_with_it() {
    let sandbox = Arc::new(pausable());
    let (prepared, hash) = spin(&sandbox);
    // Fuel for about a fifth of a second, and a one-second wall-clock bound.
    let (probe, _) = rate(&sandbox, &prepared, &manifest(&hash, 20_000_000, 60));
    let task = manifest(&hash, (probe * 0.2) as u64, 1);
    sandbox.throttle().unwrap().suspend(true);
    let running = {
        let sandbox = sandbox.clone();
        std::thread::spawn(move || {
            let start = Instant::now();
            let run = sandbox.run(&prepared, &task, vec![]).unwrap();
            (run, start.elapsed())
        })
    };
    // Suspended for longer than its wall_seconds: still waiting, not timed out.
    std::thread::sleep(Duration::from_millis(1500));
    assert!(!running.is_finished(), "a suspended task ran to its end");
    sandbox.throttle().unwrap().suspend(false);
    let (run, took) = running.join().unwrap();
    assert_eq!(
        run.report.outcome,
        Outcome::OutOfFuel,
        "the task did not run to its end once let go"
    );
    assert!(took >= Duration::from_millis(1500), "{took:?}");
}

#[test]
fn only_a_pausable_sandbox_can_be_throttled_and_both_give_the_same_result() {
    let plain = Sandbox::new(SandboxConfig::default()).unwrap();
    assert!(
        plain.throttle().is_none(),
        "a sandbox built without pausing offers a throttle that could never pause a task"
    );
    let paused = pausable();
    paused.throttle().unwrap().set_duty(0.5);
    // A float kernel that calls WASI and its own functions: the pausable rewrite moves every
    // function index up by one, past its pause import.
    let module = helio_test_guests::bytes(helio_test_guests::NBODY);
    let hash = Blake3Hash::of(&module);
    let task = manifest(&hash, 1 << 40, 60);
    let [a, b] = [&plain, &paused].map(|sandbox| {
        let prepared = sandbox.prepare(&hash, &module).unwrap();
        sandbox.run(&prepared, &task, vec![]).unwrap()
    });
    assert!(a.report.outcome.is_success(), "{:?}", a.report.outcome);
    assert!(!a.stdout.is_empty());
    assert_eq!(a.stdout, b.stdout);
    assert_eq!(
        (a.report.outcome, a.report.fuel_consumed, a.report.digest),
        (b.report.outcome, b.report.fuel_consumed, b.report.digest)
    );
}
