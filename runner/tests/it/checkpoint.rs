//! Checkpoints: a task stopped at its checkpoints and resumed on other runners gives the same
//! outputs, digest and total fuel as one run in one go; a checkpoint resumes only its own
//! task, and one that was tampered with or cut short is refused.

use std::ops::ControlFlow;

use helio_runner::checkpoint::{Checkpoint, SavedKind};
use helio_runner::{Rejection, Resumable, RunOutput, Sandbox, SandboxConfig, Segments};
use helio_sdk::{Blake3Hash, Outcome, TaskManifest};
use serde_json::json;

fn task(total: u64, every: u64) -> (TaskManifest, Vec<u8>) {
    let module = helio_test_guests::bytes(helio_test_guests::CHECKPOINTER);
    let task = TaskManifest::from_value(json!({
        "schema_version": 1,
        "name": "checkpointer",
        "module": { "uri": "m.wasm", "blake3": Blake3Hash::of(&module).to_string() },
        "args": [total.to_string(), every.to_string()],
        "outputs": [{ "name": "log.txt", "max_bytes": 4096 }],
        "limits": { "fuel": 1u64 << 40 },
        "seed": 7,
        "checkpoint": { "max_bytes": 16 }
    }))
    .unwrap();
    (task, module)
}

/// Runs `task` on a new sandbox (another runner) from `resume`, stopping at the first
/// checkpoint it saves if `stop`. Returns how it ended and how many checkpoints it saved.
fn run_on_a_new_runner(
    task: &TaskManifest,
    module: &[u8],
    resume: Option<Vec<u8>>,
    stop: bool,
) -> (Result<Segments, Rejection>, u32) {
    let sandbox = Sandbox::new(SandboxConfig::default()).unwrap();
    let prepared = sandbox.prepare(&task.module.blake3, module).unwrap();
    let mut saved = 0;
    let run = Resumable {
        resume,
        on_checkpoint: Box::new(|_| {
            saved += 1;
            if stop {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        }),
        ..Resumable::default()
    };
    let result = sandbox.run_resumable(&prepared, task, vec![], run);
    (result, saved)
}

fn ended(result: Result<Segments, Rejection>) -> RunOutput {
    match result.unwrap() {
        Segments::Ended(output) => output,
        Segments::Stopped(_) => panic!("the run stopped at a checkpoint"),
    }
}

fn stopped(result: Result<Segments, Rejection>) -> Vec<u8> {
    match result.unwrap() {
        Segments::Stopped(bytes) => bytes,
        Segments::Ended(output) => panic!("the run ended: {:?}", output.report.outcome),
    }
}

fn log(output: &RunOutput) -> String {
    let log = output.outputs.iter().find(|o| o.name.as_str() == "log.txt");
    String::from_utf8(log.expect("log.txt was written").read_all().unwrap()).unwrap()
}

#[test]
fn a_task_interrupted_twice_gives_what_one_run_gives() {
    let (task, module) = task(50_000, 10_000);
    let (result, saved_in_one_go) = run_on_a_new_runner(&task, &module, None, false);
    let one_go = ended(result);
    assert_eq!(one_go.report.outcome, Outcome::Exited { exit_code: 0 });
    assert_eq!(saved_in_one_go, 4, "a save every 10,000 of 50,000 rounds");

    // Stopped at its first checkpoint, then at its second, each time on another runner.
    let first = stopped(run_on_a_new_runner(&task, &module, None, true).0);
    let second = stopped(run_on_a_new_runner(&task, &module, Some(first.clone()), true).0);
    let (result, saved_at_the_end) =
        run_on_a_new_runner(&task, &module, Some(second.clone()), false);
    let pieces = ended(result);
    assert_eq!(
        saved_at_the_end, 2,
        "the third runner saved the last two checkpoints"
    );

    let [first, second] = [first, second].map(|b| Checkpoint::decode(&b, &task).unwrap());
    assert_eq!((first.saved, second.saved), (1, 2));
    assert!(0 < first.fuel_used && first.fuel_used < second.fuel_used);
    assert!(second.fuel_used < one_go.report.fuel_consumed);

    assert_eq!(pieces.report.digest, one_go.report.digest);
    assert_eq!(pieces.report.fuel_consumed, one_go.report.fuel_consumed);
    assert_eq!(pieces.stdout, one_go.stdout);
    assert_eq!(log(&pieces), log(&one_go));
    // Five segments, each of which found /out and standard output as the last one left them.
    let segments = (0..5)
        .map(|i| format!("segment from round {}\n", i * 10_000))
        .collect::<String>();
    assert_eq!(log(&one_go), segments);
    assert!(String::from_utf8_lossy(&one_go.stdout).starts_with(&segments));
}

#[test]
fn a_checkpoint_resumes_its_own_task_only_and_whole() {
    let (task, module) = task(30_000, 10_000);
    let bytes = stopped(run_on_a_new_runner(&task, &module, None, true).0);
    // Another task: the same module with other arguments.
    let (other, _) = self::task(30_001, 10_000);
    let (result, _) = run_on_a_new_runner(&other, &module, Some(bytes.clone()), false);
    match result {
        Err(Rejection::Checkpoint(why)) => assert!(why.contains("another task"), "{why}"),
        other => panic!("a checkpoint of another task was taken: {other:?}"),
    }
    let cut = bytes[..bytes.len() - 1].to_vec();
    let (result, _) = run_on_a_new_runner(&task, &module, Some(cut), false);
    assert!(
        matches!(&result, Err(Rejection::Checkpoint(why)) if why.contains("cut short")),
        "{result:?}"
    );
    // An output larger than the task allows is refused as it is put back.
    let mut big = Checkpoint::decode(&bytes, &task).unwrap();
    assert_eq!(big.out.len(), 1);
    big.out[0].kind = SavedKind::File(vec![b'x'; 4097]);
    let (result, _) = run_on_a_new_runner(&task, &module, Some(big.encode()), false);
    assert!(
        matches!(&result, Err(Rejection::Checkpoint(why)) if why.contains("/out/log.txt") && why.contains("4096")),
        "{result:?}"
    );
}

/// The number of the checkpoint in `file`, once there is one newer than `after`.
fn checkpoint_after(file: &std::path::Path, task: &TaskManifest, after: u32) -> Option<u32> {
    let bytes = std::fs::read(file).ok()?;
    let saved = Checkpoint::decode(&bytes, task).ok()?.saved;
    (saved > after).then_some(saved)
}

#[test]
fn runner_exec_killed_twice_goes_on_from_its_checkpoint_file() {
    let t = super::check::task(helio_test_guests::CHECKPOINTER)
        .args(&["4000000", "100000"])
        .output("log.txt", 4096)
        .set("/checkpoint", json!({ "max_bytes": 16 }));
    let one_go = t.exec();
    assert_eq!(one_go.status, 0, "{:#}", one_go.json);
    let task = TaskManifest::from_value(t.manifest.clone()).unwrap();
    let file = t.dir.path().join("task.ckpt");
    let mut last = 0;
    for _ in 0..2 {
        let mut child = super::check::runner()
            .args(["exec", "--json", "--no-cache", "--checkpoint"])
            .arg(&file)
            .arg(t.manifest_path())
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let started = std::time::Instant::now();
        last = loop {
            if let Some(saved) = checkpoint_after(&file, &task, last) {
                break saved;
            }
            assert!(
                child.try_wait().unwrap().is_none(),
                "the run ended before it could be stopped"
            );
            assert!(started.elapsed().as_secs() < 120, "no new checkpoint");
            std::thread::sleep(std::time::Duration::from_millis(5));
        };
        child.kill().unwrap();
        child.wait().unwrap();
    }
    assert!(last < 39, "the kills came at checkpoint {last} of 39");
    let resumed = t.exec_with(&["--checkpoint", file.to_str().unwrap()], |_| {});
    assert_eq!(resumed.status, 0, "{:#}", resumed.json);
    for field in ["digest", "fuel_consumed", "stdout_blake3", "outputs"] {
        assert_eq!(resumed.json[field], one_go.json[field], "{field}");
    }
    assert!(
        !file.exists(),
        "the finished task's checkpoint is still there"
    );
}
