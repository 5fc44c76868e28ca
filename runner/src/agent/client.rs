//! The runner's client of the scheduler's HTTP API: every request signed with the runner's key,
//! errors sorted into those worth retrying and those that are final.

use super::*;

/// Why a request to the scheduler failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// It could not be reached, or failed on its side (5xx): worth retrying.
    #[error("scheduler unreachable: {0}")]
    Unreachable(String),
    /// It refused the request, saying why.
    #[error("scheduler refused {what} ({status}): {error}")]
    Refused {
        /// What was asked.
        what: String,
        /// The HTTP status.
        status: u16,
        /// The scheduler's reason.
        error: String,
    },
}

impl ClientError {
    /// Whether trying again later may help: the scheduler is unreachable, the runner asks
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

/// A runner's signed connection to the scheduler.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    key: Arc<RunnerKey>,
    /// Set once the scheduler refused `wait_ms` as a field it does not know (a scheduler
    /// older than long polling): lease requests then ask without it, and the runner polls.
    no_waits: Arc<AtomicBool>,
}

impl Client {
    /// A client of the scheduler at `base` (`http://host:port`) signing with `key`.
    pub fn new(base: &str, key: RunnerKey) -> Client {
        Client {
            http: reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(10))
                .timeout(Duration::from_secs(300))
                .build()
                .expect("an HTTP client with default TLS builds"),
            base: base.trim_end_matches('/').to_string(),
            key: Arc::new(key),
            no_waits: Arc::new(AtomicBool::new(false)),
        }
    }

    /// The key's runner id.
    pub fn runner_id(&self) -> String {
        self.key.runner_id()
    }

    /// The key.
    pub fn key(&self) -> &RunnerKey {
        &self.key
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Vec<u8>,
    ) -> Result<reqwest::Response, ClientError> {
        let time = now_ms();
        let signature = self
            .key
            .sign(&wire::request_message(method.as_str(), path, time, &body));
        let response = self
            .http
            .request(method.clone(), format!("{}{path}", self.base))
            .header(wire::RUNNER_HEADER, self.key.runner_id())
            .header(wire::TIME_HEADER, time.to_string())
            .header(wire::SIGNATURE_HEADER, signature)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| ClientError::Unreachable(format!("{}: {e}", self.base)))?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let text = response.text().await.unwrap_or_default();
        let error = wire::ApiError::message(text);
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

    async fn call<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        body: &impl serde::Serialize,
    ) -> Result<T, ClientError> {
        let body = serde_json::to_vec(body).expect("a request serializes");
        let response = self.send(reqwest::Method::POST, path, body).await?;
        let bytes = response
            .bytes()
            .await
            .map_err(|e| ClientError::Unreachable(format!("{path}: {e}")))?;
        serde_json::from_slice(&bytes).map_err(|e| ClientError::Refused {
            what: format!("POST {path}"),
            status: 200,
            error: format!("an answer this runner cannot read: {e}"),
        })
    }

    /// Registers (or re-registers) this runner.
    pub async fn register(&self, reg: &RegisterRunner) -> Result<Registered, ClientError> {
        self.call("/v1/runners", reg).await
    }

    /// Says the runner is alive.
    /// Says the runner is alive; the answer holds what the ledger has for it.
    pub async fn heartbeat(&self) -> Result<wire::HeartbeatAck, ClientError> {
        self.call("/v1/heartbeat", &serde_json::json!({})).await
    }

    /// Asks for up to `max` tasks.
    pub async fn lease(&self, max: u32) -> Result<Vec<Lease>, ClientError> {
        Ok(self.lease_or_wait(max, 0).await?.leases)
    }

    /// Asks for up to `max` tasks; when there are none, the scheduler may hold the request
    /// for up to `wait_ms` until work appears, then answers with none and
    /// [`Leases::waited`] set (see [`wire::LeaseRequest::wait_ms`]).
    ///
    /// A scheduler older than long polling refuses `wait_ms` as an unknown field: the
    /// request is then sent again without it, and so are all this client's later ones (the
    /// answer has [`Leases::waited`] unset, so the runner polls as before).
    pub async fn lease_or_wait(&self, max: u32, wait_ms: u32) -> Result<Leases, ClientError> {
        if wait_ms > 0 && !self.no_waits.load(Ordering::Relaxed) {
            match self
                .call("/v1/leases", &wire::LeaseRequest { max, wait_ms })
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
        self.call("/v1/leases", &wire::LeaseRequest { max, wait_ms: 0 })
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
        let reported: Reported = self.call("/v1/results", &request).await?;
        Ok((reported.results, reported.leases))
    }

    /// Hands leases back.
    pub async fn give_back(&self, task_ids: Vec<i64>) -> Result<(), ClientError> {
        self.call::<serde_json::Value>("/v1/leases/return", &ReturnRequest { task_ids })
            .await
            .map(|_| ())
    }

    /// Fetches a blob by hash and checks that it hashes to its name.
    pub async fn blob(&self, hash: &Blake3Hash) -> Result<Vec<u8>, ClientError> {
        let path = format!("/v1/blobs/{hash}");
        let response = self.send(reqwest::Method::GET, &path, Vec::new()).await?;
        let bytes = response
            .bytes()
            .await
            .map_err(|e| ClientError::Unreachable(format!("{path}: {e}")))?;
        let actual = Blake3Hash::of(&bytes);
        if actual != *hash {
            return Err(ClientError::Refused {
                what: format!("GET {path}"),
                status: 200,
                error: format!("the blob's bytes hash to {actual}"),
            });
        }
        Ok(bytes.to_vec())
    }

    /// Uploads a blob the scheduler asked for.
    pub async fn upload(&self, hash: &Blake3Hash, bytes: Vec<u8>) -> Result<(), ClientError> {
        self.send(reqwest::Method::PUT, &format!("/v1/blobs/{hash}"), bytes)
            .await
            .map(|_| ())
    }

    /// A signed result report for `lease`.
    pub fn result(&self, lease: &Lease, output: &RunOutput) -> ResultReport {
        let message = wire::result_message(
            &lease.batch,
            lease.manifest.name.as_str(),
            &output.report.digest,
        );
        ResultReport {
            task_id: lease.task_id,
            report: output.report.clone(),
            signature: self.key.sign(&message),
        }
    }
}

/// Milliseconds since the Unix epoch.
pub(super) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
