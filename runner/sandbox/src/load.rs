//! Reading a task manifest and everything it names, and verifying it before the run.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use helio_sdk::{BatchManifest, Blake3Hash, Name, TaskManifest, Uri};

use crate::Rejection;
use crate::sandbox::{Resumable, RunOutput, Sandbox, Segments};
use crate::watchdog::Progress;

/// A task whose manifest, module and inputs have been read and verified.
#[derive(Debug, Clone)]
pub struct LoadedTask {
    /// The validated manifest.
    pub manifest: TaskManifest,
    /// The module's bytes (their hash matches the manifest).
    pub module: Arc<[u8]>,
    /// Every declared input's bytes, in manifest order (each hash matches).
    pub inputs: Vec<(Name, Arc<[u8]>)>,
}

impl LoadedTask {
    /// Prepares the module and runs the task.
    pub fn run(&self, sandbox: &Sandbox) -> Result<RunOutput, Rejection> {
        self.run_watched(sandbox, None)
    }

    /// [`LoadedTask::run`], publishing the fuel used to `progress` while it runs. The
    /// report's `wall_ms` counts from before its module is compiled.
    pub fn run_watched(
        &self,
        sandbox: &Sandbox,
        progress: Option<Arc<Progress>>,
    ) -> Result<RunOutput, Rejection> {
        let started = std::time::Instant::now();
        let prepared = sandbox.prepare(&self.manifest.module.blake3, &self.module)?;
        let inputs = self.inputs.clone();
        sandbox.run_from(&prepared, &self.manifest, inputs, progress, started)
    }

    /// Prepares the module and runs the task segment by segment (see
    /// [`Sandbox::run_resumable`]); the report's `wall_ms` counts from before its module is
    /// compiled.
    pub fn run_resumable(
        &self,
        sandbox: &Sandbox,
        run: Resumable<'_>,
    ) -> Result<Segments, Rejection> {
        let started = std::time::Instant::now();
        let prepared = sandbox.prepare(&self.manifest.module.blake3, &self.module)?;
        let run = Resumable { started, ..run };
        sandbox.run_resumable(&prepared, &self.manifest, self.inputs.clone(), run)
    }
}

/// Reads the task manifest at `path`, then its module and inputs (relative URIs resolve
/// against the manifest's directory), verifying every BLAKE3 hash.
pub fn load_task(path: &Path) -> Result<LoadedTask, Rejection> {
    let text = read_manifest(path)?;
    load_text(
        &text,
        &path.display().to_string(),
        None,
        &LocalFiles::beside(path),
    )
}

/// Reads the batch manifest at `path` and loads its task named `task` as [`load_task`] does.
pub fn load_batch_task(path: &Path, task: &str) -> Result<LoadedTask, Rejection> {
    let text = read_manifest(path)?;
    load_text(
        &text,
        &path.display().to_string(),
        Some(task),
        &LocalFiles::beside(path),
    )
}

/// Where the URIs a manifest names are read from.
pub trait Fetch {
    /// The bytes `uri` names, at most `max` of them (more is an error that says so).
    fn fetch(&self, uri: &Uri, max: u64) -> Result<Vec<u8>, String>;
}

/// Local regular files only: relative URIs beside the manifest, and `file://`.
#[derive(Debug, Clone)]
pub struct LocalFiles {
    /// The manifest's directory.
    pub base: PathBuf,
}

impl LocalFiles {
    /// Files beside the manifest at `path`.
    pub fn beside(path: &Path) -> LocalFiles {
        LocalFiles {
            base: path.parent().unwrap_or(Path::new(".")).to_path_buf(),
        }
    }
}

impl Fetch for LocalFiles {
    fn fetch(&self, uri: &Uri, max: u64) -> Result<Vec<u8>, String> {
        let path: PathBuf = match uri {
            Uri::Path(p) => self.base.join(p),
            Uri::Url { scheme, rest } if scheme == "file" => PathBuf::from(rest),
            Uri::Url { scheme, .. } => {
                return Err(format!(
                    "{scheme}:// is not a local file (`runner exec` reads it when given the manifest's URI or a remote module)"
                ));
            }
        };
        read_regular(&path, max)
    }
}

/// Loads the task manifest `text` (read from `source`; with `task`, the batch manifest
/// holding that task), then its module and inputs through `fetch`, verifying every BLAKE3
/// hash.
pub fn load_text(
    text: &str,
    source: &str,
    task: Option<&str>,
    fetch: &dyn Fetch,
) -> Result<LoadedTask, Rejection> {
    let bad = |error| Rejection::Manifest {
        path: source.to_string(),
        error,
    };
    let Some(task) = task else {
        return load_verified(TaskManifest::from_json(text).map_err(bad)?, fetch);
    };
    let batch = BatchManifest::from_json(text).map_err(bad)?;
    let Some(manifest) = batch.tasks.iter().find(|t| t.name.as_str() == task) else {
        let names: Vec<&str> = batch
            .tasks
            .iter()
            .take(5)
            .map(|t| t.name.as_str())
            .collect();
        return Err(Rejection::Read {
            what: format!("task {task:?}"),
            uri: source.to_string(),
            reason: format!(
                "batch {} has no such task (its {} tasks include {}{})",
                batch.batch,
                batch.tasks.len(),
                names.join(", "),
                if batch.tasks.len() > names.len() {
                    ", ..."
                } else {
                    ""
                }
            ),
        });
    };
    load_verified(manifest.clone(), fetch)
}

/// The largest manifest read: a batch of a million small tasks fits.
pub const MAX_MANIFEST_BYTES: u64 = 1 << 30;

fn read_manifest(path: &Path) -> Result<String, Rejection> {
    let fail = |reason: String| Rejection::Read {
        what: "manifest".into(),
        uri: path.display().to_string(),
        reason,
    };
    let bytes = read_regular(path, MAX_MANIFEST_BYTES).map_err(fail)?;
    String::from_utf8(bytes).map_err(|_| fail("is not UTF-8 text".into()))
}

/// The bytes of the regular file at `path`. It is opened without blocking (a FIFO with no
/// writer would otherwise hang the runner at `open`) and its type checked on the open
/// handle, so that a device, a FIFO or a directory is refused at once, before any byte is
/// read.
pub fn read_regular(path: &Path, max: u64) -> Result<Vec<u8>, String> {
    let mut options = fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::custom_flags(&mut options, libc::O_NONBLOCK);
    let file = options
        .open(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let meta = file.metadata().map_err(|e| e.to_string())?;
    if !meta.is_file() {
        return Err(format!(
            "{} is not a regular file (a FIFO, device or directory is never read)",
            path.display()
        ));
    }
    let too_big = |len: u64| {
        format!(
            "{} is {len} bytes, more than the {max} this runner reads for it",
            path.display()
        )
    };
    if meta.len() > max {
        return Err(too_big(meta.len()));
    }
    // A file that grows while it is read is cut at one byte past the bound, and refused.
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(max.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|e| e.to_string())?;
    if bytes.len() as u64 > max {
        return Err(too_big(bytes.len() as u64));
    }
    Ok(bytes)
}

fn load_verified(manifest: TaskManifest, fetch: &dyn Fetch) -> Result<LoadedTask, Rejection> {
    // A module past the compile bounds' size is refused before it is read.
    let module_max = crate::CompileBounds::MODULE_BYTES as u64;
    let module = fetch_verified(
        "module",
        &manifest.module.uri,
        &manifest.module.blake3,
        fetch,
        module_max,
    )?;
    let mut inputs = Vec::with_capacity(manifest.inputs.len());
    for input in &manifest.inputs {
        let what = format!("input {:?}", input.name.as_str());
        inputs.push((
            input.name.clone(),
            fetch_verified(&what, &input.uri, &input.blake3, fetch, u64::MAX)?,
        ));
    }
    Ok(LoadedTask {
        manifest,
        module,
        inputs,
    })
}

fn fetch_verified(
    what: &str,
    uri: &Uri,
    expected: &Blake3Hash,
    fetch: &dyn Fetch,
    max: u64,
) -> Result<Arc<[u8]>, Rejection> {
    let bytes = fetch.fetch(uri, max).map_err(|reason| Rejection::Read {
        what: what.into(),
        uri: uri.to_string(),
        reason,
    })?;
    let actual = Blake3Hash::of(&bytes);
    if actual != *expected {
        return Err(Rejection::HashMismatch {
            what: what.into(),
            expected: *expected,
            actual,
        });
    }
    Ok(bytes.into())
}
