//! Writes a ready batch for every job in `jobs/` under `target/helio-examples/`: the module,
//! the inputs and `batch.json`. Run a task of one with
//! `runner exec target/helio-examples/ising/batch.json --task ising-0001`.

use std::path::Path;

fn main() -> anyhow::Result<()> {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the examples crate lives in the workspace");
    let out = workspace.join("target/helio-examples");
    let examples = helio_examples::batches::write_batches(&out).map_err(anyhow::Error::msg)?;
    for e in &examples {
        let shown = e
            .packed
            .manifest
            .strip_prefix(workspace)
            .unwrap_or(&e.packed.manifest);
        println!(
            "{:<11} {:>4} tasks  {}",
            e.job,
            e.packed.tasks,
            shown.display()
        );
        println!("            {}", e.about);
    }
    let first = &examples[1];
    println!(
        "\nRun one task:  cargo run --release --bin runner -- exec {} --task {}-0001",
        first
            .packed
            .manifest
            .strip_prefix(workspace)
            .unwrap_or(&first.packed.manifest)
            .display(),
        first.job
    );
    Ok(())
}
