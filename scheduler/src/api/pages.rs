//! What is not the grid's API proper: `/health`, `/metrics` (and the latency of every route),
//! the dashboard's page and event stream, and the OpenAPI document.

use super::doc::TokenRefusals;
use super::*;
use crate::dashboard::Snapshot;

/// The answer of `/health`.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub(super) struct Health {
    /// `ok` when the database answers (otherwise the route answers 500).
    status: &'static str,
    /// Which database: `sqlite` or `postgres`.
    database: &'static str,
}

/// Liveness, and whether the database answers.
#[utoipa::path(get, path = "/health", tag = "grid",
    responses(
        (status = 200, body = Health),
        (status = 500, description = "The database does not answer", body = ApiError),
    ))]
pub(super) async fn health(State(app): State<App>) -> Answer<Response> {
    app.store.ping().await?;
    Ok(json(&Health {
        status: "ok",
        database: app.store.kind(),
    }))
}

/// Prometheus metrics, in the OpenMetrics text format.
#[utoipa::path(get, path = "/metrics", tag = "grid",
    responses((status = 200, body = String,
        content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8")))]
pub(super) async fn metrics(State(app): State<App>) -> Answer<Response> {
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
pub(super) async fn observe(
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

/// A static part of the dashboard. The page loads nothing from elsewhere, and the policy
/// says so to the browser.
pub(super) fn page(content_type: &'static str, body: &'static str) -> Response {
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

/// The web dashboard.
#[utoipa::path(get, path = "/", tag = "grid",
    responses((status = 200, description = "The page", body = String, content_type = "text/html; charset=utf-8")))]
pub(super) async fn dashboard_page() -> Response {
    page(
        "text/html; charset=utf-8",
        include_str!("../dashboard/index.html"),
    )
}

/// The dashboard's script.
#[utoipa::path(get, path = "/dashboard.js", tag = "grid",
    responses((status = 200, description = "The script", body = String, content_type = "text/javascript; charset=utf-8")))]
pub(super) async fn dashboard_script() -> Response {
    page(
        "text/javascript; charset=utf-8",
        include_str!("../dashboard/dashboard.js"),
    )
}

/// The dashboard's style sheet.
#[utoipa::path(get, path = "/dashboard.css", tag = "grid",
    responses((status = 200, description = "The style sheet", body = String, content_type = "text/css; charset=utf-8")))]
pub(super) async fn dashboard_style() -> Response {
    page(
        "text/css; charset=utf-8",
        include_str!("../dashboard/dashboard.css"),
    )
}

/// Whether the viewer sees batches: anyone may watch the grid, but batches are their
/// submitters' business, shown with a submitter or admin token. A token that is given but
/// wrong is refused rather than ignored, so that a mistyped token does not look like an
/// empty grid.
pub(super) async fn sees_batches(app: &App, headers: &HeaderMap) -> Answer<bool> {
    if headers.get(header::AUTHORIZATION).is_none() {
        return Ok(false);
    }
    token_auth(app, headers, Role::Submitter).await?;
    Ok(true)
}

/// A snapshot of the grid.
///
/// Its pulse, runners, contributor wall, impact and flagged runners. Anyone may read it;
/// with a submitter or admin token it holds the newest batches too, and a wrong token is
/// refused.
#[utoipa::path(get, path = "/v1/dashboard", tag = "grid",
    security((), ("bearerToken" = [])),
    responses((status = 200, body = Snapshot), TokenRefusals))]
pub(super) async fn dashboard(State(app): State<App>, headers: HeaderMap) -> Answer<Response> {
    let full = sees_batches(&app, &headers).await?;
    Ok(json(&app.pulse.read(&app.store, full).await?))
}

/// The dashboard's snapshots as server-sent events.
///
/// A `snapshot` event (its data a `Snapshot`) at once and whenever the scheduler reads a new
/// one, at most once a second. Who sees what is as for `/v1/dashboard`.
#[utoipa::path(get, path = "/v1/dashboard/events", tag = "grid",
    security((), ("bearerToken" = [])),
    responses(
        (status = 200, description = "An endless event stream", body = String, content_type = "text/event-stream"),
        TokenRefusals,
    ))]
pub(super) async fn dashboard_events(
    State(app): State<App>,
    headers: HeaderMap,
) -> Answer<Response> {
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

/// This document.
#[utoipa::path(get, path = "/v1/openapi.json", tag = "grid",
    responses((status = 200, description = "The OpenAPI document", body = Object)))]
pub(super) async fn openapi() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        super::doc::text(),
    )
        .into_response()
}
