//! Where a manifest and the objects it names are, and reading and writing them, all through
//! `object_store`: local paths and `file://` on the file system, `http(s)://`, and `s3://`
//! (credentials and region from the standard AWS environment variables, else from the shared
//! credentials and config files; `AWS_ENDPOINT_URL` for an S3-compatible store, addressed
//! path-style). Relative URIs resolve against the manifest's own location.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use helio_sdk::{Blake3Hash, Uri};
use object_store::aws::AmazonS3Builder;
use object_store::http::HttpBuilder;
use object_store::local::LocalFileSystem;
use object_store::{
    BackoffConfig, ClientOptions, ObjectStore, ObjectStoreExt, PutPayload, RetryConfig,
};

/// A place to read bytes from or write them to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A file.
    Local(PathBuf),
    /// An `http://` or `https://` URL.
    Http(url::Url),
    /// An object in an S3 bucket.
    S3 {
        /// The bucket.
        bucket: String,
        /// The object's key (no leading `/`).
        key: String,
    },
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Local(p) => write!(f, "{}", p.display()),
            Source::Http(u) => write!(f, "{u}"),
            Source::S3 { bucket, key } => write!(f, "s3://{bucket}/{key}"),
        }
    }
}

/// Why reading or writing an object failed, sorted by what a pipeline would do about it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    /// The object does not exist.
    #[error("{0}: no such object")]
    NotFound(String),
    /// The store refused the credentials, or they lack permission.
    #[error("{0}")]
    Denied(String),
    /// The store could not be reached (after retries), or failed.
    #[error("{0}")]
    Unreachable(String),
    /// The location itself is wrong.
    #[error("{0}")]
    Bad(String),
}

impl FetchError {
    fn from_store(what: &Source, e: object_store::Error) -> FetchError {
        match e {
            object_store::Error::NotFound { .. } => FetchError::NotFound(what.to_string()),
            object_store::Error::PermissionDenied { .. }
            | object_store::Error::Unauthenticated { .. } => FetchError::Denied(format!(
                "{what}: access denied (check AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY or \
                 AWS_PROFILE, and the bucket's permissions): {e}"
            )),
            e => FetchError::Unreachable(format!("{what}: {e}")),
        }
    }
}

/// Where the manifest (or output directory) given on the command line is.
pub fn locate(text: &str) -> Result<Source, String> {
    match Uri::parse(text)? {
        Uri::Path(p) => Ok(Source::Local(PathBuf::from(p))),
        Uri::Url { scheme, rest } if scheme == "file" => Ok(Source::Local(PathBuf::from(rest))),
        Uri::Url { scheme, .. } if scheme == "http" || scheme == "https" => url::Url::parse(text)
            .map(Source::Http)
            .map_err(|e| format!("{text}: not a URL: {e}")),
        Uri::Url { scheme, rest } if scheme == "s3" => {
            let (bucket, key) = rest.split_once('/').unwrap_or((rest.as_str(), ""));
            if bucket.is_empty() {
                return Err(format!(
                    "{text}: an s3:// URI names a bucket: s3://BUCKET/KEY"
                ));
            }
            Ok(Source::S3 {
                bucket: bucket.to_string(),
                key: key.trim_start_matches('/').to_string(),
            })
        }
        Uri::Url { scheme, .. } => Err(format!(
            "{text}: helio reads local paths, file://, http(s):// and s3://, not {scheme}://"
        )),
    }
}

/// Where `uri`, written in a manifest at `base`, points: relative URIs resolve against the
/// manifest's own location.
pub fn resolve(base: &Source, uri: &Uri) -> Result<Source, String> {
    match uri {
        Uri::Path(p) => Ok(base.sibling(p)),
        Uri::Url { .. } => locate(&uri.to_string()),
    }
}

impl Source {
    /// `relative` (a `/`-separated path) beside this object: in the same directory.
    pub fn sibling(&self, relative: &str) -> Source {
        match self {
            Source::Local(p) => Source::Local(p.parent().unwrap_or(Path::new(".")).join(relative)),
            Source::Http(u) => u
                .join(relative)
                .map(Source::Http)
                .unwrap_or_else(|_| self.clone()),
            Source::S3 { bucket, key } => Source::S3 {
                bucket: bucket.clone(),
                key: join_key(key.rsplit_once('/').map_or("", |(dir, _)| dir), relative),
            },
        }
    }

    /// `relative` under this location, taken as a directory.
    pub fn child(&self, relative: &str) -> Source {
        match self {
            Source::Local(p) => Source::Local(p.join(relative)),
            Source::Http(u) => {
                let mut dir = u.clone();
                if !dir.path().ends_with('/') {
                    dir.set_path(&format!("{}/", dir.path()));
                }
                dir.join(relative)
                    .map(Source::Http)
                    .unwrap_or_else(|_| self.clone())
            }
            Source::S3 { bucket, key } => Source::S3 {
                bucket: bucket.clone(),
                key: join_key(key.trim_end_matches('/'), relative),
            },
        }
    }

    /// The store that holds the object, and its path there.
    fn open(&self) -> Result<(Arc<dyn ObjectStore>, object_store::path::Path), FetchError> {
        let bad = |e: &dyn std::fmt::Display| FetchError::Bad(format!("{self}: {e}"));
        match self {
            Source::Local(p) => {
                let absolute = std::path::absolute(p).map_err(|e| bad(&e))?;
                let path =
                    object_store::path::Path::from_absolute_path(&absolute).map_err(|e| bad(&e))?;
                Ok((Arc::new(LocalFileSystem::new()), path))
            }
            Source::Http(url) => {
                let store = HttpBuilder::new()
                    .with_retry(retries())
                    .with_url(url.origin().ascii_serialization())
                    .with_client_options(
                        ClientOptions::new().with_allow_http(url.scheme() == "http"),
                    )
                    .build()
                    .map_err(|e| bad(&e))?;
                let path =
                    object_store::path::Path::from_url_path(url.path()).map_err(|e| bad(&e))?;
                Ok((Arc::new(store), path))
            }
            Source::S3 { bucket, key } => {
                let store = s3_builder(bucket)
                    .with_retry(retries())
                    .build()
                    .map_err(|e| bad(&e))?;
                let path = object_store::path::Path::parse(key).map_err(|e| bad(&e))?;
                Ok((Arc::new(store), path))
            }
        }
    }

    /// Reads all of the object.
    pub async fn get(&self) -> Result<Vec<u8>, FetchError> {
        let (store, path) = self.open()?;
        let got = store
            .get(&path)
            .await
            .map_err(|e| FetchError::from_store(self, e))?;
        got.bytes()
            .await
            .map(|b| b.to_vec())
            .map_err(|e| FetchError::from_store(self, e))
    }

    /// Reads the object and checks that its bytes hash to `expected`; `what` names it in
    /// the error.
    pub async fn get_verified(&self, what: &str, expected: &Blake3Hash) -> Result<Vec<u8>, String> {
        let bytes = self.get().await.map_err(|e| format!("{what}: {e}"))?;
        let actual = Blake3Hash::of(&bytes);
        if actual != *expected {
            return Err(format!(
                "{what} ({self}): BLAKE3 mismatch: the manifest says {expected}, the bytes hash to {actual}"
            ));
        }
        Ok(bytes)
    }

    /// Writes `bytes` as the object (creating directories on the file system).
    pub async fn put(&self, bytes: Vec<u8>) -> Result<(), FetchError> {
        let (store, path) = self.open()?;
        store
            .put(&path, PutPayload::from(bytes))
            .await
            .map(|_| ())
            .map_err(|e| FetchError::from_store(self, e))
    }
}

/// Transient errors (a dropped connection, a 5xx, throttling) are retried five times over
/// about three seconds, then reported: a pipeline learns of an outage in seconds, not
/// minutes.
fn retries() -> RetryConfig {
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

fn join_key(dir: &str, relative: &str) -> String {
    let mut parts: Vec<&str> = dir.split('/').filter(|s| !s.is_empty()).collect();
    for part in relative.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    parts.join("/")
}

/// An S3 client for `bucket` from the standard AWS settings: the environment first, then
/// the shared credentials and config files (`AWS_SHARED_CREDENTIALS_FILE`,
/// `AWS_CONFIG_FILE`, profile `AWS_PROFILE` or `default`). An `http://` endpoint (a store on
/// loopback) is allowed without TLS; requests are path-style unless
/// `AWS_VIRTUAL_HOSTED_STYLE_REQUEST=true`.
fn s3_builder(bucket: &str) -> AmazonS3Builder {
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

/// Reads all of `source` from synchronous code.
pub fn read(source: &Source) -> Result<Vec<u8>, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the I/O runtime: {e}"))?
        .block_on(source.get())
        .map_err(|e| match e {
            FetchError::NotFound(what) => format!("cannot read {what}: no such file or object"),
            e => format!("cannot read {e}"),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_uris_resolve_against_the_manifest() {
        let base = locate("s3://bucket/run-42/batch.json").unwrap();
        let input = resolve(&base, &Uri::parse("inputs/a.csv").unwrap()).unwrap();
        assert_eq!(input.to_string(), "s3://bucket/run-42/inputs/a.csv");
        let up = resolve(&base, &Uri::parse("../shared/m.wasm").unwrap()).unwrap();
        assert_eq!(up.to_string(), "s3://bucket/shared/m.wasm");
        let top = locate("s3://bucket/batch.json").unwrap();
        assert_eq!(top.sibling("m.wasm").to_string(), "s3://bucket/m.wasm");
        let out = locate("s3://bucket/run-42/results/").unwrap();
        assert_eq!(
            out.child("t-1/digest.txt").to_string(),
            "s3://bucket/run-42/results/t-1/digest.txt"
        );
        let local = locate("dir/batch.json").unwrap();
        assert_eq!(local.sibling("m.wasm"), Source::Local("dir/m.wasm".into()));
        let web = locate("https://example.org/run/batch.json").unwrap();
        assert_eq!(
            web.sibling("in/a.csv").to_string(),
            "https://example.org/run/in/a.csv"
        );
        assert!(locate("s3:///key").is_err());
        assert!(locate("gs://bucket/key").unwrap_err().contains("\"gs\""));
    }

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
