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
