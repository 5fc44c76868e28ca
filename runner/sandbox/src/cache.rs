//! The on-disk cache of compiled modules.
//!
//! An entry is keyed by the module's BLAKE3, the engine's compatibility hash and the
//! determinism profile. Loading a compiled artifact runs native code, so an entry is only
//! ever one this runner compiled itself: each file carries a keyed BLAKE3 MAC under a secret
//! made on first use and kept beside the cache (mode 0600). A file that fails the check —
//! copied from elsewhere, truncated, tampered with — is ignored and recompiled.

use std::fs;
use std::io::Write;
use std::path::PathBuf;

use helio_sdk::Blake3Hash;
use wasmtime::{Engine, Module};

use crate::Rejection;
use crate::disk_limit::DiskLimit;

const MAC_LEN: usize = 32;

/// Compiled modules on disk.
pub struct DiskCache {
    dir: PathBuf,
    secret: [u8; 32],
    compat: String,
    /// The limit its files are kept within (with other caches'), if any.
    limit: Option<DiskLimit>,
}

impl DiskCache {
    /// Opens (creating if needed) the cache in `dir` for engines with compatibility key
    /// `compat`.
    pub fn open(dir: PathBuf, compat: &str, limit: Option<DiskLimit>) -> Result<Self, Rejection> {
        let fail = |what: &str, e: std::io::Error| {
            Rejection::Sandbox(format!("module cache {}: {what}: {e}", dir.display()))
        };
        fs::create_dir_all(&dir).map_err(|e| fail("cannot create it", e))?;
        let key_path = dir.join("runner.key");
        let secret = match fs::read(&key_path) {
            Ok(bytes) if bytes.len() == 32 => bytes.try_into().unwrap(),
            _ => {
                let mut secret = [0u8; 32];
                getrandom::fill(&mut secret).map_err(|e| {
                    Rejection::Sandbox(format!("no randomness for the cache key: {e}"))
                })?;
                write_atomically(&key_path, &[&secret])
                    .map_err(|e| fail("cannot write runner.key", e))?;
                secret
            }
        };
        Ok(DiskCache {
            dir,
            secret,
            compat: compat.to_string(),
            limit,
        })
    }

    fn path(&self, hash: &Blake3Hash) -> PathBuf {
        self.dir.join(format!("{hash}-{}.cwasm", self.compat))
    }

    fn mac(&self, hash: &Blake3Hash, artifact: &[u8]) -> [u8; 32] {
        let mut h = blake3::Hasher::new_keyed(&self.secret);
        h.update(self.compat.as_bytes());
        h.update(hash.as_bytes());
        h.update(artifact);
        *h.finalize().as_bytes()
    }

    /// The compiled module for `hash`, if this runner cached one for this engine.
    pub fn load(&self, engine: &Engine, hash: &Blake3Hash) -> Option<Module> {
        let path = self.path(hash);
        let bytes = fs::read(&path).ok()?;
        DiskLimit::touch(&path);
        if bytes.len() <= MAC_LEN {
            return None;
        }
        let (mac, artifact) = bytes.split_at(MAC_LEN);
        let expected = self.mac(hash, artifact);
        // blake3::Hash compares in constant time.
        if blake3::Hash::from(expected) != blake3::Hash::from_bytes(mac.try_into().ok()?) {
            tracing::warn!(module = %hash, "ignoring a cached artifact this runner did not write");
            return None;
        }
        // SAFETY: the MAC proves this runner serialized these bytes with an engine of the same
        // compatibility key, which is what `Module::deserialize` requires.
        unsafe { Module::deserialize(engine, artifact) }.ok()
    }

    /// Caches `module`, compiled from the module with hash `hash`.
    pub fn store(&self, hash: &Blake3Hash, module: &Module) -> std::io::Result<()> {
        let artifact = module.serialize().map_err(std::io::Error::other)?;
        let mac = self.mac(hash, &artifact);
        write_atomically(&self.path(hash), &[&mac, &artifact])?;
        if let Some(limit) = &self.limit {
            limit.enforce()?;
        }
        Ok(())
    }
}

/// Writes `parts` to a temporary file beside `path`, flushes it to disk and renames it into
/// place, so a reader never sees half a file, even after a crash. The file is readable by its
/// owner only.
pub fn write_atomically(path: &std::path::Path, parts: &[&[u8]]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => std::path::Path::new("."),
    };
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    for part in parts {
        tmp.write_all(part)?;
    }
    tmp.as_file().sync_all()?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o600))?;
    }
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}
