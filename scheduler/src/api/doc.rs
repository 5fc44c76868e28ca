//! The OpenAPI document, generated from the handlers' `#[utoipa::path]` attributes and the
//! schemas the wire types derive (`helio_sdk`'s `openapi` feature). `/v1/openapi.json` serves
//! it, `scheduler openapi` prints it, and `scheduler/openapi.json` holds a copy a test keeps
//! equal to it.

use std::sync::LazyLock;

use axum::http::StatusCode;
use helio_sdk::wire::ApiError;
use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, Schema, SchemaFormat, Type};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{OpenApi as Document, RefOr};
use utoipa::{IntoResponses, Modify, OpenApi, PartialSchema, ToSchema};

use super::{batches, blobs, credits, pages, runners};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Helio scheduler API",
        version = "1",
        description = "Runners sign every request with Ed25519 over \
            `helio-request-v1\\n{METHOD}\\n{path}\\n{time_ms}\\n{blake3(body)}` and send \
            x-helio-runner, x-helio-time and x-helio-signature. Submitters and operators send \
            `Authorization: Bearer <token>`. Every error has the body {\"error\": \"...\"}, \
            which says what was wrong."
    ),
    paths(
        pages::dashboard_page,
        pages::dashboard_script,
        pages::dashboard_style,
        pages::dashboard,
        pages::dashboard_events,
        pages::health,
        pages::metrics,
        pages::openapi,
        runners::register,
        runners::runners,
        runners::runner_events,
        runners::owners,
        runners::heartbeat,
        runners::lease,
        runners::give_back,
        runners::put_checkpoint,
        runners::report,
        blobs::missing_blobs,
        blobs::get_blob,
        blobs::put_blob,
        batches::submit,
        batches::list_batches,
        batches::batch_status,
        batches::change_batch,
        batches::pause_batch,
        batches::resume_batch,
        batches::cancel_batch,
        batches::batch_results,
        credits::credits,
        credits::credits_csv,
        credits::payouts,
        credits::pay_out,
        credits::payouts_csv,
        credits::ledger,
    ),
    modifiers(&Security, &Described),
    tags(
        (name = "grid", description = "What anyone may read: the dashboard, health, metrics, runners, owners, credits"),
        (name = "runners", description = "The volunteer runners' signed requests"),
        (name = "blobs", description = "Modules, inputs, outputs and checkpoints by their BLAKE3"),
        (name = "batches", description = "Submitters' batches"),
        (name = "credits", description = "Credits, payouts and the ledger"),
    )
)]
struct ApiDoc;

/// The two ways a request is authenticated.
struct Security;

impl Modify for Security {
    fn modify(&self, doc: &mut Document) {
        let components = doc.components.get_or_insert_default();
        components.add_security_scheme(
            "bearerToken",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
        components.add_security_scheme(
            "runnerSignature",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "x-helio-signature",
                "An Ed25519 signature in hex, sent with x-helio-runner and x-helio-time",
            ))),
        );
    }
}

/// Every answer has a description (the document's format requires one): an answer whose
/// meaning its route's summary already says gets its status's reason, such as `OK`.
struct Described;

impl Modify for Described {
    fn modify(&self, doc: &mut Document) {
        for item in doc.paths.paths.values_mut() {
            let operations = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.patch,
                &mut item.delete,
            ];
            for operation in operations.into_iter().flatten() {
                for (status, answer) in &mut operation.responses.responses {
                    if let RefOr::T(answer) = answer
                        && answer.description.is_empty()
                    {
                        answer.description = StatusCode::from_bytes(status.as_bytes())
                            .ok()
                            .and_then(|s| s.canonical_reason())
                            .unwrap_or("The answer")
                            .to_string();
                    }
                }
            }
        }
    }
}

/// The document.
pub fn document() -> Document {
    ApiDoc::openapi()
}

/// The document as the service sends it, pretty-printed.
pub fn text() -> &'static str {
    static TEXT: LazyLock<String> = LazyLock::new(|| {
        let mut text = document()
            .to_pretty_json()
            .expect("the OpenAPI document serializes");
        text.push('\n');
        text
    });
    &TEXT
}

/// Bytes of any kind, as a request or response body.
pub(super) struct Octets;

impl PartialSchema for Octets {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Binary)))
            .into()
    }
}

impl ToSchema for Octets {}

/// What any runner's signed request may be refused with.
#[derive(IntoResponses)]
#[allow(dead_code)] // describes answers; the handlers answer with `Fail`
pub(super) enum RunnerRefusals {
    /// The body is not what the route takes; the error names the field.
    #[response(status = 400)]
    Bad(ApiError),
    /// The runner is unknown, or the signature or its time is not accepted.
    #[response(status = 401)]
    Unauthenticated(ApiError),
    /// The runner makes requests faster than its rate limit; Retry-After says when to try
    /// again.
    #[response(status = 429)]
    TooFast(ApiError),
}

/// What a request with a bearer token may be refused with.
#[derive(IntoResponses)]
#[allow(dead_code)] // describes answers; the handlers answer with `Fail`
pub(super) enum TokenRefusals {
    /// No token, or an unknown, expired or revoked one.
    #[response(status = 401)]
    Unauthenticated(ApiError),
    /// The token's role may not do this.
    #[response(status = 403)]
    Forbidden(ApiError),
}

/// What a request to steer a batch (pause, resume, cancel, change) may be refused with.
#[derive(IntoResponses)]
#[allow(dead_code)] // describes answers; the handlers answer with `Fail`
pub(super) enum SteerRefusals {
    /// A bad batch id, or a change that is not one (`PATCH`).
    #[response(status = 400)]
    Bad(ApiError),
    /// No token, or an unknown, expired or revoked one.
    #[response(status = 401)]
    Unauthenticated(ApiError),
    /// The token is neither the batch's submitter's nor an admin's.
    #[response(status = 403)]
    Forbidden(ApiError),
    /// No such batch.
    #[response(status = 404)]
    Missing(ApiError),
    /// The batch is cancelled, so it cannot be paused, resumed or changed (cancelling it
    /// again is no error).
    #[response(status = 409)]
    Cancelled(ApiError),
}
