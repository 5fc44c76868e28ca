//! A ready batch per job in `jobs/`: the sweep, its inputs, and the batch manifest written by
//! `helio pack` (the library the `helio` command runs).

use std::path::{Path, PathBuf};

use helio_cli::pack::{PackOptions, Packed, pack};
use helio_cli::sweep::parse_axis;

/// One example batch.
pub struct Example {
    /// The job's name (and the batch's directory).
    pub job: &'static str,
    /// What the batch does.
    pub about: &'static str,
    /// The packed batch.
    pub packed: Packed,
}

fn axes(specs: &[&str]) -> Result<Vec<helio_cli::sweep::Axis>, String> {
    specs.iter().map(|s| parse_axis(s)).collect()
}

fn output(name: &str, max: u64) -> (String, u64, bool) {
    (name.to_string(), max, false)
}

/// Writes every example batch under `out/<job>/` and returns them: a flat table, one
/// `add` per job.
pub fn write_batches(out: &Path) -> Result<Vec<Example>, String> {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    let scratch = out.join("generated-inputs");
    let mut examples = Vec::new();
    let mut add = |job: &'static str, about: &'static str, o: PackOptions| -> Result<(), String> {
        let packed = pack(&PackOptions {
            out: out.join(job),
            name: Some(job.to_string()),
            ..o
        })
        .map_err(|e| format!("{job}: {e}"))?;
        examples.push(Example { job, about, packed });
        Ok(())
    };
    add(
        "nbody",
        "the outer solar system for 100 years at ten step sizes: how the energy error grows with dt",
        PackOptions {
            source: helio_jobs::NBODY.into(),
            args: vec!["--years".into(), "100".into()],
            sweeps: axes(&["dt=0.0005:0.005:0.0005"])?,
            outputs: vec![output("energy.json", 4096)],
            fuel: 100_000_000_000,
            ..Default::default()
        },
    )?;
    add(
        "ising",
        "the 2D Ising model across the transition, T = 1.5 to 3.5, ten independent seeds each",
        PackOptions {
            source: helio_jobs::ISING.into(),
            args: vec![
                "--size".into(),
                "32".into(),
                "--sweeps".into(),
                "1000".into(),
            ],
            sweeps: axes(&["temperature=1.5:3.5:0.1"])?,
            seeds: Some(10),
            outputs: vec![output("sample.json", 4096)],
            fuel: 100_000_000_000,
            ..Default::default()
        },
    )?;
    add(
        "hpfold",
        "the eight standard 2D HP benchmark sequences, five seeds each, stopping at the best known energy",
        PackOptions {
            source: helio_jobs::HPFOLD.into(),
            args: vec!["--max-attempts".into(), "5000000".into()],
            sweep_csv: Some(here.join("hpfold/benchmarks.csv")),
            seeds: Some(5),
            outputs: vec![output("fold.json", 4096)],
            fuel: 500_000_000_000,
            ..Default::default()
        },
    )?;
    let csv = scratch.join("businesses.csv");
    std::fs::create_dir_all(&scratch).map_err(|e| e.to_string())?;
    std::fs::write(&csv, businesses_csv(5_000)).map_err(|e| e.to_string())?;
    add(
        "businesses",
        "ten filters over a list of 5,000 businesses",
        PackOptions {
            source: helio_jobs::BUSINESSES.into(),
            inputs: vec![("businesses.csv".into(), csv)],
            each_input: Some(("criteria.json".into(), here.join("businesses/criteria"))),
            outputs: vec![
                output("matches.csv", 10 << 20),
                output("summary.json", 1 << 20),
            ],
            fuel: 100_000_000_000,
            ..Default::default()
        },
    )?;
    let images = scratch.join("images");
    write_images(&images, 24)?;
    add(
        "thumbnails",
        "a 128-pixel thumbnail of each of 24 pictures, one task per picture",
        PackOptions {
            source: helio_jobs::THUMBNAILS.into(),
            args: vec!["--size".into(), "128".into()],
            each_input: Some(("image.png".into(), images)),
            outputs: vec![output("image.png", 4 << 20)],
            fuel: 100_000_000_000,
            ..Default::default()
        },
    )?;
    add(
        "hashchain",
        "BLAKE3 chains of 10,000 to 100,000 rounds from ten seeds: a calibration sweep",
        PackOptions {
            source: helio_jobs::HASHCHAIN.into(),
            sweeps: axes(&["rounds=10000:100000:10000"])?,
            seeds: Some(10),
            outputs: vec![output("digest.txt", 128)],
            fuel: 10_000_000_000,
            ..Default::default()
        },
    )?;
    Ok(examples)
}

/// A deterministic list of `n` businesses in the CSV the `businesses` job reads.
pub fn businesses_csv(n: usize) -> String {
    const CATEGORIES: [&str; 6] = ["restaurant", "cafe", "bakery", "bar", "bookshop", "grocer"];
    const CITIES: [&str; 6] = ["Lyon", "Paris", "Marseille", "Toulouse", "Lille", "Nantes"];
    const WORDS: [&str; 8] = [
        "Soleil", "Lune", "Marché", "Vieux", "Port", "Jardin", "Canal", "Place",
    ];
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut csv = String::from("name,category,city,rating,reviews,price_level\n");
    for i in 0..n {
        let category = CATEGORIES[(next() % 6) as usize];
        let city = CITIES[(next() % 6) as usize];
        let name = format!(
            "{} {} {i}",
            WORDS[(next() % 8) as usize],
            WORDS[(next() % 8) as usize]
        );
        let rating = 2.0 + (next() % 31) as f64 / 10.0;
        let reviews = next() % 1200;
        let price = 1 + next() % 4;
        csv.push_str(&format!(
            "{name},{category},{city},{rating:.1},{reviews},{price}\n"
        ));
    }
    csv
}

/// Writes `n` procedurally drawn PNG pictures of different sizes into `dir`.
fn write_images(dir: &PathBuf, n: u32) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    for k in 0..n {
        let (w, h) = (160 + 37 * k, 120 + 23 * (k % 7));
        let picture = image::RgbImage::from_fn(w, h, |x, y| {
            let (fx, fy) = (x as f32 / w as f32, y as f32 / h as f32);
            let ring = (((fx - 0.5).powi(2) + (fy - 0.5).powi(2)).sqrt() * (8 + k) as f32).sin();
            image::Rgb([
                (255.0 * fx) as u8,
                (255.0 * fy) as u8,
                (127.5 * (1.0 + ring)) as u8,
            ])
        });
        picture
            .save(dir.join(format!("picture-{k:02}.png")))
            .map_err(|e| format!("cannot write picture {k}: {e}"))?;
    }
    Ok(())
}
