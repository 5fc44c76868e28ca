use thiserror::Error;

/// Why a manifest was rejected. The message always names the field (as a path such as
/// `inputs[2].blake3`) and the reason.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ManifestError {
    /// The text is not valid JSON, or a field has the wrong JSON type.
    #[error("{path}: {reason}")]
    Json {
        /// Where in the document the problem is (`.` for the whole document).
        path: String,
        /// What serde_json reported.
        reason: String,
    },
    /// A field is present and well-typed but its value breaks the contract.
    #[error("{field}: {reason}")]
    Invalid {
        /// The field, as a path such as `outputs[0].max_bytes`.
        field: String,
        /// Why the value is not allowed.
        reason: String,
    },
}

impl ManifestError {
    pub(crate) fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        ManifestError::Invalid {
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// Prefixes the field path with `prefix` (used when a task is checked inside a batch).
    pub(crate) fn within(self, prefix: &str) -> Self {
        match self {
            ManifestError::Json { path, reason } => ManifestError::Json {
                path: join(prefix, &path),
                reason,
            },
            ManifestError::Invalid { field, reason } => ManifestError::Invalid {
                field: join(prefix, &field),
                reason,
            },
        }
    }
}

fn join(prefix: &str, path: &str) -> String {
    if path == "." || path.is_empty() {
        prefix.to_string()
    } else if path.starts_with('[') {
        format!("{prefix}{path}")
    } else {
        format!("{prefix}.{path}")
    }
}

/// Deserializes `T` from a JSON value, reporting the path of the failing field.
pub(crate) fn from_value<T: serde::de::DeserializeOwned>(
    value: serde_json::Value,
) -> Result<T, ManifestError> {
    serde_path_to_error::deserialize(value).map_err(|e| ManifestError::Json {
        path: e.path().to_string(),
        reason: e.inner().to_string(),
    })
}

/// Parses JSON text into a value, reporting line and column on a syntax error.
pub(crate) fn parse_json(text: &str) -> Result<serde_json::Value, ManifestError> {
    serde_json::from_str(text).map_err(|e| ManifestError::Json {
        path: ".".into(),
        reason: format!("not valid JSON: {e}"),
    })
}
