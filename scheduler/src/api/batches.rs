//! Submitters' routes: a batch submitted, steered (pause, resume, cancel, priority,
//! deadline), its status and its results, and the list of one's batches.

use super::*;
use crate::store::Steer;
use helio_sdk::wire::{BatchChange, BatchList, BatchResults, BatchStatus, Submitted};

use super::doc::{SteerRefusals, TokenRefusals};

/// Submits a batch manifest (version 1 of the job contract).
///
/// Every blob it names must be stored first. The same manifest gives the same batch:
/// `priority` and `deadline_ms` steer a new batch, and a batch submitted before keeps its
/// own. A batch past the submitter's quota of unfinished tasks is refused.
#[utoipa::path(post, path = "/v1/batches", tag = "batches",
    security(("bearerToken" = [])),
    params(Steer),
    request_body = BatchManifest,
    responses(
        (status = 201, description = "Created", body = Submitted),
        (status = 200, description = "Submitted before", body = Submitted),
        (status = 400, description = "The manifest breaks the contract (every problem is named), or a module is refused", body = ApiError),
        TokenRefusals,
        (status = 409, description = "The scheduler lacks blobs the batch names (listed)", body = ApiError),
    ))]
pub(super) async fn submit(
    State(app): State<App>,
    steer: Result<Query<Steer>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
    body: Bytes,
) -> Answer<Response> {
    let submitter = token_auth(&app, &headers, Role::Submitter).await?;
    let Query(steer) = steer.map_err(|e| Fail::bad(format!("query: {}", e.body_text())))?;
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
    if let Some(target) = app.store.target_of(&batch) {
        app.store
            .credibility()
            .reachable(target, batch.redundancy.max_replicas)
            .map_err(|e| Fail::bad(format!("batch manifest: {e}")))?;
    }
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
    check_modules(&app, &batch).await?;
    let submitted = app
        .store
        .submit(&batch, &submitter, &steer, now_ms())
        .await?;
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

/// Prepares each module the batch names in the scheduler's own sandbox, as every runner
/// will: a module past the contract's compile bounds, invalid, or importing outside WASI
/// preview 1 is refused now, naming the task, rather than handed back by every runner.
/// Each module is compiled once (its preparation is kept by hash, and the scheduler runs
/// the same module for health checks and its own runs).
async fn check_modules(app: &App, batch: &BatchManifest) -> Result<(), Fail> {
    let mut seen = std::collections::BTreeSet::new();
    for task in &batch.tasks {
        let hash = task.module.blake3;
        if !seen.insert(hash) {
            continue;
        }
        let Some(bytes) = app.blobs.get(&hash).await? else {
            return Err(Fail::new(
                StatusCode::CONFLICT,
                format!("the scheduler does not hold module {hash}"),
            ));
        };
        let sandbox = app.sandbox.clone();
        tokio::task::spawn_blocking(move || sandbox.prepare(&hash, &bytes).map(drop))
            .await
            .map_err(|e| Fail::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
            .map_err(|e| {
                Fail::bad(format!(
                    "batch manifest: task {:?}: module {hash} cannot run on this grid: {e}",
                    task.name.as_str()
                ))
            })?;
    }
    Ok(())
}

/// A batch's progress.
#[utoipa::path(get, path = "/v1/batches/{id}", tag = "batches",
    security(("bearerToken" = [])),
    params(("id" = String, Path, description = "The batch's id")),
    responses(
        (status = 200, body = BatchStatus),
        (status = 400, description = "A bad batch id", body = ApiError),
        TokenRefusals,
        (status = 404, description = "No such batch", body = ApiError),
    ))]
pub(super) async fn batch_status(
    State(app): State<App>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Answer<Response> {
    token_auth(&app, &headers, Role::Submitter).await?;
    let id: BatchId = id.parse().map_err(|e: IdError| Fail::bad(e.to_string()))?;
    Ok(json(&app.store.batch_status(&id).await?))
}

/// Every task of a batch, with its accepted result, agreeing runners and credit.
#[utoipa::path(get, path = "/v1/batches/{id}/results", tag = "batches",
    security(("bearerToken" = [])),
    params(("id" = String, Path, description = "The batch's id")),
    responses(
        (status = 200, body = BatchResults),
        (status = 400, description = "A bad batch id", body = ApiError),
        TokenRefusals,
        (status = 404, description = "No such batch", body = ApiError),
    ))]
pub(super) async fn batch_results(
    State(app): State<App>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Answer<Response> {
    token_auth(&app, &headers, Role::Submitter).await?;
    let id: BatchId = id.parse().map_err(|e: IdError| Fail::bad(e.to_string()))?;
    Ok(json(&app.store.batch_results(&id).await?))
}

/// `GET /v1/batches`: how many batches a list holds unless `limit` says.
const LIST_LIMIT: u32 = 100;

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(super) struct ListQuery {
    /// Every submitter's batches (an admin token only).
    #[serde(default)]
    all: bool,
    /// At most this many, newest first (1 to 10000, default 100).
    limit: Option<u32>,
}

/// The caller's batches, newest first; every submitter's with `all=true` (an admin token).
#[utoipa::path(get, path = "/v1/batches", tag = "batches",
    security(("bearerToken" = [])),
    params(ListQuery),
    responses(
        (status = 200, body = BatchList),
        (status = 400, description = "A bad query", body = ApiError),
        TokenRefusals,
    ))]
pub(super) async fn list_batches(
    State(app): State<App>,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
) -> Answer<Response> {
    let Query(query) = query.map_err(|e| Fail::bad(format!("query: {}", e.body_text())))?;
    let (role, name) = token_who(&app, &headers, Role::Submitter).await?;
    if query.all && role != Role::Admin {
        return Err(Fail::new(
            StatusCode::FORBIDDEN,
            "only an admin token may list every submitter's batches (leave out all=true)",
        ));
    }
    let limit = query.limit.unwrap_or(LIST_LIMIT).clamp(1, 10_000);
    let batches = app
        .store
        .batches((!query.all).then_some(name.as_str()), limit)
        .await?;
    Ok(json(&BatchList { batches }))
}

/// What a submitter may do to a batch.
#[derive(Debug, Clone, Copy)]
pub(super) enum Steering {
    Pause,
    Resume,
    Cancel,
}

/// Authenticates a request to steer batch `id`: its submitter's token, or an admin's.
/// Returns the batch id and who asks.
async fn steerer(app: &App, headers: &HeaderMap, id: &str) -> Answer<(BatchId, String)> {
    let (role, name) = token_who(app, headers, Role::Submitter).await?;
    let id: BatchId = id.parse().map_err(|e: IdError| Fail::bad(e.to_string()))?;
    let owner = app.store.batch_submitter(&id).await?;
    if role != Role::Admin && owner != name {
        return Err(Fail::new(
            StatusCode::FORBIDDEN,
            format!("batch {id} was submitted by {owner:?}; only it or an admin may steer it"),
        ));
    }
    Ok((id, name))
}

async fn steer(app: &App, headers: &HeaderMap, id: &str, action: Steering) -> Answer<Response> {
    let (id, name) = steerer(app, headers, id).await?;
    match action {
        Steering::Pause => app.store.set_paused(&id, true).await?,
        Steering::Resume => app.store.set_paused(&id, false).await?,
        Steering::Cancel => {
            let n = app
                .store
                .cancel(&id, &format!("cancelled by {name}"), now_ms())
                .await?;
            tracing::info!(batch = %id, by = %name, tasks = n, "batch cancelled");
        }
    }
    Ok(json(&app.store.batch_status(&id).await?))
}

/// Stops leasing a batch's tasks; leases out run on and their results count.
///
/// Its submitter or an admin may do this.
#[utoipa::path(post, path = "/v1/batches/{id}/pause", tag = "batches",
    security(("bearerToken" = [])),
    params(("id" = String, Path, description = "The batch's id")),
    responses(
        (status = 200, description = "The batch's progress after the change", body = BatchStatus),
        SteerRefusals,
    ))]
pub(super) async fn pause_batch(
    State(app): State<App>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Answer<Response> {
    steer(&app, &headers, &id, Steering::Pause).await
}

/// Leases a paused batch's tasks again.
///
/// Its submitter or an admin may do this.
#[utoipa::path(post, path = "/v1/batches/{id}/resume", tag = "batches",
    security(("bearerToken" = [])),
    params(("id" = String, Path, description = "The batch's id")),
    responses(
        (status = 200, description = "The batch's progress after the change", body = BatchStatus),
        SteerRefusals,
    ))]
pub(super) async fn resume_batch(
    State(app): State<App>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Answer<Response> {
    steer(&app, &headers, &id, Steering::Resume).await
}

/// Cancels a batch.
///
/// Its tasks not yet accepted end, their leases are withdrawn, and no more of its results
/// are taken or credited; accepted results stay. Cancelling again finishes an interrupted
/// cancellation.
///
/// Its submitter or an admin may do this.
#[utoipa::path(post, path = "/v1/batches/{id}/cancel", tag = "batches",
    security(("bearerToken" = [])),
    params(("id" = String, Path, description = "The batch's id")),
    responses(
        (status = 200, description = "The batch's progress after the change", body = BatchStatus),
        SteerRefusals,
    ))]
pub(super) async fn cancel_batch(
    State(app): State<App>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Answer<Response> {
    steer(&app, &headers, &id, Steering::Cancel).await
}

/// Changes a batch's priority or deadline; its submitter or an admin may do this.
#[utoipa::path(patch, path = "/v1/batches/{id}", tag = "batches",
    security(("bearerToken" = [])),
    params(("id" = String, Path, description = "The batch's id")),
    request_body = BatchChange,
    responses(
        (status = 200, description = "The batch's progress after the change", body = BatchStatus),
        SteerRefusals,
    ))]
pub(super) async fn change_batch(
    State(app): State<App>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Answer<Response> {
    let (id, _) = steerer(&app, &headers, &id).await?;
    let change: BatchChange =
        serde_json::from_slice(&body).map_err(|e| Fail::bad(format!("batch change: {e}")))?;
    if change.deadline_ms.is_some() && change.no_deadline {
        return Err(Fail::bad(
            "batch change: deadline_ms and no_deadline together; give one",
        ));
    }
    app.store.change_batch(&id, &change).await?;
    Ok(json(&app.store.batch_status(&id).await?))
}
