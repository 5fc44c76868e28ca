//! The steps `sdk/README.md` gives a new user, run exactly: `cargo new`, `cargo add
//! helio-guest`, the README's `src/main.rs`, `helio pack`, `runner exec`.

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// The README's code block that follows `marker`.
fn block_after(readme: &str, marker: &str, lang: &str) -> String {
    let at = readme
        .find(marker)
        .unwrap_or_else(|| panic!("README lacks {marker:?}"));
    let rest = &readme[at..];
    let open = format!("```{lang}\n");
    let start = rest.find(&open).expect("a code block") + open.len();
    let end = rest[start..].find("```").expect("the block ends") + start;
    rest[start..end].to_string()
}

/// The `runner` binary that `cargo test --workspace` builds beside `helio`.
fn runner() -> PathBuf {
    let helio = Path::new(env!("CARGO_BIN_EXE_helio"));
    let runner = helio.with_file_name(format!("runner{}", std::env::consts::EXE_SUFFIX));
    assert!(
        runner.exists(),
        "{} is missing: run the workspace's tests (cargo test --workspace), which build it",
        runner.display()
    );
    runner
}

fn run(dir: &Path, program: &Path, args: &[String]) -> String {
    let out = Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", program.display()));
    assert!(
        out.status.success(),
        "{} {args:?} failed\nstdout: {}\nstderr: {}",
        program.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn a_new_user_goes_from_cargo_new_to_a_running_task() {
    let readme = std::fs::read_to_string(repo().join("sdk/README.md")).unwrap();
    let steps = block_after(&readme, "Then, anywhere:", "sh");
    let main_rs = block_after(&readme, "with this `src/main.rs`", "rust");
    let work = tempfile::tempdir().unwrap();
    let cargo = PathBuf::from(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    let guest = repo().join("sdk/guest");
    let mut cwd = work.path().to_path_buf();
    let mut ran = Vec::new();
    for line in steps.lines().filter(|l| !l.trim().is_empty()) {
        let words: Vec<String> = line
            .split_whitespace()
            .map(|w| w.replace("/path/to/helio/sdk/guest", guest.to_str().unwrap()))
            .collect();
        let (program, args) = words.split_first().unwrap();
        match program.as_str() {
            "cd" => cwd = cwd.join(&args[0]),
            "cargo" => {
                let mut args = args.to_vec();
                if args[0] == "new" {
                    args.extend(["--vcs".into(), "none".into()]);
                }
                run(&cwd, &cargo, &args);
                if args[0] == "add" {
                    // The README's program goes in after `cargo add`.
                    std::fs::write(cwd.join("src/main.rs"), &main_rs).unwrap();
                }
            }
            "helio" => {
                run(&cwd, Path::new(env!("CARGO_BIN_EXE_helio")), args);
            }
            "runner" => {
                let mut args = args.to_vec();
                args.push("--json".into());
                let report: serde_json::Value =
                    serde_json::from_str(&run(&cwd, &runner(), &args)).unwrap();
                assert_eq!(report["outcome"], "exited", "{report}");
                assert_eq!(report["exit_code"], 0, "{report}");
                let out = cwd.join("out");
                args.extend(["--out-dir".into(), out.to_str().unwrap().into()]);
                run(&cwd, &runner(), &args);
                let pi: f64 = std::fs::read_to_string(out.join("pi.txt"))
                    .unwrap()
                    .trim()
                    .parse()
                    .unwrap();
                assert!((pi - std::f64::consts::PI).abs() < 0.01, "π ≈ {pi}");
            }
            other => panic!("the README's steps run {other:?}, which this test does not know"),
        }
        ran.push(program.clone());
    }
    assert_eq!(ran, ["cargo", "cd", "cargo", "helio", "runner"]);
}
