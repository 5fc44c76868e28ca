//! Object storage settings shared by the `helio` command and the scheduler: S3 clients
//! configured from the standard AWS environment and files, and how long transient errors
//! are retried.

use std::path::{Path, PathBuf};

use object_store::aws::AmazonS3Builder;
use object_store::{BackoffConfig, RetryConfig};

/// Transient errors (a dropped connection, a 5xx, throttling) are retried five times over
/// about three seconds, then reported: a pipeline learns of an outage in seconds, not
/// minutes.
pub fn retries() -> RetryConfig {
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

/// An S3 client for `bucket` from the standard AWS settings: the environment first, then
/// the shared credentials and config files (`AWS_SHARED_CREDENTIALS_FILE`,
/// `AWS_CONFIG_FILE`, profile `AWS_PROFILE` or `default`). An `http://` endpoint (a store on
/// loopback) is allowed without TLS; requests are path-style unless
/// `AWS_VIRTUAL_HOSTED_STYLE_REQUEST=true`.
pub fn s3_builder(bucket: &str) -> AmazonS3Builder {
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

#[cfg(test)]
mod tests {
    use super::*;

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
