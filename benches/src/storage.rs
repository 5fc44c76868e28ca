//! `helio-bench storage`: submitting batches from object storage (a real S3-compatible
//! server on loopback, moto, unless `--endpoint` names another): the time and peak memory
//! of `helio submit s3://…` for a 100,000-task batch, for a batch whose every task has an
//! input of its own, and the throughput of one large input streamed from the store to the
//! scheduler. Beside each: the same submission from a local directory, `aws s3 cp` of the
//! same objects, and optionally another `helio` build (`--previous-helio`).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use futures::stream::{StreamExt, TryStreamExt};
use helio_sdk::Blake3Hash;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStoreExt, PutPayload, WriteMultipart};
use serde_json::json;

use crate::grid::{Db, Scheduler};

/// What to measure.
#[derive(clap::Args, Clone, Debug)]
pub struct StorageArgs {
    /// Tasks in the batch that shares one module and one input.
    #[arg(long, default_value_t = 100_000)]
    tasks: usize,
    /// Tasks in the batch whose every task has an input of its own.
    #[arg(long, default_value_t = 10_000)]
    distinct: usize,
    /// The size of the large input, in MiB.
    #[arg(long, default_value_t = 1024)]
    large_mib: usize,
    /// An S3-compatible endpoint to use instead of starting `moto_server`.
    #[arg(long)]
    endpoint: Option<String>,
    /// The `helio` binary (default: the one built beside this benchmark).
    #[arg(long)]
    helio: Option<PathBuf>,
    /// Another `helio` build to measure beside it, e.g. the previous version.
    #[arg(long)]
    previous_helio: Option<PathBuf>,
    /// The `scheduler` binary (default: the one built beside this benchmark).
    #[arg(long)]
    scheduler: Option<PathBuf>,
}

struct Moto(Child);

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn sibling(name: &str) -> Result<PathBuf> {
    let path = std::env::current_exe()?
        .parent()
        .context("the benchmark's directory")?
        .join(name);
    ensure!(
        path.exists(),
        "{} is missing: build it first (cargo build --release -p helio-cli -p helio-scheduler)",
        path.display()
    );
    Ok(path)
}

/// Wall time and peak resident memory of one command, by `/usr/bin/time`.
struct Run {
    seconds: f64,
    peak_mib: f64,
}

fn timed(command: Command) -> Result<Run> {
    let program = command.get_program().to_owned();
    let args: Vec<_> = command.get_args().map(|a| a.to_owned()).collect();
    let mut timed = Command::new("/usr/bin/time");
    timed
        .arg("-f")
        .arg("HELIO-TIME %e %M")
        .arg(&program)
        .args(&args);
    for (k, v) in command.get_envs() {
        match v {
            Some(v) => timed.env(k, v),
            None => timed.env_remove(k),
        };
    }
    let out = timed
        .stdout(Stdio::null())
        .output()
        .context("/usr/bin/time (Debian package time)")?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    let line = stderr
        .lines()
        .rev()
        .find(|l| l.starts_with("HELIO-TIME "))
        .with_context(|| format!("{program:?}: {stderr}"))?;
    ensure!(out.status.success(), "{program:?} {args:?}: {stderr}");
    let mut parts = line.split_whitespace().skip(1);
    let seconds: f64 = parts.next().context("seconds")?.parse()?;
    let kib: f64 = parts.next().context("memory")?.parse()?;
    Ok(Run {
        seconds,
        peak_mib: kib / 1024.0,
    })
}

struct Bench {
    endpoint: String,
    helio: PathBuf,
    previous: Option<PathBuf>,
    scheduler: PathBuf,
    runtime: tokio::runtime::Runtime,
}

impl Bench {
    fn env(&self, command: &mut Command) {
        for (k, _) in std::env::vars() {
            if k.starts_with("AWS_") {
                command.env_remove(k);
            }
        }
        command
            .env("AWS_ENDPOINT_URL", &self.endpoint)
            .env("AWS_ACCESS_KEY_ID", "helio-bench")
            .env("AWS_SECRET_ACCESS_KEY", "helio-bench")
            .env("AWS_REGION", "us-east-1");
    }

    fn bucket(&self, name: &str) -> Result<AmazonS3> {
        self.runtime.block_on(async {
            let status = reqwest::Client::new()
                .put(format!("{}/{name}", self.endpoint))
                .send()
                .await?
                .status();
            ensure!(status.is_success(), "creating bucket {name}: {status}");
            Ok(())
        })?;
        Ok(AmazonS3Builder::new()
            .with_endpoint(&self.endpoint)
            .with_allow_http(true)
            .with_bucket_name(name)
            .with_region("us-east-1")
            .with_access_key_id("helio-bench")
            .with_secret_access_key("helio-bench")
            .build()?)
    }

    /// `helio submit MANIFEST` to a fresh scheduler: wall time and peak memory.
    fn submit(&self, helio: &Path, manifest: &str) -> Result<Run> {
        let scheduler = self
            .runtime
            .block_on(Scheduler::start(&self.scheduler, Db::Sqlite, ""))?;
        let mut command = Command::new(helio);
        command.args([
            "submit",
            manifest,
            "--scheduler",
            &scheduler.url,
            "--token",
            &scheduler.token,
        ]);
        self.env(&mut command);
        let run = timed(command);
        self.runtime.block_on(scheduler.stop(""))?;
        run
    }

    /// `aws s3 cp` of the objects under `prefix` to a scratch directory.
    fn aws_copy(&self, uri: &str, recursive: bool) -> Result<Run> {
        let scratch = tempfile::tempdir()?;
        let mut command = Command::new("aws");
        command.args([
            "s3",
            "cp",
            uri,
            scratch.path().to_str().unwrap(),
            "--only-show-errors",
        ]);
        if recursive {
            command.arg("--recursive");
        }
        self.env(&mut command);
        timed(command)
    }

    /// A table row; `amount` is what the throughput counts: (how many, unit).
    fn row(&self, what: &str, case: &str, run: &Run, amount: Option<(f64, &str)>) {
        let rate = amount
            .map(|(n, unit)| format!("{:.0} {unit}/s", n / run.seconds.max(0.01)))
            .unwrap_or_else(|| "—".into());
        println!(
            "| {what} | {case} | {:.2} s | {rate} | {:.0} MiB |",
            run.seconds, run.peak_mib
        );
    }

    /// Every `helio` being compared: this build, and the other one if given.
    fn helios(&self) -> Vec<(String, PathBuf)> {
        let mut all = vec![("helio submit".to_string(), self.helio.clone())];
        if let Some(previous) = &self.previous {
            all.push(("previous helio submit".to_string(), previous.clone()));
        }
        all
    }
}

/// Uploads `objects` (key, bytes), several at a time.
async fn upload_all(store: &AmazonS3, objects: Vec<(String, Vec<u8>)>) -> Result<()> {
    let store = Arc::new(store.clone());
    futures::stream::iter(objects)
        .map(|(key, bytes)| {
            let store = store.clone();
            async move {
                store
                    .put(&ObjectPath::from(key.as_str()), PutPayload::from(bytes))
                    .await
                    .with_context(|| key)
            }
        })
        .buffer_unordered(32)
        .try_collect::<Vec<_>>()
        .await?;
    Ok(())
}

fn module() -> Result<Vec<u8>> {
    Ok(wat::parse_str(
        r#"(module (memory (export "memory") 1) (func (export "_start")))"#,
    )?)
}

fn batch(name: &str, module: &[u8], tasks: Vec<serde_json::Value>) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "schema_version": 1,
        "batch": name,
        "defaults": {
            "module": { "uri": "empty.wasm", "blake3": Blake3Hash::of(module).to_string() },
            "limits": { "fuel": 1_000_000u64, "wall_seconds": 60 },
        },
        "redundancy": { "replicas": 2, "quorum": 2, "max_replicas": 5 },
        "tasks": tasks,
    }))
    .expect("serializes")
}

/// Writes `objects` under `dir` too, for the local comparison.
fn write_local(dir: &Path, objects: &[(String, Vec<u8>)]) -> Result<()> {
    for (key, bytes) in objects {
        let path = dir.join(key);
        std::fs::create_dir_all(path.parent().unwrap())?;
        std::fs::write(path, bytes)?;
    }
    Ok(())
}

pub fn storage(args: &StorageArgs) -> Result<()> {
    let (endpoint, moto) = endpoint(args)?;
    let bench = Bench {
        endpoint,
        helio: match &args.helio {
            Some(p) => p.clone(),
            None => sibling("helio")?,
        },
        previous: args.previous_helio.clone(),
        scheduler: match &args.scheduler {
            Some(p) => p.clone(),
            None => sibling("scheduler")?,
        },
        runtime: tokio::runtime::Runtime::new()?,
    };
    let local = tempfile::tempdir()?;
    let module = module()?;
    println!(
        "\n## Submitting from object storage (S3 on loopback: {}; scheduler on SQLite)\n",
        if moto.is_some() {
            "moto_server"
        } else {
            bench.endpoint.as_str()
        }
    );
    println!("| what | batch | wall time | throughput | peak memory of the command |");
    println!("|---|---|---|---|---|");
    sweep(&bench, args, local.path(), &module)?;
    distinct(&bench, args, local.path(), &module)?;
    large(&bench, args, local.path(), &module)?;
    drop(moto);
    Ok(())
}

/// The S3 endpoint: `--endpoint`, or a moto server started here (stopped when dropped).
fn endpoint(args: &StorageArgs) -> Result<(String, Option<Moto>)> {
    let mut moto = None;
    let endpoint = match &args.endpoint {
        Some(e) => e.clone(),
        None => {
            let port = std::net::TcpListener::bind("127.0.0.1:0")?
                .local_addr()?
                .port();
            let child = Command::new("moto_server")
                .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .context("moto_server (pip install 'moto[server]')")?;
            moto = Some(Moto(child));
            let start = Instant::now();
            while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
                if start.elapsed() > Duration::from_secs(30) {
                    bail!("moto_server did not listen on port {port}");
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            format!("http://127.0.0.1:{port}")
        }
    };
    Ok((endpoint, moto))
}

/// A sweep: many tasks, one module, one shared input.
fn sweep(bench: &Bench, args: &StorageArgs, local: &Path, module: &[u8]) -> Result<()> {
    let store = bench.bucket("helio-bench-sweep")?;
    let tasks = (0..args.tasks)
        .map(|i| {
            json!({
                "name": format!("t-{i:06}"),
                "args": ["--point", i.to_string()],
                "inputs": [{ "name": "grid.csv", "uri": "grid.csv",
                             "blake3": Blake3Hash::of(b"x,y\n0,0\n").to_string() }],
            })
        })
        .collect();
    let manifest = batch("sweep", module, tasks);
    let manifest_mib = manifest.len() as f64 / (1 << 20) as f64;
    let objects = vec![
        ("sweep/batch.json".to_string(), manifest),
        ("sweep/empty.wasm".to_string(), module.to_vec()),
        ("sweep/grid.csv".to_string(), b"x,y\n0,0\n".to_vec()),
    ];
    bench
        .runtime
        .block_on(upload_all(&store, objects.clone()))?;
    write_local(local, &objects)?;
    let case = format!(
        "{} tasks, shared input ({manifest_mib:.1} MiB manifest)",
        args.tasks
    );
    for (what, helio) in bench.helios() {
        let run = bench.submit(&helio, "s3://helio-bench-sweep/sweep/batch.json")?;
        bench.row(&format!("{what} s3://"), &case, &run, None);
    }
    let run = bench.submit(
        &bench.helio,
        local.join("sweep/batch.json").to_str().unwrap(),
    )?;
    bench.row("helio submit (local directory)", &case, &run, None);
    Ok(())
}

/// Every task with an input of its own.
fn distinct(bench: &Bench, args: &StorageArgs, local: &Path, module: &[u8]) -> Result<()> {
    let store = bench.bucket("helio-bench-distinct")?;
    let mut objects = vec![("distinct/empty.wasm".to_string(), module.to_vec())];
    let mut tasks = Vec::new();
    for i in 0..args.distinct {
        let bytes = format!("{i}\n")
            .repeat(1024 / (format!("{i}\n").len()))
            .into_bytes();
        tasks.push(json!({
            "name": format!("t-{i:06}"),
            "inputs": [{ "name": "data.txt", "uri": format!("inputs/{i:06}.txt"),
                         "blake3": Blake3Hash::of(&bytes).to_string() }],
        }));
        objects.push((format!("distinct/inputs/{i:06}.txt"), bytes));
    }
    objects.push((
        "distinct/batch.json".to_string(),
        batch("distinct", module, tasks),
    ));
    bench
        .runtime
        .block_on(upload_all(&store, objects.clone()))?;
    write_local(local, &objects)?;
    let case = format!("{} tasks, an input each (1 KiB)", args.distinct);
    for (what, helio) in bench.helios() {
        let run = bench.submit(&helio, "s3://helio-bench-distinct/distinct/batch.json")?;
        bench.row(
            &format!("{what} s3://"),
            &case,
            &run,
            Some((args.distinct as f64, "objects")),
        );
    }
    let run = bench.submit(
        &bench.helio,
        local.join("distinct/batch.json").to_str().unwrap(),
    )?;
    bench.row(
        "helio submit (local directory)",
        &case,
        &run,
        Some((args.distinct as f64, "objects")),
    );
    let run = bench.aws_copy("s3://helio-bench-distinct/distinct/inputs/", true)?;
    bench.row(
        "aws s3 cp --recursive (inputs only)",
        &case,
        &run,
        Some((args.distinct as f64, "objects")),
    );
    Ok(())
}

/// One large input, streamed.
fn large(bench: &Bench, args: &StorageArgs, local: &Path, module: &[u8]) -> Result<()> {
    let store = bench.bucket("helio-bench-large")?;
    let mut hasher = blake3::Hasher::new();
    let chunk: Vec<u8> = (0..(1 << 20))
        .map(|i: u32| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    bench.runtime.block_on(async {
        let mut upload = WriteMultipart::new(
            store
                .put_multipart(&ObjectPath::from("large/data.bin"))
                .await?,
        );
        let mut file = std::fs::File::create(local.join("data.bin"))?;
        for i in 0..args.large_mib {
            let mut part = chunk.clone();
            part[..8].copy_from_slice(&(i as u64).to_le_bytes());
            hasher.update(&part);
            std::io::Write::write_all(&mut file, &part)?;
            upload.wait_for_capacity(4).await?;
            upload.write(&part);
        }
        upload.finish().await?;
        anyhow::Ok(())
    })?;
    let tasks = vec![json!({
        "name": "large",
        "inputs": [{ "name": "data.bin", "uri": "data.bin",
                     "blake3": Blake3Hash::from(hasher.finalize()).to_string() }],
    })];
    let manifest = batch("large", module, tasks);
    let objects = vec![
        ("large/batch.json".to_string(), manifest),
        ("large/empty.wasm".to_string(), module.to_vec()),
    ];
    bench
        .runtime
        .block_on(upload_all(&store, objects.clone()))?;
    write_local(local, &objects)?;
    std::fs::rename(local.join("data.bin"), local.join("large/data.bin"))?;
    let case = format!("one input of {} MiB", args.large_mib);
    for (what, helio) in bench.helios() {
        let run = bench.submit(&helio, "s3://helio-bench-large/large/batch.json")?;
        bench.row(
            &format!("{what} s3://"),
            &case,
            &run,
            Some((args.large_mib as f64, "MiB")),
        );
    }
    let run = bench.submit(
        &bench.helio,
        local.join("large/batch.json").to_str().unwrap(),
    )?;
    bench.row(
        "helio submit (local directory)",
        &case,
        &run,
        Some((args.large_mib as f64, "MiB")),
    );
    let run = bench.aws_copy("s3://helio-bench-large/large/data.bin", false)?;
    bench.row(
        "aws s3 cp (the input only, to disk)",
        &case,
        &run,
        Some((args.large_mib as f64, "MiB")),
    );
    Ok(())
}
