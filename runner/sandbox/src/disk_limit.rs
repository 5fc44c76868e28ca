//! Cache directories kept within one size: when a write takes them past their limit, the
//! files used least recently go first. A file's last use is its modification time, set at
//! every use ([`DiskLimit::touch`]): access times are often not kept (`noatime`,
//! `relatime`). A cached file is one whose name starts with no dot and ends in neither
//! `.key` nor `.tmp` (keys and files being written are never evicted).

use std::fs;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// One cached file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Its path.
    pub path: PathBuf,
    /// Its size.
    pub bytes: u64,
    /// When it was last used.
    pub used: SystemTime,
}

/// Which of `entries` to remove so that the rest hold at most `limit` bytes: the least
/// recently used first (ties: by path), and no more than that.
pub fn evictions(mut entries: Vec<Entry>, limit: u64) -> Vec<Entry> {
    let mut total: u64 = entries.iter().map(|e| e.bytes).sum();
    entries.sort_by(|a, b| (a.used, &a.path).cmp(&(b.used, &b.path)));
    let mut out = Vec::new();
    for e in entries {
        if total <= limit {
            break;
        }
        total -= e.bytes;
        out.push(e);
    }
    out
}

/// Directories of cached files and their limit in bytes, together.
#[derive(Debug, Clone)]
pub struct DiskLimit {
    dirs: Vec<PathBuf>,
    limit: u64,
}

/// Whether `path` names a cached file (not a key, nor a file being written).
fn cached(path: &Path) -> bool {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or(".");
    !name.starts_with('.') && !name.ends_with(".key") && !name.ends_with(".tmp")
}

impl DiskLimit {
    /// `dirs`, kept within `limit` bytes in all.
    pub fn new(dirs: Vec<PathBuf>, limit: u64) -> DiskLimit {
        DiskLimit { dirs, limit }
    }

    /// The limit, in bytes.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// Marks `path` as used now.
    pub fn touch(path: &Path) {
        if let Ok(file) = fs::File::options().append(true).open(path) {
            let _ = file.set_modified(SystemTime::now());
        }
    }

    /// The cached files, their sizes and last uses (a directory not made yet holds none).
    pub fn entries(&self) -> std::io::Result<Vec<Entry>> {
        let mut entries = Vec::new();
        for dir in &self.dirs {
            let items = match fs::read_dir(dir) {
                Ok(items) => items,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            for item in items {
                let item = item?;
                let path = item.path();
                let Ok(meta) = item.metadata() else { continue };
                if !meta.is_file() || !cached(&path) {
                    continue;
                }
                entries.push(Entry {
                    path,
                    bytes: meta.len(),
                    used: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                });
            }
        }
        Ok(entries)
    }

    /// Removes the least recently used cached files until they fit the limit; returns the
    /// bytes freed. A file another process removed first is passed over.
    pub fn enforce(&self) -> std::io::Result<u64> {
        let mut freed = 0;
        for e in evictions(self.entries()?, self.limit) {
            match fs::remove_file(&e.path) {
                Ok(()) => freed += e.bytes,
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
                Err(err) => return Err(err),
            }
        }
        Ok(freed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::time::Duration;

    proptest! {
        /// What is evicted leaves the rest within the limit, is never more recently used than
        /// what is kept, and is no more than needed: keeping the last one evicted would pass
        /// the limit.
        #[test]
        fn evictions_are_the_oldest_and_no_more_than_needed(
            files in prop::collection::vec((0..5_000u64, 0..50u64), 0..40),
            limit in 0..60_000u64,
        ) {
            let entries: Vec<Entry> = files
                .iter()
                .enumerate()
                .map(|(i, (bytes, age))| Entry {
                    path: PathBuf::from(format!("f{i}")),
                    bytes: *bytes,
                    used: SystemTime::UNIX_EPOCH + Duration::from_secs(*age),
                })
                .collect();
            let total: u64 = entries.iter().map(|e| e.bytes).sum();
            let out = evictions(entries.clone(), limit);
            let freed: u64 = out.iter().map(|e| e.bytes).sum();
            prop_assert!(total - freed <= limit);
            let kept: Vec<&Entry> = entries.iter().filter(|e| !out.contains(e)).collect();
            for gone in &out {
                for k in &kept {
                    prop_assert!((gone.used, &gone.path) <= (k.used, &k.path));
                }
            }
            if let Some(last) = out.last() {
                prop_assert!(total - freed + last.bytes > limit);
            }
        }
    }

    #[test]
    fn keys_and_files_being_written_are_never_evicted() {
        let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
        for (i, name) in ["a.cwasm", "runner.key", ".tmpXYZ", "b.1.tmp"]
            .iter()
            .enumerate()
        {
            std::fs::write(dirs[i % 2].path().join(name), vec![0u8; 1000]).unwrap();
        }
        std::fs::write(dirs[1].path().join("0123"), vec![0u8; 1000]).unwrap();
        let limit = DiskLimit::new(dirs.iter().map(|d| d.path().to_path_buf()).collect(), 0);
        assert_eq!(limit.entries().unwrap().len(), 2);
        assert_eq!(limit.enforce().unwrap(), 2000);
        assert!(limit.entries().unwrap().is_empty());
        assert!(dirs[1].path().join("runner.key").exists());
        assert!(dirs[0].path().join(".tmpXYZ").exists());
        assert!(dirs[1].path().join("b.1.tmp").exists());
    }
}
