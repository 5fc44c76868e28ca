//! Object storage settings shared by the `helio` command and the scheduler: S3 clients
//! configured from the standard AWS environment and files, and how long transient errors
//! are retried.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use futures::stream::{Stream, StreamExt};
use object_store::aws::AmazonS3Builder;
use object_store::{
    BackoffConfig, ObjectStore, ObjectStoreExt, PutPayload, RetryConfig, WriteMultipart,
};

use crate::Blake3Hash;

/// Objects up to this size are gathered in memory and written in one request; larger ones
/// go out in parts of this size.
pub const PART_BYTES: usize = 8 << 20;

/// Why a streamed write failed.
#[derive(Debug)]
pub enum PutError<E> {
    /// The stream being written failed; nothing was written.
    Source(E),
    /// The store failed.
    Store(object_store::Error),
}

/// Writes the chunks `chunks` yields as `path` in `store`, never holding more than a few
/// parts in memory: a small object in one request, a large one as a multipart upload,
/// which the store shows only once it is complete. If the stream fails, the upload is
/// aborted and nothing is written. Returns the object's size.
pub async fn put_stream<E>(
    store: &dyn ObjectStore,
    path: &object_store::path::Path,
    chunks: impl Stream<Item = Result<Bytes, E>>,
) -> Result<u64, PutError<E>> {
    let mut chunks = std::pin::pin!(chunks);
    let mut small: Vec<Bytes> = Vec::new();
    let mut size = 0;
    let mut upload: Option<WriteMultipart> = None;
    while let Some(chunk) = chunks.next().await {
        let chunk = match chunk {
            Ok(chunk) => chunk,
            Err(e) => {
                if let Some(upload) = upload {
                    let _ = upload.abort().await;
                }
                return Err(PutError::Source(e));
            }
        };
        size += chunk.len();
        match &mut upload {
            Some(parts) => {
                parts.wait_for_capacity(4).await.map_err(PutError::Store)?;
                parts.put(chunk);
            }
            None if size > PART_BYTES => {
                let mut parts = WriteMultipart::new_with_chunk_size(
                    store.put_multipart(path).await.map_err(PutError::Store)?,
                    PART_BYTES,
                );
                for part in small.drain(..).chain(std::iter::once(chunk)) {
                    parts.put(part);
                }
                upload = Some(parts);
            }
            None => small.push(chunk),
        }
    }
    match upload {
        Some(parts) => parts.finish().await.map_err(PutError::Store)?,
        None => store
            .put(path, small.into_iter().collect::<PutPayload>())
            .await
            .map_err(PutError::Store)?,
    };
    Ok(size as u64)
}

/// `chunks`, passed on while they are hashed; at their end, the error `mismatch(actual)`
/// instead if they do not hash to `expected`. Nothing follows an error.
pub fn hashed<E: Send + 'static>(
    chunks: impl Stream<Item = Result<Bytes, E>> + Send + Unpin + 'static,
    expected: Blake3Hash,
    mismatch: impl Fn(Blake3Hash) -> E + Send + Sync + 'static,
) -> impl Stream<Item = Result<Bytes, E>> + Send + 'static {
    let mismatch = Arc::new(mismatch);
    futures::stream::unfold(Some((chunks, blake3::Hasher::new())), move |state| {
        let mismatch = mismatch.clone();
        async move {
            let (mut chunks, mut hasher) = state?;
            match chunks.next().await {
                Some(Ok(chunk)) => {
                    hasher.update(&chunk);
                    Some((Ok(chunk), Some((chunks, hasher))))
                }
                Some(Err(e)) => Some((Err(e), None)),
                None => {
                    let actual = Blake3Hash::from(hasher.finalize());
                    (actual != expected).then(|| (Err(mismatch(actual)), None))
                }
            }
        }
    })
}

/// Transient errors (a dropped connection, a 5xx, throttling) are retried five times over
/// about three seconds, then reported: a pipeline learns of an outage in seconds, not
/// minutes.
pub fn retries() -> RetryConfig {
    RetryConfig {
        backoff: BackoffConfig {
            init_backoff: std::time::Duration::from_millis(100),
            max_backoff: std::time::Duration::from_secs(2),
            base: 2.0,
        },
        max_retries: 5,
        retry_timeout: std::time::Duration::from_secs(30),
    }
}

/// An S3 client for `bucket` from the standard AWS settings: the environment first, then
/// the shared credentials and config files (`AWS_SHARED_CREDENTIALS_FILE`,
/// `AWS_CONFIG_FILE`, profile `AWS_PROFILE` or `default`). An `http://` endpoint (a store on
/// loopback) is allowed without TLS; requests are path-style unless
/// `AWS_VIRTUAL_HOSTED_STYLE_REQUEST=true`.
pub fn s3_builder(bucket: &str) -> AmazonS3Builder {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let mut builder = AmazonS3Builder::from_env().with_bucket_name(bucket);
    let home = env("HOME").map(PathBuf::from);
    let profile = env("AWS_PROFILE").unwrap_or_else(|| "default".into());
    if env("AWS_ACCESS_KEY_ID").is_none() {
        let file = env("AWS_SHARED_CREDENTIALS_FILE")
            .map(PathBuf::from)
            .or_else(|| home.as_ref().map(|h| h.join(".aws/credentials")));
        if let Some(section) = file.and_then(|f| ini_section(&f, &profile)) {
            for (key, value) in section {
                builder = match key.as_str() {
                    "aws_access_key_id" => builder.with_access_key_id(value),
                    "aws_secret_access_key" => builder.with_secret_access_key(value),
                    "aws_session_token" => builder.with_token(value),
                    _ => builder,
                };
            }
        }
    }
    if env("AWS_REGION").is_none() && env("AWS_DEFAULT_REGION").is_none() {
        let file = env("AWS_CONFIG_FILE")
            .map(PathBuf::from)
            .or_else(|| home.as_ref().map(|h| h.join(".aws/config")));
        let name = if profile == "default" {
            profile.clone()
        } else {
            format!("profile {profile}")
        };
        if let Some(region) = file
            .and_then(|f| ini_section(&f, &name))
            .and_then(|s| s.into_iter().find(|(k, _)| k == "region"))
        {
            builder = builder.with_region(region.1);
        }
    }
    let endpoint = env("AWS_ENDPOINT_URL_S3")
        .or_else(|| env("AWS_ENDPOINT_URL"))
        .or_else(|| env("AWS_ENDPOINT"));
    if let Some(endpoint) = endpoint
        && endpoint.starts_with("http://")
    {
        builder = builder.with_allow_http(true);
    }
    builder
}

/// The `key = value` lines of section `[name]` of an INI file, if it has one.
fn ini_section(file: &Path, name: &str) -> Option<Vec<(String, String)>> {
    let text = std::fs::read_to_string(file).ok()?;
    let mut inside = false;
    let mut found = None;
    for line in text.lines().map(str::trim) {
        if let Some(header) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            inside = header.trim() == name;
            if inside {
                found.get_or_insert_with(Vec::new);
            }
        } else if inside && let Some((k, v)) = line.split_once('=') {
            found
                .get_or_insert_with(Vec::new)
                .push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profiles_are_read_from_ini_sections() {
        let dir = std::env::temp_dir().join(format!("helio-ini-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("credentials");
        std::fs::write(
            &file,
            "[default]\naws_access_key_id = A\n\n[profile ci]\nregion=eu-west-1\n",
        )
        .unwrap();
        assert_eq!(
            ini_section(&file, "default"),
            Some(vec![("aws_access_key_id".into(), "A".into())])
        );
        assert_eq!(
            ini_section(&file, "profile ci"),
            Some(vec![("region".into(), "eu-west-1".into())])
        );
        assert_eq!(ini_section(&file, "other"), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
