//! Batches from object storage, as a CI pipeline runs them: the manifest and the objects it
//! names under an `s3://` prefix, `helio submit s3://… --wait`, `helio results --out s3://…`,
//! against a real S3-compatible server on loopback (moto in server mode: `HELIO_TEST_S3`
//! names a running one, else each test starts `moto_server`, which `.ci/run` installs).

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use helio_runner::agent::Stop;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStoreExt, PutPayload};

use super::grid::{Db, TestGrid, chain, hashchain_batch};

/// An S3-compatible server on loopback.
struct S3Server {
    endpoint: String,
    child: Option<Child>,
}

impl Drop for S3Server {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn s3_server() -> S3Server {
    if let Ok(endpoint) = std::env::var("HELIO_TEST_S3") {
        return S3Server {
            endpoint,
            child: None,
        };
    }
    S3Server::start()
}

impl S3Server {
    /// A new `moto_server` of this test's own.
    fn start() -> S3Server {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start moto_server: {e} (pip install 'moto[server]'; .ci/run does)")
            });
        let server = S3Server {
            endpoint: format!("http://127.0.0.1:{port}"),
            child: Some(child),
        };
        let start = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "moto_server did not listen on port {port}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        server
    }
}

impl S3Server {
    /// A fresh bucket, and a client for it.
    async fn bucket(&self) -> (String, AmazonS3) {
        let mut suffix = [0u8; 6];
        getrandom::fill(&mut suffix).unwrap();
        let bucket = format!("helio-{}", helio_sdk::wire::to_hex(&suffix));
        let status = reqwest::Client::new()
            .put(format!("{}/{bucket}", self.endpoint))
            .send()
            .await
            .unwrap()
            .status();
        assert!(status.is_success(), "creating bucket {bucket}: {status}");
        let store = AmazonS3Builder::new()
            .with_endpoint(&self.endpoint)
            .with_allow_http(true)
            .with_bucket_name(&bucket)
            .with_region("us-east-1")
            .with_access_key_id("helio-test")
            .with_secret_access_key("helio-test")
            .build()
            .unwrap();
        (bucket, store)
    }

    /// Points `command` at this server, with none of the user's AWS settings.
    fn aws_env(&self, command: &mut Command) {
        for (k, _) in std::env::vars() {
            if k.starts_with("AWS_") {
                command.env_remove(k);
            }
        }
        command
            .env("HOME", std::env::temp_dir().join("helio-no-home"))
            .env("AWS_ENDPOINT_URL", &self.endpoint)
            .env("AWS_ACCESS_KEY_ID", "helio-test")
            .env("AWS_SECRET_ACCESS_KEY", "helio-test")
            .env("AWS_REGION", "us-east-1");
    }

    /// `helio ARGS` with this server as its S3 endpoint, and nothing of the user's AWS
    /// settings.
    fn helio(&self, args: &[&str], extra_env: &[(&str, &str)]) -> Output {
        let mut command = Command::new(helio_binary());
        command.args(args);
        self.aws_env(&mut command);
        for (k, v) in extra_env {
            command.env(k, v);
        }
        command.output().unwrap()
    }
}

/// The `helio` binary `cargo test --workspace` builds beside this test.
fn helio_binary() -> PathBuf {
    workspace_binary("helio")
}

/// A binary of the workspace (`helio`, `runner`) that `cargo test --workspace` builds
/// beside this test.
pub fn workspace_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let helio = exe
        .parent()
        .and_then(|deps| deps.parent())
        .unwrap()
        .join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(
        helio.exists(),
        "{} is missing: run the workspace's tests (cargo test --workspace), which build it",
        helio.display()
    );
    helio
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

async fn upload(store: &AmazonS3, key: &str, bytes: Vec<u8>) {
    store
        .put(&ObjectPath::from(key), PutPayload::from(bytes))
        .await
        .unwrap();
}

async fn download(store: &AmazonS3, key: &str) -> Vec<u8> {
    store
        .get(&ObjectPath::from(key))
        .await
        .unwrap_or_else(|e| panic!("{key}: {e}"))
        .bytes()
        .await
        .unwrap()
        .to_vec()
}

/// A batch under `s3://bucket/run-42/` whose module is named relative to the manifest runs
/// through consensus, and its results land under `s3://bucket/run-42/results/`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_from_s3_runs_to_results_in_s3() {
    let s3 = s3_server();
    let (bucket, store) = s3.bucket().await;
    let grid = TestGrid::start(Db::Sqlite, 30_000).await;
    let (n, rounds) = (6, 50);
    let local = hashchain_batch(grid.dir.path(), n, rounds, 60);
    upload(&store, "run-42/batch.json", std::fs::read(&local).unwrap()).await;
    let module = std::fs::read(grid.dir.path().join("hashchain.wasm")).unwrap();
    upload(&store, "run-42/hashchain.wasm", module).await;
    let manifest = format!("s3://{bucket}/run-42/batch.json");

    let checked = s3.helio(&["validate", &manifest], &[]);
    assert!(checked.status.success(), "{}", text(&checked.stdout));
    // `runner exec` reads the same manifest and module from S3, as the contract allows.
    let mut exec = Command::new(workspace_binary("runner"));
    exec.args([
        "exec",
        &manifest,
        "--task",
        "chain-002",
        "--json",
        "--no-cache",
    ]);
    s3.aws_env(&mut exec);
    let ran = exec.output().unwrap();
    assert_eq!(ran.status.code(), Some(0), "{}", text(&ran.stderr));
    let ran: serde_json::Value = serde_json::from_slice(&ran.stdout).unwrap();
    assert_eq!(ran["outcome"], "exited", "{ran}");

    let runners: Vec<_> = ["alice", "bob"].iter().map(|o| grid.runner(o, 2)).collect();
    let remote = ["--scheduler", &grid.url, "--token", &grid.token];
    let submit = [&["submit", manifest.as_str(), "--wait"][..], &remote[..]].concat();
    let submitted = s3.helio(&submit, &[]);
    assert_eq!(
        submitted.status.code(),
        Some(0),
        "{}",
        text(&submitted.stderr)
    );
    let batch = text(&submitted.stdout).lines().next().unwrap().to_string();
    for (stop, task) in runners {
        stop.send(Stop::Drain).unwrap();
        task.await.unwrap().unwrap();
    }

    let out = format!("s3://{bucket}/run-42/results/");
    let results = [
        &["results", batch.as_str(), "--out", out.as_str(), "--json"][..],
        &remote[..],
    ]
    .concat();
    let written = s3.helio(&results, &[]);
    assert_eq!(written.status.code(), Some(0), "{}", text(&written.stderr));
    let printed: serde_json::Value = serde_json::from_slice(&written.stdout).unwrap();
    let stored: serde_json::Value =
        serde_json::from_slice(&download(&store, "run-42/results/results.json").await).unwrap();
    assert_eq!(printed, stored);
    let tasks = stored["tasks"].as_array().unwrap();
    assert_eq!(tasks.len(), n as usize);
    for (i, task) in tasks.iter().enumerate() {
        let name = task["task"].as_str().unwrap();
        assert_eq!(task["result"]["outcome"], "exited", "{task}");
        assert_eq!(task["result"]["exit_code"], 0, "{task}");
        assert_eq!(task["agreeing"].as_array().unwrap().len(), 2, "{task}");
        let digest = download(&store, &format!("run-42/results/{name}/digest.txt")).await;
        assert_eq!(text(&digest).trim(), chain([i as u8; 32], rounds), "{name}");
    }

    // The same manifest again is the same batch.
    let again = s3.helio(
        &[&["submit", manifest.as_str()][..], &remote[..]].concat(),
        &[],
    );
    assert_eq!(again.status.code(), Some(0), "{}", text(&again.stderr));
    assert_eq!(text(&again.stdout).trim(), batch);
    assert!(text(&again.stderr).contains("already submitted"));
    grid.stop().await;
}

/// A missing object and a hash mismatch are the manifest's fault (exit status 2); a store
/// that cannot be reached or refuses access is the storage's (6). Each error names the
/// object.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_errors_name_the_object_and_exit_distinctly() {
    let s3 = s3_server();
    let (bucket, store) = s3.bucket().await;
    let grid = TestGrid::start(Db::Sqlite, 30_000).await;
    let local = hashchain_batch(grid.dir.path(), 2, 10, 60);
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&local).unwrap()).unwrap();
    upload(
        &store,
        "run/batch.json",
        serde_json::to_vec(&manifest).unwrap(),
    )
    .await;
    let remote = [
        "--scheduler",
        grid.url.as_str(),
        "--token",
        grid.token.as_str(),
    ];
    let submit = |uri: String, env: &[(&str, &str)]| {
        s3.helio(&[&["submit", uri.as_str()][..], &remote[..]].concat(), env)
    };
    let uri = format!("s3://{bucket}/run/batch.json");

    // The module was never uploaded.
    let missing = submit(uri.clone(), &[]);
    assert_eq!(missing.status.code(), Some(2), "{}", text(&missing.stderr));
    let object = format!("s3://{bucket}/run/hashchain.wasm");
    assert!(
        text(&missing.stderr).contains(&format!("module: {object} does not exist")),
        "{}",
        text(&missing.stderr)
    );

    // With --json, the failure is JSON on standard output too.
    let as_json = s3.helio(
        &[&["submit", uri.as_str(), "--json"][..], &remote[..]].concat(),
        &[],
    );
    assert_eq!(as_json.status.code(), Some(2));
    let said: serde_json::Value = serde_json::from_slice(&as_json.stdout).unwrap();
    assert_eq!(said["kind"], "manifest", "{said}");
    assert_eq!(said["exit_code"], 2, "{said}");
    assert!(said["error"].as_str().unwrap().contains(&object), "{said}");

    // Bytes that are not the module the manifest names.
    upload(&store, "run/hashchain.wasm", b"not the module".to_vec()).await;
    let mismatch = submit(uri.clone(), &[]);
    assert_eq!(
        mismatch.status.code(),
        Some(2),
        "{}",
        text(&mismatch.stderr)
    );
    let said = text(&mismatch.stderr);
    assert!(
        said.contains("BLAKE3 mismatch") && said.contains(&object),
        "{said}"
    );

    // No manifest at all.
    let nothing = submit(format!("s3://{bucket}/run/nothing.json"), &[]);
    assert_eq!(nothing.status.code(), Some(2));
    assert!(
        text(&nothing.stderr).contains(&format!("s3://{bucket}/run/nothing.json")),
        "{}",
        text(&nothing.stderr)
    );

    // Unsigned requests (no credentials): the store refuses them.
    let denied = submit(uri.clone(), &[("AWS_SKIP_SIGNATURE", "true")]);
    assert_eq!(denied.status.code(), Some(6), "{}", text(&denied.stderr));
    let said = text(&denied.stderr);
    assert!(
        said.contains("access denied") && said.contains(&uri),
        "{said}"
    );

    // Nothing listens at the endpoint: retried briefly, then reported.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let away = submit(uri.clone(), &[("AWS_ENDPOINT_URL", dead.as_str())]);
    assert_eq!(away.status.code(), Some(6), "{}", text(&away.stderr));
    assert!(text(&away.stderr).contains(&uri), "{}", text(&away.stderr));

    grid.stop().await;
}

/// A running `scheduler serve` process.
struct Serve {
    url: String,
    child: Child,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl S3Server {
    /// `scheduler ARGS` with this server as its S3 endpoint.
    fn scheduler(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_scheduler"));
        command.args(args);
        self.aws_env(&mut command);
        command
    }

    /// `scheduler serve` with its data in `data` and its blobs at `blobs`.
    fn serve(&self, data: &std::path::Path, blobs: &str) -> Serve {
        use std::io::BufRead;
        let data = data.to_str().unwrap();
        let mut child = self
            .scheduler(&[
                "serve",
                "--data-dir",
                data,
                "--listen",
                "127.0.0.1:0",
                "--blobs",
                blobs,
                "--heartbeat-seconds",
                "1",
                "--upload-wait-seconds",
                "2",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let url = line.trim().to_string();
        assert!(url.starts_with("http://127.0.0.1:"), "{line:?}");
        Serve { url, child }
    }

    fn token(&self, data: &std::path::Path) -> String {
        let made = self
            .scheduler(&[
                "token",
                "create",
                "--data-dir",
                data.to_str().unwrap(),
                "--role",
                "submitter",
            ])
            .output()
            .unwrap();
        assert!(made.status.success(), "{}", text(&made.stderr));
        text(&made.stdout).trim().to_string()
    }
}

/// A list of `rows` businesses, a third of them in Lyon: the CSV and how many are in Lyon.
fn large_csv(rows: usize) -> (Vec<u8>, u64) {
    let mut csv = String::from("name,category,city,rating,reviews,price_level\n");
    let mut lyon = 0;
    for i in 0..rows {
        let city = ["Lyon", "Paris", "Nantes"][i % 3];
        lyon += u64::from(city == "Lyon");
        csv.push_str(&format!(
            "Shop number {i},cafe,{city},{}.{},{},{}\n",
            i % 5,
            i % 10,
            i % 1000,
            1 + i % 4
        ));
    }
    (csv.into_bytes(), lyon)
}

/// `scheduler serve --blobs s3://…` keeps modules, inputs and outputs in the bucket: an input
/// larger than one upload part streams from S3 through `helio submit` into the scheduler's
/// S3 store, runs through consensus, and a second scheduler sharing the store already holds
/// every blob.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduler_keeps_blobs_in_s3_and_large_inputs_stream_through() {
    let s3 = s3_server();
    let (bucket, store) = s3.bucket().await;
    let dir = tempfile::tempdir().unwrap();
    let blobs = format!("s3://{bucket}/helio-blobs");
    let data = dir.path().join("one");
    let token = s3.token(&data);
    let one = s3.serve(&data, &blobs);

    let module = helio_jobs::bytes(helio_jobs::BUSINESSES);
    let (csv, lyon) = large_csv(400_000);
    assert!(csv.len() > 12 << 20, "{} bytes", csv.len());
    let criteria = br#"{ "cities": ["lyon"] }"#.to_vec();
    let hash = |b: &[u8]| helio_sdk::Blake3Hash::of(b).to_string();
    let batch = serde_json::json!({
        "schema_version": 1,
        "batch": "lyon",
        "defaults": {
            "module": { "uri": "../shared/businesses.wasm", "blake3": hash(&module) },
            "outputs": [
                { "name": "matches.csv", "max_bytes": 64 << 20 },
                { "name": "summary.json", "max_bytes": 1 << 20 },
            ],
            "limits": { "fuel": 200_000_000_000u64, "wall_seconds": 120 },
        },
        "redundancy": { "replicas": 2, "quorum": 2, "max_replicas": 3 },
        "tasks": [{
            "name": "lyon",
            "inputs": [
                { "name": "businesses.csv", "uri": "data/businesses.csv", "blake3": hash(&csv) },
                { "name": "criteria.json", "uri": "criteria.json", "blake3": hash(&criteria) },
            ],
        }],
    });
    let (module_hash, csv_hash) = (hash(&module), hash(&csv));
    upload(&store, "shared/businesses.wasm", module).await;
    upload(&store, "run-7/data/businesses.csv", csv).await;
    upload(&store, "run-7/criteria.json", criteria).await;
    upload(
        &store,
        "run-7/batch.json",
        serde_json::to_vec(&batch).unwrap(),
    )
    .await;

    let runners: Vec<_> = ["alice", "bob"]
        .iter()
        .map(|o| super::grid::runner(&one.url, dir.path(), o, 1))
        .collect();
    let manifest = format!("s3://{bucket}/run-7/batch.json");
    let remote = ["--scheduler", one.url.as_str(), "--token", token.as_str()];
    let submitted = s3.helio(
        &[&["submit", manifest.as_str(), "--wait"][..], &remote[..]].concat(),
        &[],
    );
    assert_eq!(
        submitted.status.code(),
        Some(0),
        "{}",
        text(&submitted.stderr)
    );
    let batch_id = text(&submitted.stdout).lines().next().unwrap().to_string();
    for (stop, task) in runners {
        stop.send(Stop::Drain).unwrap();
        task.await.unwrap().unwrap();
    }

    // The module and the input are in the bucket under the blobs' prefix, by hash.
    for h in [&module_hash, &csv_hash] {
        let key = format!("helio-blobs/{}/{h}", &h[..2]);
        store
            .head(&ObjectPath::from(key.as_str()))
            .await
            .unwrap_or_else(|e| panic!("{key}: {e}"));
    }

    let out = dir.path().join("results");
    let written = s3.helio(
        &[
            &["results", batch_id.as_str(), "--out", out.to_str().unwrap()][..],
            &remote[..],
        ]
        .concat(),
        &[],
    );
    assert_eq!(written.status.code(), Some(0), "{}", text(&written.stderr));
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("lyon/summary.json")).unwrap()).unwrap();
    assert_eq!(summary["rows"], 400_000);
    assert_eq!(summary["matched"], lyon);
    let matches = std::fs::read_to_string(out.join("lyon/matches.csv")).unwrap();
    assert_eq!(matches.lines().count() as u64, lyon + 1);

    // A second scheduler (its own database) sharing the blob store holds all of it.
    let data_two = dir.path().join("two");
    let token_two = s3.token(&data_two);
    let two = s3.serve(&data_two, &blobs);
    let results: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("results.json")).unwrap()).unwrap();
    let output_hashes: Vec<String> = results["tasks"][0]["result"]["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["blake3"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(output_hashes.len(), 2);
    let all: Vec<&str> = [module_hash.as_str(), csv_hash.as_str()]
        .into_iter()
        .chain(output_hashes.iter().map(String::as_str))
        .collect();
    let answer: serde_json::Value = reqwest::Client::new()
        .post(format!("{}/v1/blobs/missing", two.url))
        .bearer_auth(&token_two)
        .json(&serde_json::json!({ "blobs": all }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer["blobs"], serde_json::json!([]), "{answer}");
    let unknown = helio_sdk::Blake3Hash::of(b"never stored").to_string();
    let answer: serde_json::Value = reqwest::Client::new()
        .post(format!("{}/v1/blobs/missing", two.url))
        .bearer_auth(&token_two)
        .json(&serde_json::json!({ "blobs": [unknown] }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer["blobs"], serde_json::json!([unknown]));
    drop(two);
    drop(one);
}

/// With the store checking credentials, a key it does not know is refused: exit status 6,
/// naming the object, and nothing is submitted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_credentials_are_refused_with_a_clear_error() {
    // A server of its own: turning on its authentication would upset the other tests.
    let s3 = S3Server::start();
    let (bucket, store) = s3.bucket().await;
    upload(&store, "run/batch.json", b"{}".to_vec()).await;
    let enforced = reqwest::Client::new()
        .post(format!("{}/moto-api/reset-auth", s3.endpoint))
        .body("0")
        .send()
        .await
        .unwrap();
    assert!(enforced.status().is_success());
    let grid = TestGrid::start(Db::Sqlite, 30_000).await;
    let uri = format!("s3://{bucket}/run/batch.json");
    let refused = s3.helio(
        &[
            "submit",
            uri.as_str(),
            "--scheduler",
            grid.url.as_str(),
            "--token",
            grid.token.as_str(),
        ],
        &[
            ("AWS_ACCESS_KEY_ID", "AKIAWRONGWRONGWRONG1"),
            ("AWS_SECRET_ACCESS_KEY", "not-the-secret"),
        ],
    );
    assert_eq!(refused.status.code(), Some(6), "{}", text(&refused.stderr));
    let said = text(&refused.stderr);
    assert!(
        said.contains("access denied") && said.contains(&uri) && said.contains("AWS_ACCESS_KEY_ID"),
        "{said}"
    );
    grid.stop().await;
}

/// `examples/ci/run-batch.sh`, as a pipeline runs it: a batch `helio pack` wrote is uploaded
/// with the AWS command line, submitted from S3, waited for and its results written back.
/// One task's argument is not a number, so that task fails: the script exits 1, and the
/// results are downloaded all the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ci_example_uploads_submits_waits_and_downloads() {
    let s3 = s3_server();
    let (bucket, store) = s3.bucket().await;
    let grid = TestGrid::start(Db::Sqlite, 30_000).await;
    let work = tempfile::tempdir().unwrap();
    let module = work.path().join("hashchain.wasm");
    std::fs::write(&module, helio_jobs::bytes(helio_jobs::HASHCHAIN)).unwrap();
    let batch_dir = work.path().join("batch");
    let packed = s3.helio(
        &[
            "pack",
            module.to_str().unwrap(),
            "--out",
            batch_dir.to_str().unwrap(),
            "--arg=--start",
            &format!("--arg={}", "0".repeat(64)),
            "--sweep",
            "rounds=10,20,many",
            "--output",
            "digest.txt:128",
        ],
        &[],
    );
    assert!(packed.status.success(), "{}", text(&packed.stderr));

    let runners: Vec<_> = ["alice", "bob"].iter().map(|o| grid.runner(o, 2)).collect();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/ci/run-batch.sh");
    let prefix = format!("s3://{bucket}/ci/run-1");
    let mut command = Command::new("bash");
    command.args([script, batch_dir.to_str().unwrap(), prefix.as_str()]);
    s3.aws_env(&mut command);
    let ran = command
        .env("HELIO", helio_binary())
        .env("HELIO_SCHEDULER", &grid.url)
        .env("HELIO_TOKEN", &grid.token)
        .output()
        .unwrap();
    let said = text(&ran.stderr);
    assert!(
        !said.contains("aws: command not found"),
        "the AWS command line is missing (pip install awscli; .ci/run does)"
    );
    assert_eq!(ran.status.code(), Some(1), "{said}");
    for (stop, task) in runners {
        stop.send(Stop::Drain).unwrap();
        task.await.unwrap().unwrap();
    }

    // What the script uploaded is where the manifest says.
    download(&store, "ci/run-1/batch.json").await;
    let results: serde_json::Value =
        serde_json::from_slice(&download(&store, "ci/run-1/results/results.json").await).unwrap();
    let tasks = results["tasks"].as_array().unwrap();
    assert_eq!(tasks.len(), 3, "{results}");
    let mut failed = 0;
    for task in tasks {
        let name = task["task"].as_str().unwrap();
        let result = &task["result"];
        let rounds = task_rounds(&download(&store, "ci/run-1/batch.json").await, name);
        match rounds.parse::<u32>() {
            Ok(rounds) => {
                assert_eq!(result["exit_code"], 0, "{task}");
                let digest = download(&store, &format!("ci/run-1/results/{name}/digest.txt")).await;
                assert_eq!(text(&digest).trim(), chain([0; 32], rounds), "{name}");
            }
            Err(_) => {
                failed += 1;
                assert_ne!(result["exit_code"], 0, "{task}");
            }
        }
    }
    assert_eq!(failed, 1);
    // The batch's status counts the failure as it counted it when the task was accepted.
    let status = grid
        .submitter()
        .status(results["batch"].as_str().unwrap())
        .await
        .unwrap();
    assert_eq!(
        (status.tasks, status.succeeded, status.failed),
        (3, 2, 1),
        "{status:?}"
    );
    grid.stop().await;
}

/// The `--rounds` argument of task `name` in a batch manifest.
fn task_rounds(manifest: &[u8], name: &str) -> String {
    let batch: serde_json::Value = serde_json::from_slice(manifest).unwrap();
    let task = batch["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == name)
        .unwrap_or_else(|| panic!("no task {name}"));
    let args: Vec<&str> = task["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    let at = args.iter().position(|a| *a == "--rounds").unwrap();
    args[at + 1].to_string()
}
