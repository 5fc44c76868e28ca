//! The runners' routes: registration, heartbeats, leases (long-polled), hand-backs and results.

use super::doc::{Octets, RunnerRefusals, TokenRefusals};
use super::*;
use crate::store::{OwnerInfo, RunnerEvent};
use helio_sdk::wire::{HeartbeatAck, Registered, Reported};

/// Registers a runner, signed by the key it registers.
///
/// Registering again (the same key) updates the runner's tier, slots and what it says of
/// itself. The answer says how often the runner should send a heartbeat.
#[utoipa::path(post, path = "/v1/runners", tag = "runners",
    security(("runnerSignature" = [])),
    request_body = RegisterRunner,
    responses(
        (status = 200, body = Registered),
        (status = 400, description = "A field is wrong; the error names it", body = ApiError),
        (status = 401, description = "The signature is not by the key registered", body = ApiError),
        (status = 403, description = "The owner key does not endorse the runner, or a new owner is not admitted", body = ApiError),
        (status = 409, description = "The runner implements another determinism profile, or the owner name is another key's", body = ApiError),
        (status = 429, description = "Too many new owners from this address today (open admission)", body = ApiError),
        (status = 503, description = "The tier's pool is full (--max-runners); Retry-After says when to try again", body = ApiError),
    ))]
pub(super) async fn register(
    State(app): State<App>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
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
    Owner::parse(&reg.owner).map_err(|e| Fail::bad(e.to_string()))?;
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
    // Behind a reverse proxy, the address it says the request came from.
    let address = app
        .config
        .address_header
        .as_deref()
        .and_then(|name| header(&headers, name))
        .and_then(|v| v.split(',').next())
        .map(|a| a.trim().to_string())
        .filter(|a| !a.is_empty())
        .unwrap_or_else(|| peer.ip().to_string());
    let enrollment = Enrollment {
        admission: app.config.admission,
        address,
    };
    let mut registered = app
        .store
        .register_runner(&reg, &enrollment, now_ms())
        .await?;
    app.runners.forget(&registered.runner);
    registered.heartbeat_seconds = app.config.heartbeat_seconds;
    tracing::info!(runner = %registered.runner, owner = %reg.owner, tier = %reg.tier, slots = reg.slots, "runner registered");
    Ok(json(&registered))
}

/// Every runner, with its reputation.
#[utoipa::path(get, path = "/v1/runners", tag = "grid",
    responses((status = 200, body = Vec<RunnerInfo>)))]
pub(super) async fn runners(State(app): State<App>) -> Answer<Response> {
    let list: Vec<RunnerInfo> = app
        .store
        .runners()
        .await?
        .into_iter()
        .map(|r| crate::dashboard::runner_info(r, app.store.credibility()))
        .collect();
    Ok(json(&list))
}

/// Every owner account, as the leaderboard names them.
///
/// Its name, owner key id, how it was admitted, and its runners.
#[utoipa::path(get, path = "/v1/owners", tag = "grid",
    responses((status = 200, body = Vec<OwnerInfo>)))]
pub(super) async fn owners(State(app): State<App>) -> Answer<Response> {
    Ok(json(&app.store.owners().await?))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct EventsQuery {
    /// At most this many events, 1 to 10000 (default 100).
    limit: Option<u32>,
}

/// A runner's activity log.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub(super) struct RunnerEvents {
    /// The runner.
    runner: String,
    /// Its events, newest first.
    events: Vec<RunnerEvent>,
}

/// A runner's activity log, newest first: operators only.
///
/// Registrations, online and offline, leases handed back, missed deadlines, flags and
/// uptime credits.
#[utoipa::path(get, path = "/v1/runners/{id}/events", tag = "runners",
    security(("bearerToken" = [])),
    params(("id" = String, Path, description = "The runner's id"), EventsQuery),
    responses(
        (status = 200, body = RunnerEvents),
        (status = 400, description = "A bad runner id or limit", body = ApiError),
        TokenRefusals,
        (status = 404, description = "No such runner", body = ApiError),
    ))]
pub(super) async fn runner_events(
    State(app): State<App>,
    Path(id): Path<String>,
    Query(q): Query<EventsQuery>,
    headers: HeaderMap,
) -> Answer<Response> {
    token_auth(&app, &headers, Role::Admin).await?;
    let id: RunnerId = id.parse().map_err(|e: IdError| Fail::bad(e.to_string()))?;
    let limit = q.limit.unwrap_or(100);
    if limit == 0 || limit > 10_000 {
        return Err(Fail::bad(format!("limit must be 1 to 10000, got {limit}")));
    }
    let events = app.store.runner_events(id.as_str(), limit).await?;
    Ok(json(&RunnerEvents {
        runner: id.as_str().to_string(),
        events,
    }))
}

/// A runner is alive; the answer is what the ledger holds for it.
#[utoipa::path(post, path = "/v1/heartbeat", tag = "runners",
    security(("runnerSignature" = [])),
    request_body(content = Object, description = "Any JSON (it is signed, not read)"),
    responses((status = 200, body = HeartbeatAck), RunnerRefusals))]
pub(super) async fn heartbeat(
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

/// Leases up to `max` tasks, never more than the runner's free slots.
///
/// A cold runner (new, registered again or back from offline) gets one health check
/// instead: a lease whose `task_id` is negative and whose batch is `health-check`, reported
/// like any task; the scheduler compares its digest with its own run, and the runner gets
/// tasks once it passed. With `wait_ms`, a request that finds no task waits until work
/// appears (long polling), then answers with none and `waited`: a woken request never
/// leases, so that a runner that went away meanwhile is given nothing.
#[utoipa::path(post, path = "/v1/leases", tag = "runners",
    security(("runnerSignature" = [])),
    request_body = LeaseRequest,
    responses((status = 200, body = Leases), RunnerRefusals))]
pub(super) async fn lease(
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
pub(super) struct Waiting<'g>(&'g prometheus_client::metrics::gauge::Gauge);

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

/// How many leases a runner handed back.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub(super) struct Returned {
    /// Leases ended by this request (one the runner no longer held is not counted).
    returned: u32,
}

/// Hands leases back unfinished, so that other runners may take them at once.
#[utoipa::path(post, path = "/v1/leases/return", tag = "runners",
    security(("runnerSignature" = [])),
    request_body = ReturnRequest,
    responses((status = 200, body = Returned), RunnerRefusals))]
pub(super) async fn give_back(
    State(app): State<App>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Answer<Response> {
    let runner = runner_auth(&app, &method, &uri, &headers, &body).await?;
    let req: ReturnRequest = parse(&body)?;
    // A health check cannot be handed back: it ends at its deadline like any lease.
    let tasks: Vec<TaskId> = lease_ids(req.task_ids.iter().copied())?
        .into_iter()
        .filter_map(LeaseId::task)
        .collect();
    let returned = app.store.give_back(&runner.id, &tasks, now_ms()).await?;
    Ok(json(&Returned { returned }))
}

/// Hands in a checkpoint of a leased task.
///
/// For a task that declares `checkpoint`: the bytes of the latest checkpoint its guest
/// saved. The scheduler checks them against the task (its own, within its limits, later than
/// the last this runner handed in), keeps them as a blob, and, should this lease end without
/// a result, gives them to the task's next lease (`Lease.resume`).
#[utoipa::path(put, path = "/v1/leases/{task}/checkpoint", tag = "runners",
    security(("runnerSignature" = [])),
    params(("task" = i64, Path, description = "The leased task's `task_id`")),
    request_body(content = Octets, content_type = "application/octet-stream"),
    responses(
        (status = 204, description = "Kept"),
        (status = 400, description = "The bytes are no checkpoint of this task, or break its limit", body = ApiError),
        (status = 401, description = "The runner is unknown, or the signature or its time is not accepted", body = ApiError),
        (status = 409, description = "The runner holds no lease of the task, or the checkpoint is not later than the last", body = ApiError),
        (status = 429, description = "The runner makes requests faster than its rate limit", body = ApiError),
    ))]
pub(super) async fn put_checkpoint(
    State(app): State<App>,
    Path(task): Path<i64>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Answer<Response> {
    let runner = runner_auth(&app, &method, &uri, &headers, &body).await?;
    let Some(task) = lease_ids(std::iter::once(task))?[0].task() else {
        return Err(Fail::bad("a health check does not checkpoint"));
    };
    let (manifest, last) = app.store.leased_manifest(&runner.id, task.get()).await?;
    let checkpoint = helio_sandbox::checkpoint::Checkpoint::decode(&body, &manifest)
        .map_err(|e| Fail::bad(format!("checkpoint of task {}: {e}", task.get())))?;
    // A stale checkpoint is refused before its bytes are stored (and again, atomically, as
    // it is recorded), so that a runner cannot fill the blob store with old ones.
    if let Some(last) = last.filter(|&last| last >= checkpoint.saved) {
        return Err(
            crate::store::stale_checkpoint(task.get(), checkpoint.saved, last.into()).into(),
        );
    }
    let resume = wire::Resume {
        blake3: Blake3Hash::of(&body),
        saved: checkpoint.saved,
        fuel_used: checkpoint.fuel_used,
    };
    app.blobs.put(&resume.blake3, body).await?;
    app.store
        .save_checkpoint(&runner.id, task.get(), &resume, now_ms())
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Reports signed results; each is answered on its own.
///
/// With `lease`, the answer also holds up to that many new leases, so that a busy runner
/// needs one request per task.
#[utoipa::path(post, path = "/v1/results", tag = "runners",
    security(("runnerSignature" = [])),
    request_body = ReportRequest,
    responses((status = 200, body = Reported), RunnerRefusals))]
pub(super) async fn report(
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
    let ids = lease_ids(req.results.iter().map(|r| r.task_id))?;
    // Health checks first: one passed here makes the runner warm for the lease below.
    let mut checked = Vec::new();
    let mut results = std::mem::take(&mut req.results).into_iter();
    for &id in &ids {
        let r = results.next().expect("one id per result");
        match id {
            LeaseId::Check(check) => checked.push(
                crate::health::report(&app.store, &app.sandbox, &runner, check, &r, now_ms())
                    .await?,
            ),
            LeaseId::Task(_) => req.results.push(r),
        }
    }
    let (mut acks, leases) = app
        .store
        .report(&runner, &req.results, lease, now_ms())
        .await?;
    if !checked.is_empty() {
        // The acknowledgements in the order of the results.
        let (mut checked, mut tasks) = (checked.into_iter(), acks.into_iter());
        acks = ids
            .iter()
            .filter_map(|id| match id {
                LeaseId::Check(_) => checked.next(),
                LeaseId::Task(_) => tasks.next(),
            })
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
    for (ack, id) in acks.iter().zip(&ids) {
        let counter = match id {
            LeaseId::Check(_) => &app.metrics.health_checks,
            LeaseId::Task(_) => &app.metrics.results,
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
