//! Content-addressed blobs (modules, inputs, outputs, standard output), kept through
//! `object_store`: a directory under the data directory by default. A blob is stored under
//! its BLAKE3 only after its bytes were checked to hash to it, so a blob read back is always
//! what its name says.

use std::path::Path as FsPath;
use std::sync::Arc;

use bytes::Bytes;
use helio_sdk::Blake3Hash;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
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
    /// The store failed.
    #[error("blob store: {0}")]
    Store(#[from] object_store::Error),
}

/// The blob store.
#[derive(Clone)]
pub struct Blobs {
    store: Arc<dyn ObjectStore>,
}

fn path(hash: &Blake3Hash) -> Path {
    let hex = hash.to_string();
    Path::from(format!("{}/{hex}", &hex[..2]))
}

impl Blobs {
    /// Blobs in the local directory `dir`, created if missing.
    pub fn local(dir: &FsPath) -> std::io::Result<Blobs> {
        std::fs::create_dir_all(dir)?;
        let store = LocalFileSystem::new_with_prefix(dir)
            .map_err(std::io::Error::other)?
            .with_automatic_cleanup(true);
        Ok(Blobs {
            store: Arc::new(store),
        })
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
        Ok(())
    }

    /// The blob `hash`, or `None` when the store lacks it.
    pub async fn get(&self, hash: &Blake3Hash) -> Result<Option<Bytes>, BlobError> {
        match self.store.get(&path(hash)).await {
            Ok(got) => Ok(Some(got.bytes().await?)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Whether the store holds `hash`.
    pub async fn has(&self, hash: &Blake3Hash) -> Result<bool, BlobError> {
        match self.store.head(&path(hash)).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }
}
