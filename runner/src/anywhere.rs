//! What `runner exec` reads: a manifest, and the module and inputs it names, wherever the
//! job contract allows them to be (a local path, `file://`, `http(s)://`, `s3://`), through
//! the same reader as `helio` (`helio_sdk::fetch`). Local files are read as regular files
//! only, so that a manifest cannot point the runner at a device or a FIFO.

use helio_sdk::Uri;
use helio_sdk::fetch::{self, Source};

use crate::{Fetch, LoadedTask, MAX_MANIFEST_BYTES, Rejection, load_text, read_regular};

/// Reads URIs relative to a manifest at `base`.
#[derive(Debug, Clone)]
pub struct Anywhere {
    /// Where the manifest is.
    pub base: Source,
}

/// The bytes at `source`, at most `max` of them.
fn read(source: &Source, max: u64) -> Result<Vec<u8>, String> {
    let bytes = match source {
        Source::Local(path) => return read_regular(path, max),
        remote => fetch::read(remote)?,
    };
    if bytes.len() as u64 > max {
        return Err(format!(
            "{source} is {} bytes, more than the {max} this runner reads for it",
            bytes.len()
        ));
    }
    Ok(bytes)
}

impl Fetch for Anywhere {
    fn fetch(&self, uri: &Uri, max: u64) -> Result<Vec<u8>, String> {
        read(&fetch::resolve(&self.base, uri)?, max)
    }
}

/// Loads the task manifest at `manifest` (with `task`, that task of the batch manifest
/// there) and everything it names, verifying every hash.
pub fn load(manifest: &str, task: Option<&str>) -> Result<LoadedTask, Rejection> {
    let fail = |reason: String| Rejection::Read {
        what: "manifest".into(),
        uri: manifest.to_string(),
        reason,
    };
    let base = fetch::locate(manifest).map_err(fail)?;
    let bytes = read(&base, MAX_MANIFEST_BYTES).map_err(fail)?;
    let text = String::from_utf8(bytes).map_err(|_| fail("is not UTF-8 text".into()))?;
    load_text(&text, manifest, task, &Anywhere { base })
}
