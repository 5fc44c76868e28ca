//! The runners' routes: registration, heartbeats, leases (long-polled), hand-backs and results.

use super::*;

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
pub(super) async fn owners(State(app): State<App>) -> Answer<Response> {
    Ok(json(&app.store.owners().await?))
}

#[derive(Deserialize)]
pub(super) struct EventsQuery {
    limit: Option<u32>,
}

/// A runner's activity log, newest first: operators only.
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
    Ok(json(
        &serde_json::json!({ "runner": id.as_str(), "events": events }),
    ))
}

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
    Ok(json(&serde_json::json!({ "returned": returned })))
}

/// A checkpoint of a task the runner holds: checked against the task (its own, within its
/// limits, later than the last), stored as a blob, and recorded for the task's next lease
/// should this one end without a result.
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
    let manifest = app.store.leased_manifest(&runner.id, task.get()).await?;
    let checkpoint = helio_sandbox::checkpoint::Checkpoint::decode(&body, &manifest)
        .map_err(|e| Fail::bad(format!("checkpoint of task {}: {e}", task.get())))?;
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
