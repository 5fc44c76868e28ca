//! Where a manifest and the objects it names are, and reading them: local paths and
//! `file://` from the file system, `http(s)://` through `object_store`. `s3://` arrives with
//! issue 5's object storage support.

use std::path::PathBuf;

use helio_sdk::Uri;
use object_store::http::HttpBuilder;
use object_store::{ClientOptions, ObjectStoreExt};

/// A place to read bytes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A file.
    Local(PathBuf),
    /// An `http://` or `https://` URL.
    Http(url::Url),
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Local(p) => write!(f, "{}", p.display()),
            Source::Http(u) => write!(f, "{u}"),
        }
    }
}

/// Where the manifest given on the command line is.
pub fn locate(text: &str) -> Result<Source, String> {
    match Uri::parse(text)? {
        Uri::Path(p) => Ok(Source::Local(PathBuf::from(p))),
        Uri::Url { scheme, rest } if scheme == "file" => Ok(Source::Local(PathBuf::from(rest))),
        Uri::Url { scheme, .. } if scheme == "http" || scheme == "https" => url::Url::parse(text)
            .map(Source::Http)
            .map_err(|e| format!("{text}: not a URL: {e}")),
        Uri::Url { scheme, .. } => Err(format!(
            "{text}: reading {scheme}:// arrives with object storage support (issue 5); \
             download it and validate the local copy"
        )),
    }
}

/// Where `uri`, written in a manifest at `base`, points: relative URIs resolve against the
/// manifest's own location. `None` for what cannot be read yet (`s3://`).
pub fn resolve(base: &Source, uri: &Uri) -> Option<Source> {
    match (uri, base) {
        (Uri::Path(p), Source::Local(manifest)) => Some(Source::Local(
            manifest
                .parent()
                .unwrap_or(std::path::Path::new("."))
                .join(p),
        )),
        (Uri::Path(p), Source::Http(manifest)) => manifest.join(p).ok().map(Source::Http),
        (Uri::Url { scheme, rest }, _) if scheme == "file" => {
            Some(Source::Local(PathBuf::from(rest)))
        }
        (Uri::Url { scheme, .. }, _) if scheme == "http" || scheme == "https" => {
            url::Url::parse(&uri.to_string()).ok().map(Source::Http)
        }
        _ => None,
    }
}

/// Reads all of `source`.
pub fn read(source: &Source) -> Result<Vec<u8>, String> {
    match source {
        Source::Local(path) => {
            std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
        }
        Source::Http(url) => {
            let origin = url.origin().ascii_serialization();
            let store = HttpBuilder::new()
                .with_url(origin)
                .with_client_options(ClientOptions::new().with_allow_http(url.scheme() == "http"))
                .build()
                .map_err(|e| format!("{url}: {e}"))?;
            let path = object_store::path::Path::from_url_path(url.path())
                .map_err(|e| format!("{url}: {e}"))?;
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| format!("cannot start the I/O runtime: {e}"))?;
            runtime
                .block_on(async {
                    let got = store.get(&path).await?;
                    got.bytes().await
                })
                .map(|b| b.to_vec())
                .map_err(|e| format!("cannot read {url}: {e}"))
        }
    }
}
