//! The same task gives the same digest whatever the host looks like.

use std::fs::{File, FileTimes};
use std::time::{Duration, SystemTime};

use super::check::{Task, task};
use helio_test_guests as g;
use serde_json::json;

fn observe(seed: u64) -> Task {
    task(g::OBSERVE)
        .input("a.txt", b"alpha")
        .input("b.txt", b"bravo, a longer file")
        .output("report.txt", 1 << 16)
        .args(&["--flag", "value"])
        .set("/env", json!({ "MODE": "fast", "LANG": "C" }))
        .set("/seed", json!(seed))
}

fn report(t: &Task, adjust: impl FnOnce(&mut std::process::Command)) -> (String, String) {
    let out = t.dir.path().join(format!("out-{}", rand_suffix()));
    let run = t.exec_with(&["--out-dir", out.to_str().unwrap()], adjust);
    assert_eq!(run.status, 0, "{:#}", run.json);
    (
        run.digest().to_string(),
        std::fs::read_to_string(out.join("report.txt")).unwrap(),
    )
}

fn rand_suffix() -> u128 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

#[test]
fn nothing_of_the_host_leaks_into_the_result() {
    let first = observe(7);
    let (digest, text) = report(&first, |_| {});

    // A second run: other time zone, environment, working directory, file times and
    // staging order of the inputs.
    let mut second = observe(7);
    let inputs = second.manifest["inputs"].as_array_mut().unwrap();
    inputs.reverse();
    for name in ["a.txt", "b.txt"] {
        let f = File::options()
            .write(true)
            .open(second.dir.path().join(name))
            .unwrap();
        let old = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        f.set_times(FileTimes::new().set_accessed(old).set_modified(old))
            .unwrap();
    }
    let elsewhere = tempfile::tempdir().unwrap();
    let (digest2, text2) = report(&second, |cmd| {
        cmd.env("TZ", "Pacific/Chatham")
            .env("HELIO_TEST_NOISE", "1")
            .current_dir(elsewhere.path());
    });
    assert_eq!(text, text2);
    assert_eq!(digest, digest2);

    // What the guest saw is the contract's fixed world.
    assert!(text.contains("realtime 946684800000000000\n"), "{text}");
    assert!(
        text.contains(r#"env [("LANG", "C"), ("MODE", "fast")]"#),
        "{text}"
    );
    assert!(
        text.contains(r#"args ["test", "--flag", "value"]"#),
        "{text}"
    );
    assert!(
        text.contains("slept true"),
        "an hour's sleep passes on the virtual clock: {text}"
    );
    assert!(
        text.contains(r#"listing /in ["a.txt len=5"#),
        "entries in name order: {text}"
    );
    // 0.0/0.0 on x86-64 hardware gives 0xfff8…; the canonical NaN is 0x7ff8….
    assert!(text.contains("nan bits [7ff8000000000000"), "{text}");
}

#[test]
fn the_seed_changes_random_get_and_nothing_else() {
    let (d1, t1) = report(&observe(1), |_| {});
    let (d2, t2) = report(&observe(2), |_| {});
    assert_ne!(d1, d2);
    let random = |t: &str| {
        t.lines()
            .find(|l| l.starts_with("random"))
            .unwrap()
            .to_string()
    };
    assert_ne!(random(&t1), random(&t2));
    let rest = |t: &str| {
        t.lines()
            .filter(|l| !l.starts_with("random"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(rest(&t1), rest(&t2));
}
