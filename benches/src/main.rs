//! `helio-bench`: the measurements behind BENCHMARKS.md.
//!
//! - `overhead`: trivial tasks per second with a prepared module, on 1 and 2 threads, with
//!   and without the pooling allocator; beside it the same task through wasmtime-wasi's
//!   preview 1 over host directories, a native process per task, and `wasmtime run` per task.
//! - `compute`: an f64 n-body kernel and an integer kernel, natively and in the sandbox, and
//!   in plain wasmtime with fuel and NaN canonicalization switched on and off one at a time.
//!
//! - `grid`: accepted tasks per second through a `scheduler serve` process with volunteer
//!   runners on loopback, on SQLite and PostgreSQL, and the scheduler's memory (`grid.rs`).
//!
//! - `storage`: `helio submit` from S3 on loopback: a 100,000-task batch, a batch with an
//!   input per task, one large input; wall time, peak memory, throughput (`storage.rs`).
//!
//! - `sabotage`: cooperating saboteurs against the scheduler's own placement and consensus
//!   rules (its pure core): the share of accepted results that are forged (`sabotage.rs`).
//!
//! - `corpus`: the determinism corpus through a runner of any architecture (`corpus.rs`).
//!
//! Run with `cargo run --release -p helio-benches -- all`; it prints Markdown tables. `grid`
//! needs the scheduler binary: `cargo build --release -p helio-scheduler` first.

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use clap::{Parser, Subcommand};
use helio_runner::{NanMode, Pause, Prepared, Sandbox, SandboxConfig};
use helio_sdk::{Blake3Hash, Name, TaskManifest};
use helio_test_guests as g;
use serde_json::json;
use wasmtime::{Config, Engine, Linker, Module, OptLevel, Store, Val};
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::{FsPerms, WasiCtxBuilder};

mod corpus;
mod grid;
mod instructions;
mod jobs;
mod sabotage;
mod storage;

#[path = "../../runner/test-guests/guest/src/kernels.rs"]
mod kernels;
#[path = "../../jobs/nbody/src/lib.rs"]
// The benchmarks integrate in one go; the job's checkpointing half goes unused here.
#[allow(dead_code)]
mod orbits;

#[derive(Parser)]
#[command(about = "Helio benchmarks")]
struct Cli {
    #[command(subcommand)]
    what: What,
    /// Trivial tasks per measurement.
    #[arg(long, default_value_t = 20_000)]
    tasks: usize,
    /// The `wasmtime` CLI to compare with (skipped when absent).
    #[arg(long, env = "WASMTIME", default_value = "wasmtime")]
    wasmtime: PathBuf,
}

#[derive(Subcommand, Clone)]
enum What {
    /// Per-task overhead.
    Overhead,
    /// Compute slowdown and the cost of fuel and NaN canonicalization.
    Compute,
    /// Every workload in jobs/: fuel, sandbox time, native time.
    Jobs,
    /// Accepted tasks per second through the scheduler with runners on loopback.
    Grid(grid::GridArgs),
    /// Submitting batches from object storage: time, peak memory, input throughput.
    Storage(storage::StorageArgs),
    /// Cooperating saboteurs against the scheduler's placement and consensus rules: the
    /// share of accepted results that are forged, tasks in request order and drawn.
    Sabotage(sabotage::SabotageArgs),
    /// Overhead, compute and jobs (the grid has its own command).
    All,
    /// The n-body kernel's instructions per variant, counted by callgrind (deterministic,
    /// whatever else the machine is doing): each variant runs under valgrind at two lengths
    /// and the difference is the kernel's own count, compilation and start-up cancelled out.
    Instructions(instructions::InstructionArgs),
    /// Runs the n-body kernel once in one variant (what `instructions` runs under valgrind).
    Kernel(instructions::KernelArgs),
    /// Writes the machine code compiled from the n-body guest, plain, metered and rewritten,
    /// for `objdump -d`.
    Compiled(instructions::CompiledArgs),
    /// The determinism corpus: every job's example tasks and the test guests that probe
    /// what hosts differ in, run through a `runner` (the host's, or a cross-built one under
    /// qemu-user) and compared with tests/determinism/expected.json.
    Corpus(corpus::CorpusArgs),
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    if let What::Corpus(args) = &cli.what {
        return corpus::corpus(args);
    }
    if !matches!(cli.what, What::Kernel(_) | What::Compiled(_)) {
        println!("machine: {} cores, {}", cores(), cpu_model());
    }
    if matches!(cli.what, What::Overhead | What::All) {
        overhead(cli.tasks, &cli.wasmtime)?;
    }
    if matches!(cli.what, What::Compute | What::All) {
        compute()?;
    }
    if matches!(cli.what, What::Jobs | What::All) {
        jobs::jobs()?;
    }
    if let What::Grid(args) = &cli.what {
        grid::grid(args)?;
    }
    if let What::Storage(args) = &cli.what {
        storage::storage(args)?;
    }
    if let What::Sabotage(args) = &cli.what {
        sabotage::sabotage(args);
    }
    if let What::Instructions(args) = &cli.what {
        instructions::instructions(args)?;
    }
    if let What::Kernel(args) = &cli.what {
        instructions::kernel(args)?;
    }
    if let What::Compiled(args) = &cli.what {
        instructions::compiled(args)?;
    }
    Ok(())
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

fn hash(bytes: &[u8]) -> Blake3Hash {
    Blake3Hash::of(bytes)
}

/// The trivial task: copy a 64-byte input to an output.
fn copy_task(module: &[u8]) -> TaskManifest {
    TaskManifest::from_value(json!({
        "schema_version": 1,
        "name": "copy",
        "module": { "uri": "copy.wasm", "blake3": hash(module).to_hex() },
        "inputs": [ { "name": "data", "uri": "data", "blake3": hash(&[7u8; 64]).to_hex() } ],
        "outputs": [ { "name": "data", "max_bytes": 4096 } ],
        "limits": { "fuel": 100_000_000u64 }
    }))
    .expect("the benchmark task is valid")
}

fn noop_task(module: &[u8]) -> TaskManifest {
    TaskManifest::from_value(json!({
        "schema_version": 1,
        "module": { "uri": "noop.wasm", "blake3": hash(module).to_hex() },
        "limits": { "fuel": 1_000_000u64 }
    }))
    .expect("the benchmark task is valid")
}

/// Runs `n` tasks split over `threads` threads; returns tasks per second.
fn tasks_per_second(
    sandbox: &Sandbox,
    prepared: &Prepared,
    task: &TaskManifest,
    inputs: &[(Name, Arc<[u8]>)],
    n: usize,
    threads: usize,
) -> Result<f64> {
    let start = Instant::now();
    std::thread::scope(|s| -> Result<()> {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(move || -> Result<()> {
                    for _ in 0..n / threads {
                        let out = sandbox.run(prepared, task, inputs.to_vec())?;
                        ensure!(out.report.outcome.is_success(), "{:?}", out.report.outcome);
                    }
                    Ok(())
                })
            })
            .collect();
        for w in workers {
            w.join().expect("worker panicked")?;
        }
        Ok(())
    })?;
    Ok(n as f64 / start.elapsed().as_secs_f64())
}

fn overhead(n: usize, wasmtime_cli: &Path) -> Result<()> {
    let copy = helio_test_guests::bytes(g::COPY);
    let noop = wat::parse_str(r#"(module (memory (export "memory") 1) (func (export "_start")))"#)?;
    let data: Arc<[u8]> = Arc::from(vec![7u8; 64]);
    let inputs = vec![(Name::parse("data").unwrap(), data)];

    println!("\n## Per-task overhead ({n} tasks per row, module prepared once)\n");
    println!("| what | threads | tasks/s | µs/task |");
    println!("|---|---|---|---|");
    let row = |what: &str, threads: usize, rate: f64| {
        println!("| {what} | {threads} | {rate:.0} | {:.1} |", 1e6 / rate);
    };
    for (label, slots) in [("pooling allocator", 16u32), ("on-demand allocation", 0)] {
        let sandbox = Sandbox::new(SandboxConfig {
            cache_dir: None,
            pool_slots: slots,
            nan: NanMode::AtSinks,
            ..SandboxConfig::default()
        })?;
        let p_copy = sandbox.prepare(&hash(&copy), &copy)?;
        let p_noop = sandbox.prepare(&hash(&noop), &noop)?;
        let (t_copy, t_noop) = (copy_task(&copy), noop_task(&noop));
        // Warm up.
        tasks_per_second(&sandbox, &p_copy, &t_copy, &inputs, 200, 1)?;
        for threads in [1, 2] {
            let r = tasks_per_second(&sandbox, &p_noop, &t_noop, &[], n, threads)?;
            row(
                &format!("Helio sandbox, empty WAT module, {label}"),
                threads,
                r,
            );
            let r = tasks_per_second(&sandbox, &p_copy, &t_copy, &inputs, n, threads)?;
            row(
                &format!("Helio sandbox, Rust guest copying /in/data to /out/data, {label}"),
                threads,
                r,
            );
        }
    }
    let r = wasmtime_wasi_host_dirs(&copy, n.min(5_000))?;
    row(
        "wasmtime-wasi p1, same guest, /in and /out staged as host directories",
        1,
        r,
    );
    let r = spawn_per_task(n.min(1_000), || {
        let mut c = Command::new("true");
        c.arg("x");
        c
    })?;
    row(
        "native process per task (`true`), spawn and wait only",
        1,
        r,
    );
    match wasmtime_run_per_task(wasmtime_cli, &copy, n.min(300)) {
        Ok((plain, precompiled)) => {
            row(
                "`wasmtime run` per task, same guest, host dirs staged",
                1,
                plain,
            );
            row(
                "`wasmtime run --allow-precompiled` per task (module compiled once)",
                1,
                precompiled,
            );
        }
        Err(e) => println!("| `wasmtime run` per task: skipped ({e}) | | | |"),
    }
    Ok(())
}

/// Stages task `i`'s host directories under `root` as a process-per-task runner must:
/// `in/` holding the 64-byte input and an empty `out/`. Returns the task's directory and both.
fn stage_dirs(root: &Path, i: usize) -> Result<(PathBuf, PathBuf, PathBuf)> {
    let dir = root.join(format!("t{i}"));
    let (input, output) = (dir.join("in"), dir.join("out"));
    std::fs::create_dir_all(&input)?;
    std::fs::create_dir_all(&output)?;
    std::fs::write(input.join("data"), [7u8; 64])?;
    Ok((dir, input, output))
}

/// The same trivial task through wasmtime-wasi's preview 1 with real directories.
fn wasmtime_wasi_host_dirs(module: &[u8], n: usize) -> Result<f64> {
    let engine = Engine::new(&helio_runner::engine_config(16, NanMode::AtSinks))?;
    let mut linker: Linker<WasiP1Ctx> = Linker::new(&engine);
    wasmtime_wasi::p1::add_to_linker_sync(&mut linker, |t| t)?;
    // The module as Helio runs it (metered, NaNs canonical at sinks); only the WASI differs.
    let rewritten = helio_runner::instrument(module, NanMode::AtSinks, Pause::Never)
        .map_err(anyhow::Error::msg)?;
    let module = Module::new(&engine, rewritten)?;
    let pre = linker.instantiate_pre(&module)?;
    let root = tempfile::tempdir()?;
    let start = Instant::now();
    for i in 0..n {
        let (dir, input, output) = stage_dirs(root.path(), i)?;
        let wasi = WasiCtxBuilder::new()
            .args(&["copy"])
            .preopened_dir(&input, "/in", FsPerms::ReadOnly)?
            .preopened_dir(&output, "/out", FsPerms::ReadWrite)?
            .build_p1();
        let mut store = Store::new(&engine, wasi);
        let instance = pre.instantiate(&mut store)?;
        // A module with Helio's metering inserted keeps its fuel in this global.
        if let Some(fuel) = instance.get_global(&mut store, "helio:fuel") {
            fuel.set(&mut store, Val::I64(i64::MAX / 4))?;
        }
        instance
            .get_typed_func::<(), ()>(&mut store, "_start")?
            .call(&mut store, ())?;
        let out = std::fs::read(output.join("data"))?;
        ensure!(out.len() == 64);
        std::fs::remove_dir_all(&dir)?;
    }
    Ok(n as f64 / start.elapsed().as_secs_f64())
}

fn spawn_per_task(n: usize, make: impl Fn() -> Command) -> Result<f64> {
    let start = Instant::now();
    for _ in 0..n {
        let status = make().status()?;
        ensure!(status.success(), "{status}");
    }
    Ok(n as f64 / start.elapsed().as_secs_f64())
}

/// What a scientist would do by hand: stage the directories and `wasmtime run` each task.
fn wasmtime_run_per_task(cli: &Path, module: &[u8], n: usize) -> Result<(f64, f64)> {
    let version = Command::new(cli)
        .arg("--version")
        .output()
        .context("no wasmtime CLI")?;
    ensure!(version.status.success(), "wasmtime --version failed");
    let root = tempfile::tempdir()?;
    let wasm = root.path().join("copy.wasm");
    std::fs::write(&wasm, module)?;
    let cwasm = root.path().join("copy.cwasm");
    // Fuel is a compile-time setting: the artifact must be compiled with it too.
    let status = Command::new(cli)
        .args(["compile", "-W", "fuel=100000000"])
        .arg(&wasm)
        .arg("-o")
        .arg(&cwasm)
        .status()?;
    ensure!(status.success(), "wasmtime compile failed");
    let mut rates = Vec::new();
    for (module, extra) in [(&wasm, None), (&cwasm, Some("--allow-precompiled"))] {
        let start = Instant::now();
        for i in 0..n {
            let (dir, input, output) = stage_dirs(root.path(), i)?;
            let mut cmd = Command::new(cli);
            cmd.arg("run").args(extra).arg("-W").arg("fuel=100000000");
            cmd.arg("--dir").arg(format!("{}::/in", input.display()));
            cmd.arg("--dir").arg(format!("{}::/out", output.display()));
            let status = cmd.arg(module).status()?;
            ensure!(status.success(), "wasmtime run failed");
            ensure!(std::fs::read(output.join("data"))?.len() == 64);
            std::fs::remove_dir_all(&dir)?;
        }
        rates.push(n as f64 / start.elapsed().as_secs_f64());
    }
    Ok((rates[0], rates[1]))
}

/// How many times each compute measurement is repeated; the best run counts. The machines
/// are shared, so single runs vary by tens of percent.
const REPEATS: usize = 7;

/// The best of [`REPEATS`] timings of `f`.
fn best_of<T>(mut f: impl FnMut() -> Result<T>) -> Result<(Duration, T)> {
    let mut best: Option<(Duration, T)> = None;
    for _ in 0..REPEATS {
        let start = Instant::now();
        let value = f()?;
        let took = start.elapsed();
        if best.as_ref().is_none_or(|(b, _)| took < *b) {
            best = Some((took, value));
        }
    }
    Ok(best.unwrap())
}

/// A guest's `_start` in plain wasmtime with the given switches, compiled and ready to run.
struct Plain {
    engine: Engine,
    pre: wasmtime::InstancePre<WasiP1Ctx>,
    fuel: bool,
}

impl Plain {
    fn new(module: &[u8], fuel: bool, epoch: bool, nan: bool) -> Result<Plain> {
        let mut config = Config::new();
        config
            .consume_fuel(fuel)
            .epoch_interruption(epoch)
            .cranelift_nan_canonicalization(nan)
            .cranelift_opt_level(OptLevel::Speed);
        let engine = Engine::new(&config)?;
        let mut linker: Linker<WasiP1Ctx> = Linker::new(&engine);
        wasmtime_wasi::p1::add_to_linker_sync(&mut linker, |t| t)?;
        let module = Module::new(&engine, module)?;
        let pre = linker.instantiate_pre(&module)?;
        Ok(Plain { engine, pre, fuel })
    }

    /// Runs `_start` once with `args`.
    fn run(&self, args: &[&str]) -> Result<()> {
        let mut argv = vec!["kernel"];
        argv.extend_from_slice(args);
        let mut store = Store::new(&self.engine, WasiCtxBuilder::new().args(&argv).build_p1());
        if self.fuel {
            store.set_fuel(u64::MAX / 4)?;
        }
        store.set_epoch_deadline(u64::MAX / 4);
        let instance = self.pre.instantiate(&mut store)?;
        // A module with Helio's metering inserted keeps its fuel in this global.
        if let Some(fuel) = instance.get_global(&mut store, "helio:fuel") {
            fuel.set(&mut store, Val::I64(i64::MAX / 4))?;
        }
        instance
            .get_typed_func::<(), ()>(&mut store, "_start")?
            .call(&mut store, ())?;
        Ok(())
    }
}

/// Runs a guest's `_start` in plain wasmtime with the given switches; returns the best time.
fn plain_wasmtime(
    module: &[u8],
    args: &[&str],
    fuel: bool,
    epoch: bool,
    nan: bool,
) -> Result<Duration> {
    let plain = Plain::new(module, fuel, epoch, nan)?;
    let (took, ()) = best_of(|| plain.run(args))?;
    Ok(took)
}

fn compute() -> Result<()> {
    // 1,000 years at a step of 0.001 years: a million steps.
    const YEARS: u32 = 1_000;
    const ROUNDS: u32 = 100_000_000;
    let sinks = Sandbox::new(SandboxConfig::default())?;
    let every = Sandbox::new(SandboxConfig {
        nan: NanMode::EveryOperation,
        ..Default::default()
    })?;
    let pausable = Sandbox::new(SandboxConfig {
        pause: Pause::OnRequest,
        ..Default::default()
    })?;
    println!("\n## Compute: the same kernel natively and in WebAssembly (best of 7)\n");
    println!(
        "| kernel | native | Helio sandbox (fuel, NaNs canonical at sinks) | × native | Helio sandbox, NaNs canonical after every operation | × native | Helio sandbox, pausable (a runner with a CPU cap or holds) | × native | fuel consumed | plain wasmtime | + Helio's fuel metering only | + Helio's metering and NaNs at sinks | + wasmtime fuel only | + wasmtime epochs only | + Cranelift NaN canon. only |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    let (native_nbody, energies) =
        best_of(|| Ok(black_box(orbits::integrate(black_box(YEARS as f64), 0.001))))?;
    let (steps, before, after) = (energies.steps, energies.before, energies.after);
    let (native_mix, sum) = best_of(|| Ok(black_box(kernels::intmix(black_box(ROUNDS), 42))))?;
    let nbody_expected = format!(
        "{steps} steps {before:.12} {after:.12} {:016x} {:016x}\n",
        before.to_bits(),
        after.to_bits()
    );
    let mix_expected = format!("{sum:016x}\n");
    for (name, path, arg, native, expected) in [
        (
            "n-body (f64)",
            g::NBODY,
            YEARS,
            native_nbody,
            nbody_expected,
        ),
        ("integer mix", g::INTMIX, ROUNDS, native_mix, mix_expected),
    ] {
        let bytes = helio_test_guests::bytes(path);
        let task = TaskManifest::from_value(json!({
            "schema_version": 1,
            "module": { "uri": "k.wasm", "blake3": hash(&bytes).to_hex() },
            "args": [arg.to_string()],
            "limits": { "fuel": 1u64 << 40, "wall_seconds": 3600 }
        }))?;
        let mut timings = Vec::new();
        let mut fuel_consumed = 0;
        for sandbox in [&sinks, &every, &pausable] {
            let prepared = sandbox.prepare(&hash(&bytes), &bytes)?;
            let (took, out) = best_of(|| Ok(sandbox.run(&prepared, &task, vec![])?))?;
            ensure!(out.report.outcome.is_success(), "{:?}", out.report.outcome);
            ensure!(
                String::from_utf8_lossy(&out.stdout) == expected,
                "{name}: the sandbox's answer {:?} is not bit-identical to native {expected:?}",
                String::from_utf8_lossy(&out.stdout)
            );
            timings.push(took);
            if fuel_consumed == 0 {
                fuel_consumed = out.report.fuel_consumed;
            }
        }
        let arg = arg.to_string();
        let plain = plain_wasmtime(&bytes, &[&arg], false, false, false)?;
        let metered = helio_runner::instrument(&bytes, NanMode::EveryOperation, Pause::Never)
            .map_err(anyhow::Error::msg)?;
        let helio_fuel = plain_wasmtime(&metered, &[&arg], false, false, false)?;
        let rewritten = helio_runner::instrument(&bytes, NanMode::AtSinks, Pause::Never)
            .map_err(anyhow::Error::msg)?;
        let helio_rewrite = plain_wasmtime(&rewritten, &[&arg], false, false, false)?;
        let fuel = plain_wasmtime(&bytes, &[&arg], true, false, false)?;
        let epoch = plain_wasmtime(&bytes, &[&arg], false, true, false)?;
        let nan = plain_wasmtime(&bytes, &[&arg], false, false, true)?;
        let pct = |d: Duration| (d.as_secs_f64() / plain.as_secs_f64() - 1.0) * 100.0;
        let x = |d: Duration| d.as_secs_f64() / native.as_secs_f64();
        println!(
            "| {name} | {:.0} ms | {:.0} ms | {:.2}× | {:.0} ms | {:.2}× | {:.0} ms | {:.2}× | {} | {:.0} ms ({:.2}×) | {:.0} ms ({:+.1}%) | {:.0} ms ({:+.1}%) | {:.0} ms ({:+.1}%) | {:.0} ms ({:+.1}%) | {:.0} ms ({:.2}×) |",
            ms(native),
            ms(timings[0]),
            x(timings[0]),
            ms(timings[1]),
            x(timings[1]),
            ms(timings[2]),
            x(timings[2]),
            fuel_consumed,
            ms(plain),
            x(plain),
            ms(helio_fuel),
            pct(helio_fuel),
            ms(helio_rewrite),
            pct(helio_rewrite),
            ms(fuel),
            pct(fuel),
            ms(epoch),
            pct(epoch),
            ms(nan),
            x(nan),
        );
    }
    println!(
        "\nEvery sandbox run printed the same bits as the native kernel, in both NaN modes (the fuel column is the profile's mode)."
    );
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
