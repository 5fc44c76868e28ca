//! Blobs by hash: downloads, uploads checked against their hash as they arrive, and which of a
//! list the scheduler lacks.

use super::doc::{Octets, TokenRefusals};
use super::*;

/// A blob by its BLAKE3, to a runner (signed) or a submitter (token).
#[utoipa::path(get, path = "/v1/blobs/{hash}", tag = "blobs",
    security(("runnerSignature" = []), ("bearerToken" = [])),
    params(("hash" = Blake3Hash, Path, description = "The blob's BLAKE3")),
    responses(
        (status = 200, body = Octets, content_type = "application/octet-stream"),
        (status = 400, description = "The name is no BLAKE3 hash", body = ApiError),
        (status = 401, description = "Neither a runner's signature nor a token is accepted", body = ApiError),
        (status = 403, description = "The token's role may not read blobs", body = ApiError),
        (status = 404, description = "No such blob", body = ApiError),
    ))]
pub(super) async fn get_blob(
    State(app): State<App>,
    Path(hash): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Answer<Response> {
    if headers.contains_key(wire::RUNNER_HEADER) {
        runner_auth(&app, &method, &uri, &headers, b"").await?;
    } else {
        token_auth(&app, &headers, Role::Submitter).await?;
    }
    let hash = parse_hash(&hash)?;
    match app.blobs.get_stream(&hash).await? {
        Some((size, stream)) => Ok((
            [
                (header::CONTENT_TYPE, "application/octet-stream".to_string()),
                (header::CONTENT_LENGTH, size.to_string()),
            ],
            axum::body::Body::from_stream(stream),
        )
            .into_response()),
        None => Err(Fail::new(
            StatusCode::NOT_FOUND,
            format!("blob {hash} not found"),
        )),
    }
}

/// Stores a blob; its bytes must hash to its name.
///
/// A submitter's upload is streamed into the store, checked on the way; a runner's (an
/// output, bounded by its manifest) is read whole, since its signature covers the body.
/// Runners may upload only outputs of accepted results.
#[utoipa::path(put, path = "/v1/blobs/{hash}", tag = "blobs",
    security(("runnerSignature" = []), ("bearerToken" = [])),
    params(("hash" = Blake3Hash, Path, description = "The blob's BLAKE3")),
    request_body(content = Octets, content_type = "application/octet-stream"),
    responses(
        (status = 204, description = "Stored"),
        (status = 400, description = "The bytes do not hash to the name, or the upload broke off", body = ApiError),
        (status = 401, description = "Neither a runner's signature nor a token is accepted", body = ApiError),
        (status = 403, description = "A runner's blob that is no output of an accepted result, or a token that may not upload", body = ApiError),
    ))]
pub(super) async fn put_blob(
    State(app): State<App>,
    Path(hash): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Answer<Response> {
    let hash = parse_hash(&hash)?;
    if headers.contains_key(wire::RUNNER_HEADER) {
        let body = axum::body::to_bytes(body, app.config.max_body_bytes)
            .await
            .map_err(|e| Fail::bad(format!("blob {hash}: {e}")))?;
        // A runner uploads only what an accepted result names.
        runner_auth(&app, &method, &uri, &headers, &body).await?;
        if !app.store.blob_wanted(&hash).await? && !app.blobs.has(&hash).await? {
            return Err(Fail::new(
                StatusCode::FORBIDDEN,
                format!("blob {hash} is not an output of an accepted result"),
            ));
        }
        app.blobs.put(&hash, body).await?;
    } else {
        token_auth(&app, &headers, Role::Submitter).await?;
        app.blobs.put_stream(&hash, body.into_data_stream()).await?;
    }
    app.store.blob_stored(&hash).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Which of these blobs the scheduler lacks.
#[utoipa::path(post, path = "/v1/blobs/missing", tag = "blobs",
    security(("bearerToken" = [])),
    request_body = BlobList,
    responses(
        (status = 200, body = BlobList),
        (status = 400, description = "The body is not a list of hashes", body = ApiError),
        TokenRefusals,
    ))]
pub(super) async fn missing_blobs(
    State(app): State<App>,
    headers: HeaderMap,
    body: Bytes,
) -> Answer<Response> {
    token_auth(&app, &headers, Role::Submitter).await?;
    let list: BlobList = parse(&body)?;
    let missing = app.blobs.missing(&list.blobs).await?;
    Ok(json(&BlobList { blobs: missing }))
}
