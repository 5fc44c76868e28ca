//! The compiled-module cache: used when present, never trusted unless this runner wrote it.

use super::check::{Task, task};
use helio_test_guests as g;

/// The hello task, compiled through the cache in `dir`.
fn cached_hello(dir: &std::path::Path) -> Task {
    task(g::HELLO)
        .input("name.txt", b"Ada")
        .output("greeting.txt", 100)
        .cache(dir)
}

fn artifacts(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "cwasm"))
        .collect();
    v.sort();
    v
}

#[test]
fn a_cached_module_gives_the_same_result() {
    let cache = tempfile::tempdir().unwrap();
    let t = cached_hello(cache.path());
    let cold = t.exec();
    assert_eq!(artifacts(cache.path()).len(), 1);
    let warm = t.exec();
    assert_eq!(cold.digest(), warm.digest());
    assert!(cache.path().join("runner.key").exists());
}

#[test]
fn an_artifact_under_another_modules_name_is_not_loaded() {
    let cache = tempfile::tempdir().unwrap();
    let hello = cached_hello(cache.path());
    let honest = hello.exec();
    let hello_artifact = artifacts(cache.path()).pop().unwrap();
    let other = task(g::EXIT_CODE).args(&["9"]).cache(cache.path());
    other.exec();
    let other_artifact = artifacts(cache.path())
        .into_iter()
        .find(|p| *p != hello_artifact)
        .unwrap();
    // Plant the other module's artifact where hello's belongs.
    std::fs::copy(&other_artifact, &hello_artifact).unwrap();
    let again = hello.exec();
    assert_eq!(again.status, 0, "{:#}", again.json);
    assert_eq!(again.digest(), honest.digest());
}

#[test]
fn a_tampered_or_foreign_artifact_is_recompiled() {
    let cache = tempfile::tempdir().unwrap();
    let t = cached_hello(cache.path());
    let honest = t.exec();
    let artifact = artifacts(cache.path()).pop().unwrap();
    let mut bytes = std::fs::read(&artifact).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&artifact, &bytes).unwrap();
    assert_eq!(t.exec().digest(), honest.digest());
    // Another runner's key: its artifacts are ignored.
    std::fs::write(cache.path().join("runner.key"), [7u8; 32]).unwrap();
    assert_eq!(t.exec().digest(), honest.digest());
}

/// A module of `n` functions, each a few instructions of arithmetic (their compiled code is
/// what fills the cache).
fn sized_module(n: u32) -> Vec<u8> {
    use wasm_encoder::{Function, Instruction as I};
    super::check::command((0..n).map(|k| {
        let mut f = Function::new([(1, wasm_encoder::ValType::I32)]);
        for step in 0..8 {
            f.instruction(&I::LocalGet(0))
                .instruction(&I::I32Const((k * 8 + step) as i32))
                .instruction(&I::I32Add)
                .instruction(&I::LocalSet(0));
        }
        f.instruction(&I::End);
        f
    }))
}

/// With `--cache-limit`, compiled modules past the limit are evicted least recently used
/// first: the cache never holds more than the limit, and a module used at every step stays.
#[test]
fn the_cache_keeps_its_limit_and_drops_the_least_recently_used() {
    let cache = tempfile::tempdir().unwrap();
    const LIMIT: u64 = 1 << 20;
    let tasks: Vec<Task> = (0..8)
        .map(|i| super::check::task_bytes(&sized_module(2_000 + i)).cache(cache.path()))
        .collect();
    let exec = |t: &Task| {
        let run = t.exec_with(&["--cache-limit", "1M"], |_| {});
        assert_eq!(run.status, 0, "{:#}", run.json);
    };
    let held = || -> u64 {
        artifacts(cache.path())
            .iter()
            .map(|p| std::fs::metadata(p).unwrap().len())
            .sum()
    };
    exec(&tasks[0]);
    let favourite = artifacts(cache.path()).pop().unwrap();
    let mut written = held();
    for t in &tasks[1..] {
        let before: std::collections::BTreeSet<_> = artifacts(cache.path()).into_iter().collect();
        exec(t);
        let new = artifacts(cache.path())
            .into_iter()
            .filter(|p| !before.contains(p))
            .map(|p| std::fs::metadata(p).unwrap().len())
            .sum::<u64>();
        written += new;
        assert!(
            held() <= LIMIT,
            "{} bytes cached past a limit of {LIMIT}",
            held()
        );
        // Used again: the most recently used, never the one evicted.
        exec(&tasks[0]);
        assert!(
            favourite.exists(),
            "the module used at every step was evicted"
        );
    }
    assert!(
        written > LIMIT,
        "the modules ({written} bytes compiled) must overflow the limit for this test to mean anything"
    );
    assert!(artifacts(cache.path()).len() < tasks.len());
    // Off: nothing is evicted.
    for t in &tasks {
        assert_eq!(t.exec_with(&["--cache-limit", "off"], |_| {}).status, 0);
    }
    assert_eq!(artifacts(cache.path()).len(), tasks.len());
    let bad = super::check::runner()
        .args(["exec", "--cache-limit", "12K", "--cache-dir"])
        .arg(cache.path())
        .arg(tasks[0].manifest_path())
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    let said = String::from_utf8_lossy(&bad.stderr);
    assert!(said.contains("give at least 1 MiB"), "{said}");
}
