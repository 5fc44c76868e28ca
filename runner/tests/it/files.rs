//! `/in` and `/out`: path escapes, symlinks, output limits and the output contract.

use super::check::{hash, task};
use helio_test_guests as g;
use serde_json::json;

#[test]
fn no_path_leads_out_of_the_sandbox() {
    let run = task(g::ESCAPE).input("secret.txt", b"inside").exec();
    assert_eq!(run.status, 0, "{:#}", run.json);
    let text = task(g::ESCAPE).input("secret.txt", b"inside").exec_text();
    let attempts: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("ok ") || l.starts_with("denied "))
        .collect();
    assert_eq!(attempts.len(), 10, "{text}");
    for line in attempts {
        let allowed = line.starts_with("ok read the input") || line.starts_with("ok list /");
        assert_eq!(line.starts_with("ok "), allowed, "{line}");
    }
    assert!(text.contains("exists /etc: false"), "{text}");
}

#[test]
fn writing_past_max_bytes_fails_the_task_and_names_the_output() {
    let run = task(g::WRITE_FOREVER).output("result.bin", 10_000).exec();
    assert_eq!(
        (run.status, run.outcome()),
        (1, "contract_violation"),
        "{:#}",
        run.json
    );
    assert!(
        run.error().contains("result.bin") && run.error().contains("10000"),
        "{}",
        run.error()
    );
}

fn outputs(mode: &str) -> super::check::Exec {
    task(g::OUTPUTS)
        .input("secret.txt", b"secret")
        .output("result.txt", 100)
        .args(&[mode])
        .exec()
}

#[test]
fn declared_outputs_are_collected() {
    let run = outputs("ok");
    assert_eq!(run.status, 0, "{:#}", run.json);
    assert_eq!(run.json["outputs"][0]["blake3"], hash(b"result\n"));
}

#[test]
fn a_file_renamed_onto_an_output_counts() {
    let run = outputs("temp");
    assert_eq!(run.status, 0, "{:#}", run.json);
    assert_eq!(run.json["outputs"][0]["blake3"], hash(b"renamed\n"));
}

#[test]
fn broken_output_contracts_are_violations() {
    for (mode, words) in [
        ("missing", &["result.txt", "not written"][..]),
        ("undeclared", &["extra.txt", "not a declared output"]),
        ("symlink", &["result.txt", "symbolic link"]),
        ("dir", &["result.txt", "directory"]),
    ] {
        let run = outputs(mode);
        assert_eq!(
            (run.status, run.outcome()),
            (1, "contract_violation"),
            "{mode}: {:#}",
            run.json
        );
        for w in words {
            assert!(run.error().contains(w), "{mode}: {}", run.error());
        }
    }
}

#[test]
fn an_optional_output_may_be_missing() {
    let run = task(g::OUTPUTS)
        .args(&["missing"])
        .set(
            "/outputs",
            json!([{ "name": "result.txt", "max_bytes": 10, "optional": true }]),
        )
        .exec();
    assert_eq!((run.status, run.outcome()), (0, "exited"), "{:#}", run.json);
    assert_eq!(run.json["outputs"], json!([]));
}

#[test]
fn out_dir_receives_the_outputs() {
    let t = task(g::HELLO)
        .input("name.txt", b"Grace")
        .output("greeting.txt", 100);
    let out = t.dir.path().join("results");
    let run = t.exec_with(&["--out-dir", out.to_str().unwrap()], |_| {});
    assert_eq!(run.status, 0);
    assert_eq!(
        std::fs::read_to_string(out.join("greeting.txt")).unwrap(),
        "hello, Grace!\n"
    );
}

#[test]
fn a_large_output_spills_to_disk_and_comes_back_whole() {
    let n = (helio_runner::SPILL_BYTES + (4 << 20)) as usize;
    let t = task(g::OUTPUTS)
        .output("result.txt", 16 << 20)
        .args(&["big", &n.to_string()]);
    let out = t.dir.path().join("results");
    let run = t.exec_with(&["--out-dir", out.to_str().unwrap()], |_| {});
    assert_eq!(run.status, 0, "{:#}", run.json);
    let mut expected: Vec<u8> = (0..n).map(|i| (i % 251) as u8).collect();
    expected[3..8].copy_from_slice(b"HELIO");
    let tail: Vec<String> = expected[n - 4..].iter().map(|b| b.to_string()).collect();
    expected.truncate(n - 1000);
    let written = std::fs::read(out.join("result.txt")).unwrap();
    assert!(
        written == expected,
        "the spilled output differs from what the guest wrote"
    );
    assert_eq!(run.json["outputs"][0]["bytes"], n - 1000);
    assert_eq!(run.json["outputs"][0]["blake3"], hash(&expected));
    // The guest read its own spilled bytes back correctly.
    let stdout = task(g::OUTPUTS)
        .output("result.txt", 16 << 20)
        .args(&["big", &n.to_string()])
        .exec_text();
    assert!(
        stdout.contains(&format!("tail [{}]", tail.join(", "))),
        "{stdout}"
    );
}
