//! The runner's cache of downloaded blobs (modules and inputs), by hash, within the disk
//! limit it shares with the compiled-module cache.

use std::path::PathBuf;
use std::sync::Arc;

use helio_sandbox::disk_limit::DiskLimit;
use helio_sdk::Blake3Hash;

use super::Client;

/// Blobs kept in `dir`, each in a file named by its hash.
#[derive(Debug, Clone)]
pub struct BlobCache {
    dir: PathBuf,
    limit: Option<DiskLimit>,
}

impl BlobCache {
    /// The cache in `dir`, within `limit` (with the caches it shares it with), if any.
    pub fn new(dir: PathBuf, limit: Option<DiskLimit>) -> BlobCache {
        BlobCache { dir, limit }
    }

    /// Blob `hash`: from the cache when held there and intact, else from the scheduler
    /// (then kept, and the oldest blobs and modules evicted past the limit).
    pub async fn get(&self, client: &Client, hash: &Blake3Hash) -> Result<Arc<[u8]>, String> {
        let path = self.dir.join(hash.to_string());
        if let Ok(bytes) = tokio::fs::read(&path).await
            && Blake3Hash::of(&bytes) == *hash
        {
            DiskLimit::touch(&path);
            return Ok(bytes.into());
        }
        let bytes = client
            .blob(hash)
            .await
            .map_err(|e| format!("blob {hash}: {e}"))?;
        tokio::fs::create_dir_all(&self.dir)
            .await
            .map_err(|e| format!("{}: {e}", self.dir.display()))?;
        let tmp = self.dir.join(format!("{hash}.{}.tmp", std::process::id()));
        if tokio::fs::write(&tmp, &bytes).await.is_ok() {
            let _ = tokio::fs::rename(&tmp, &path).await;
        }
        if let Some(limit) = self.limit.clone() {
            let enforced = tokio::task::spawn_blocking(move || limit.enforce()).await;
            if let Ok(Err(e)) = enforced {
                tracing::warn!(error = %e, "cannot keep the caches within their disk limit");
            }
        }
        Ok(bytes.into())
    }
}
