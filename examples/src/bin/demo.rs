//! The README's first command: builds the example guests, writes their task manifests and
//! runs each task twice in the sandbox, showing outcome, fuel, digest and outputs.

use std::path::Path;

use anyhow::{Context, Result, ensure};
use helio_examples::{guests, write_task};
use helio_runner::{Sandbox, SandboxConfig, load_task};
use serde_json::json;

fn main() -> Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let workspace = root
        .parent()
        .context("the examples crate lives in the workspace")?;
    let out = workspace.join("target/helio-demo");
    let cache = out.join("module-cache");
    println!("Helio demo: each task runs twice, in two fresh sandboxes; the digests must agree.\n");

    let hello = write_task(
        &out.join("hello"),
        "hello",
        Path::new(guests::HELLO),
        &[("name.txt", &root.join("hello/name.txt"))],
        json!({ "outputs": [{ "name": "greeting.txt", "max_bytes": 1024 }] }),
    )?;
    let orbits = write_task(
        &out.join("nbody"),
        "nbody-100y",
        Path::new(helio_jobs::NBODY),
        &[],
        json!({
            "args": ["--years", "100", "--dt", "0.001"],
            "outputs": [{ "name": "energy.json", "max_bytes": 4096 }]
        }),
    )?;

    for manifest in [&hello, &orbits] {
        run_twice(manifest, &cache)?;
    }
    let shown = orbits.strip_prefix(workspace).unwrap_or(&orbits);
    println!(
        "Run a task yourself:\n  cargo run --release --bin runner -- exec {} --json",
        shown.display()
    );
    Ok(())
}

fn run_twice(manifest: &Path, cache: &Path) -> Result<()> {
    let task = load_task(manifest).with_context(|| format!("loading {}", manifest.display()))?;
    let mut digests = Vec::new();
    for _ in 0..2 {
        let sandbox = Sandbox::new(SandboxConfig {
            cache_dir: Some(cache.to_path_buf()),
            ..Default::default()
        })?;
        let run = task.run(&sandbox)?;
        ensure!(
            run.report.outcome.is_success(),
            "{} ended {:?}",
            task.manifest.name,
            run.report.outcome
        );
        digests.push((
            run.report.digest,
            run.report.fuel_consumed,
            run.report.wall_ms,
            run.outputs,
        ));
    }
    let (digest, fuel, wall_ms, outputs) = &digests[0];
    println!("task     {}  ({})", task.manifest.name, manifest.display());
    println!("outcome  exited (exit code 0)");
    println!("fuel     {fuel}");
    println!("wall     {wall_ms} ms, then {} ms", digests[1].2);
    println!("digest   {digest}");
    println!(
        "again    {}  {}",
        digests[1].0,
        if digests[1].0 == *digest {
            "(agrees)"
        } else {
            "(DISAGREES)"
        }
    );
    for output in outputs {
        let (name, bytes) = (&output.name, output.read_all()?);
        println!(
            "output   {name}: {}",
            String::from_utf8_lossy(&bytes).trim()
        );
    }
    println!();
    ensure!(
        digests[1].0 == *digest,
        "two runs of the same task disagreed"
    );
    Ok(())
}
