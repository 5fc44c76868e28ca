//! `helio pack` and `helio validate`, driven through the binary.

use std::path::Path;
use std::process::{Command, Output};

use helio_sdk::{BatchManifest, TaskManifest};
use serde_json::Value;

fn helio(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_helio"))
        .args(args)
        .output()
        .expect("helio runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn a_packed_task_runs_in_the_sandbox() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("pack");
    let packed = helio(&[
        "pack",
        helio_jobs::HASHCHAIN,
        "--out",
        path(&out),
        "--name",
        "chain",
        "--arg",
        "--rounds",
        "--arg",
        "100",
        "--output",
        "digest.txt:128",
        "--fuel",
        "100000000",
    ]);
    assert!(packed.status.success(), "{}", text(&packed.stderr));
    assert!(text(&packed.stdout).contains("task.json"));
    let task = helio_sandbox::load_task(&out.join("task.json")).expect("the task loads");
    assert_eq!(task.manifest.name.as_str(), "chain");
    assert_eq!(task.manifest.args, ["--rounds", "100"]);
    let sandbox = helio_sandbox::Sandbox::new(Default::default()).unwrap();
    let run = task.run(&sandbox).unwrap();
    assert!(run.report.outcome.is_success(), "{:?}", run.report.outcome);
    assert_eq!(run.outputs.len(), 1);
    let valid = helio(&["validate", path(&out.join("task.json"))]);
    assert!(valid.status.success(), "{}", text(&valid.stdout));
    assert!(text(&valid.stdout).contains("a valid task (1 task)"));
}

#[test]
fn sweeps_seeds_and_csv_rows_make_one_task_per_combination() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("sweep");
    let csv = dir.path().join("rows.csv");
    std::fs::write(&csv, "size,sweeps\n16,100\n32,200\n").unwrap();
    let packed = helio(&[
        "pack",
        helio_jobs::ISING,
        "--out",
        path(&out),
        "--name",
        "ising",
        "--sweep",
        "temperature=2.0:2.5:0.5",
        "--sweep-csv",
        path(&csv),
        "--seeds",
        "3",
        "--output",
        "sample.json:4096",
        "--redundancy",
        "3,2,5",
        "--target-error",
        "1e-4",
    ]);
    assert!(packed.status.success(), "{}", text(&packed.stderr));
    let batch = BatchManifest::from_json(&std::fs::read_to_string(out.join("batch.json")).unwrap())
        .unwrap();
    // 2 temperatures × 2 CSV rows × 3 seeds.
    assert_eq!(batch.tasks.len(), 12);
    assert_eq!(batch.redundancy.replicas, 3);
    assert_eq!(batch.target_error, Some(1e-4));
    let first = &batch.tasks[0];
    assert_eq!(first.name.as_str(), "ising-0001");
    assert_eq!(
        first.args,
        ["--temperature", "2.0", "--size", "16", "--sweeps", "100"]
    );
    assert_eq!(first.seed, 1);
    let last = &batch.tasks[11];
    assert_eq!(
        last.args,
        ["--temperature", "2.5", "--size", "32", "--sweeps", "200"]
    );
    assert_eq!(last.seed, 3);
    let valid = helio(&["validate", path(&out.join("batch.json")), "--json"]);
    let report: Value = serde_json::from_slice(&valid.stdout).unwrap();
    assert_eq!(report["valid"], true, "{report}");
    assert_eq!(report["tasks"], 12);
}

#[test]
fn one_task_per_input_file() {
    let dir = tempfile::tempdir().unwrap();
    let photos = dir.path().join("photos");
    std::fs::create_dir(&photos).unwrap();
    for name in ["a.png", "b.png", "c.png"] {
        std::fs::write(photos.join(name), name).unwrap();
    }
    let out = dir.path().join("thumbs");
    let packed = helio(&[
        "pack",
        helio_jobs::THUMBNAILS,
        "--out",
        path(&out),
        "--name",
        "thumbs",
        "--each-input",
        &format!("image.png={}", path(&photos)),
        "--output",
        "image.png:1000000",
    ]);
    assert!(packed.status.success(), "{}", text(&packed.stderr));
    let batch = BatchManifest::from_json(&std::fs::read_to_string(out.join("batch.json")).unwrap())
        .unwrap();
    let names: Vec<&str> = batch.tasks.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["thumbs-a", "thumbs-b", "thumbs-c"]);
    for (task, content) in batch.tasks.iter().zip(["a.png", "b.png", "c.png"]) {
        assert_eq!(task.inputs.len(), 1);
        assert_eq!(task.inputs[0].name.as_str(), "image.png");
        assert_eq!(
            task.inputs[0].blake3,
            helio_sdk::Blake3Hash::of(content.as_bytes())
        );
    }
}

#[test]
fn pack_refuses_a_module_that_breaks_the_contract_and_says_how() {
    let dir = tempfile::tempdir().unwrap();
    let wasm = dir.path().join("net.wasm");
    std::fs::write(
        &wasm,
        wat::parse_str(
            r#"(module (import "env" "socket" (func)) (memory 1) (func (export "run")))"#,
        )
        .unwrap(),
    )
    .unwrap();
    let packed = helio(&["pack", path(&wasm), "--out", path(&dir.path().join("o"))]);
    assert_eq!(packed.status.code(), Some(2));
    let err = text(&packed.stderr);
    for words in ["`env`.`socket`", "`_start`", "`memory`"] {
        assert!(err.contains(words), "{err} lacks {words}");
    }
}

#[test]
fn validate_lists_every_problem() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("p");
    let packed = helio(&[
        "pack",
        helio_jobs::HASHCHAIN,
        "--out",
        path(&out),
        "--sweep",
        "rounds=1,2",
        "--input",
        &format!(
            "notes.txt={}",
            path(&out_file(dir.path(), "notes.txt", b"hello"))
        ),
    ]);
    assert!(packed.status.success(), "{}", text(&packed.stderr));
    let manifest = out.join("batch.json");
    let mut batch: Value =
        serde_json::from_str(&std::fs::read_to_string(&manifest).unwrap()).unwrap();
    batch["redundancy"] = serde_json::json!({ "replicas": 2, "quorum": 3, "max_replicas": 5 });
    batch["tasks"][1]["limits"] = serde_json::json!({ "fuel": 0 });
    std::fs::write(&manifest, batch.to_string()).unwrap();
    let report = helio(&["validate", path(&manifest)]);
    assert_eq!(report.status.code(), Some(1));
    let said = text(&report.stdout);
    assert!(said.contains("2 problems"), "{said}");
    assert!(
        said.contains("redundancy.quorum") && said.contains("tasks[1].limits.fuel"),
        "{said}"
    );

    // Valid again, but with an input whose bytes changed after packing.
    batch["redundancy"] = serde_json::json!({ "replicas": 2, "quorum": 2, "max_replicas": 5 });
    batch["tasks"][1].as_object_mut().unwrap().remove("limits");
    std::fs::write(&manifest, batch.to_string()).unwrap();
    let staged = batch["defaults"]["inputs"][0]["uri"].as_str().unwrap();
    std::fs::write(out.join(staged), b"tampered").unwrap();
    let report = helio(&["validate", path(&manifest)]);
    assert_eq!(report.status.code(), Some(1));
    let said = text(&report.stdout);
    assert!(
        said.contains("input \"notes.txt\"") && said.contains("BLAKE3 mismatch"),
        "{said}"
    );

    let missing = helio(&["validate", path(&dir.path().join("nowhere.json"))]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(text(&missing.stderr).contains("nowhere.json"));
}

fn out_file(dir: &Path, name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

#[test]
fn a_task_manifest_with_a_bad_field_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("task.json");
    std::fs::write(
        &manifest,
        r#"{ "schema_version": 1, "module": { "uri": "m.wasm", "blake3": "00" }, "limits": { "fuel": 1 } }"#,
    )
    .unwrap();
    let report = helio(&["validate", path(&manifest)]);
    assert_eq!(report.status.code(), Some(1));
    assert!(
        text(&report.stdout).contains("module.blake3"),
        "{}",
        text(&report.stdout)
    );
    assert!(TaskManifest::from_json(&std::fs::read_to_string(&manifest).unwrap()).is_err());
}

/// Serves the files under `root` over HTTP on a loopback port, one request per connection,
/// until the test ends. Returns the base URL.
fn serve(root: std::path::PathBuf) -> String {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request = String::new();
            if reader.read_line(&mut request).is_err() {
                continue;
            }
            // Skip the headers.
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                line.clear();
            }
            let path = request.split_whitespace().nth(1).unwrap_or("/").to_string();
            let file = root.join(path.trim_start_matches('/'));
            let response = match std::fs::read(&file) {
                Ok(body) => {
                    let mut r = format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        body.len()
                    )
                    .into_bytes();
                    r.extend(body);
                    r
                }
                Err(_) => {
                    b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                        .to_vec()
                }
            };
            let _ = stream.write_all(&response);
        }
    });
    format!("http://127.0.0.1:{port}")
}

#[test]
fn validate_reads_a_manifest_and_its_objects_over_http() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run-42");
    let notes = out_file(dir.path(), "notes.txt", b"hello");
    let packed = helio(&[
        "pack",
        helio_jobs::HASHCHAIN,
        "--out",
        path(&out),
        "--sweep",
        "rounds=1,2,3",
        "--input",
        &format!("notes.txt={}", path(&notes)),
    ]);
    assert!(packed.status.success(), "{}", text(&packed.stderr));
    let base = serve(dir.path().to_path_buf());
    let url = format!("{base}/run-42/batch.json");
    let report = helio(&["validate", &url, "--json"]);
    let report: Value = serde_json::from_slice(&report.stdout).unwrap();
    assert_eq!(report["valid"], true, "{report}");
    assert_eq!(report["tasks"], 3);

    // The input's bytes change on the server: the relative URI was followed and checked.
    let batch: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("batch.json")).unwrap()).unwrap();
    let staged = batch["defaults"]["inputs"][0]["uri"].as_str().unwrap();
    std::fs::write(out.join(staged), b"changed").unwrap();
    let said = text(&helio(&["validate", &url]).stdout);
    assert!(
        said.contains("BLAKE3 mismatch") && said.contains(staged),
        "{said}"
    );
    // And when it is gone, the error names it.
    std::fs::remove_file(out.join(staged)).unwrap();
    let said = text(&helio(&["validate", &url]).stdout);
    assert!(said.contains(&format!("{base}/run-42/{staged}")), "{said}");

    let missing = helio(&["validate", &format!("{base}/run-42/nothing.json")]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(text(&missing.stderr).contains("nothing.json"));
}
