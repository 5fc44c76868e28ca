//! Guests that try to make the host, not themselves, spend memory and time: symlink and
//! file-system bombs, long paths, listings and `poll_oneoff` storms. Each ends within the
//! task's bounds (the child's own peak resident memory, measured, with a generous bound), and
//! ends the same way, at the same fuel, every time.

use super::check::{Exec, task};
use serde_json::json;

/// A module with the WASI functions the bombs use, a hex-digit table at 0, a name buffer of
/// 255 `n`s at 1024 and 4096 `t`s at 4096, a `$name` function that writes `$i` as eight hex
/// digits at `$at`, and `body` as `_start` (locals `$i`, `$fd`, `$next`).
fn bomb(pages: u32, body: &str) -> String {
    format!(
        r#"(module
  (import "wasi_snapshot_preview1" "path_symlink" (func $symlink (param i32 i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_unlink_file" (func $unlink (param i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_create_directory" (func $mkdir (param i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_open" (func $open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_filestat_get" (func $stat (param i32 i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_close" (func $close (param i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_readdir" (func $readdir (param i32 i32 i32 i64 i32) (result i32)))
  (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") {pages})
  (data (i32.const 0) "0123456789abcdef")
  (func $name (param $i i32) (param $at i32) (local $k i32)
    (loop $digit
      (i32.store8 (i32.add (local.get $at) (local.get $k))
        (i32.load8_u (i32.and
          (i32.shr_u (local.get $i) (i32.mul (i32.sub (i32.const 7) (local.get $k)) (i32.const 4)))
          (i32.const 15))))
      (local.set $k (i32.add (local.get $k) (i32.const 1)))
      (br_if $digit (i32.lt_u (local.get $k) (i32.const 8)))))
  (func (export "_start") (local $i i32) (local $fd i32) (local $next i32)
    (memory.fill (i32.const 1024) (i32.const 110) (i32.const 255))
    (memory.fill (i32.const 4096) (i32.const 116) (i32.const 4096))
    {body}))"#
    )
}

/// Runs `module` with `fuel` twice, checks both runs ended alike, and returns the first.
fn run_twice(module: &str, fuel: u64) -> Exec {
    let run = || task(module).set("/limits/fuel", json!(fuel)).exec();
    let (first, second) = (run(), run());
    assert_eq!(first.outcome(), second.outcome(), "{:#}", first.json);
    assert_eq!(first.fuel(), second.fuel(), "{:#}", first.json);
    assert_eq!(first.digest(), second.digest());
    first
}

/// Peak resident memory a runner may reach on these bombs: far above a runner's own
/// (tens of MiB), far below what the bombs reached before they were bounded.
const PEAK_KIB: i64 = 256 << 10;

#[test]
fn creating_and_unlinking_a_long_symlink_forever_holds_nothing() {
    // Before unlinked nodes were freed, each turn kept its 4 KiB target: about 2 GB here.
    let run = run_twice(
        &bomb(
            1,
            r#"(loop $again
                 (drop (call $symlink (i32.const 4096) (i32.const 4096) (i32.const 4) (i32.const 1024) (i32.const 1)))
                 (drop (call $unlink (i32.const 4) (i32.const 1024) (i32.const 1)))
                 (br $again))"#,
        ),
        400_000_000,
    );
    assert_eq!(run.outcome(), "out_of_fuel", "{:#}", run.json);
    assert!(
        run.peak_kib < PEAK_KIB,
        "the runner reached {} KiB",
        run.peak_kib
    );
}

#[test]
fn many_long_symlinks_end_with_memory_limit() {
    let run = run_twice(
        &bomb(
            1,
            r#"(loop $again
                 (call $name (local.get $i) (i32.const 1271))
                 (drop (call $symlink (i32.const 4096) (i32.const 4096) (i32.const 4) (i32.const 1024) (i32.const 255)))
                 (local.set $i (i32.add (local.get $i) (i32.const 1)))
                 (br $again))"#,
        ),
        2_000_000_000,
    );
    assert_eq!(run.outcome(), "memory_limit", "{:#}", run.json);
    assert!(
        run.peak_kib < PEAK_KIB,
        "the runner reached {} KiB",
        run.peak_kib
    );
}

#[test]
fn many_entries_with_long_names_are_bounded_and_listing_them_is_priced() {
    // 5,000 files of 255-byte names (past the 4,096 nodes /out holds), 1,000 listings that
    // start at entry 4,000, then every file removed: the task ends normally.
    let listings = 1_000u64;
    let run = run_twice(
        &bomb(
            1,
            &format!(
                r#"(loop $create
                     (call $name (local.get $i) (i32.const 1271))
                     (if (i32.eqz (call $open (i32.const 4) (i32.const 0) (i32.const 1024) (i32.const 255)
                                   (i32.const 1) (i64.const 64) (i64.const 0) (i32.const 0) (i32.const 2048)))
                       (then (drop (call $close (i32.load (i32.const 2048))))))
                     (local.set $i (i32.add (local.get $i) (i32.const 1)))
                     (br_if $create (i32.lt_u (local.get $i) (i32.const 5000))))
                   (local.set $i (i32.const 0))
                   (loop $list
                     (drop (call $readdir (i32.const 4) (i32.const 2048) (i32.const 64) (i64.const 4000) (i32.const 3000)))
                     (local.set $i (i32.add (local.get $i) (i32.const 1)))
                     (br_if $list (i32.lt_u (local.get $i) (i32.const {listings}))))
                   (local.set $i (i32.const 0))
                   (loop $remove
                     (call $name (local.get $i) (i32.const 1271))
                     (drop (call $unlink (i32.const 4) (i32.const 1024) (i32.const 255)))
                     (local.set $i (i32.add (local.get $i) (i32.const 1)))
                     (br_if $remove (i32.lt_u (local.get $i) (i32.const 5000))))"#
            ),
        ),
        2_000_000_000,
    );
    assert_eq!(run.outcome(), "exited", "{:#}", run.json);
    assert_eq!(run.json["exit_code"], 0, "{:#}", run.json);
    // Each listing passed over 4,000 entries, and paid for them.
    let floor = listings * 4_000 * helio_sandbox::STEP_FUEL;
    assert!(run.fuel() > floor, "{} fuel, under {floor}", run.fuel());
    assert!(
        run.peak_kib < PEAK_KIB,
        "the runner reached {} KiB",
        run.peak_kib
    );
}

#[test]
fn a_deep_tree_is_bounded() {
    // Each turn makes `d` in the last directory and opens it: 5,000 levels asked for.
    let run = run_twice(
        &bomb(
            1,
            r#"(local.set $fd (i32.const 4))
               (loop $deeper
                 (drop (call $mkdir (local.get $fd) (i32.const 1024) (i32.const 1)))
                 (if (i32.eqz (call $open (local.get $fd) (i32.const 0) (i32.const 1024) (i32.const 1)
                               (i32.const 2) (i64.const 0) (i64.const 0) (i32.const 0) (i32.const 2048)))
                   (then
                     (local.set $next (i32.load (i32.const 2048)))
                     (if (i32.ne (local.get $fd) (i32.const 4)) (then (drop (call $close (local.get $fd)))))
                     (local.set $fd (local.get $next))))
                 (local.set $i (i32.add (local.get $i) (i32.const 1)))
                 (br_if $deeper (i32.lt_u (local.get $i) (i32.const 5000))))"#,
        ),
        2_000_000_000,
    );
    // The tree is left in /out, which declares nothing.
    assert_eq!(run.outcome(), "contract_violation", "{:#}", run.json);
    assert!(
        run.peak_kib < PEAK_KIB,
        "the runner reached {} KiB",
        run.peak_kib
    );
}

#[test]
fn long_paths_and_symlink_chains_cost_fuel_not_host_memory() {
    // A 1 MiB path, refused before it is copied; then a 4 KiB path of symlinks to `.`,
    // refused after 32 hops.
    for body in [
        r#"(loop $again
             (drop (call $stat (i32.const 4) (i32.const 1) (i32.const 0) (i32.const 1048576) (i32.const 2048)))
             (br $again))"#,
        r#"(memory.fill (i32.const 8192) (i32.const 108) (i32.const 4094))
           (local.set $i (i32.const 8193))
           (loop $slashes
             (i32.store8 (local.get $i) (i32.const 47))
             (local.set $i (i32.add (local.get $i) (i32.const 2)))
             (br_if $slashes (i32.lt_u (local.get $i) (i32.const 12288))))
           (i32.store8 (i32.const 2560) (i32.const 46))
           (drop (call $symlink (i32.const 2560) (i32.const 1) (i32.const 4) (i32.const 8192) (i32.const 1)))
           (loop $again
             (drop (call $stat (i32.const 4) (i32.const 1) (i32.const 8192) (i32.const 4094) (i32.const 2048)))
             (br $again))"#,
    ] {
        let run = run_twice(&bomb(17, body), 200_000_000);
        assert_eq!(run.outcome(), "out_of_fuel", "{:#}", run.json);
        assert!(
            run.peak_kib < PEAK_KIB,
            "the runner reached {} KiB",
            run.peak_kib
        );
    }
}

/// A guest that polls a million clock subscriptions in a loop.
fn poll_storm() -> String {
    bomb(
        1100,
        r#"(loop $again
             (drop (call $poll (i32.const 65536) (i32.const 65536) (i32.const 1000000) (i32.const 2048)))
             (br $again))"#,
    )
}

#[test]
fn a_poll_storm_pays_for_every_subscription() {
    // Before calls were priced by their work, each of these calls cost 100 fuel and about
    // 37 ms of host time: this budget would have lasted about a day.
    let run = run_twice(&poll_storm(), 2_000_000_000);
    assert_eq!(run.outcome(), "out_of_fuel", "{:#}", run.json);
}

#[test]
fn a_poll_storm_with_fuel_to_spare_stops_at_its_wall_seconds() {
    let run = task(&poll_storm())
        .set("/limits/fuel", json!(1u64 << 60))
        .set("/limits/wall_seconds", json!(1))
        .exec();
    assert_eq!(run.outcome(), "timeout", "{:#}", run.json);
    // The safety net holds to within a small multiple of wall_seconds (it ran 290 s with
    // wall_seconds 3 before host calls read the clock).
    let wall_ms = run.json["wall_ms"].as_u64().unwrap();
    assert!(wall_ms < 5_000, "stopped after {wall_ms} ms");
}
