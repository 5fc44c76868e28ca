//! The submitter's side of the API: a batch submitted, its progress and state, what may be
//! changed of it, and its results.

use serde::{Deserialize, Serialize};

use crate::digest::RunReport;

/// `POST /v1/batches`: the answer to a submission (the body is the batch manifest).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Submitted {
    /// The batch's id: the same manifest always gets the same id.
    pub batch: String,
    /// The batch's name from the manifest.
    pub name: String,
    /// Its number of tasks.
    pub tasks: u64,
    /// False when this exact batch had been submitted before.
    pub created: bool,
}

/// `GET /v1/batches/{id}`: a batch's progress.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BatchStatus {
    /// The batch's id.
    pub batch: String,
    /// Its name.
    pub name: String,
    /// Tasks in all.
    pub tasks: u64,
    /// Tasks no runner holds yet.
    pub pending: u64,
    /// Tasks with replicas out or reported, not yet decided.
    pub running: u64,
    /// Tasks the scheduler is deciding by its own run.
    pub deciding: u64,
    /// Accepted tasks whose result is `exited` with code 0.
    pub succeeded: u64,
    /// Accepted tasks whose result is any other outcome.
    pub failed: u64,
    /// Accepted tasks whose outputs the scheduler does not hold yet (an agreeing runner
    /// uploads them, or the scheduler's own run recovers them).
    #[serde(default)]
    pub outputs_pending: u64,
    /// Micro-credits granted for the batch.
    pub micro_credits: u64,
    /// Tasks cancelled before they were accepted (with their batch).
    #[serde(default)]
    pub cancelled: u64,
    /// Whether it is served, paused or cancelled.
    #[serde(default)]
    pub state: BatchState,
    /// Its priority among its submitter's batches (higher first; 0 unless set).
    #[serde(default)]
    pub priority: i64,
    /// When what is left of it is cancelled (milliseconds since the Unix epoch), if ever.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline_ms: Option<i64>,
    /// Who or what cancelled it, when cancelled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended: Option<String>,
    /// The name of the token that submitted it.
    #[serde(default)]
    pub submitted_by: String,
    /// When it was submitted (milliseconds since the Unix epoch).
    #[serde(default)]
    pub created_ms: i64,
}

impl BatchStatus {
    /// Whether nothing more will happen to it: every task is accepted (or cancelled with
    /// it) and the accepted tasks' outputs are stored.
    pub fn done(&self) -> bool {
        self.succeeded + self.failed + self.cancelled == self.tasks && self.outputs_pending == 0
    }
}

/// Whether a batch's tasks are handed out.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum BatchState {
    /// Served: its tasks are leased as fair share and its priority say.
    #[default]
    Active,
    /// No new leases; those out run on, and their results count.
    Paused,
    /// Its tasks not yet accepted were cancelled: no more leases, results or credits.
    Cancelled,
}

impl BatchState {
    /// Its name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            BatchState::Active => "active",
            BatchState::Paused => "paused",
            BatchState::Cancelled => "cancelled",
        }
    }
}

impl std::str::FromStr for BatchState {
    type Err = String;
    fn from_str(s: &str) -> Result<BatchState, String> {
        match s {
            "active" => Ok(BatchState::Active),
            "paused" => Ok(BatchState::Paused),
            "cancelled" => Ok(BatchState::Cancelled),
            other => Err(format!(
                "a batch state {other:?}: active, paused or cancelled"
            )),
        }
    }
}

/// `PATCH /v1/batches/{id}`: what to change of a batch (fields left out stay).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct BatchChange {
    /// A new priority among its submitter's batches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<i64>,
    /// A new deadline (milliseconds since the Unix epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline_ms: Option<i64>,
    /// Drops its deadline.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub no_deadline: bool,
}

/// `GET /v1/batches`: the caller's batches (every batch, for an admin), newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BatchList {
    /// Each batch's status.
    pub batches: Vec<BatchStatus>,
}

/// One task's accepted result, in [`BatchResults`].
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TaskResult {
    /// The task's name.
    pub task: String,
    /// `pending`, `running`, `deciding` or `accepted`.
    pub state: String,
    /// The accepted run, once accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<RunReport>,
    /// Who decided: `quorum` or `scheduler` (its own run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_by: Option<String>,
    /// Runners whose digest matched the accepted one.
    #[serde(default)]
    pub agreeing: Vec<String>,
    /// Micro-credits granted for the task, to all agreeing runners together.
    #[serde(default)]
    pub micro_credits: u64,
    /// When the accepted result was replaced by the scheduler's own run, and why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub corrected: Option<Correction>,
}

/// An accepted result replaced: the scheduler's own run of the task gave another digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Correction {
    /// When, in milliseconds since the Unix epoch.
    pub at_ms: i64,
    /// Why, in words: the digest replaced and what became of the runners that vouched for it.
    pub why: String,
}

/// `GET /v1/batches/{id}/results`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BatchResults {
    /// The batch's id.
    pub batch: String,
    /// Its name.
    pub name: String,
    /// Every task, in manifest order.
    pub tasks: Vec<TaskResult>,
}
