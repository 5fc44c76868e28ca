//! The job contract's types: validation, batch expansion and the result digest.

use helio_sdk::{
    BatchManifest, Blake3Hash, Name, Outcome, OutputRecord, RunReport, TaskManifest, Tier,
};
use serde_json::{Value, json};

const H: &str = "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262";

fn task() -> Value {
    json!({
        "schema_version": 1,
        "module": { "uri": "m.wasm", "blake3": H },
        "limits": { "fuel": 1000 }
    })
}

/// Checks that `doc` is rejected with a message containing `words`.
fn check_task_error(doc: Value, words: &[&str]) {
    let err = TaskManifest::from_value(doc).unwrap_err().to_string();
    for w in words {
        assert!(err.contains(w), "{err:?} lacks {w:?}");
    }
}

#[test]
fn defaults_fill_what_the_task_leaves_out() {
    let t = TaskManifest::from_value(task()).unwrap();
    assert_eq!(t.name.as_str(), "task");
    assert_eq!(t.limits.memory_bytes, 256 << 20);
    assert_eq!(t.limits.wall_seconds, 600);
    assert_eq!(t.tier, Tier::Cpu);
    assert_eq!((t.seed, t.args.len(), t.env.len()), (0, 0, 0));
}

#[test]
fn a_manifest_survives_a_round_trip() {
    let mut doc = task();
    doc["inputs"] = json!([{ "name": "a.csv", "uri": "s3://b/a.csv", "blake3": H }]);
    doc["outputs"] = json!([{ "name": "r.json", "max_bytes": 10, "optional": true }]);
    doc["env"] = json!({ "K": "v" });
    doc["tier"] = json!("hpc");
    doc["checkpoint"] = json!({ "max_bytes": 4096 });
    let t = TaskManifest::from_value(doc).unwrap();
    assert_eq!(t.checkpoint.map(|c| c.max_bytes), Some(4096));
    assert_eq!(TaskManifest::from_json(&t.to_json_pretty()).unwrap(), t);
}

#[test]
fn invalid_fields_are_named() {
    let mut d = task();
    d["module"]["blake3"] = json!(H.to_uppercase());
    check_task_error(d, &["module.blake3", "hex"]);
    let mut d = task();
    d["inputs"] = json!([{ "name": "..", "uri": "x", "blake3": H }]);
    check_task_error(d, &["inputs[0].name"]);
    let mut d = task();
    d["args"] = json!(["ok", "bad\u{0}"]);
    check_task_error(d, &["args[1]", "NUL"]);
    let mut d = task();
    d["limits"]["wall_seconds"] = json!(0);
    check_task_error(d, &["limits.wall_seconds"]);
    let mut d = task();
    d["outputs"] = json!([{ "name": "x", "max_bytes": -1 }]);
    check_task_error(d, &["outputs[0].max_bytes"]);
    let mut d = task();
    d.as_object_mut().unwrap().remove("module");
    check_task_error(d, &["module"]);
    let mut d = task();
    d["checkpoint"] = json!({ "max_bytes": 0 });
    check_task_error(d, &["checkpoint.max_bytes", "between 1 and"]);
    let mut d = task();
    d["checkpoint"] = json!({ "max_bytes": (256u64 << 20) + 1 });
    check_task_error(d, &["checkpoint.max_bytes", "256 MiB"]);
    let mut d = task();
    d["checkpoint"] = json!({ "max_bytes": 10, "every": 5 });
    check_task_error(d, &["every"]);
    check_task_error(json!([1]), &["JSON object"]);
    check_task_error(json!({ "schema_version": "1" }), &["schema_version"]);
}

#[test]
fn names_follow_the_contract() {
    assert!(Name::parse("t0001.run-2_b").is_ok());
    for bad in ["", ".", "..", "a/b", "a b", "ü", &"x".repeat(129)] {
        assert!(Name::parse(bad).is_err(), "{bad:?}");
    }
    assert!(Name::parse(&"x".repeat(128)).is_ok());
}

fn batch() -> Value {
    json!({
        "schema_version": 1,
        "batch": "sweep",
        "defaults": {
            "module": { "uri": "m.wasm", "blake3": H },
            "outputs": [ { "name": "r.json", "max_bytes": 100 } ],
            "limits": { "fuel": 1000, "memory_bytes": 1048576 }
        },
        "redundancy": { "replicas": 3, "quorum": 2, "max_replicas": 5 },
        "credit_rate": 0.5,
        "tasks": [
            { "name": "t1", "args": ["--mass", "1.0"], "seed": 1 },
            { "name": "t2", "limits": { "fuel": 5 }, "outputs": [] }
        ]
    })
}

#[test]
fn batch_tasks_are_defaults_with_their_own_fields_laid_over() {
    let b = BatchManifest::from_value(batch()).unwrap();
    assert_eq!(b.tasks.len(), 2);
    assert_eq!(b.tasks[0].args, ["--mass", "1.0"]);
    assert_eq!(b.tasks[0].limits.fuel, 1000);
    // Objects merge field by field; arrays replace.
    assert_eq!(b.tasks[1].limits.fuel, 5);
    assert_eq!(b.tasks[1].limits.memory_bytes, 1 << 20);
    assert!(b.tasks[1].outputs.is_empty());
    assert_eq!((b.redundancy.replicas, b.redundancy.quorum), (3, 2));
    assert_eq!(b.credit_rate, 0.5);
    // Optional: absent, the quorum alone decides.
    assert_eq!(b.target_error, None);
}

#[test]
fn batch_errors_name_the_task_and_field() {
    let check = |edit: &dyn Fn(&mut Value), words: &[&str]| {
        let mut b = batch();
        edit(&mut b);
        let err = BatchManifest::from_value(b).unwrap_err().to_string();
        for w in words {
            assert!(err.contains(w), "{err:?} lacks {w:?}");
        }
    };
    check(
        &|b| b["tasks"][1]["name"] = json!("t1"),
        &["tasks[1].name", "twice"],
    );
    check(
        &|b| b["tasks"][1]["limits"]["fuel"] = json!(0),
        &["tasks[1].limits.fuel"],
    );
    check(
        &|b| b["redundancy"]["quorum"] = json!(4),
        &["redundancy.quorum"],
    );
    check(
        &|b| b["redundancy"]["max_replicas"] = json!(2),
        &["redundancy.max_replicas"],
    );
    check(&|b| b["credit_rate"] = json!(-1.0), &["credit_rate"]);
    check(
        &|b| b["target_error"] = json!(0.5),
        &["target_error", "below 0.5"],
    );
    check(&|b| b["target_error"] = json!(0), &["target_error"]);
    check(&|b| b["tasks"] = json!([]), &["tasks", "at least one"]);
    check(
        &|b| b["tasks"][0]["colour"] = json!("red"),
        &["tasks[0]", "colour"],
    );
}

#[test]
fn every_problem_of_a_batch_is_reported_at_once() {
    let mut b = batch();
    b["redundancy"]["quorum"] = json!(4);
    b["tasks"][0]["limits"] = json!({ "fuel": 0 });
    b["tasks"][1]["seed"] = json!("one");
    let problems: Vec<String> = BatchManifest::from_value_all(b)
        .unwrap_err()
        .iter()
        .map(|p| p.to_string())
        .collect();
    assert_eq!(problems.len(), 3, "{problems:#?}");
    for (problem, field) in
        problems
            .iter()
            .zip(["redundancy.quorum", "tasks[0].limits.fuel", "tasks[1].seed"])
    {
        assert!(problem.contains(field), "{problem:?} lacks {field:?}");
    }
}

fn report(outcome: Outcome, fuel: u64, stdout: &[u8], outputs: &[(&str, &[u8])]) -> RunReport {
    let records = outputs
        .iter()
        .map(|(n, b)| OutputRecord {
            name: Name::parse(n).unwrap(),
            bytes: b.len() as u64,
            blake3: Blake3Hash::of(b),
        })
        .collect();
    RunReport::new(outcome, fuel, Blake3Hash::of(stdout), records, 0)
}

#[test]
fn the_digest_covers_every_field_the_contract_names() {
    let ok = Outcome::Exited { exit_code: 0 };
    let base = report(ok.clone(), 10, b"out", &[("a", b"1"), ("b", b"2")]);
    let variants = [
        report(
            Outcome::Exited { exit_code: 1 },
            10,
            b"out",
            &[("a", b"1"), ("b", b"2")],
        ),
        report(
            Outcome::Trapped {
                trap: "unreachable".into(),
            },
            10,
            b"out",
            &[("a", b"1"), ("b", b"2")],
        ),
        report(Outcome::OutOfFuel, 10, b"out", &[("a", b"1"), ("b", b"2")]),
        report(ok.clone(), 11, b"out", &[("a", b"1"), ("b", b"2")]),
        report(ok.clone(), 10, b"out!", &[("a", b"1"), ("b", b"2")]),
        report(ok.clone(), 10, b"out", &[("a", b"1"), ("b", b"3")]),
        report(ok.clone(), 10, b"out", &[("a", b"1")]),
        report(ok.clone(), 10, b"out", &[("a", b"1"), ("c", b"2")]),
    ];
    for v in &variants {
        assert_ne!(v.digest, base.digest, "{v:?}");
    }
    // Wall time is not part of it, and outputs are taken in name order.
    let mut slow = report(ok.clone(), 10, b"out", &[("b", b"2"), ("a", b"1")]);
    slow.wall_ms = 99_999;
    assert_eq!(slow.digest, base.digest);
    assert!(slow.digest_is_consistent());
}

#[test]
fn report_json_has_the_contract_shape() {
    let r = report(
        Outcome::Trapped {
            trap: "unreachable".into(),
        },
        7,
        b"",
        &[],
    );
    let v = serde_json::to_value(&r).unwrap();
    assert_eq!(v["outcome"], "trapped");
    assert_eq!(v["trap"], "unreachable");
    assert_eq!(v["fuel_consumed"], 7);
    assert_eq!(v["digest"].as_str().unwrap().len(), 64);
    let back: RunReport = serde_json::from_value(v).unwrap();
    assert_eq!(back, r);
}

#[test]
fn a_report_status_is_named_as_json_names_it() {
    use helio_sdk::wire::ReportStatus;
    for status in [
        ReportStatus::Recorded,
        ReportStatus::Accepted,
        ReportStatus::Disagreed,
        ReportStatus::Duplicate,
        ReportStatus::Refused,
    ] {
        assert_eq!(serde_json::to_value(&status).unwrap(), status.as_str());
    }
}
