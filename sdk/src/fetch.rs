//! Where a manifest and the objects it names are, and reading and writing them, all through
//! `object_store`: local paths and `file://` on the file system, `http(s)://`, and `s3://`
//! (credentials and region from the standard AWS environment variables, else from the shared
//! credentials and config files; `AWS_ENDPOINT_URL` for an S3-compatible store, addressed
//! path-style). Relative URIs resolve against the manifest's own location.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use crate::Uri;
use crate::storage::{self, retries, s3_builder};
use bytes::Bytes;
use futures::stream::{BoxStream, StreamExt};
use object_store::http::HttpBuilder;
use object_store::local::LocalFileSystem;
use object_store::{ClientOptions, ObjectStore, ObjectStoreExt, PutPayload};

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

    /// The store that holds the object, and its path there. Stores (and their connection
    /// pools) are made once per bucket or origin and shared.
    fn open(&self) -> Result<(Arc<dyn ObjectStore>, object_store::path::Path), FetchError> {
        static STORES: OnceLock<Mutex<HashMap<String, Arc<dyn ObjectStore>>>> = OnceLock::new();
        let bad = |e: &dyn std::fmt::Display| FetchError::Bad(format!("{self}: {e}"));
        let (key, path) = match self {
            Source::Local(p) => {
                let absolute = std::path::absolute(p).map_err(|e| bad(&e))?;
                let path =
                    object_store::path::Path::from_absolute_path(&absolute).map_err(|e| bad(&e))?;
                ("file://".to_string(), path)
            }
            Source::Http(url) => {
                let path =
                    object_store::path::Path::from_url_path(url.path()).map_err(|e| bad(&e))?;
                (url.origin().ascii_serialization(), path)
            }
            Source::S3 { bucket, key } => {
                let path = object_store::path::Path::parse(key).map_err(|e| bad(&e))?;
                (format!("s3://{bucket}"), path)
            }
        };
        let mut stores = STORES
            .get_or_init(Mutex::default)
            .lock()
            .expect("not poisoned");
        if let Some(store) = stores.get(&key) {
            return Ok((store.clone(), path));
        }
        let store: Arc<dyn ObjectStore> = match self {
            Source::Local(_) => Arc::new(LocalFileSystem::new()),
            Source::Http(url) => Arc::new(
                HttpBuilder::new()
                    .with_retry(retries())
                    .with_url(key.as_str())
                    .with_client_options(
                        ClientOptions::new().with_allow_http(url.scheme() == "http"),
                    )
                    .build()
                    .map_err(|e| bad(&e))?,
            ),
            Source::S3 { bucket, .. } => Arc::new(
                s3_builder(bucket)
                    .with_retry(retries())
                    .build()
                    .map_err(|e| bad(&e))?,
            ),
        };
        stores.insert(key, store.clone());
        Ok((store, path))
    }

    /// The object as a stream of chunks, for objects too large to hold in memory.
    pub async fn stream(
        &self,
    ) -> Result<BoxStream<'static, Result<Bytes, FetchError>>, FetchError> {
        let (store, path) = self.open()?;
        let got = store
            .get(&path)
            .await
            .map_err(|e| FetchError::from_store(self, e))?;
        let this = self.clone();
        if let object_store::GetResultPayload::File(file, _) = got.payload {
            return Ok(file_chunks(file, this));
        }
        Ok(got
            .into_stream()
            .map(move |chunk| chunk.map_err(|e| FetchError::from_store(&this, e)))
            .boxed())
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

impl Source {
    /// Writes the chunks `chunks` yields as the object (see [`storage::put_stream`]): if the
    /// stream fails, nothing is written.
    pub async fn put_stream<E>(
        &self,
        chunks: impl futures::Stream<Item = Result<Bytes, E>>,
    ) -> Result<(), PutError<E>> {
        let (store, path) = self.open().map_err(PutError::Store)?;
        storage::put_stream(store.as_ref(), &path, chunks)
            .await
            .map(|_| ())
            .map_err(|e| match e {
                storage::PutError::Source(e) => PutError::Source(e),
                storage::PutError::Store(e) => PutError::Store(FetchError::from_store(self, e)),
            })
    }
}

/// Why a streamed write failed.
#[derive(Debug)]
pub enum PutError<E> {
    /// The stream being written failed (nothing was written).
    Source(E),
    /// The store failed.
    Store(FetchError),
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

/// A local file as a stream of 1 MiB chunks, each read off the async threads (the store's
/// own stream reads 8 KiB at a time, which costs more than the reading).
fn file_chunks(file: std::fs::File, what: Source) -> BoxStream<'static, Result<Bytes, FetchError>> {
    const CHUNK: usize = 1 << 20;
    futures::stream::unfold(Some(file), move |file| {
        let what = what.clone();
        async move {
            let mut file = file?;
            let read = tokio::task::spawn_blocking(move || {
                let mut buf = vec![0u8; CHUNK];
                let mut filled = 0;
                while filled < CHUNK {
                    match std::io::Read::read(&mut file, &mut buf[filled..]) {
                        Ok(0) => break,
                        Ok(n) => filled += n,
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(e),
                    }
                }
                buf.truncate(filled);
                Ok((buf, file))
            })
            .await;
            match read {
                Ok(Ok((buf, _))) if buf.is_empty() => None,
                Ok(Ok((buf, file))) => Some((Ok(Bytes::from(buf)), Some(file))),
                Ok(Err(e)) => Some((Err(FetchError::Unreachable(format!("{what}: {e}"))), None)),
                Err(e) => Some((Err(FetchError::Unreachable(format!("{what}: {e}"))), None)),
            }
        }
    })
    .boxed()
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
    fn local_files_stream_whole_in_large_chunks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data.bin");
        let bytes: Vec<u8> = (0..(5 << 19) + 17).map(|i: u32| (i % 253) as u8).collect();
        std::fs::write(&path, &bytes).unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let chunks: Vec<Bytes> = runtime.block_on(async {
            let stream = Source::Local(path.clone()).stream().await.unwrap();
            stream.map(|c| c.unwrap()).collect().await
        });
        assert_eq!(chunks.len(), 3);
        assert_eq!(chunks.concat(), bytes);
        let missing = runtime
            .block_on(Source::Local(dir.path().join("nothing")).stream())
            .err()
            .unwrap();
        assert!(matches!(missing, FetchError::NotFound(_)), "{missing}");
    }

    #[test]
    fn streamed_writes_land_whole_or_not_at_all() {
        let dir = tempfile::tempdir().unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        for size in [0, 100, storage::PART_BYTES + (3 << 20)] {
            let bytes: Vec<u8> = (0..size).map(|i| (i % 241) as u8).collect();
            let chunks = || {
                bytes
                    .chunks(1 << 20)
                    .map(|c| Ok::<_, String>(Bytes::copy_from_slice(c)))
                    .collect::<Vec<_>>()
            };
            let to = Source::Local(dir.path().join(format!("out/{size}/file.bin")));
            // A stream that fails half-way leaves no file.
            let mut broken = chunks();
            broken.push(Err("the scheduler went away".to_string()));
            let err = runtime
                .block_on(to.put_stream(futures::stream::iter(broken)))
                .unwrap_err();
            assert!(matches!(err, PutError::Source(ref m) if m.contains("went away")));
            assert!(!dir.path().join(format!("out/{size}/file.bin")).exists());
            runtime
                .block_on(to.put_stream(futures::stream::iter(chunks())))
                .unwrap();
            assert_eq!(
                std::fs::read(dir.path().join(format!("out/{size}/file.bin"))).unwrap(),
                bytes
            );
        }
    }
}
