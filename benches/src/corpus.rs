//! The determinism corpus: tasks whose outcome, fuel and digest must be the same on every
//! architecture a runner is built for. Every job in `jobs/` on its example batch (its first
//! and last task), and the test guests that probe what hosts differ in: NaN bit patterns,
//! float and integer kernels, memory growth to the limit, stack exhaustion, running out of
//! fuel, and everything a guest can observe of its host.
//!
//! `helio-bench corpus [-- RUNNER...]` writes the corpus, runs each case through `runner exec`
//! (the host's, or a cross-built one under qemu-user), and compares what it gave with the
//! figures checked in at `tests/determinism/expected.json`. `scripts/cross-determinism` runs
//! it for every architecture.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail, ensure};
use helio_sdk::{Blake3Hash, DETERMINISM_PROFILE};
use helio_test_guests as g;
use serde::{Deserialize, Serialize};
use serde_json::json;

/// `helio-bench corpus`.
#[derive(clap::Args, Clone)]
pub struct CorpusArgs {
    /// Where the corpus is written.
    #[arg(long, default_value = "target/determinism-corpus")]
    pub dir: PathBuf,
    /// After `--`: the command that runs `runner`, and its first arguments (e.g.
    /// `-- qemu-aarch64-static -L /usr/aarch64-linux-gnu target/aarch64-unknown-linux-gnu/debug/runner`);
    /// by default the `runner` beside this program.
    #[arg(last = true)]
    pub runner: Vec<String>,
    /// The architecture the runner is built for, as the report names it.
    #[arg(long, default_value = std::env::consts::ARCH)]
    pub arch: String,
    /// The figures every architecture must give.
    #[arg(long, default_value = "tests/determinism/expected.json")]
    pub expected: PathBuf,
    /// Write what this run gave as the expected figures instead of comparing (when the
    /// determinism profile's version is raised on purpose).
    #[arg(long)]
    pub bless: bool,
}

/// One task of the corpus.
#[derive(Debug, Clone)]
pub struct Case {
    /// Its name in the report and in `expected.json`.
    pub name: String,
    /// Its task or batch manifest.
    pub manifest: PathBuf,
    /// The task to run, for a batch manifest.
    pub task: Option<String>,
}

/// What a run gave: the figures that must be equal everywhere.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Figures {
    /// The outcome's name.
    pub outcome: String,
    /// The fuel burned.
    pub fuel: u64,
    /// The result digest (which holds the determinism profile).
    pub digest: String,
}

/// The figures checked in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Expected {
    /// The determinism profile they were taken under.
    pub profile: String,
    /// Each case's figures.
    pub cases: BTreeMap<String, Figures>,
}

/// A test guest's task.
struct Guest {
    name: &'static str,
    module: &'static str,
    args: &'static [&'static str],
    inputs: &'static [(&'static str, &'static [u8])],
    outputs: &'static [&'static str],
    fuel: u64,
    memory_bytes: u64,
}

const fn guest(name: &'static str, module: &'static str, fuel: u64) -> Guest {
    Guest {
        name,
        module,
        args: &[],
        inputs: &[],
        outputs: &[],
        fuel,
        memory_bytes: 1 << 24,
    }
}

const GUESTS: &[Guest] = &[
    Guest {
        inputs: &[("name.txt", b"corpus")],
        outputs: &["greeting.txt"],
        ..guest("hello", g::HELLO, 10_000_000)
    },
    Guest {
        outputs: &["nans.bin"],
        ..guest("nans", g::NANS, 100_000_000)
    },
    Guest {
        args: &["20000"],
        ..guest("intmix", g::INTMIX, 2_000_000_000)
    },
    Guest {
        args: &["20"],
        ..guest("nbody-kernel", g::NBODY, 2_000_000_000)
    },
    Guest {
        args: &["--flag", "value"],
        inputs: &[("a.txt", b"alpha"), ("b.txt", b"bravo, a longer file")],
        outputs: &["report.txt"],
        memory_bytes: 1 << 26,
        ..guest("observe", g::OBSERVE, 1_000_000_000)
    },
    guest("memory-limit", g::MEMORY_BOMB, 2_000_000_000),
    guest("stack-overflow", g::RECURSE, 2_000_000_000),
    guest("out-of-fuel", g::SPIN, 5_000_000),
    Guest {
        args: &["7"],
        ..guest("exit-code", g::EXIT_CODE, 10_000_000)
    },
];

/// Writes the corpus under `dir` and lists its cases.
pub fn write(dir: &Path) -> Result<Vec<Case>> {
    let mut cases = Vec::new();
    let examples = helio_examples::batches::write_batches(&dir.join("examples"))
        .map_err(anyhow::Error::msg)?;
    for example in examples {
        let text = std::fs::read_to_string(&example.packed.manifest)?;
        let batch = helio_sdk::BatchManifest::from_json(&text)
            .with_context(|| example.packed.manifest.display().to_string())?;
        let (first, last) = (batch.tasks.first(), batch.tasks.last());
        for task in [first, last].into_iter().flatten() {
            let name = format!("{}/{}", example.job, task.name);
            if cases.iter().any(|c: &Case| c.name == name) {
                continue;
            }
            cases.push(Case {
                name,
                manifest: example.packed.manifest.clone(),
                task: Some(task.name.to_string()),
            });
        }
    }
    for guest in GUESTS {
        let here = dir.join("guests").join(guest.name);
        std::fs::create_dir_all(&here)?;
        let bytes = g::bytes(guest.module);
        std::fs::write(here.join("module.wasm"), &bytes)?;
        let mut inputs = Vec::new();
        for (name, content) in guest.inputs {
            std::fs::write(here.join(name), content)?;
            inputs.push(json!({
                "name": name, "uri": name, "blake3": Blake3Hash::of(content).to_string()
            }));
        }
        let outputs: Vec<_> = guest
            .outputs
            .iter()
            .map(|o| json!({ "name": o, "max_bytes": 1 << 16 }))
            .collect();
        let manifest = json!({
            "schema_version": 1,
            "name": guest.name,
            "module": { "uri": "module.wasm", "blake3": Blake3Hash::of(&bytes).to_string() },
            "args": guest.args,
            "env": { "MODE": "corpus", "LANG": "C" },
            "inputs": inputs,
            "outputs": outputs,
            "limits": { "fuel": guest.fuel, "memory_bytes": guest.memory_bytes },
            "seed": 7,
        });
        let path = here.join("task.json");
        std::fs::write(&path, serde_json::to_vec_pretty(&manifest)?)?;
        cases.push(Case {
            name: format!("guest/{}", guest.name),
            manifest: path,
            task: None,
        });
    }
    Ok(cases)
}

/// Runs `case` with the command `runner` (program and first arguments) and reads its figures.
pub fn run(runner: &[String], case: &Case, scratch: &Path) -> Result<Figures> {
    let (program, first) = runner.split_first().context("no runner command")?;
    let out = scratch.join(case.name.replace('/', "_"));
    let _ = std::fs::remove_dir_all(&out);
    let mut cmd = Command::new(program);
    cmd.args(first)
        .arg("exec")
        .arg(&case.manifest)
        .args(["--json", "--no-cache", "--memory-cap", "off", "--out-dir"])
        .arg(&out);
    if let Some(task) = &case.task {
        cmd.args(["--task", task]);
    }
    let output = cmd
        .output()
        .with_context(|| format!("{}: cannot start {program}", case.name))?;
    let text = String::from_utf8_lossy(&output.stdout);
    // The report is the SDK's `RunReport`, read as the scheduler reads a runner's.
    let report: helio_sdk::RunReport = serde_json::from_str(text.trim()).with_context(|| {
        format!(
            "{}: the runner printed no run report ({}): {text}\n{}",
            case.name,
            output.status,
            String::from_utf8_lossy(&output.stderr)
        )
    })?;
    Ok(Figures {
        outcome: report.outcome.name().to_string(),
        fuel: report.fuel_consumed,
        digest: report.digest.to_string(),
    })
}

/// Compares what `arch` gave with what every architecture must give: every case that
/// differs, each with the architecture and its first differing figure.
pub fn compare(expected: &Expected, given: &BTreeMap<String, Figures>, arch: &str) -> Result<()> {
    ensure!(
        expected.profile == DETERMINISM_PROFILE,
        "the expected figures are of determinism profile {}, the runner's is {DETERMINISM_PROFILE}: \
         take them again with --bless once the change is meant",
        expected.profile
    );
    let mut differences = Vec::new();
    for (name, want) in &expected.cases {
        let Some(got) = given.get(name) else {
            differences.push(format!("{arch}: case {name} was not run"));
            continue;
        };
        let figures = [
            ("outcome", want.outcome.clone(), got.outcome.clone()),
            ("fuel", want.fuel.to_string(), got.fuel.to_string()),
            ("digest", want.digest.clone(), got.digest.clone()),
        ];
        if let Some((what, a, b)) = figures.into_iter().find(|(_, a, b)| a != b) {
            differences.push(format!(
                "{arch}: case {name} differs first in its {what}: expected {a}, got {b}"
            ));
        }
    }
    for extra in given.keys().filter(|k| !expected.cases.contains_key(*k)) {
        differences.push(format!(
            "{arch}: case {extra} has no expected figures; take them with --bless"
        ));
    }
    if differences.is_empty() {
        Ok(())
    } else {
        bail!("{}", differences.join("\n"))
    }
}

/// `helio-bench corpus`: writes, runs and compares; prints a Markdown table.
pub fn corpus(args: &CorpusArgs) -> Result<()> {
    let runner = if args.runner.is_empty() {
        let here = std::env::current_exe()?;
        vec![here.with_file_name("runner").display().to_string()]
    } else {
        args.runner.clone()
    };
    let cases = write(&args.dir)?;
    let scratch = args.dir.join("out");
    let started = Instant::now();
    let mut given = BTreeMap::new();
    println!(
        "| case ({}) | outcome | fuel | digest | seconds |",
        args.arch
    );
    println!("|---|---|---|---|---|");
    for case in &cases {
        let t = Instant::now();
        let figures = run(&runner, case, &scratch)?;
        println!(
            "| {} | {} | {} | {}… | {:.1} |",
            case.name,
            figures.outcome,
            figures.fuel,
            &figures.digest[..16.min(figures.digest.len())],
            t.elapsed().as_secs_f64()
        );
        given.insert(case.name.clone(), figures);
    }
    println!(
        "\n{} cases on {} in {:.1} s",
        cases.len(),
        args.arch,
        started.elapsed().as_secs_f64()
    );
    if args.bless {
        let expected = Expected {
            profile: DETERMINISM_PROFILE.to_string(),
            cases: given,
        };
        if let Some(parent) = args.expected.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let mut text = serde_json::to_string_pretty(&expected)?;
        text.push('\n');
        std::fs::write(&args.expected, text)?;
        println!("wrote {}", args.expected.display());
        return Ok(());
    }
    let text = std::fs::read_to_string(&args.expected)
        .with_context(|| format!("cannot read {}", args.expected.display()))?;
    let expected: Expected = serde_json::from_str(&text)
        .with_context(|| format!("{} is not expected figures", args.expected.display()))?;
    compare(&expected, &given, &args.arch)?;
    println!(
        "{}: all {} cases equal the expected figures",
        args.arch,
        cases.len()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn figures(fuel: u64, digest: &str) -> Figures {
        Figures {
            outcome: "exited".into(),
            fuel,
            digest: digest.into(),
        }
    }

    #[test]
    fn a_difference_names_the_case_the_architecture_and_the_figure() {
        let expected = Expected {
            profile: DETERMINISM_PROFILE.into(),
            cases: [
                ("a".into(), figures(1, "aa")),
                ("b".into(), figures(2, "bb")),
            ]
            .into(),
        };
        assert!(compare(&expected, &expected.cases, "x86_64").is_ok());
        let mut given = expected.cases.clone();
        given.insert("b".into(), figures(2, "cc"));
        let e = compare(&expected, &given, "s390x").unwrap_err().to_string();
        assert_eq!(
            e,
            "s390x: case b differs first in its digest: expected bb, got cc"
        );
        given.insert("a".into(), figures(3, "zz"));
        given.remove("b");
        let e = compare(&expected, &given, "riscv64")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("case a differs first in its fuel: expected 1, got 3"),
            "{e}"
        );
        assert!(e.contains("case b was not run"), "{e}");
        let old = Expected {
            profile: "helio-det-0".into(),
            ..expected
        };
        let e = compare(&old, &old.cases, "x86_64").unwrap_err().to_string();
        assert!(e.contains("--bless"), "{e}");
    }
}
