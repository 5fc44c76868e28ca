//! The one typed client of the scheduler's HTTP API (`/v1/...`), shared by the volunteer
//! runner and the `helio` command.
//!
//! A [`Client`] is typed by how it authenticates: a [`RunnerClient`] signs every request
//! with the runner's Ed25519 key and has the runner's calls (register, lease, report); a
//! [`SubmitterClient`] sends a bearer token and has the submitter's (submit, status,
//! results, credits). Both fetch and upload blobs. Every failure is sorted into one
//! [`ClientError`], so callers tell the retryable from the final in one place.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::stream::{Stream, TryStreamExt};
use reqwest::Method;

use crate::wire::{
    self, ApiError, BatchChange, BatchList, BatchResults, BatchStatus, BlobList, Credits,
    HeartbeatAck, Lease, LeaseRequest, Leases, RegisterRunner, Registered, ReportAck,
    ReportRequest, Reported, ResultReport, ReturnRequest, RunnerKey, Submitted,
};
use crate::{Blake3Hash, RunReport};

/// Why a request to the scheduler failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// It could not be reached, or failed on its side (5xx): worth retrying.
    #[error("scheduler unreachable: {0}")]
    Unreachable(String),
    /// It refused the request, saying why.
    #[error("scheduler refused {what} ({status}): {error}")]
    Refused {
        /// What was asked (`METHOD /path`).
        what: String,
        /// The HTTP status.
        status: u16,
        /// The scheduler's reason.
        error: String,
    },
    /// It answered with something this client cannot read: a scheduler of another version,
    /// or not a Helio scheduler at all.
    #[error("{what}: an answer this client cannot read: {error}")]
    Unreadable {
        /// What was asked.
        what: String,
        /// What is wrong with the answer.
        error: String,
    },
}

impl ClientError {
    /// Whether trying again later may help: the scheduler is unreachable, the caller asks
    /// too often (429), or its tier's pool is full (503).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            ClientError::Unreachable(_)
                | ClientError::Refused {
                    status: 429 | 503,
                    ..
                }
        )
    }
}

/// How a client proves who it is on each request.
pub trait Auth: Send + Sync + 'static {
    /// `request` (to `method path`, carrying `body`) with the credentials added.
    fn authorize(
        &self,
        request: reqwest::RequestBuilder,
        method: &Method,
        path: &str,
        body: &[u8],
    ) -> reqwest::RequestBuilder;
}

/// A volunteer runner: each request is signed with its key over method, path, time and body
/// ([`wire::request_message`]).
pub struct Runner(RunnerKey);

impl Auth for Runner {
    fn authorize(
        &self,
        request: reqwest::RequestBuilder,
        method: &Method,
        path: &str,
        body: &[u8],
    ) -> reqwest::RequestBuilder {
        let time = now_ms();
        let message = wire::request_message(method.as_str(), path, time, body);
        request
            .header(wire::RUNNER_HEADER, self.0.runner_id())
            .header(wire::TIME_HEADER, time.to_string())
            .header(wire::SIGNATURE_HEADER, self.0.sign(&message))
    }
}

/// A submitter: each request carries its bearer token.
pub struct Submitter(String);

impl Auth for Submitter {
    fn authorize(
        &self,
        request: reqwest::RequestBuilder,
        _: &Method,
        _: &str,
        _: &[u8],
    ) -> reqwest::RequestBuilder {
        request.bearer_auth(&self.0)
    }
}

/// A connection to one scheduler, authenticated by `A`.
pub struct Client<A> {
    http: reqwest::Client,
    base: String,
    auth: Arc<A>,
    /// Set once the scheduler refused `wait_ms` as a field it does not know (a scheduler
    /// older than long polling): lease requests then ask without it, and the runner polls.
    no_waits: Arc<AtomicBool>,
}

impl<A> Clone for Client<A> {
    fn clone(&self) -> Self {
        Client {
            http: self.http.clone(),
            base: self.base.clone(),
            auth: self.auth.clone(),
            no_waits: self.no_waits.clone(),
        }
    }
}

/// A runner's signed connection.
pub type RunnerClient = Client<Runner>;
/// A submitter's connection.
pub type SubmitterClient = Client<Submitter>;

fn http(timeout: Option<Duration>) -> reqwest::Client {
    let builder = reqwest::Client::builder().connect_timeout(Duration::from_secs(10));
    let builder = match timeout {
        Some(t) => builder.timeout(t),
        None => builder,
    };
    builder
        .build()
        .expect("an HTTP client with default TLS builds")
}

impl<A: Auth> Client<A> {
    fn with(base: &str, auth: A, timeout: Option<Duration>) -> Client<A> {
        Client {
            http: http(timeout),
            base: base.trim_end_matches('/').to_string(),
            auth: Arc::new(auth),
            no_waits: Arc::new(AtomicBool::new(false)),
        }
    }

    /// The scheduler's base URL, without a trailing slash.
    pub fn base(&self) -> &str {
        &self.base
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Vec<u8>,
    ) -> Result<reqwest::Response, ClientError> {
        let request = self
            .http
            .request(method.clone(), format!("{}{path}", self.base));
        let request = self
            .auth
            .authorize(request, &method, path, &body)
            .header("content-type", "application/json")
            .body(body);
        self.answer(method, path, request).await
    }

    async fn answer(
        &self,
        method: Method,
        path: &str,
        request: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, ClientError> {
        let response = request
            .send()
            .await
            .map_err(|e| ClientError::Unreachable(format!("{}: {e}", self.base)))?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let error = ApiError::message(response.text().await.unwrap_or_default());
        if status.is_server_error() {
            return Err(ClientError::Unreachable(format!(
                "{method} {path}: {status}: {error}"
            )));
        }
        Err(ClientError::Refused {
            what: format!("{method} {path}"),
            status: status.as_u16(),
            error,
        })
    }

    async fn json<T: serde::de::DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Vec<u8>,
    ) -> Result<T, ClientError> {
        let what = format!("{method} {path}");
        let bytes = self
            .send(method, path, body)
            .await?
            .bytes()
            .await
            .map_err(|e| ClientError::Unreachable(format!("{what}: {e}")))?;
        serde_json::from_slice(&bytes).map_err(|e| ClientError::Unreadable {
            what,
            error: e.to_string(),
        })
    }

    async fn post<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        body: &impl serde::Serialize,
    ) -> Result<T, ClientError> {
        let body = serde_json::to_vec(body).expect("a request serializes");
        self.json(Method::POST, path, body).await
    }

    async fn get<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.json(Method::GET, path, Vec::new()).await
    }

    /// Fetches blob `hash` whole and checks that its bytes hash to its name.
    pub async fn blob(&self, hash: &Blake3Hash) -> Result<Vec<u8>, ClientError> {
        let path = format!("/v1/blobs/{hash}");
        let response = self.send(Method::GET, &path, Vec::new()).await?;
        let bytes = response
            .bytes()
            .await
            .map_err(|e| ClientError::Unreachable(format!("{path}: {e}")))?;
        let actual = Blake3Hash::of(&bytes);
        if actual != *hash {
            return Err(ClientError::Unreadable {
                what: format!("GET {path}"),
                error: format!("the blob's bytes hash to {actual}"),
            });
        }
        Ok(bytes.to_vec())
    }

    /// Blob `hash` as a stream of chunks, as they arrive. The caller checks the hash (say
    /// with `storage::hashed`) before it trusts what it wrote.
    pub async fn blob_stream(
        &self,
        hash: &Blake3Hash,
    ) -> Result<impl Stream<Item = Result<bytes::Bytes, ClientError>> + use<A>, ClientError> {
        let path = format!("/v1/blobs/{hash}");
        let response = self.send(Method::GET, &path, Vec::new()).await?;
        Ok(response
            .bytes_stream()
            .map_err(move |e| ClientError::Unreachable(format!("{path}: {e}"))))
    }

    /// Uploads blob `hash`; the scheduler refuses bytes that do not hash to it.
    pub async fn upload(&self, hash: &Blake3Hash, bytes: Vec<u8>) -> Result<(), ClientError> {
        self.send(Method::PUT, &format!("/v1/blobs/{hash}"), bytes)
            .await
            .map(|_| ())
    }
}

impl RunnerClient {
    /// A runner's client of the scheduler at `base` (`http://host:port`), signing with `key`.
    /// A request that takes over five minutes is given up (and retried by the agent).
    pub fn new(base: &str, key: RunnerKey) -> RunnerClient {
        Client::with(base, Runner(key), Some(Duration::from_secs(300)))
    }

    /// The key's runner id.
    pub fn runner_id(&self) -> String {
        self.auth.0.runner_id()
    }

    /// The key.
    pub fn key(&self) -> &RunnerKey {
        &self.auth.0
    }

    /// Hands the scheduler a checkpoint of leased task `task_id`: if this runner stops, the
    /// task's next runner goes on from it.
    pub async fn checkpoint(&self, task_id: i64, bytes: Vec<u8>) -> Result<(), ClientError> {
        self.send(
            Method::PUT,
            &format!("/v1/leases/{task_id}/checkpoint"),
            bytes,
        )
        .await
        .map(|_| ())
    }

    /// Registers (or re-registers) this runner.
    pub async fn register(&self, reg: &RegisterRunner) -> Result<Registered, ClientError> {
        self.post("/v1/runners", reg).await
    }

    /// Says the runner is alive; the answer holds what the ledger has for it.
    pub async fn heartbeat(&self) -> Result<HeartbeatAck, ClientError> {
        self.post("/v1/heartbeat", &serde_json::json!({})).await
    }

    /// Asks for up to `max` tasks.
    pub async fn lease(&self, max: u32) -> Result<Vec<Lease>, ClientError> {
        Ok(self.lease_or_wait(max, 0).await?.leases)
    }

    /// Asks for up to `max` tasks; when there are none, the scheduler may hold the request
    /// for up to `wait_ms` until work appears, then answers with none and
    /// [`Leases::waited`] set (see [`LeaseRequest::wait_ms`]).
    ///
    /// A scheduler older than long polling refuses `wait_ms` as an unknown field: the
    /// request is then sent again without it, and so are all this client's later ones (the
    /// answer has [`Leases::waited`] unset, so the runner polls as before).
    pub async fn lease_or_wait(&self, max: u32, wait_ms: u32) -> Result<Leases, ClientError> {
        if wait_ms > 0 && !self.no_waits.load(Ordering::Relaxed) {
            match self
                .post("/v1/leases", &LeaseRequest { max, wait_ms })
                .await
            {
                Err(ClientError::Refused {
                    status: 400, error, ..
                }) if error.contains("unknown field `wait_ms`") => {
                    self.no_waits.store(true, Ordering::Relaxed);
                }
                answer => return answer,
            }
        }
        self.post("/v1/leases", &LeaseRequest { max, wait_ms: 0 })
            .await
    }

    /// Reports results.
    pub async fn report(&self, results: Vec<ResultReport>) -> Result<Vec<ReportAck>, ClientError> {
        Ok(self.report_and_lease(results, 0).await?.0)
    }

    /// Reports results and asks for up to `max` new tasks in the same request.
    pub async fn report_and_lease(
        &self,
        results: Vec<ResultReport>,
        max: u32,
    ) -> Result<(Vec<ReportAck>, Vec<Lease>), ClientError> {
        let request = ReportRequest {
            results,
            lease: max,
        };
        let reported: Reported = self.post("/v1/results", &request).await?;
        Ok((reported.results, reported.leases))
    }

    /// Hands leases back.
    pub async fn give_back(&self, task_ids: Vec<i64>) -> Result<(), ClientError> {
        self.post::<serde_json::Value>("/v1/leases/return", &ReturnRequest { task_ids })
            .await
            .map(|_| ())
    }

    /// A result report for `lease`, signed with this runner's key.
    pub fn result(&self, lease: &Lease, report: &RunReport) -> ResultReport {
        let message =
            wire::result_message(&lease.batch, lease.manifest.name.as_str(), &report.digest);
        ResultReport {
            task_id: lease.task_id,
            report: report.clone(),
            signature: self.auth.0.sign(&message),
        }
    }
}

impl SubmitterClient {
    /// A submitter's client of the scheduler at `base`, sending `token`. No request is given
    /// up for taking long: a download of a large output may.
    pub fn new(base: &str, token: &str) -> SubmitterClient {
        Client::with(base, Submitter(token.to_string()), None)
    }

    /// Which of `blobs` the scheduler lacks.
    pub async fn missing(&self, blobs: Vec<Blake3Hash>) -> Result<Vec<Blake3Hash>, ClientError> {
        let missing: BlobList = self.post("/v1/blobs/missing", &BlobList { blobs }).await?;
        Ok(missing.blobs)
    }

    /// Uploads blob `hash` from a stream; if the stream fails, so does the upload and the
    /// scheduler stores nothing.
    pub async fn upload_stream<S>(&self, hash: &Blake3Hash, chunks: S) -> Result<(), ClientError>
    where
        S: futures::TryStream + Send + 'static,
        S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
        bytes::Bytes: From<S::Ok>,
    {
        let path = format!("/v1/blobs/{hash}");
        let request = self
            .http
            .request(Method::PUT, format!("{}{path}", self.base))
            .bearer_auth(&self.auth.0)
            .header("content-type", "application/octet-stream")
            .body(reqwest::Body::wrap_stream(chunks));
        self.answer(Method::PUT, &path, request).await.map(|_| ())
    }

    /// Submits a batch manifest (its JSON text, as read).
    pub async fn submit(&self, manifest: Vec<u8>) -> Result<Submitted, ClientError> {
        self.json(Method::POST, "/v1/batches", manifest).await
    }

    /// Submits a batch manifest with a `priority` among the submitter's batches (higher
    /// first) and a `deadline_ms` past which what is left of it is cancelled. A batch
    /// submitted before keeps its own.
    pub async fn submit_steered(
        &self,
        manifest: Vec<u8>,
        priority: i64,
        deadline_ms: Option<i64>,
    ) -> Result<Submitted, ClientError> {
        let mut path = format!("/v1/batches?priority={priority}");
        if let Some(at) = deadline_ms {
            path.push_str(&format!("&deadline_ms={at}"));
        }
        self.json(Method::POST, &path, manifest).await
    }

    /// The submitter's batches, newest first (with `all`, an admin's look at everyone's).
    pub async fn batches(&self, all: bool) -> Result<BatchList, ClientError> {
        self.get(if all {
            "/v1/batches?all=true"
        } else {
            "/v1/batches"
        })
        .await
    }

    /// Pauses a batch: no new leases; those out run on.
    pub async fn pause(&self, batch: &str) -> Result<BatchStatus, ClientError> {
        self.post(&format!("/v1/batches/{batch}/pause"), &()).await
    }

    /// Resumes a paused batch.
    pub async fn resume(&self, batch: &str) -> Result<BatchStatus, ClientError> {
        self.post(&format!("/v1/batches/{batch}/resume"), &()).await
    }

    /// Cancels a batch: its tasks not yet accepted end, their leases are withdrawn, and no
    /// more of its results are taken or credited.
    pub async fn cancel(&self, batch: &str) -> Result<BatchStatus, ClientError> {
        self.post(&format!("/v1/batches/{batch}/cancel"), &()).await
    }

    /// Changes a batch's priority or deadline.
    pub async fn change(
        &self,
        batch: &str,
        change: &BatchChange,
    ) -> Result<BatchStatus, ClientError> {
        let body = serde_json::to_vec(change).expect("a change serializes");
        self.json(Method::PATCH, &format!("/v1/batches/{batch}"), body)
            .await
    }

    /// A batch's progress.
    pub async fn status(&self, batch: &str) -> Result<BatchStatus, ClientError> {
        self.get(&format!("/v1/batches/{batch}")).await
    }

    /// A batch's results.
    pub async fn results(&self, batch: &str) -> Result<BatchResults, ClientError> {
        self.get(&format!("/v1/batches/{batch}/results")).await
    }

    /// Credits per `by` (owner, runner or batch).
    pub async fn credits(&self, by: &str) -> Result<Credits, ClientError> {
        self.get(&format!("/v1/credits?by={by}")).await
    }
}

/// How every Helio client waits between tries while a scheduler is away: from 250 ms,
/// doubling up to 30 s, each wait drawn between that and twice it, so that the crowd of
/// runners a restart cut off does not come back all at once. Tries go on without end; the
/// caller says when to give up (`when`, `with_total_delay`), and may seed the draws
/// (`with_jitter_seed`) where its choices must be reproducible.
pub fn away_backoff() -> backon::ExponentialBuilder {
    backon::ExponentialBuilder::default()
        .with_min_delay(std::time::Duration::from_millis(250))
        .with_max_delay(std::time::Duration::from_secs(30))
        .with_factor(2.0)
        .with_jitter()
        .without_max_times()
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
