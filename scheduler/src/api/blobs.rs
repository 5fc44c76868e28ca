//! Blobs by hash: downloads, uploads checked against their hash as they arrive, and which of a
//! list the scheduler lacks.

use super::*;

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

/// Stores a blob. A submitter's upload is streamed into the store, checked on the way;
/// a runner's (an output, bounded by its manifest) is read whole, since its signature
/// covers the body.
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
