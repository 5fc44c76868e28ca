//! Content-addressed blobs (modules, inputs, outputs, standard output), kept through
//! `object_store`: a directory under the data directory by default, or an S3 prefix
//! (`--blobs s3://bucket/prefix`) that several schedulers can share. A blob is stored under
//! its BLAKE3 only after its bytes were checked to hash to it, so a blob read back is always
//! what its name says.
//!
//! An upload is streamed: small blobs are gathered in memory and written at once, a large
//! one goes out in parts as it arrives, and the upload completes only once the last byte
//! checked out. Neither is ever held whole in memory.

use std::collections::HashSet;
use std::path::Path as FsPath;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::stream::{BoxStream, StreamExt, TryStreamExt};
use helio_sdk::{Blake3Hash, storage};
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::prefix::PrefixStore;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

/// Why a blob could not be stored or read.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    /// The bytes do not hash to the name they were sent under.
    #[error("blob {expected}: the bytes hash to {actual}")]
    Mismatch {
        /// The name.
        expected: Blake3Hash,
        /// What the bytes hash to.
        actual: Blake3Hash,
    },
    /// The upload broke off before its end.
    #[error("blob {hash}: the upload broke off: {reason}")]
    Interrupted {
        /// The blob.
        hash: Blake3Hash,
        /// Why.
        reason: String,
    },
    /// The store failed.
    #[error("blob store: {0}")]
    Store(#[from] object_store::Error),
}

/// Existence checks in flight at once (each a HEAD request on S3).
const CHECKS_IN_FLIGHT: usize = 32;

/// The blob store.
#[derive(Clone)]
pub struct Blobs {
    store: Arc<dyn ObjectStore>,
    /// Blobs known to be stored. Blobs are never deleted, so once seen, always there.
    known: Arc<Mutex<HashSet<Blake3Hash>>>,
    place: Arc<str>,
}

fn path(hash: &Blake3Hash) -> Path {
    let hex = hash.to_string();
    Path::from(format!("{}/{hex}", &hex[..2]))
}

impl std::fmt::Debug for Blobs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Blobs").field("place", &self.place).finish()
    }
}

impl std::fmt::Display for Blobs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.place)
    }
}

impl Blobs {
    fn with(store: Arc<dyn ObjectStore>, place: String) -> Blobs {
        Blobs {
            store,
            known: Arc::default(),
            place: place.into(),
        }
    }

    /// Blobs in the local directory `dir`, created if missing.
    pub fn local(dir: &FsPath) -> std::io::Result<Blobs> {
        std::fs::create_dir_all(dir)?;
        let store = LocalFileSystem::new_with_prefix(dir)
            .map_err(std::io::Error::other)?
            .with_automatic_cleanup(true);
        Ok(Blobs::with(Arc::new(store), dir.display().to_string()))
    }

    /// Blobs where `place` says: `s3://bucket/prefix` (credentials, region and endpoint
    /// from the standard AWS environment and files), or a local directory (a path or
    /// `file://`).
    pub fn open(place: &str) -> Result<Blobs, String> {
        if let Some(rest) = place.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(format!(
                    "--blobs {place}: an s3:// location names a bucket: s3://BUCKET/PREFIX"
                ));
            }
            let s3 = helio_sdk::storage::s3_builder(bucket)
                .with_retry(helio_sdk::storage::retries())
                .build()
                .map_err(|e| format!("--blobs {place}: {e}"))?;
            let prefix = prefix.trim_matches('/');
            let store: Arc<dyn ObjectStore> = if prefix.is_empty() {
                Arc::new(s3)
            } else {
                let prefix = Path::parse(prefix).map_err(|e| format!("--blobs {place}: {e}"))?;
                Arc::new(PrefixStore::new(s3, prefix))
            };
            return Ok(Blobs::with(store, place.to_string()));
        }
        if place.contains("://") && !place.starts_with("file://") {
            return Err(format!(
                "--blobs {place}: blobs are kept in a local directory or under s3://BUCKET/PREFIX"
            ));
        }
        let dir = place.strip_prefix("file://").unwrap_or(place);
        Blobs::local(FsPath::new(dir)).map_err(|e| format!("--blobs {place}: {e}"))
    }

    fn remember(&self, hash: &Blake3Hash) {
        self.known.lock().expect("not poisoned").insert(*hash);
    }

    /// Stores `bytes` as `hash`, after checking that they hash to it.
    pub async fn put(&self, hash: &Blake3Hash, bytes: Bytes) -> Result<(), BlobError> {
        let actual = Blake3Hash::of(&bytes);
        if actual != *hash {
            return Err(BlobError::Mismatch {
                expected: *hash,
                actual,
            });
        }
        if self.has(hash).await? {
            return Ok(());
        }
        self.store.put(&path(hash), PutPayload::from(bytes)).await?;
        self.remember(hash);
        Ok(())
    }

    /// Stores the bytes `body` yields as `hash`, streaming: they are checked as they pass,
    /// and the write completes only if they hash to `hash` (a large blob goes out as a
    /// multipart upload, which the store shows only once it is complete). Returns how many
    /// bytes there were.
    pub async fn put_stream<E: std::fmt::Display>(
        &self,
        hash: &Blake3Hash,
        body: impl futures::Stream<Item = Result<Bytes, E>> + Send + Unpin + 'static,
    ) -> Result<u64, BlobError> {
        let expected = *hash;
        let checked = storage::hashed(
            body.map_err(move |e| BlobError::Interrupted {
                hash: expected,
                reason: e.to_string(),
            }),
            expected,
            move |actual| BlobError::Mismatch { expected, actual },
        );
        let size = storage::put_stream(self.store.as_ref(), &path(hash), checked)
            .await
            .map_err(|e| match e {
                storage::PutError::Source(e) => e,
                storage::PutError::Store(e) => BlobError::Store(e),
            })?;
        self.remember(hash);
        Ok(size)
    }

    /// The blob `hash`, or `None` when the store lacks it.
    pub async fn get(&self, hash: &Blake3Hash) -> Result<Option<Bytes>, BlobError> {
        match self.store.get(&path(hash)).await {
            Ok(got) => Ok(Some(got.bytes().await?)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// The blob `hash` as a stream of chunks, with its size; `None` when the store lacks it.
    pub async fn get_stream(
        &self,
        hash: &Blake3Hash,
    ) -> Result<Option<(u64, BoxStream<'static, object_store::Result<Bytes>>)>, BlobError> {
        match self.store.get(&path(hash)).await {
            Ok(got) => Ok(Some((got.meta.size, got.into_stream()))),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Whether the store holds `hash`.
    pub async fn has(&self, hash: &Blake3Hash) -> Result<bool, BlobError> {
        if self.known.lock().expect("not poisoned").contains(hash) {
            return Ok(true);
        }
        match self.store.head(&path(hash)).await {
            Ok(_) => {
                self.remember(hash);
                Ok(true)
            }
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Those of `hashes` the store lacks, in their order, checked several at a time.
    pub async fn missing(&self, hashes: &[Blake3Hash]) -> Result<Vec<Blake3Hash>, BlobError> {
        let held: Vec<bool> = futures::stream::iter(hashes.iter().copied())
            .map(|h| {
                let blobs = self.clone();
                async move { blobs.has(&h).await }
            })
            .buffered(CHECKS_IN_FLIGHT)
            .try_collect()
            .await?;
        Ok(hashes
            .iter()
            .zip(held)
            .filter(|(_, held)| !held)
            .map(|(h, _)| *h)
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunks(bytes: &[u8], size: usize) -> Vec<Result<Bytes, String>> {
        bytes
            .chunks(size)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect()
    }

    #[tokio::test]
    async fn streamed_uploads_are_stored_only_when_they_hash_to_their_name() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = Blobs::local(dir.path()).unwrap();
        for size in [
            0,
            1000,
            storage::PART_BYTES + 1,
            2 * storage::PART_BYTES + 12345,
        ] {
            let bytes: Vec<u8> = (0..size).map(|i| (i * 7 % 251) as u8).collect();
            let hash = Blake3Hash::of(&bytes);
            // Wrong bytes under this name are refused and leave nothing behind.
            let mut wrong = bytes.clone();
            wrong.push(1);
            let err = blobs
                .put_stream(&hash, futures::stream::iter(chunks(&wrong, 64 << 10)))
                .await
                .unwrap_err();
            assert!(matches!(err, BlobError::Mismatch { .. }), "{err}");
            assert!(!blobs.has(&hash).await.unwrap());
            // So is an upload that breaks off.
            let mut broken = chunks(&bytes, 1 << 20);
            broken.push(Err("connection reset".into()));
            let err = blobs
                .put_stream(&hash, futures::stream::iter(broken))
                .await
                .unwrap_err();
            assert!(err.to_string().contains("connection reset"), "{err}");
            assert!(!blobs.has(&hash).await.unwrap());
            // The right bytes are stored, and read back whole and as a stream.
            let stored = blobs
                .put_stream(&hash, futures::stream::iter(chunks(&bytes, 1 << 20)))
                .await
                .unwrap();
            assert_eq!(stored, size as u64);
            assert_eq!(blobs.get(&hash).await.unwrap().unwrap(), bytes);
            let (len, stream) = blobs.get_stream(&hash).await.unwrap().unwrap();
            assert_eq!(len, size as u64);
            let back: Vec<Bytes> = stream.try_collect().await.unwrap();
            assert_eq!(back.concat(), bytes);
        }
        // No temporary part is left over.
        let leftovers: Vec<_> = walk(dir.path())
            .into_iter()
            .map(|p| {
                p.strip_prefix(dir.path())
                    .unwrap()
                    .to_string_lossy()
                    .into_owned()
            })
            .filter(|p| p.starts_with("tmp") || p.contains('#'))
            .collect();
        assert_eq!(walk(dir.path()).len(), 4);
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }

    fn walk(dir: &FsPath) -> Vec<std::path::PathBuf> {
        let mut files = Vec::new();
        for entry in std::fs::read_dir(dir).unwrap() {
            let p = entry.unwrap().path();
            if p.is_dir() {
                files.extend(walk(&p));
            } else {
                files.push(p);
            }
        }
        files
    }

    #[tokio::test]
    async fn missing_lists_what_the_store_lacks_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = Blobs::local(dir.path()).unwrap();
        let a = Blake3Hash::of(b"a");
        let b = Blake3Hash::of(b"b");
        let c = Blake3Hash::of(b"c");
        blobs.put(&b, Bytes::from_static(b"b")).await.unwrap();
        assert_eq!(blobs.missing(&[a, b, c]).await.unwrap(), vec![a, c]);
        // A second handle on the same directory sees it too (nothing only in memory).
        let other = Blobs::local(dir.path()).unwrap();
        assert!(other.has(&b).await.unwrap());
        assert!(Blobs::open("gs://bucket/x").unwrap_err().contains("s3://"));
        assert!(Blobs::open("s3:///x").unwrap_err().contains("bucket"));
    }
}
