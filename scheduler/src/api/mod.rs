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
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use helio_sandbox::{LoadedTask, RunOutput, Sandbox};
use helio_sdk::ids::{BatchId, IdError, LeaseId, Owner, RunnerId, TaskId};
use helio_sdk::wire::{
    self, ApiError, BlobList, Credits, LeaseRequest, Leases, RegisterRunner, ReportRequest,
    ReportStatus, ReturnRequest, RunnerInfo,
};
use helio_sdk::{BatchManifest, Blake3Hash, DETERMINISM_PROFILE, Tier};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use tokio::sync::Notify;

use crate::blobs::{BlobError, Blobs};
use crate::dashboard::Pulse;
use crate::limits::RateLimiter;
use crate::metrics::Metrics;
use crate::store::{Enrollment, Role, RunnerRecord, Store, StoreError, TokenLookup, now_ms};

mod auth;
mod batches;
mod blobs;
mod credits;
mod doc;
mod pages;
mod runners;

pub use auth::RunnerCache;
pub use doc::{document as openapi_document, text as openapi_json};

use auth::*;
use batches::*;
use blobs::*;
use credits::*;
use pages::*;
use runners::*;

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
    /// How new owners are admitted.
    pub admission: crate::owners::Admission,
    /// The header a reverse proxy in front sets to the client's address (e.g.
    /// `x-forwarded-for`: its first address counts); `None`: the connection's peer address.
    pub address_header: Option<String>,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            lease_grace_ms: 60_000,
            heartbeat_seconds: 15,
            max_body_bytes: 256 << 20,
            max_runners: BTreeMap::new(),
            runner_rate: 100.0,
            admission: crate::owners::Admission::default(),
            address_header: None,
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
        crate::checks::run_own(&self.sandbox, task).await
    }

    /// Counts `leases` in `/metrics`: tasks only, not health checks.
    fn count_leases(&self, leases: &[wire::Lease]) {
        let tasks = leases
            .iter()
            .filter(|l| matches!(LeaseId::from_wire(l.task_id), Ok(LeaseId::Task(_))))
            .count();
        self.metrics.leases.inc_by(tasks as u64);
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
            StoreError::Forbidden(_) => Fail::new(StatusCode::FORBIDDEN, e.to_string()),
            StoreError::TooMany(_) => {
                Fail::later(StatusCode::TOO_MANY_REQUESTS, e.to_string(), 3_600_000)
            }
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

/// The leases named by wire task ids, each checked ([`LeaseId::from_wire`]).
fn lease_ids(ids: impl Iterator<Item = i64>) -> Answer<Vec<LeaseId>> {
    ids.enumerate()
        .map(|(i, id)| LeaseId::from_wire(id).map_err(|e| Fail::bad(format!("item {i}: {e}"))))
        .collect()
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
        .route("/v1/owners", get(owners))
        .route("/v1/heartbeat", post(heartbeat))
        .route("/v1/leases", post(lease))
        .route("/v1/leases/return", post(give_back))
        .route("/v1/leases/{task}/checkpoint", put(put_checkpoint))
        .route("/v1/results", post(report))
        .route("/v1/blobs/missing", post(missing_blobs))
        .route("/v1/blobs/{hash}", get(get_blob).put(put_blob))
        .route("/v1/batches", post(submit).get(list_batches))
        .route("/v1/batches/{id}", get(batch_status).patch(change_batch))
        .route("/v1/batches/{id}/pause", post(pause_batch))
        .route("/v1/batches/{id}/resume", post(resume_batch))
        .route("/v1/batches/{id}/cancel", post(cancel_batch))
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

fn parse_hash(text: &str) -> Answer<Blake3Hash> {
    Blake3Hash::parse(text).map_err(|e| Fail::bad(format!("blob name {text:?}: {e}")))
}
