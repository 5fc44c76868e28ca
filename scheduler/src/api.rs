//! The HTTP API under `/v1`, `/health` and `/metrics`. The only module that knows routes and
//! JSON bodies; every handler authenticates, calls the [`Store`] once, and maps its errors
//! to a status with a JSON body that says what was wrong.
//!
//! Runners authenticate each request with an Ed25519 signature (see `helio_sdk::wire`);
//! submitters and operators with a bearer token of role `submitter` or `admin`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use helio_runner::{LoadedTask, RunOutput, Sandbox};
use helio_sdk::wire::{
    self, ApiError, BlobList, Credits, LeaseRequest, Leases, RegisterRunner, ReportRequest,
    ReportStatus, ReturnRequest, RunnerInfo,
};
use helio_sdk::{BatchManifest, Blake3Hash, DETERMINISM_PROFILE, Name, Tier};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use tokio::sync::Notify;

use crate::blobs::{BlobError, Blobs};
use crate::dashboard::Pulse;
use crate::limits::RateLimiter;
use crate::metrics::Metrics;
use crate::store::{Role, RunnerRecord, Store, StoreError, now_ms};

/// Settings of the service that requests see.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// Extra time a lease gets beyond the task's `wall_seconds`, in milliseconds.
    pub lease_grace_ms: i64,
    /// How often runners should be heard from, in seconds.
    pub heartbeat_seconds: u64,
    /// The largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// The most runners of a tier online at once; a tier not named has no limit.
    pub max_runners: BTreeMap<Tier, u64>,
    /// Requests a second each runner may make on average (twice as many at once; a flagged
    /// runner a tenth); 0 for no limit.
    pub runner_rate: f64,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            lease_grace_ms: 60_000,
            heartbeat_seconds: 15,
            max_body_bytes: 256 << 20,
            max_runners: BTreeMap::new(),
            runner_rate: 100.0,
        }
    }
}

/// What every handler shares.
#[derive(Clone)]
pub struct App {
    /// The database.
    pub store: Store,
    /// The blobs.
    pub blobs: Blobs,
    /// Settings.
    pub config: ApiConfig,
    /// Woken when a task needs the scheduler's own run.
    pub authority: Arc<Notify>,
    /// What `/metrics` shows.
    pub metrics: Arc<Metrics>,
    /// Runners recently authenticated, so that a busy runner's requests need no lookup.
    pub runners: Arc<RunnerCache>,
    /// Each runner's request rate.
    pub limits: Arc<RateLimiter>,
    /// The dashboard's snapshots.
    pub pulse: Arc<Pulse>,
    /// The scheduler's own sandbox: it runs health checks (and, in the authority loop,
    /// tasks whose replicas ran out).
    pub sandbox: Arc<Sandbox>,
}

impl App {
    /// The shared state of a service with `store`, `blobs`, `config` and `sandbox`.
    pub fn new(store: Store, blobs: Blobs, config: ApiConfig, sandbox: Arc<Sandbox>) -> App {
        App {
            limits: Arc::new(RateLimiter::new(config.runner_rate)),
            store,
            blobs,
            config,
            sandbox,
            authority: Arc::new(Notify::new()),
            metrics: Arc::default(),
            runners: Arc::default(),
            pulse: Arc::default(),
        }
    }

    /// Runs `task` in the scheduler's own sandbox, on a blocking thread.
    pub async fn run_own(&self, task: LoadedTask) -> anyhow::Result<RunOutput> {
        let sandbox = self.sandbox.clone();
        tokio::task::spawn_blocking(move || task.run(&sandbox))
            .await?
            .map_err(|e| anyhow::anyhow!("rejected: {e}"))
    }

    /// Counts `leases` in `/metrics`: tasks only, not health checks.
    fn count_leases(&self, leases: &[wire::Lease]) {
        let tasks = leases
            .iter()
            .filter(|l| !crate::health::is_check(l.task_id))
            .count();
        self.metrics.leases.inc_by(tasks as u64);
    }
}

/// Runners recently read from the database, by id, with when they were read. A runner's key
/// never changes (its id is the key's); its tier and slots change only by registering again,
/// which refreshes the entry. Its reputation is read inside the transactions that use it.
/// Reading a runner also records that it was heard from, so `last_seen_ms` lags by at most
/// [`RunnerCache::REFRESH_MS`] — far below the heartbeat interval offline detection uses.
#[derive(Default)]
pub struct RunnerCache(std::sync::Mutex<std::collections::HashMap<String, (RunnerRecord, i64)>>);

impl RunnerCache {
    /// How long an entry is used before the runner is read (and touched) again.
    pub const REFRESH_MS: i64 = 2_000;

    fn get(&self, id: &str, now: i64) -> Option<RunnerRecord> {
        let map = self.0.lock().expect("runner cache");
        map.get(id)
            .filter(|(_, read)| now - read < Self::REFRESH_MS)
            .map(|(r, _)| r.clone())
    }

    fn put(&self, runner: RunnerRecord, now: i64) {
        let mut map = self.0.lock().expect("runner cache");
        if map.len() > 100_000 {
            map.retain(|_, (_, read)| now - *read < Self::REFRESH_MS);
        }
        map.insert(runner.id.clone(), (runner, now));
    }

    fn forget(&self, id: &str) {
        self.0.lock().expect("runner cache").remove(id);
    }
}

/// An error answer.
#[derive(Debug)]
pub struct Fail {
    status: StatusCode,
    message: String,
    retry_after_ms: Option<u64>,
}

impl Fail {
    fn new(status: StatusCode, message: impl Into<String>) -> Fail {
        Fail {
            status,
            message: message.into(),
            retry_after_ms: None,
        }
    }
    /// Refused for now: try again after `ms` milliseconds.
    fn later(status: StatusCode, message: impl Into<String>, ms: u64) -> Fail {
        Fail {
            retry_after_ms: Some(ms),
            ..Fail::new(status, message)
        }
    }
    fn bad(msg: impl Into<String>) -> Fail {
        Fail::new(StatusCode::BAD_REQUEST, msg.into())
    }
    fn unauthorized(msg: impl Into<String>) -> Fail {
        Fail::new(StatusCode::UNAUTHORIZED, msg.into())
    }
}

impl IntoResponse for Fail {
    fn into_response(self) -> Response {
        let body = axum::Json(ApiError {
            error: self.message,
        });
        match self.retry_after_ms {
            // Retry-After counts whole seconds.
            Some(ms) => (
                self.status,
                [(header::RETRY_AFTER, ms.div_ceil(1000).max(1).to_string())],
                body,
            )
                .into_response(),
            None => (self.status, body).into_response(),
        }
    }
}

impl From<StoreError> for Fail {
    fn from(e: StoreError) -> Fail {
        match e {
            StoreError::NotFound(_) => Fail::new(StatusCode::NOT_FOUND, e.to_string()),
            StoreError::Conflict(_) => Fail::new(StatusCode::CONFLICT, e.to_string()),
            StoreError::Db(_) | StoreError::Corrupt(_) => {
                tracing::error!(error = %e, "storage failed");
                Fail::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
            }
        }
    }
}

impl From<BlobError> for Fail {
    fn from(e: BlobError) -> Fail {
        match e {
            BlobError::Mismatch { .. } | BlobError::Interrupted { .. } => Fail::bad(e.to_string()),
            BlobError::Store(_) => {
                tracing::error!(error = %e, "blob store failed");
                Fail::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
            }
        }
    }
}

type Answer<T> = Result<T, Fail>;

fn json<T: serde::Serialize>(value: &T) -> Response {
    axum::Json(value).into_response()
}

/// Parses a JSON body, naming the field that is wrong.
fn parse<T: DeserializeOwned>(body: &[u8]) -> Answer<T> {
    let de = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        if path == "." {
            Fail::bad(format!("request body: {}", e.inner()))
        } else {
            Fail::bad(format!("request body, field {path}: {}", e.inner()))
        }
    })
}

/// The routes.
pub fn router(app: App) -> Router {
    let limit = app.config.max_body_bytes;
    Router::new()
        .route("/", get(dashboard_page))
        .route("/dashboard.js", get(dashboard_script))
        .route("/dashboard.css", get(dashboard_style))
        .route("/v1/dashboard", get(dashboard))
        .route("/v1/dashboard/events", get(dashboard_events))
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .route("/v1/openapi.json", get(openapi))
        .route("/v1/runners", post(register).get(runners))
        .route("/v1/runners/{id}/events", get(runner_events))
        .route("/v1/heartbeat", post(heartbeat))
        .route("/v1/leases", post(lease))
        .route("/v1/leases/return", post(give_back))
        .route("/v1/results", post(report))
        .route("/v1/blobs/missing", post(missing_blobs))
        .route("/v1/blobs/{hash}", get(get_blob).put(put_blob))
        .route("/v1/batches", post(submit))
        .route("/v1/batches/{id}", get(batch_status))
        .route("/v1/batches/{id}/results", get(batch_results))
        .route("/v1/credits", get(credits))
        .route("/v1/credits.csv", get(credits_csv))
        .route("/v1/payouts", get(payouts).post(pay_out))
        .route("/v1/payouts.csv", get(payouts_csv))
        .route("/v1/ledger", get(ledger))
        .route_layer(axum::middleware::from_fn_with_state(app.clone(), observe))
        .layer(axum::extract::DefaultBodyLimit::max(limit))
        .with_state(app)
}

// ---- authentication ----

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Checks a runner's signed request; the runner must be registered.
async fn runner_auth(
    app: &App,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Answer<RunnerRecord> {
    let id = header(headers, wire::RUNNER_HEADER)
        .ok_or_else(|| Fail::unauthorized(format!("missing header {}", wire::RUNNER_HEADER)))?;
    let now = now_ms();
    if let Some(runner) = app.runners.get(id, now) {
        check_signature(method, uri, headers, body, &runner.public_key)?;
        check_rate(app, &runner, now)?;
        return Ok(runner);
    }
    let runner = app.store.runner(id).await?.ok_or_else(|| {
        Fail::unauthorized(format!(
            "runner {id} is not registered (POST /v1/runners first)"
        ))
    })?;
    check_signature(method, uri, headers, body, &runner.public_key)?;
    check_rate(app, &runner, now)?;
    app.store.touch(&runner, now).await?;
    app.runners.put(runner.clone(), now);
    Ok(runner)
}

fn check_rate(app: &App, runner: &RunnerRecord, now: i64) -> Answer<()> {
    let flagged = runner.reputation.flagged();
    app.limits.check(&runner.id, flagged, now).map_err(|wait| {
        let rate = app.config.runner_rate
            * if flagged {
                crate::limits::FLAGGED_SHARE
            } else {
                1.0
            };
        Fail::later(
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "runner {} makes more than {rate} requests a second{}; try again in {wait} ms",
                runner.id,
                if flagged {
                    " (the limit of a flagged runner)"
                } else {
                    ""
                }
            ),
            wait,
        )
    })
}

fn check_signature(
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
    key: &wire::PublicKey,
) -> Answer<()> {
    let time: i64 = header(headers, wire::TIME_HEADER)
        .and_then(|t| t.parse().ok())
        .ok_or_else(|| {
            Fail::unauthorized(format!("missing or bad header {}", wire::TIME_HEADER))
        })?;
    if (time - now_ms()).abs() > wire::MAX_CLOCK_SKEW_MS {
        return Err(Fail::unauthorized(format!(
            "the request's time is {} s away from the scheduler's clock (at most {} s allowed)",
            (time - now_ms()) / 1000,
            wire::MAX_CLOCK_SKEW_MS / 1000
        )));
    }
    let signature = header(headers, wire::SIGNATURE_HEADER)
        .ok_or_else(|| Fail::unauthorized(format!("missing header {}", wire::SIGNATURE_HEADER)))?;
    let message = wire::request_message(method.as_str(), uri.path(), time, body);
    if !key.verifies(&message, signature) {
        return Err(Fail::unauthorized(
            "the request's signature does not verify with the runner's key",
        ));
    }
    Ok(())
}

/// Checks a bearer token and that its role allows `need` (an admin may do anything).
async fn token_auth(app: &App, headers: &HeaderMap, need: Role) -> Answer<String> {
    let token = header(headers, header::AUTHORIZATION.as_str())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| {
            Fail::unauthorized("missing `Authorization: Bearer <token>` (create one with `scheduler token create`)")
        })?;
    let (role, name) = app
        .store
        .token(token.trim())
        .await?
        .ok_or_else(|| Fail::unauthorized("unknown token"))?;
    if role != need && role != Role::Admin {
        return Err(Fail::new(
            StatusCode::FORBIDDEN,
            format!(
                "a {} token may not do this; it needs role {}",
                role.as_str(),
                need.as_str()
            ),
        ));
    }
    Ok(name)
}

// ---- service ----

async fn health(State(app): State<App>) -> Answer<Response> {
    app.store.ping().await?;
    Ok(json(
        &serde_json::json!({ "status": "ok", "database": app.store.kind() }),
    ))
}

async fn metrics(State(app): State<App>) -> Answer<Response> {
    let grid = app.pulse.read(&app.store, false).await?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        app.metrics.render(&grid),
    )
        .into_response())
}

/// Counts every request and how long it took to answer, by its route's pattern.
async fn observe(
    State(app): State<App>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let started = std::time::Instant::now();
    let method = request.method().to_string();
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let response = next.run(request).await;
    app.metrics.answered(
        &method,
        &route,
        response.status().as_u16(),
        started.elapsed(),
    );
    response
}

// ---- the dashboard ----

/// A static part of the dashboard. The page loads nothing from elsewhere, and the policy
/// says so to the browser.
fn page(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
            ),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
        .into_response()
}

async fn dashboard_page() -> Response {
    page(
        "text/html; charset=utf-8",
        include_str!("dashboard/index.html"),
    )
}

async fn dashboard_script() -> Response {
    page(
        "text/javascript; charset=utf-8",
        include_str!("dashboard/dashboard.js"),
    )
}

async fn dashboard_style() -> Response {
    page(
        "text/css; charset=utf-8",
        include_str!("dashboard/dashboard.css"),
    )
}

/// Whether the viewer sees batches: anyone may watch the grid, but batches are their
/// submitters' business, shown with a submitter or admin token. A token that is given but
/// wrong is refused rather than ignored, so that a mistyped token does not look like an
/// empty grid.
async fn sees_batches(app: &App, headers: &HeaderMap) -> Answer<bool> {
    if headers.get(header::AUTHORIZATION).is_none() {
        return Ok(false);
    }
    token_auth(app, headers, Role::Submitter).await?;
    Ok(true)
}

async fn dashboard(State(app): State<App>, headers: HeaderMap) -> Answer<Response> {
    let full = sees_batches(&app, &headers).await?;
    Ok(json(&app.pulse.read(&app.store, full).await?))
}

/// Server-sent events: a `snapshot` event with the grid's JSON whenever the pulse reads one.
async fn dashboard_events(State(app): State<App>, headers: HeaderMap) -> Answer<Response> {
    use axum::response::sse::{Event, KeepAlive, Sse};
    let full = sees_batches(&app, &headers).await?;
    let pulse = app.pulse.clone();
    let mut latest = pulse.subscribe();
    // Send what is there at once, then every change.
    latest.mark_changed();
    let stream = futures::stream::unfold(latest, move |mut latest| {
        let pulse = pulse.clone();
        async move {
            loop {
                latest.changed().await.ok()?;
                if pulse.is_closed() {
                    return None;
                }
                let published = latest.borrow_and_update().clone();
                if let Some(p) = published {
                    let data = if full { &p.full } else { &p.public };
                    let event = Event::default().event("snapshot").data(data.as_str());
                    return Some((Ok::<_, std::convert::Infallible>(event), latest));
                }
            }
        }
    });
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response())
}

async fn openapi() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        include_str!("../openapi.json"),
    )
        .into_response()
}

// ---- runners ----

async fn register(
    State(app): State<App>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Answer<Response> {
    let reg: RegisterRunner = parse(&body)?;
    let key = wire::parse_public_key(&reg.public_key)
        .map_err(|e| Fail::bad(format!("public_key {e}")))?;
    let id = wire::runner_id(&key);
    if header(&headers, wire::RUNNER_HEADER) != Some(id.as_str()) {
        return Err(Fail::unauthorized(format!(
            "header {} must be {id}, the id of the key registered",
            wire::RUNNER_HEADER
        )));
    }
    check_signature(&method, &uri, &headers, &body, &key)?;
    Name::parse(&reg.owner).map_err(|e| Fail::bad(format!("owner: {e}")))?;
    if reg.slots == 0 || reg.slots > 1024 {
        return Err(Fail::bad(format!(
            "slots must be 1 to 1024, got {}",
            reg.slots
        )));
    }
    if let Some(location) = &reg.location {
        wire::check_location(location).map_err(Fail::bad)?;
    }
    if let Some(share) = reg.green_energy {
        wire::check_green_energy(share).map_err(Fail::bad)?;
    }
    if reg.profile != DETERMINISM_PROFILE {
        return Err(Fail::new(
            StatusCode::CONFLICT,
            format!(
                "the runner implements determinism profile {:?}, this scheduler's is {DETERMINISM_PROFILE:?}: \
                 their digests could never agree; update the runner",
                reg.profile
            ),
        ));
    }
    if let Some(&max) = app.config.max_runners.get(&reg.tier) {
        // A runner already online in the tier keeps its place when it registers again.
        let here = app
            .store
            .runner(&id)
            .await?
            .is_some_and(|r| r.online && r.tier == reg.tier);
        let online = app.store.online_in_tier(reg.tier).await?;
        if !here && online >= max {
            return Err(Fail::later(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "the {} pool is full: {online} runners online, at most {max}; try again later",
                    reg.tier
                ),
                60_000,
            ));
        }
    }
    let mut registered = app.store.register_runner(&reg, now_ms()).await?;
    app.runners.forget(&registered.runner);
    registered.heartbeat_seconds = app.config.heartbeat_seconds;
    tracing::info!(runner = %registered.runner, owner = %reg.owner, tier = %reg.tier, slots = reg.slots, "runner registered");
    Ok(json(&registered))
}

async fn runners(State(app): State<App>) -> Answer<Response> {
    let list: Vec<RunnerInfo> = app
        .store
        .runners()
        .await?
        .into_iter()
        .map(RunnerInfo::from)
        .collect();
    Ok(json(&list))
}

#[derive(Deserialize)]
struct EventsQuery {
    limit: Option<u32>,
}

/// A runner's activity log, newest first: operators only.
async fn runner_events(
    State(app): State<App>,
    Path(id): Path<String>,
    Query(q): Query<EventsQuery>,
    headers: HeaderMap,
) -> Answer<Response> {
    token_auth(&app, &headers, Role::Admin).await?;
    let limit = q.limit.unwrap_or(100);
    if limit == 0 || limit > 10_000 {
        return Err(Fail::bad(format!("limit must be 1 to 10000, got {limit}")));
    }
    let events = app.store.runner_events(&id, limit).await?;
    Ok(json(&serde_json::json!({ "runner": id, "events": events })))
}

async fn heartbeat(
    State(app): State<App>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Answer<Response> {
    let runner = runner_auth(&app, &method, &uri, &headers, &body).await?;
    let (tasks, micro_credits) = app.store.runner_totals(&runner.id).await?;
    // The cached record may be up to RunnerCache::REFRESH_MS old; a flag set since shows
    // at the next heartbeat.
    Ok(json(&wire::HeartbeatAck {
        micro_credits,
        tasks,
        flagged: runner.reputation.flagged(),
    }))
}

async fn lease(
    State(app): State<App>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Answer<Response> {
    let runner = runner_auth(&app, &method, &uri, &headers, &body).await?;
    app.metrics.runner_requests.inc();
    let req: LeaseRequest = parse(&body)?;
    // Listen before looking, so that work committed after the look ends the wait.
    let mut bell = app.store.bell().listen();
    let leases = app
        .store
        .lease(&runner, req.max, now_ms(), app.config.lease_grace_ms)
        .await?;
    app.count_leases(&leases);
    let wait = Duration::from_millis(u64::from(req.wait_ms.min(wire::MAX_LEASE_WAIT_MS)));
    let mut waited = false;
    if leases.is_empty() && !wait.is_zero() && !app.store.passed_over_work(&runner).await? {
        // No lease after the wait (see `crate::bell`): the runner asks again.
        let _waiting = Waiting::new(&app.metrics.lease_waits);
        waited = bell.wait(wait).await;
    }
    Ok(json(&Leases { leases, waited }))
}

/// Counts a waiting lease request for as long as it lives (one whose runner went away is
/// dropped mid-wait).
struct Waiting<'g>(&'g prometheus_client::metrics::gauge::Gauge);

impl<'g> Waiting<'g> {
    fn new(gauge: &'g prometheus_client::metrics::gauge::Gauge) -> Self {
        gauge.inc();
        Waiting(gauge)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

async fn give_back(
    State(app): State<App>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Answer<Response> {
    let runner = runner_auth(&app, &method, &uri, &headers, &body).await?;
    let req: ReturnRequest = parse(&body)?;
    let returned = app
        .store
        .give_back(&runner.id, &req.task_ids, now_ms())
        .await?;
    Ok(json(&serde_json::json!({ "returned": returned })))
}

async fn report(
    State(app): State<App>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Answer<Response> {
    let runner = runner_auth(&app, &method, &uri, &headers, &body).await?;
    app.metrics.runner_requests.inc();
    let mut req: ReportRequest = parse(&body)?;
    let lease = (req.lease > 0).then_some((req.lease, app.config.lease_grace_ms));
    // Health checks first: one passed here makes the runner warm for the lease below.
    let is_check: Vec<bool> = req
        .results
        .iter()
        .map(|r| crate::health::is_check(r.task_id))
        .collect();
    let mut checked = Vec::new();
    if is_check.contains(&true) {
        let (checks, tasks): (Vec<_>, Vec<_>) = std::mem::take(&mut req.results)
            .into_iter()
            .partition(|r| crate::health::is_check(r.task_id));
        req.results = tasks;
        for r in &checks {
            checked.push(crate::health::report(&app, &runner, r, now_ms()).await?);
        }
    }
    let (mut acks, leases) = app
        .store
        .report(&runner, &req.results, lease, now_ms())
        .await?;
    if !checked.is_empty() {
        // The acknowledgements in the order of the results.
        let (mut checked, mut tasks) = (checked.into_iter(), acks.into_iter());
        acks = is_check
            .iter()
            .filter_map(|&check| if check { checked.next() } else { tasks.next() })
            .collect();
    }
    app.count_leases(&leases);
    // Only accepted results name blobs to upload: ask for those the store lacks.
    for ack in &mut acks {
        let mut missing = Vec::new();
        for blob in std::mem::take(&mut ack.upload) {
            if app.blobs.has(&blob).await? {
                app.store.blob_stored(&blob).await?;
            } else {
                missing.push(blob);
            }
        }
        ack.upload = missing;
    }
    for ack in &acks {
        let counter = if crate::health::is_check(ack.task_id) {
            &app.metrics.health_checks
        } else {
            &app.metrics.results
        };
        counter
            .get_or_create(&crate::metrics::Status {
                status: ack.status.as_str(),
            })
            .inc();
        app.metrics.micro_credits.inc_by(ack.micro_credits);
    }
    if acks.iter().any(|a| a.status == ReportStatus::Recorded) {
        // A recorded result may have used up the replicas: the authority loop looks.
        app.authority.notify_one();
    }
    Ok(json(&wire::Reported {
        results: acks,
        leases,
    }))
}

// ---- blobs ----

fn parse_hash(text: &str) -> Answer<Blake3Hash> {
    Blake3Hash::parse(text).map_err(|e| Fail::bad(format!("blob name {text:?}: {e}")))
}

async fn get_blob(
    State(app): State<App>,
    Path(hash): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Answer<Response> {
    if headers.contains_key(wire::RUNNER_HEADER) {
        runner_auth(&app, &method, &uri, &headers, b"").await?;
    } else {
        token_auth(&app, &headers, Role::Submitter).await?;
    }
    let hash = parse_hash(&hash)?;
    match app.blobs.get_stream(&hash).await? {
        Some((size, stream)) => Ok((
            [
                (header::CONTENT_TYPE, "application/octet-stream".to_string()),
                (header::CONTENT_LENGTH, size.to_string()),
            ],
            axum::body::Body::from_stream(stream),
        )
            .into_response()),
        None => Err(Fail::new(
            StatusCode::NOT_FOUND,
            format!("blob {hash} not found"),
        )),
    }
}

/// Stores a blob. A submitter's upload is streamed into the store, checked on the way;
/// a runner's (an output, bounded by its manifest) is read whole, since its signature
/// covers the body.
async fn put_blob(
    State(app): State<App>,
    Path(hash): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Answer<Response> {
    let hash = parse_hash(&hash)?;
    if headers.contains_key(wire::RUNNER_HEADER) {
        let body = axum::body::to_bytes(body, app.config.max_body_bytes)
            .await
            .map_err(|e| Fail::bad(format!("blob {hash}: {e}")))?;
        // A runner uploads only what an accepted result names.
        runner_auth(&app, &method, &uri, &headers, &body).await?;
        if !app.store.blob_wanted(&hash).await? && !app.blobs.has(&hash).await? {
            return Err(Fail::new(
                StatusCode::FORBIDDEN,
                format!("blob {hash} is not an output of an accepted result"),
            ));
        }
        app.blobs.put(&hash, body).await?;
    } else {
        token_auth(&app, &headers, Role::Submitter).await?;
        app.blobs.put_stream(&hash, body.into_data_stream()).await?;
    }
    app.store.blob_stored(&hash).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn missing_blobs(
    State(app): State<App>,
    headers: HeaderMap,
    body: Bytes,
) -> Answer<Response> {
    token_auth(&app, &headers, Role::Submitter).await?;
    let list: BlobList = parse(&body)?;
    let missing = app.blobs.missing(&list.blobs).await?;
    Ok(json(&BlobList { blobs: missing }))
}

// ---- batches ----

async fn submit(State(app): State<App>, headers: HeaderMap, body: Bytes) -> Answer<Response> {
    let submitter = token_auth(&app, &headers, Role::Submitter).await?;
    let value: serde_json::Value = serde_json::from_slice(&body)
        .map_err(|e| Fail::bad(format!("batch manifest: not JSON: {e}")))?;
    let batch = BatchManifest::from_value_all(value).map_err(|errors| {
        let list: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        Fail::bad(format!(
            "batch manifest: {} problem{}: {}",
            list.len(),
            if list.len() == 1 { "" } else { "s" },
            list.join("; ")
        ))
    })?;
    let mut needed: Vec<Blake3Hash> = batch
        .tasks
        .iter()
        .flat_map(|t| std::iter::once(t.module.blake3).chain(t.inputs.iter().map(|i| i.blake3)))
        .collect();
    needed.sort();
    needed.dedup();
    let missing: Vec<String> = app
        .blobs
        .missing(&needed)
        .await?
        .iter()
        .map(Blake3Hash::to_string)
        .collect();
    if !missing.is_empty() {
        return Err(Fail::new(
            StatusCode::CONFLICT,
            format!(
                "the scheduler does not hold {} blob{} the batch names (upload with PUT /v1/blobs/{{blake3}}): {}",
                missing.len(),
                if missing.len() == 1 { "" } else { "s" },
                missing.join(", ")
            ),
        ));
    }
    let submitted = app.store.submit(&batch, &submitter, now_ms()).await?;
    if submitted.created {
        tracing::info!(batch = %submitted.batch, name = %submitted.name, tasks = submitted.tasks, "batch submitted");
    }
    let status = if submitted.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, axum::Json(submitted)).into_response())
}

async fn batch_status(
    State(app): State<App>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Answer<Response> {
    token_auth(&app, &headers, Role::Submitter).await?;
    Ok(json(&app.store.batch_status(&id).await?))
}

async fn batch_results(
    State(app): State<App>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Answer<Response> {
    token_auth(&app, &headers, Role::Submitter).await?;
    Ok(json(&app.store.batch_results(&id).await?))
}

// ---- credits ----

#[derive(Deserialize)]
struct CreditsQuery {
    by: Option<String>,
}

async fn credits(State(app): State<App>, Query(q): Query<CreditsQuery>) -> Answer<Response> {
    let by = q.by.unwrap_or_else(|| "owner".into());
    let rows = app.store.credits(&by).await.map_err(|e| match e {
        StoreError::Conflict(m) => Fail::bad(m),
        e => e.into(),
    })?;
    Ok(json(&Credits { by, rows }))
}

async fn credits_csv(State(app): State<App>, Query(q): Query<CreditsQuery>) -> Answer<Response> {
    let by = q.by.unwrap_or_else(|| "owner".into());
    let rows = app.store.credits(&by).await.map_err(|e| match e {
        StoreError::Conflict(m) => Fail::bad(m),
        e => e.into(),
    })?;
    let mut csv = format!("{by},tasks,fuel,micro_credits,credits,paid_micro_credits\n");
    for r in rows {
        csv.push_str(&format!(
            "{},{},{},{},{},{}\n",
            r.key,
            r.tasks,
            r.fuel,
            r.micro_credits,
            wire::credits_text(r.micro_credits),
            r.paid
        ));
    }
    Ok(([(header::CONTENT_TYPE, "text/csv")], csv).into_response())
}

async fn payouts(State(app): State<App>) -> Answer<Response> {
    Ok(json(
        &serde_json::json!({ "payouts": app.store.payouts().await? }),
    ))
}

async fn payouts_csv(State(app): State<App>) -> Answer<Response> {
    let mut csv = String::from("seq,owner,micro_credits,credits,at_ms\n");
    for p in app.store.payouts().await? {
        csv.push_str(&format!(
            "{},{},{},{},{}\n",
            p.seq,
            p.owner,
            p.micro_credits,
            wire::credits_text(p.micro_credits),
            p.at_ms
        ));
    }
    Ok(([(header::CONTENT_TYPE, "text/csv")], csv).into_response())
}

#[derive(Deserialize)]
struct PayoutRequest {
    /// Pay owners whose balance is at least this many micro-credits.
    threshold: u64,
}

/// Pays out every balance at or above the threshold now: operators only.
async fn pay_out(State(app): State<App>, headers: HeaderMap, body: Bytes) -> Answer<Response> {
    let operator = token_auth(&app, &headers, Role::Admin).await?;
    let req: PayoutRequest = parse(&body)?;
    let paid = app.store.pay_out(req.threshold, now_ms()).await?;
    let total: u64 = paid.iter().map(|p| p.micro_credits).sum();
    tracing::info!(
        operator,
        owners = paid.len(),
        micro_credits = total,
        "paid out balances"
    );
    Ok(json(&serde_json::json!({ "payouts": paid })))
}

/// The whole ledger with its anchor, for audits: operators only.
async fn ledger(State(app): State<App>, headers: HeaderMap) -> Answer<Response> {
    token_auth(&app, &headers, Role::Admin).await?;
    let (entries, len, head) = app.store.ledger().await?;
    let verified = crate::ledger::verify_anchored(&entries, len, &head);
    let entries: Vec<serde_json::Value> = entries
        .iter()
        .map(|e| {
            serde_json::json!({
                "seq": e.seq, "kind": e.credit.kind.as_str(), "batch": e.credit.batch, "task": e.credit.task,
                "runner": e.credit.runner, "owner": e.credit.owner,
                "digest": e.credit.digest, "fuel": e.credit.fuel,
                "micro_credits": e.credit.micro_credits, "prev": e.prev, "hash": e.hash,
            })
        })
        .collect();
    Ok(json(&serde_json::json!({
        "len": len,
        "head": head,
        "verified": verified.is_ok(),
        "error": verified.err().map(|e| e.to_string()),
        "entries": entries,
    })))
}
