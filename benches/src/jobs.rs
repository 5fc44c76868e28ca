//! Per workload in `jobs/`: its fuel, its wall time in the Helio sandbox, and the same code's
//! native time, measured side by side.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Result, ensure};
use helio_runner::{Sandbox, SandboxConfig};
use helio_sdk::{Blake3Hash, Name, TaskManifest};
use serde_json::{Value, json};

use crate::{best_of, ms};

#[allow(dead_code)]
#[path = "../../jobs/businesses/src/lib.rs"]
mod businesses;
#[allow(dead_code)]
#[path = "../../jobs/hashchain/src/lib.rs"]
mod hashchain;
#[allow(dead_code)]
#[path = "../../jobs/hpfold/src/lib.rs"]
mod hpfold;
#[allow(dead_code)]
#[path = "../../jobs/ising/src/lib.rs"]
mod ising;
#[allow(dead_code)]
#[path = "../../jobs/thumbnails/src/lib.rs"]
mod thumbnails;

const HP_S4: &str = "PPPHHPPHHPPPPPHHHHHHHPPHHPPPPHHPPHPP";

struct Workload {
    name: &'static str,
    module: &'static str,
    args: Vec<String>,
    inputs: Vec<(&'static str, Vec<u8>)>,
    outputs: Vec<&'static str>,
    native: Box<dyn FnMut()>,
}

fn picture(width: u32, height: u32) -> Vec<u8> {
    let picture = image::RgbImage::from_fn(width, height, |x, y| {
        image::Rgb([(x % 256) as u8, (y % 256) as u8, ((x ^ y) % 256) as u8])
    });
    let mut png = Vec::new();
    picture
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .expect("encode");
    png
}

/// The workloads measured: a flat table, one entry per job.
fn workloads() -> Vec<Workload> {
    let strings = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let csv = helio_examples::batches::businesses_csv(50_000);
    let criteria =
        r#"{ "categories": ["restaurant", "cafe"], "min_rating": 4.0, "max_price_level": 3 }"#;
    let png = picture(1024, 768);
    let (csv_native, png_native) = (csv.clone(), png.clone());
    vec![
        Workload {
            name: "nbody: 100 years, dt 0.001",
            module: helio_jobs::NBODY,
            args: strings(&["--years", "100", "--dt", "0.001"]),
            inputs: vec![],
            outputs: vec!["energy.json"],
            native: Box::new(|| {
                std::hint::black_box(crate::orbits::integrate(100.0, 0.001));
            }),
        },
        Workload {
            name: "ising: 64², 1,000 + 4,000 sweeps, T = 2.3",
            module: helio_jobs::ISING,
            args: strings(&[
                "--temperature",
                "2.3",
                "--size",
                "64",
                "--thermalise",
                "1000",
                "--sweeps",
                "4000",
            ]),
            inputs: vec![],
            outputs: vec!["sample.json"],
            native: Box::new(|| {
                let mut rng = helio_guest::Rng::from_u64(1);
                std::hint::black_box(ising::Lattice::ordered(64).sample(
                    2.3,
                    1000,
                    4000,
                    &mut || rng.f64(),
                    &mut |_| {},
                ));
            }),
        },
        Workload {
            name: "hpfold: 36-mer, 10⁶ attempts",
            module: helio_jobs::HPFOLD,
            args: strings(&["--sequence", HP_S4, "--max-attempts", "1000000"]),
            inputs: vec![],
            outputs: vec!["fold.json"],
            native: Box::new(|| {
                let seq = hpfold::parse_sequence(HP_S4).unwrap();
                let rng = std::cell::RefCell::new(helio_guest::Rng::from_u64(1));
                let search = hpfold::Search {
                    max_attempts: 1_000_000,
                    ..Default::default()
                };
                std::hint::black_box(hpfold::fold(
                    &seq,
                    &search,
                    &mut |n| rng.borrow_mut().below(n),
                    &mut || rng.borrow_mut().f64(),
                    &mut |_, _| {},
                ));
            }),
        },
        Workload {
            name: "businesses: 50,000 rows",
            module: helio_jobs::BUSINESSES,
            args: vec![],
            inputs: vec![
                ("businesses.csv", csv.into_bytes()),
                ("criteria.json", criteria.as_bytes().to_vec()),
            ],
            outputs: vec!["matches.csv", "summary.json"],
            native: Box::new(move || {
                let c: businesses::Criteria = serde_json::from_str(criteria).unwrap();
                let mut out = Vec::new();
                std::hint::black_box(businesses::process(&c, csv_native.as_bytes(), &mut out))
                    .unwrap();
            }),
        },
        Workload {
            name: "thumbnails: 1024×768 PNG to 128",
            module: helio_jobs::THUMBNAILS,
            args: strings(&["--size", "128"]),
            inputs: vec![("picture.png", png)],
            outputs: vec!["picture.png"],
            native: Box::new(move || {
                std::hint::black_box(thumbnails::thumbnail(&png_native, 128).unwrap());
            }),
        },
        Workload {
            name: "hashchain: 10⁶ rounds",
            module: helio_jobs::HASHCHAIN,
            args: strings(&["--rounds", "1000000"]),
            inputs: vec![],
            outputs: vec!["digest.txt"],
            native: Box::new(|| {
                std::hint::black_box(hashchain::chain([1; 32], 1_000_000));
            }),
        },
    ]
}

/// Runs every workload natively and in the sandbox, and prints the table.
pub fn jobs() -> Result<()> {
    let sandbox = Sandbox::new(SandboxConfig::default())?;
    println!(
        "\n## Jobs: the same code natively and in the sandbox (best of {})\n",
        crate::REPEATS
    );
    println!("| workload | fuel | native | Helio sandbox | × native |");
    println!("|---|---|---|---|---|");
    for mut w in workloads() {
        let module = std::fs::read(w.module)?;
        let hash = Blake3Hash::of(&module);
        let mut manifest = json!({
            "schema_version": 1,
            "module": { "uri": "job.wasm", "blake3": hash.to_string() },
            "args": w.args,
            "seed": 1,
            "limits": { "fuel": 1u64 << 42, "wall_seconds": 3600 },
            "inputs": [],
            "outputs": w.outputs.iter().map(|o| json!({ "name": o, "max_bytes": 1u64 << 30 })).collect::<Vec<Value>>(),
        });
        let mut inputs = Vec::new();
        for (name, bytes) in &w.inputs {
            manifest["inputs"].as_array_mut().unwrap().push(
                json!({ "name": name, "uri": name, "blake3": Blake3Hash::of(bytes).to_string() }),
            );
            inputs.push((
                Name::parse(name).unwrap(),
                Arc::<[u8]>::from(bytes.as_slice()),
            ));
        }
        let task = TaskManifest::from_value(manifest)?;
        let prepared = sandbox.prepare(&hash, &module)?;
        let (sandboxed, out) = best_of(|| Ok(sandbox.run(&prepared, &task, inputs.clone())?))?;
        ensure!(
            out.report.outcome.is_success(),
            "{}: {:?}\n{}",
            w.name,
            out.report.outcome,
            String::from_utf8_lossy(&out.stderr)
        );
        let (native, ()) = best_of(|| {
            (w.native)();
            Ok(())
        })?;
        let x = |d: Duration| d.as_secs_f64() / native.as_secs_f64();
        println!(
            "| {} | {} | {:.1} ms | {:.1} ms | {:.2}× |",
            w.name,
            out.report.fuel_consumed,
            ms(native),
            ms(sandboxed),
            x(sandboxed)
        );
    }
    Ok(())
}
