//! Every job in `jobs/`, run in the sandbox as a task: each gives the same digest twice and
//! its known answer.

use std::ops::ControlFlow;
use std::sync::{Arc, LazyLock};

use helio_sandbox::{Resumable, RunOutput, Sandbox, SandboxConfig, Segments};
use helio_sdk::{Blake3Hash, Name, TaskManifest};
use serde_json::{Value, json};

// The jobs' own code, compiled natively to check their answers; the tests use part of it.
#[allow(dead_code)]
#[path = "../../hashchain/src/lib.rs"]
mod hashchain;
#[allow(dead_code)]
#[path = "../../hpfold/src/lib.rs"]
mod hpfold;
#[allow(dead_code)]
#[path = "../../ising/src/lib.rs"]
mod ising;
#[allow(dead_code)]
#[path = "../../nbody/src/lib.rs"]
mod nbody;

static SANDBOX: LazyLock<Sandbox> =
    LazyLock::new(|| Sandbox::new(SandboxConfig::default()).expect("a sandbox"));

/// A task of `job` being set up.
struct Task {
    module: Vec<u8>,
    manifest: Value,
    inputs: Vec<(Name, Arc<[u8]>)>,
}

fn task(job: &str) -> Task {
    let module = helio_jobs::bytes(job);
    let manifest = json!({
        "schema_version": 1,
        "name": "test",
        "module": { "uri": "job.wasm", "blake3": Blake3Hash::of(&module).to_string() },
        "limits": { "fuel": 200_000_000_000u64 },
        "inputs": [],
        "outputs": [],
    });
    Task {
        module,
        manifest,
        inputs: Vec::new(),
    }
}

impl Task {
    fn args(mut self, args: &[&str]) -> Self {
        self.manifest["args"] = json!(args);
        self
    }

    fn seed(mut self, seed: u64) -> Self {
        self.manifest["seed"] = json!(seed);
        self
    }

    fn input(mut self, name: &str, bytes: impl Into<Vec<u8>>) -> Self {
        let bytes: Vec<u8> = bytes.into();
        self.manifest["inputs"].as_array_mut().unwrap().push(json!({
            "name": name, "uri": name, "blake3": Blake3Hash::of(&bytes).to_string()
        }));
        self.inputs.push((
            Name::parse(name).unwrap(),
            Arc::from(bytes.into_boxed_slice()),
        ));
        self
    }

    fn output(mut self, name: &str) -> Self {
        self.manifest["outputs"]
            .as_array_mut()
            .unwrap()
            .push(json!({ "name": name, "max_bytes": 1 << 24 }));
        self
    }

    fn run(&self) -> RunOutput {
        let manifest = TaskManifest::from_value(self.manifest.clone()).expect("a valid manifest");
        let prepared = SANDBOX
            .prepare(&manifest.module.blake3, &self.module)
            .expect("the job's module prepares");
        SANDBOX
            .run(&prepared, &manifest, self.inputs.clone())
            .expect("the job runs")
    }

    /// Runs the task twice, checks both runs succeed with the same digest, and returns one.
    fn run_twice(&self) -> RunOutput {
        let first = self.run();
        let second = self.run();
        assert!(
            first.report.outcome.is_success(),
            "{:?}\nstderr: {}",
            first.report.outcome,
            String::from_utf8_lossy(&first.stderr)
        );
        assert_eq!(first.report.digest, second.report.digest);
        first
    }
}

fn output(run: &RunOutput, name: &str) -> Vec<u8> {
    run.outputs
        .iter()
        .find(|o| o.name.as_str() == name)
        .unwrap_or_else(|| panic!("no output {name}"))
        .read_all()
        .unwrap()
}

fn json_output(run: &RunOutput, name: &str) -> Value {
    serde_json::from_slice(&output(run, name)).unwrap()
}

#[test]
fn hashchain_matches_blake3_on_the_host_and_its_fuel_is_affine_in_rounds() {
    let start = [7u8; 32];
    let start_hex = hashchain::hex(&start);
    let mut expected = start;
    for _ in 0..1000 {
        expected = *blake3::hash(&expected).as_bytes();
    }
    let run = |rounds: &str| {
        task(helio_jobs::HASHCHAIN)
            .args(&["--rounds", rounds, "--start", &start_hex])
            .output("digest.txt")
            .run_twice()
    };
    let thousand = run("1000");
    assert_eq!(
        String::from_utf8(output(&thousand, "digest.txt")).unwrap(),
        format!("{}\n", hashchain::hex(&expected))
    );
    let fuel = |r: &RunOutput| r.report.fuel_consumed as i64;
    let (two, three) = (run("2000"), run("3000"));
    assert_eq!(
        fuel(&two) - fuel(&thousand),
        fuel(&three) - fuel(&two),
        "every round costs the same fuel"
    );
    assert!(fuel(&two) > fuel(&thousand));
}

#[test]
fn hashchain_starts_from_the_seed_when_not_told() {
    let digest = |seed| {
        let run = task(helio_jobs::HASHCHAIN)
            .args(&["--rounds", "10"])
            .seed(seed)
            .output("digest.txt")
            .run_twice();
        output(&run, "digest.txt")
    };
    assert_ne!(digest(1), digest(2));
}

#[test]
fn nbody_conserves_energy_and_equals_the_native_integrator_bit_for_bit() {
    let run = task(helio_jobs::NBODY)
        .args(&["--years", "100", "--dt", "0.001"])
        .output("energy.json")
        .run_twice();
    let energy = json_output(&run, "energy.json");
    assert_eq!(energy["steps"], 100_000);
    let drift = energy["relative_drift"].as_f64().unwrap();
    assert!(drift < 1e-6, "leapfrog keeps the energy: drift {drift:e}");
    let native = nbody::integrate(100.0, 0.001);
    assert_eq!(energy["energy_before"].as_f64().unwrap(), native.before);
    assert_eq!(energy["energy_after"].as_f64().unwrap(), native.after);
}

#[test]
fn nbody_stopped_at_its_checkpoints_ends_as_one_run_and_as_the_native_integrator() {
    let mut t = task(helio_jobs::NBODY)
        .args(&[
            "--years",
            "100",
            "--dt",
            "0.001",
            "--checkpoint-steps",
            "30000",
        ])
        .output("energy.json");
    t.manifest["checkpoint"] = json!({ "max_bytes": 272 });
    let manifest = TaskManifest::from_value(t.manifest.clone()).unwrap();
    let prepared = SANDBOX.prepare(&manifest.module.blake3, &t.module).unwrap();
    let one_go = t.run();
    assert!(
        one_go.report.outcome.is_success(),
        "{:?}",
        one_go.report.outcome
    );
    // 100,000 steps, a save after 30,000, 60,000 and 90,000: stopped at each, resumed each
    // time from the bytes alone.
    let mut resume = None;
    let mut stops = 0;
    let pieces = loop {
        let run = Resumable {
            resume: resume.take(),
            on_checkpoint: Box::new(|_| ControlFlow::Break(())),
            ..Resumable::default()
        };
        match SANDBOX
            .run_resumable(&prepared, &manifest, vec![], run)
            .unwrap()
        {
            Segments::Stopped(bytes) => {
                stops += 1;
                resume = Some(bytes);
            }
            Segments::Ended(output) => break output,
        }
    };
    assert_eq!(stops, 3);
    assert_eq!(pieces.report.digest, one_go.report.digest);
    assert_eq!(pieces.report.fuel_consumed, one_go.report.fuel_consumed);
    let energy = json_output(&pieces, "energy.json");
    let native = nbody::integrate(100.0, 0.001);
    assert_eq!(energy["steps"], 100_000);
    assert_eq!(energy["energy_before"].as_f64().unwrap(), native.before);
    assert_eq!(energy["energy_after"].as_f64().unwrap(), native.after);
}

#[test]
fn nbody_rejects_nonsense_parameters_by_name() {
    let run = task(helio_jobs::NBODY)
        .args(&["--years", "ten"])
        .output("energy.json")
        .run();
    assert!(!run.report.outcome.is_success());
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        stderr.contains("--years") && stderr.contains("\"ten\""),
        "{stderr}"
    );
}

#[test]
fn ising_magnetisation_matches_onsager_below_tc_and_vanishes_above() {
    let sample = |t: &str, seed| {
        let run = task(helio_jobs::ISING)
            .args(&["--temperature", t, "--size", "32", "--sweeps", "2000"])
            .seed(seed)
            .output("sample.json")
            .run_twice();
        json_output(&run, "sample.json")
    };
    let cold = sample("2.0", 1);
    let m = cold["abs_magnetisation"].as_f64().unwrap();
    let exact = ising::onsager_magnetisation(2.0);
    assert!((exact - 0.9113).abs() < 1e-3, "Onsager at T=2: {exact}");
    assert!((m - exact).abs() < 0.01, "<|m|> = {m}, Onsager {exact}");
    let hot = sample("3.5", 1);
    let m_hot = hot["abs_magnetisation"].as_f64().unwrap();
    assert!(m_hot < 0.1, "<|m|> above T_c: {m_hot}");
    // Another seed is an independent sample: close, but not the same numbers.
    let other = sample("2.0", 2);
    assert_ne!(cold["energy"], other["energy"]);
    assert!((other["abs_magnetisation"].as_f64().unwrap() - exact).abs() < 0.01);
}

#[test]
fn hpfold_reaches_the_best_known_energies_of_the_short_benchmarks() {
    // Standard 2D HP benchmark sequences and their best known energies (Unger and Moult 1993;
    // lower bounds proven since).
    for (sequence, best) in [
        ("HPHPPHHPHPPHPHHPPHPH", -9),
        ("HHPPHPPHPPHPPHPPHPPHPPHH", -9),
        ("PPHPPHHPPPPHHPPPPHHPPPPHH", -8),
    ] {
        let run = task(helio_jobs::HPFOLD)
            .args(&["--sequence", sequence, "--target", &best.to_string()])
            .seed(7)
            .output("fold.json")
            .run_twice();
        let fold = json_output(&run, "fold.json");
        assert_eq!(fold["energy"], best, "{sequence}: {fold}");
        // Check the fold independently: walk its moves and count its contacts.
        let sites = hpfold::walk(fold["directions"].as_str().unwrap()).unwrap();
        let seq = hpfold::parse_sequence(sequence).unwrap();
        assert_eq!(hpfold::energy(&seq, &sites), Some(best), "{sequence}");
    }
}

const CSV: &str = "\
name,category,city,rating,reviews,price_level,phone
Chez Anna,restaurant,Lyon,4.5,120,3,04 01
Le Petit Café,cafe,Lyon,4.0,15,1,04 02
Bouchon Paul,restaurant,Lyon,3.5,300,2,04 03
Trattoria Roma,restaurant,Paris,4.8,80,4,01 04
Kaffeehaus,cafe,Paris,4.2,9,2,01 05
Sushi Go,restaurant,Paris,4.1,45,3,01 06
Hardware Hub,shop,Lyon,4.9,200,2,04 07
";

#[test]
fn businesses_filters_and_aggregates() {
    let run = task(helio_jobs::BUSINESSES)
        .input("businesses.csv", CSV)
        .input(
            "criteria.json",
            r#"{ "categories": ["Restaurant", "cafe"], "min_rating": 4.0, "min_reviews": 10, "max_price_level": 3 }"#,
        )
        .output("matches.csv")
        .output("summary.json")
        .run_twice();
    // Chez Anna (4.5, 120), Le Petit Café (4.0, 15), Sushi Go (4.1, 45) pass; Bouchon Paul's
    // rating, Trattoria Roma's price, Kaffeehaus's reviews and the shop do not.
    let summary = json_output(&run, "summary.json");
    assert_eq!(summary["rows"], 7);
    assert_eq!(summary["matched"], 3);
    assert_eq!(summary["overall"]["reviews"], 180);
    let mean = summary["overall"]["mean_rating"].as_f64().unwrap();
    assert!((mean - (4.5 + 4.0 + 4.1) / 3.0).abs() < 1e-12, "{mean}");
    assert_eq!(summary["by_city"]["Lyon"]["count"], 2);
    assert_eq!(summary["by_city"]["Paris"]["count"], 1);
    assert_eq!(summary["by_category"]["cafe"]["reviews"], 15);
    let matches = String::from_utf8(output(&run, "matches.csv")).unwrap();
    let names: Vec<&str> = matches
        .lines()
        .skip(1)
        .map(|l| l.split(',').next().unwrap())
        .collect();
    assert_eq!(names, ["Chez Anna", "Le Petit Café", "Sushi Go"]);
    assert!(matches.starts_with("name,category,city,rating,reviews,price_level,phone\n"));
}

#[test]
fn businesses_names_the_line_of_bad_data() {
    let bad = CSV.replace(
        "Sushi Go,restaurant,Paris,4.1",
        "Sushi Go,restaurant,Paris,great",
    );
    let run = task(helio_jobs::BUSINESSES)
        .input("businesses.csv", bad)
        .input("criteria.json", "{}")
        .output("matches.csv")
        .output("summary.json")
        .run();
    assert!(!run.report.outcome.is_success());
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        stderr.contains("line 7") && stderr.contains("rating") && stderr.contains("\"great\""),
        "{stderr}"
    );
}

fn two_colour_png(width: u32, height: u32) -> Vec<u8> {
    let image = image::RgbImage::from_fn(width, height, |x, _| {
        if x < width / 2 {
            image::Rgb([255, 0, 0])
        } else {
            image::Rgb([0, 0, 255])
        }
    });
    let mut png = Vec::new();
    image
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .unwrap();
    png
}

#[test]
fn thumbnails_keep_the_aspect_ratio_and_the_picture() {
    let run = task(helio_jobs::THUMBNAILS)
        .args(&["--size", "64"])
        .input("flag.png", two_colour_png(200, 100))
        .input("tiny.png", two_colour_png(20, 10))
        .output("flag.png")
        .output("tiny.png")
        .run_twice();
    let flag = image::load_from_memory(&output(&run, "flag.png"))
        .unwrap()
        .to_rgb8();
    assert_eq!(flag.dimensions(), (64, 32));
    assert_eq!(flag.get_pixel(4, 16).0, [255, 0, 0]);
    assert_eq!(flag.get_pixel(59, 16).0, [0, 0, 255]);
    // Never enlarged.
    let tiny = image::load_from_memory(&output(&run, "tiny.png")).unwrap();
    assert_eq!((tiny.width(), tiny.height()), (20, 10));
}

#[test]
fn thumbnails_name_an_input_that_is_not_an_image() {
    let run = task(helio_jobs::THUMBNAILS)
        .input("notes.png", "these are not pixels")
        .output("notes.png")
        .run();
    assert!(!run.report.outcome.is_success());
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(stderr.contains("\"notes.png\""), "{stderr}");
}
