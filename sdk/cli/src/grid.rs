//! Talking to a scheduler: `helio submit`, `status`, `results` and `credits`.
//!
//! A submission reads the batch manifest and every module and input it names, checks each
//! against its BLAKE3, uploads the blobs the scheduler lacks, then submits the manifest. The
//! scheduler names the batch by its content, so submitting again — after an interruption,
//! say — gives the same batch, never a second copy of its tasks.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::stream::{StreamExt, TryStreamExt};

use backon::Retryable;
use helio_sdk::client::{ClientError, SubmitterClient, away_backoff};
use helio_sdk::wire::{BatchChange, BatchResults, BatchState, BatchStatus, Credits, Submitted};
use helio_sdk::{BatchManifest, Blake3Hash, storage};

use crate::fetch::{self, FetchError, PutError, Source};

/// Why a grid command failed; each kind has its own exit status.
#[derive(Debug, thiserror::Error)]
pub enum GridError {
    /// The manifest, or something it names, is wrong (exit status 2).
    #[error("{0}")]
    Manifest(String),
    /// The scheduler could not be reached or could not be understood (exit status 3), or
    /// it refused the request (exit status 4).
    #[error(transparent)]
    Scheduler(#[from] ClientError),
    /// Writing results failed (exit status 5).
    #[error("{0}")]
    Output(String),
    /// Object storage could not be reached, or refused the credentials (exit status 6).
    #[error("storage: {0}")]
    Storage(String),
}

impl From<FetchError> for GridError {
    /// A missing object is the manifest's fault; a store that cannot be reached or refuses
    /// the credentials is the storage's.
    fn from(e: FetchError) -> GridError {
        match e {
            FetchError::NotFound(_) | FetchError::Bad(_) => GridError::Manifest(e.to_string()),
            FetchError::Denied(_) | FetchError::Unreachable(_) => GridError::Storage(e.to_string()),
        }
    }
}

impl GridError {
    /// The kind of failure, one word: `manifest`, `scheduler_unreachable`, `refused`,
    /// `output` or `storage`.
    pub fn kind(&self) -> &'static str {
        match self {
            GridError::Manifest(_) => "manifest",
            GridError::Scheduler(ClientError::Refused { .. }) => "refused",
            GridError::Scheduler(_) => "scheduler_unreachable",
            GridError::Output(_) => "output",
            GridError::Storage(_) => "storage",
        }
    }

    /// The exit status a pipeline can branch on.
    pub fn exit_code(&self) -> u8 {
        match self {
            GridError::Manifest(_) => 2,
            GridError::Scheduler(ClientError::Refused { .. }) => 4,
            GridError::Scheduler(_) => 3,
            GridError::Output(_) => 5,
            GridError::Storage(_) => 6,
        }
    }
}

/// Blobs uploaded at once.
const UPLOADS_IN_FLIGHT: usize = 8;

/// How long `wait` keeps asking a scheduler that is away before it gives up: long enough
/// for a restart or an upgrade.
pub const WAIT_AWAY: Duration = Duration::from_secs(300);

/// Exit status when every task was accepted but some result is not a success.
pub const EXIT_TASKS_FAILED: u8 = 1;

/// Exit status when the batch was cancelled (by its submitter, an admin, or its deadline).
pub const EXIT_CANCELLED: u8 = 7;

/// The exit status a batch's status calls for: cancelled, some task failed, or 0.
pub fn exit_for(s: &BatchStatus) -> u8 {
    if s.state == BatchState::Cancelled {
        EXIT_CANCELLED
    } else if s.failed > 0 {
        EXIT_TASKS_FAILED
    } else {
        0
    }
}

/// How a batch is steered at submission.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Steer {
    /// Its priority among the submitter's batches (higher first).
    pub priority: i64,
    /// When what is left of it is cancelled (milliseconds since the Unix epoch).
    pub deadline_ms: Option<i64>,
}

/// A span of time as `helio` takes it: a number and a unit, `s`, `m`, `h` or `d`
/// (`90m`, `6h`, `2d`); returns milliseconds.
pub fn parse_span(text: &str) -> Result<i64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let n: i64 = number
        .parse()
        .map_err(|_| format!("{text:?}: write a whole number and a unit, e.g. 90m, 6h or 2d"))?;
    let unit_ms: i64 = match unit {
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => {
            return Err(format!(
                "{text:?}: the unit must be s, m, h or d (e.g. 90m, 6h or 2d)"
            ));
        }
    };
    if n == 0 {
        return Err(format!("{text:?}: a span must be longer than 0"));
    }
    n.checked_mul(unit_ms)
        .ok_or_else(|| format!("{text:?}: too long a span"))
}

/// A scheduler, with the submitter's token.
pub struct Grid {
    client: SubmitterClient,
}

impl Grid {
    /// The scheduler at `base` (`http://host:port`), authenticating with `token`.
    pub fn new(base: &str, token: &str) -> Grid {
        Grid {
            client: SubmitterClient::new(base, token),
        }
    }

    /// Submits the batch manifest at `manifest` (a path or a `file://`, `http(s)://` or
    /// `s3://` URI) with everything it names.
    pub async fn submit(&self, manifest: &str) -> Result<Submitted, GridError> {
        self.submit_steered(manifest, Steer::default()).await
    }

    /// Submits a batch as [`Grid::submit`] does, steered as `steer` says.
    pub async fn submit_steered(
        &self,
        manifest: &str,
        steer: Steer,
    ) -> Result<Submitted, GridError> {
        let source = fetch::locate(manifest).map_err(GridError::Manifest)?;
        let text = source.get().await.map_err(|e| match e {
            FetchError::NotFound(what) => {
                GridError::Manifest(format!("the batch manifest {what} does not exist"))
            }
            e => e.into(),
        })?;
        let value: serde_json::Value = serde_json::from_slice(&text)
            .map_err(|e| GridError::Manifest(format!("{source}: not JSON: {e}")))?;
        let batch = BatchManifest::from_value_all(value).map_err(|errors| {
            let list: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
            GridError::Manifest(format!("{source}: {}", list.join("; ")))
        })?;
        let blobs = named_blobs(&source, &batch)?;
        let missing = self.client.missing(blobs.keys().copied().collect()).await?;
        futures::stream::iter(missing.iter().filter_map(|h| blobs.get_key_value(h)))
            .map(|(hash, (what, from))| self.upload(*hash, what, from))
            .buffer_unordered(UPLOADS_IN_FLIGHT)
            .try_collect::<()>()
            .await?;
        Ok(self
            .client
            .submit_steered(text, steer.priority, steer.deadline_ms)
            .await?)
    }

    /// The submitter's batches, newest first (with `all`, every submitter's: an admin's).
    pub async fn batches(&self, all: bool) -> Result<Vec<BatchStatus>, GridError> {
        Ok(self.client.batches(all).await?.batches)
    }

    /// Pauses, resumes or cancels a batch; returns its status after.
    pub async fn steer(&self, batch: &str, action: &str) -> Result<BatchStatus, GridError> {
        Ok(match action {
            "pause" => self.client.pause(batch).await?,
            "resume" => self.client.resume(batch).await?,
            _ => self.client.cancel(batch).await?,
        })
    }

    /// Changes a batch's priority or deadline.
    pub async fn change(
        &self,
        batch: &str,
        change: &BatchChange,
    ) -> Result<BatchStatus, GridError> {
        Ok(self.client.change(batch, change).await?)
    }

    /// Streams the object at `from` to the scheduler as blob `hash`, checking on the way
    /// that it hashes to `hash`; a mismatch aborts the upload, so the scheduler never
    /// stores it.
    async fn upload(&self, hash: Blake3Hash, what: &str, from: &Source) -> Result<(), GridError> {
        let chunks = from.stream().await.map_err(|e| named_owned(what, e))?;
        let (what_, named) = (what.to_string(), what.to_string());
        let from_ = from.to_string();
        let checked = storage::hashed(
            chunks.map_err(move |e| named_owned(&named, e)),
            hash,
            move |actual| {
                GridError::Manifest(format!(
                    "{what_} ({from_}): BLAKE3 mismatch: the manifest says {hash}, \
                     the bytes hash to {actual}"
                ))
            },
        );
        // The HTTP client sees only that the body failed; the reason is kept here.
        let failure: Arc<Mutex<Option<GridError>>> = Arc::default();
        let fail = failure.clone();
        let checked = checked.map_err(move |e| {
            *fail.lock().expect("not poisoned") = Some(e);
            std::io::Error::other("upload aborted")
        });
        let sent = self.client.upload_stream(&hash, checked).await;
        if let Some(e) = failure.lock().expect("not poisoned").take() {
            return Err(e);
        }
        Ok(sent?)
    }

    /// A batch's progress.
    pub async fn status(&self, batch: &str) -> Result<BatchStatus, GridError> {
        Ok(self.client.status(batch).await?)
    }

    /// A batch's results.
    pub async fn results(&self, batch: &str) -> Result<BatchResults, GridError> {
        Ok(self.client.results(batch).await?)
    }

    /// Credits per `by` (owner, runner or batch).
    pub async fn credits(&self, by: &str) -> Result<Credits, GridError> {
        Ok(self.client.credits(by).await?)
    }

    /// Polls a batch until every task is accepted, calling `progress` on each change. A
    /// scheduler that is away (restarting, say) is asked again as every client does
    /// ([`away_backoff`]) for up to [`WAIT_AWAY`] at a time before it gives up.
    pub async fn wait(
        &self,
        batch: &str,
        mut progress: impl FnMut(&BatchStatus),
    ) -> Result<BatchStatus, GridError> {
        let mut last = None;
        loop {
            let status = (|| self.client.status(batch))
                .retry(away_backoff().with_total_delay(Some(WAIT_AWAY)))
                .when(ClientError::is_transient)
                .notify(|e, wait| {
                    eprintln!(
                        "scheduler away ({e}); still waiting, asking again in {:.1} s",
                        wait.as_secs_f64()
                    )
                })
                .await?;
            if last.as_ref() != Some(&status) {
                progress(&status);
            }
            if status.done() {
                return Ok(status);
            }
            last = Some(status);
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }

    /// Writes every accepted task's outputs to `out/<task>/<output>` (standard output, when
    /// not empty, to `out/<task>.stdout`) and the results manifest to `out/results.json`;
    /// `out` is a local directory or a `file://`, `s3://` or `http(s)://` prefix. The results
    /// manifest is written last, so that a pipeline that finds it finds every output.
    pub async fn download(&self, batch: &str, out: &str) -> Result<BatchResults, GridError> {
        let out = fetch::locate(out).map_err(GridError::Output)?;
        let results = self.results(batch).await?;
        for task in &results.tasks {
            let Some(result) = &task.result else { continue };
            let dir = out.child(&task.task);
            for output in &result.outputs {
                self.copy_blob(&output.blake3, &dir.child(output.name.as_str()))
                    .await?;
            }
            if result.stdout_blake3 != Blake3Hash::of(b"") {
                let to = out.child(&format!("{}.stdout", task.task));
                self.copy_blob(&result.stdout_blake3, &to).await?;
            }
        }
        let json = serde_json::to_vec_pretty(&results).expect("results serialize");
        let to = out.child("results.json");
        to.put(json).await.map_err(|e| written(&to, e))?;
        Ok(results)
    }

    /// Streams blob `hash` from the scheduler to `to`, checking it on the way: nothing is
    /// written if the bytes do not hash to `hash`.
    async fn copy_blob(&self, hash: &Blake3Hash, to: &Source) -> Result<(), GridError> {
        let chunks = self.client.blob_stream(hash).await?;
        let hash = *hash;
        let chunks = storage::hashed(chunks.map_err(GridError::from), hash, move |actual| {
            GridError::Scheduler(ClientError::Unreadable {
                what: format!("GET /v1/blobs/{hash}"),
                error: format!("the bytes hash to {actual}"),
            })
        });
        to.put_stream(chunks).await.map_err(|e| match e {
            PutError::Source(e) => e,
            PutError::Store(e) => written(to, e),
        })
    }
}

/// Why writing `to` failed: the output's fault, or the storage's.
fn written(to: &Source, e: FetchError) -> GridError {
    match e {
        FetchError::Bad(m) | FetchError::NotFound(m) => {
            GridError::Output(format!("cannot write {m}"))
        }
        e if matches!(to, Source::Local(_)) => GridError::Output(format!("cannot write {e}")),
        e => GridError::Storage(format!("cannot write {e}")),
    }
}

/// A storage error while reading `what`, named.
fn named_owned(what: &str, e: FetchError) -> GridError {
    match e {
        FetchError::NotFound(o) => GridError::Manifest(format!("{what}: {o} does not exist")),
        e => match GridError::from(e) {
            GridError::Storage(m) => GridError::Storage(format!("{what}: {m}")),
            other => other,
        },
    }
}

/// Every distinct blob (module, inputs) a batch names: by hash, what it is and where it is.
fn named_blobs(
    base: &Source,
    batch: &BatchManifest,
) -> Result<HashMap<Blake3Hash, (String, Source)>, GridError> {
    let mut blobs = HashMap::new();
    for task in &batch.tasks {
        let refs = std::iter::once(("module".to_string(), &task.module.uri, task.module.blake3))
            .chain(task.inputs.iter().map(|i| {
                (
                    format!("input {:?} of task {}", i.name.as_str(), task.name),
                    &i.uri,
                    i.blake3,
                )
            }));
        for (what, uri, hash) in refs {
            if let Entry::Vacant(entry) = blobs.entry(hash) {
                let source = fetch::resolve(base, uri)
                    .map_err(|e| GridError::Manifest(format!("{what}: {e}")))?;
                entry.insert((what, source));
            }
        }
    }
    Ok(blobs)
}

/// A status line: how many tasks are in each state.
pub fn progress_line(s: &BatchStatus) -> String {
    let mut line = format!(
        "{}: {}/{} accepted ({} failed), {} running, {} pending, {} deciding, {} credits",
        s.name,
        s.succeeded + s.failed,
        s.tasks,
        s.failed,
        s.running,
        s.pending,
        s.deciding,
        helio_sdk::wire::credits_text(s.micro_credits)
    );
    match s.state {
        BatchState::Active => {}
        BatchState::Paused => line.push_str("; paused"),
        BatchState::Cancelled => {
            line.push_str(&format!("; {} cancelled", s.cancelled));
            if let Some(why) = &s.ended {
                line.push_str(&format!(" ({why})"));
            }
        }
    }
    line
}
