//! `helio-bench instructions`: how many instructions the n-body kernel executes in each way
//! of running it, counted by callgrind.
//!
//! Wall-clock figures on a shared two-core machine swing by more than the few per cent the
//! metering goal is about; an instruction count does not move with the machine's load. Each
//! variant runs under `valgrind --tool=callgrind` twice, at two lengths of simulation; the
//! difference is what the extra years cost, with compilation, instantiation and start-up
//! (equal in both runs) cancelled out.
//!
//! Instructions are not time: a check's extra instructions may cost less than their count
//! (a predictable branch) or more (a spilled register). The table is the deterministic half
//! of the measurement; `compute` is the timed half.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail, ensure};
use clap::ValueEnum;
use helio_runner::{NanMode, Pause, Sandbox, SandboxConfig};
use helio_sdk::TaskManifest;
use helio_test_guests as g;
use serde_json::json;

use crate::{Plain, hash, orbits};

/// One way of running the kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Variant {
    /// The kernel compiled natively into this binary.
    Native,
    /// The guest in wasmtime with no fuel, no epochs and no NaN canonicalization.
    Plain,
    /// The guest with Helio's metering inserted (and no NaN rewriting), in plain wasmtime.
    Metered,
    /// The guest with Helio's whole rewrite (metering, NaNs canonical at sinks), in plain
    /// wasmtime.
    Rewritten,
    /// The Helio sandbox, as `runner exec` runs a task.
    Sandbox,
    /// The guest in wasmtime with wasmtime's own fuel.
    WasmtimeFuel,
}

const VARIANTS: [Variant; 6] = [
    Variant::Native,
    Variant::Plain,
    Variant::Metered,
    Variant::Rewritten,
    Variant::Sandbox,
    Variant::WasmtimeFuel,
];

/// Arguments of `kernel`.
#[derive(clap::Args, Clone, Debug)]
pub struct KernelArgs {
    /// How to run it.
    #[arg(long, value_enum)]
    variant: Variant,
    /// Simulated years (1,000 steps each).
    #[arg(long)]
    years: u32,
}

/// Arguments of `instructions`.
#[derive(clap::Args, Clone, Debug)]
pub struct InstructionArgs {
    /// The shorter run's simulated years; the longer runs twice as many.
    #[arg(long, default_value_t = 20)]
    years: u32,
    /// The valgrind to run.
    #[arg(long, default_value = "valgrind")]
    valgrind: PathBuf,
}

/// Runs the kernel once, as `variant` says, and prints its answer.
pub fn kernel(args: &KernelArgs) -> Result<()> {
    let years = args.years;
    if args.variant == Variant::Native {
        let e = orbits::integrate(std::hint::black_box(f64::from(years)), 0.001);
        println!(
            "{} steps {:016x} {:016x}",
            e.steps,
            e.before.to_bits(),
            e.after.to_bits()
        );
        return Ok(());
    }
    let bytes = helio_test_guests::bytes(g::NBODY);
    let arg = years.to_string();
    let module = match args.variant {
        Variant::Metered => helio_runner::instrument(&bytes, NanMode::EveryOperation, Pause::Never)
            .map_err(anyhow::Error::msg)?,
        Variant::Rewritten => helio_runner::instrument(&bytes, NanMode::AtSinks, Pause::Never)
            .map_err(anyhow::Error::msg)?,
        _ => bytes.clone(),
    };
    match args.variant {
        Variant::Sandbox => {
            let sandbox = Sandbox::new(SandboxConfig::default())?;
            let task = TaskManifest::from_value(json!({
                "schema_version": 1,
                "module": { "uri": "k.wasm", "blake3": hash(&bytes).to_hex() },
                "args": [arg],
                "limits": { "fuel": 1u64 << 40, "wall_seconds": 3600 }
            }))?;
            let prepared = sandbox.prepare(&hash(&bytes), &bytes)?;
            let out = sandbox.run(&prepared, &task, vec![])?;
            ensure!(out.report.outcome.is_success(), "{:?}", out.report.outcome);
            print!("{}", String::from_utf8_lossy(&out.stdout));
        }
        variant => {
            Plain::new(&module, variant == Variant::WasmtimeFuel, false, false)?.run(&[&arg])?;
        }
    }
    Ok(())
}

/// Counts each variant's instructions per simulated year under callgrind; prints a table.
pub fn instructions(args: &InstructionArgs) -> Result<()> {
    let me = std::env::current_exe()?;
    let (short, long) = (args.years, args.years * 2);
    println!(
        "\n## The n-body kernel's instructions per simulated year (callgrind, {long} years less {short})\n"
    );
    println!("| variant | instructions per year | × native | against plain wasmtime |");
    println!("|---|---|---|---|");
    let mut native = 0.0;
    let mut plain = 0.0;
    for variant in VARIANTS {
        let count = |years: u32| counted(&args.valgrind, &me, variant, years);
        let per_year = (count(long)? as f64 - count(short)? as f64) / f64::from(long - short);
        match variant {
            Variant::Native => native = per_year,
            Variant::Plain => plain = per_year,
            _ => {}
        }
        let against = if plain > 0.0 && variant != Variant::Plain {
            format!("{:+.2}%", (per_year / plain - 1.0) * 100.0)
        } else {
            "—".into()
        };
        println!(
            "| {variant:?} | {per_year:.0} | {:.3}× | {against} |",
            per_year / native
        );
    }
    Ok(())
}

/// The instructions one `kernel` run executes, as callgrind counts them.
fn counted(valgrind: &Path, me: &Path, variant: Variant, years: u32) -> Result<u64> {
    let value = variant
        .to_possible_value()
        .expect("every variant is a command-line value");
    let out = Command::new(valgrind)
        .args([
            "--tool=callgrind",
            "--callgrind-out-file=/dev/null",
            // Wasmtime writes machine code and then runs it.
            "--smc-check=all-non-file",
        ])
        .arg(me)
        .args([
            "kernel",
            "--variant",
            value.get_name(),
            "--years",
            &years.to_string(),
        ])
        .output()
        .with_context(|| format!("running {}", valgrind.display()))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        bail!(
            "{variant:?} at {years} years under valgrind: {}\n{stderr}",
            out.status
        );
    }
    stderr
        .lines()
        .find_map(|l| l.split("Collected :").nth(1))
        .and_then(|n| n.trim().parse().ok())
        .with_context(|| format!("no instruction count in callgrind's output:\n{stderr}"))
}

/// Arguments of `compiled`.
#[derive(clap::Args, Clone, Debug)]
pub struct CompiledArgs {
    /// Where to write one `VARIANT.cwasm` per variant.
    #[arg(long, default_value = "target/nbody-compiled")]
    out: PathBuf,
}

/// Writes the machine code wasmtime compiles from the n-body guest in each wasm variant,
/// with the sandbox's engine configuration, as ELF files `objdump -d` reads (function
/// symbols included): how the rewrite's inserted code was found to make Cranelift spill.
pub fn compiled(args: &CompiledArgs) -> Result<()> {
    let bytes = helio_test_guests::bytes(g::NBODY);
    let engine = wasmtime::Engine::new(&helio_runner::engine_config(0, NanMode::AtSinks))?;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    for (name, module) in [
        ("plain", bytes.clone()),
        (
            "metered",
            helio_runner::instrument(&bytes, NanMode::EveryOperation, Pause::Never)
                .map_err(anyhow::Error::msg)?,
        ),
        (
            "rewritten",
            helio_runner::instrument(&bytes, NanMode::AtSinks, Pause::Never)
                .map_err(anyhow::Error::msg)?,
        ),
    ] {
        let path = args.out.join(format!("{name}.cwasm"));
        std::fs::write(&path, engine.precompile_module(&module)?)
            .with_context(|| format!("writing {}", path.display()))?;
        println!("{}", path.display());
    }
    println!(
        "the kernel's loops are in the guest's `main` (`objdump -t FILE | grep nbody4main` gives \
         its address and size; `objdump -d -M intel --start-address=A --stop-address=B FILE`)"
    );
    Ok(())
}
