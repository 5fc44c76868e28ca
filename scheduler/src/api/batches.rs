//! Submitters' routes: a batch submitted, its status and its results.

use super::*;

pub(super) async fn submit(
    State(app): State<App>,
    headers: HeaderMap,
    body: Bytes,
) -> Answer<Response> {
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

pub(super) async fn batch_status(
    State(app): State<App>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Answer<Response> {
    token_auth(&app, &headers, Role::Submitter).await?;
    let id: BatchId = id.parse().map_err(|e: IdError| Fail::bad(e.to_string()))?;
    Ok(json(&app.store.batch_status(&id).await?))
}

pub(super) async fn batch_results(
    State(app): State<App>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Answer<Response> {
    token_auth(&app, &headers, Role::Submitter).await?;
    let id: BatchId = id.parse().map_err(|e: IdError| Fail::bad(e.to_string()))?;
    Ok(json(&app.store.batch_results(&id).await?))
}
