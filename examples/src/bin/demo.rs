//! The README's first command: a scheduler, three volunteers' runners and an example batch,
//! all in this process. Each task runs on two runners of different owners; the scheduler
//! accepts it when their digests agree, credits both, and the demo downloads the results,
//! shows the credits and verifies the ledger.
//!
//! `demo [JOB...]` runs the example batches of those jobs (default `nbody`); the jobs are
//! nbody, ising, hpfold, businesses, thumbnails and hashchain.

use anyhow::Result;
use helio_examples::demo;

#[tokio::main]
async fn main() -> Result<()> {
    let mut jobs: Vec<String> = std::env::args().skip(1).collect();
    if jobs.is_empty() {
        jobs.push("nbody".into());
    }
    let out = demo::default_dir();
    println!("Helio demo: a scheduler and three volunteers' runners in this process.\n");
    demo::run(&out, &jobs, &|line| println!("{line}")).await?;
    println!(
        "\nThe same with separate processes:\n  \
         cargo run --release --bin scheduler -- serve --data-dir helio-data\n  \
         cargo run --release --bin runner -- --tier cpu --scheduler http://127.0.0.1:8080 --owner you\n  \
         cargo run --release --bin helio -- submit {}/batches/nbody/batch.json --wait",
        out.display()
    );
    Ok(())
}
