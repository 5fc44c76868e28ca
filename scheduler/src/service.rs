//! `scheduler serve`: the database, the blob store, the HTTP API and its background loops —
//! one ends leases past their deadline and marks silent runners offline (handing their
//! leases to others), one runs tasks with the scheduler's own embedded sandbox when no
//! quorum decided them or when an accepted result's outputs never arrived, one credits time
//! online and pays out balances, and on PostgreSQL one keeps the planner's statistics
//! current.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use helio_sandbox::{LoadedTask, Sandbox, SandboxConfig};
use helio_sdk::Blake3Hash;
use tokio::net::TcpListener;

use crate::api::{self, ApiConfig, App};
use crate::blobs::Blobs;
use crate::store::{AuthorityJob, CreditPolicy, Store, Turns, now_ms};

/// How to run the scheduler.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where to listen; port 0 picks a free port.
    pub listen: SocketAddr,
    /// Where the SQLite database, blobs and compiled modules live.
    pub data_dir: PathBuf,
    /// A `postgres://` (or `sqlite://`) URL instead of the data directory's SQLite file.
    pub database: Option<String>,
    /// Where blobs are kept (a directory or `s3://bucket/prefix`); `None` for the data
    /// directory's `blobs`.
    pub blobs: Option<String>,
    /// Settings requests see.
    pub api: ApiConfig,
    /// How long an accepted result's outputs may take to arrive before the scheduler
    /// recovers them with its own run, in milliseconds.
    pub upload_wait_ms: i64,
    /// How credits are shared and what time online earns. Its offline limit is set from
    /// the heartbeat: three heartbeats.
    pub policy: CreditPolicy,
    /// Pay every owner whose balance reaches this many micro-credits...
    pub payout_threshold: u64,
    /// ...this often; `None` pays only when an operator asks (`POST /v1/payouts`).
    pub payout_every: Option<Duration>,
    /// Serve HTTPS with this certificate chain and private key (PEM files); `None` serves
    /// plain HTTP (behind a reverse proxy that terminates TLS, or on loopback).
    pub tls: Option<(PathBuf, PathBuf)>,
}

impl Config {
    /// The defaults, with data in `data_dir`.
    pub fn new(data_dir: PathBuf) -> Config {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir,
            database: None,
            blobs: None,
            api: ApiConfig::default(),
            upload_wait_ms: 60_000,
            policy: CreditPolicy::default(),
            payout_threshold: 1_000_000,
            payout_every: None,
            tls: None,
        }
    }

    /// The database URL: `--database`, or SQLite in the data directory.
    pub fn database_url(&self) -> String {
        match &self.database {
            Some(url) => url.clone(),
            None => format!(
                "sqlite://{}?mode=rwc",
                self.data_dir.join("scheduler.db").display()
            ),
        }
    }
}

/// Opens the database named by `config`, creating the data directory.
pub async fn open_store(config: &Config) -> anyhow::Result<Store> {
    std::fs::create_dir_all(&config.data_dir).map_err(|e| {
        anyhow::anyhow!(
            "cannot create data directory {}: {e}",
            config.data_dir.display()
        )
    })?;
    let url = config.database_url();
    let store = Store::open(&url)
        .await
        .map_err(|e| anyhow::anyhow!("cannot open database {}: {e}", redact(&url)))?;
    let policy = CreditPolicy {
        offline_after_ms: 3 * 1000 * config.api.heartbeat_seconds as i64,
        ..config.policy.clone()
    };
    Ok(store.with_policy(policy))
}

fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}://***{}", &url[..s], &url[at..]),
        _ => url.to_string(),
    }
}

/// A running scheduler.
pub struct Running {
    /// The address it listens on.
    pub addr: SocketAddr,
    /// Ends when the server stops.
    pub task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

/// Starts the scheduler; it runs until `shutdown` completes.
pub async fn start(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<Running> {
    let store = open_store(&config).await?;
    let blobs = match &config.blobs {
        Some(place) => Blobs::open(place).map_err(|e| anyhow::anyhow!(e))?,
        None => Blobs::local(&config.data_dir.join("blobs"))?,
    };
    let sandbox = Arc::new(
        Sandbox::new(SandboxConfig {
            cache_dir: Some(config.data_dir.join("compiled")),
            ..SandboxConfig::default()
        })
        .map_err(|e| anyhow::anyhow!("cannot start the scheduler's sandbox: {e}"))?,
    );
    // Runners fetch the health-check module by hash, like any module.
    let (check, check_hash) = crate::checks::module();
    blobs
        .put(check_hash, bytes::Bytes::copy_from_slice(check))
        .await
        .map_err(|e| anyhow::anyhow!("cannot store the health-check module: {e}"))?;
    let app = App::new(store, blobs, config.api.clone(), sandbox);
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", config.listen))?;
    let addr = listener.local_addr()?;
    let loops = [
        tokio::spawn(expiry_loop(app.clone())),
        tokio::spawn(authority_loop(app.clone(), config.upload_wait_ms)),
        tokio::spawn(credit_loop(
            app.clone(),
            config.payout_threshold,
            config.payout_every,
        )),
    ];
    let pulse = app.pulse.clone();
    let mut loops = Vec::from(loops);
    loops.push(tokio::spawn(pulse.clone().run(app.store.clone())));
    if app.store.kind() == "postgres" {
        loops.push(tokio::spawn(statistics_loop(app.store.clone())));
    }
    loops.push(tokio::spawn({
        let (store, url) = (app.store.clone(), config.database_url());
        async move { store.listen_for_work(&url).await }
    }));
    let store = app.store.clone();
    let bell_store = app.store.clone();
    let router = api::router(app);
    let tls = match &config.tls {
        Some((cert, key)) => Some(
            axum_server::tls_rustls::RustlsConfig::from_pem_file(cert, key)
                .await
                .map_err(|e| {
                    anyhow::anyhow!(
                        "cannot use the certificate {} with the key {}: {e}",
                        cert.display(),
                        key.display()
                    )
                })?,
        ),
        None => None,
    };
    let stopping = async move {
        shutdown.await;
        tracing::info!("shutting down: finishing the requests in flight");
        pulse.close();
        bell_store.bell().close();
    };
    let task = tokio::spawn(async move {
        let served = match tls {
            None => axum::serve(
                listener,
                router.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .with_graceful_shutdown(stopping)
            .await
            .map_err(|e| anyhow::anyhow!("server failed: {e}")),
            Some(tls) => serve_tls(listener, router, tls, stopping).await,
        };
        for l in loops {
            l.abort();
        }
        // Every request has been answered; let the database finish cleanly (SQLite folds
        // its write-ahead log back into the database file).
        store.close().await;
        served
    });
    Ok(Running { addr, task })
}

/// Serves `router` over HTTPS on `listener` until `stopping` ends, then finishes the
/// requests in flight.
async fn serve_tls(
    listener: TcpListener,
    router: axum::Router,
    tls: axum_server::tls_rustls::RustlsConfig,
    stopping: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let handle = axum_server::Handle::new();
    let stop = handle.clone();
    tokio::spawn(async move {
        stopping.await;
        stop.graceful_shutdown(None);
    });
    axum_server::from_tcp_rustls(listener.into_std()?, tls)?
        .handle(handle)
        .serve(router.into_make_service_with_connect_info::<SocketAddr>())
        .await
        .map_err(|e| anyhow::anyhow!("server failed: {e}"))
}

async fn expiry_loop(app: App) {
    for round in 0u64.. {
        tokio::time::sleep(Duration::from_millis(500)).await;
        // Every 5 s: batches past their deadline, and cancellations a stop interrupted.
        if round % 10 == 0
            && let Err(e) = app.store.end_overdue(now_ms()).await
        {
            tracing::error!(error = %e, "cannot cancel batches past their deadline");
        }
        match app.store.expire(now_ms()).await {
            Ok(0) => {}
            Ok(n) => {
                tracing::info!(leases = n, "ended leases past their deadline");
                app.authority.notify_one();
            }
            Err(e) => tracing::error!(error = %e, "cannot end expired leases"),
        }
        match app.store.mark_offline(now_ms()).await {
            Ok(gone) if gone.is_empty() => {}
            Ok(_) => app.authority.notify_one(),
            Err(e) => tracing::error!(error = %e, "cannot mark silent runners offline"),
        }
    }
}

/// PostgreSQL: keeps the planner's statistics current as a batch fills the tables (see
/// [`Store::keep_statistics`]); autovacuum visits a table at most once a minute, and not at
/// all where it is turned off.
async fn statistics_loop(store: Store) {
    loop {
        tokio::time::sleep(STATISTICS_EVERY).await;
        match store.keep_statistics().await {
            Ok(tables) if tables.is_empty() => {}
            Ok(tables) => tracing::debug!(?tables, "analyzed"),
            Err(e) => tracing::error!(error = %e, "cannot update the planner's statistics"),
        }
    }
}

/// How often [`statistics_loop`] looks.
pub const STATISTICS_EVERY: Duration = Duration::from_secs(5);

/// Credits time online every minute, and pays out balances every `payout_every`.
async fn credit_loop(app: App, threshold: u64, payout_every: Option<Duration>) {
    let mut last_payout = tokio::time::Instant::now();
    loop {
        tokio::time::sleep(Duration::from_secs(60)).await;
        match app.store.credit_uptime(now_ms()).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(runners = n, "credited time online"),
            Err(e) => tracing::error!(error = %e, "cannot credit time online"),
        }
        if let Some(every) = payout_every
            && last_payout.elapsed() >= every
        {
            last_payout = tokio::time::Instant::now();
            match app.store.pay_out(threshold, now_ms()).await {
                Ok(paid) if paid.is_empty() => {}
                Ok(paid) => {
                    let total: u64 = paid.iter().map(|p| p.micro_credits).sum();
                    tracing::info!(
                        owners = paid.len(),
                        micro_credits = total,
                        "paid out balances"
                    );
                }
                Err(e) => tracing::error!(error = %e, "cannot pay out balances"),
            }
        }
    }
}

async fn authority_loop(app: App, upload_wait_ms: i64) {
    let mut turns = Turns::default();
    loop {
        let jobs = match app
            .store
            .authority_jobs(now_ms(), upload_wait_ms, &mut turns)
            .await
        {
            Ok(jobs) => jobs,
            Err(e) => {
                tracing::error!(error = %e, "cannot list tasks to run");
                Vec::new()
            }
        };
        let mut progressed = false;
        for job in jobs {
            let task_id = job.task_id;
            match run_authority(&app, job).await {
                Ok(()) => progressed = true,
                Err(e) => {
                    tracing::error!(task = %task_id, error = %e, "the scheduler's own run failed")
                }
            }
        }
        if !progressed {
            let _ = tokio::time::timeout(Duration::from_secs(2), app.authority.notified()).await;
        }
    }
}

async fn fetch(app: &App, what: &str, hash: &Blake3Hash) -> anyhow::Result<Arc<[u8]>> {
    app.blobs
        .get(hash)
        .await?
        .map(|b| Arc::from(&b[..]))
        .ok_or_else(|| anyhow::anyhow!("{what} {hash} is missing from the blob store"))
}

/// Runs one task with the scheduler's own sandbox: decides it, or recovers the outputs of
/// its accepted result.
async fn run_authority(app: &App, job: AuthorityJob) -> anyhow::Result<()> {
    let m = &job.manifest;
    let module = fetch(app, "module", &m.module.blake3).await?;
    let mut inputs = Vec::new();
    for input in &m.inputs {
        inputs.push((
            input.name.clone(),
            fetch(app, "input", &input.blake3).await?,
        ));
    }
    let task = LoadedTask {
        manifest: job.manifest.clone(),
        module,
        inputs,
    };
    let output = app.run_own(task).await?;
    let report = &output.report;
    if job.expect.is_some() && !report.outcome.is_deterministic() {
        // Its own run timed out: it proves nothing either way. The task waits its next turn.
        anyhow::bail!(
            "recovering outputs: the scheduler's run {}",
            report.outcome.name()
        );
    }
    for file in &output.outputs {
        let bytes = file.read_all()?;
        app.blobs.put(&Blake3Hash::of(&bytes), bytes.into()).await?;
    }
    app.blobs
        .put(&report.stdout_blake3, output.stdout.clone().into())
        .await?;
    match job.expect {
        None => {
            tracing::info!(task = %job.task_id, digest = %report.digest, "the scheduler's own run decided the task");
            app.store.authority(job.task_id, report, now_ms()).await?;
        }
        // Its run wins over the runners' where they differ: it re-decides the task; where
        // they agree, it confirms it (a spot check passed, a re-verification done).
        Some(_) => {
            app.store.overrule(job.task_id, report, now_ms()).await?;
        }
    }
    // The run just stored every blob its result names.
    for blob in crate::store::result_blobs(report) {
        app.store.blob_stored(&blob).await?;
    }
    Ok(())
}
