use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::SCHEMA_VERSION;
use crate::error::{ManifestError, from_value, parse_json};
use crate::types::{Blake3Hash, Name, Tier, Uri};

/// One unit of execution: a module, its arguments and environment, its declared inputs and
/// outputs, and the limits it runs under. Only [`TaskManifest::from_json`] and
/// [`TaskManifest::from_value`] make one, so every value has passed the contract's checks.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TaskManifest {
    /// Always [`SCHEMA_VERSION`].
    pub schema_version: u64,
    /// The task's name; the guest sees it as `argv[0]`.
    pub name: Name,
    /// The WebAssembly module to run.
    pub module: ContentRef,
    /// The guest's `argv[1..]`.
    pub args: Vec<String>,
    /// The guest's whole environment.
    pub env: BTreeMap<String, String>,
    /// Files the guest reads at `/in/<name>`, unique by name.
    pub inputs: Vec<InputSpec>,
    /// Files the guest writes at `/out/<name>`, unique by name.
    pub outputs: Vec<OutputSpec>,
    /// Fuel, memory and wall-clock limits.
    pub limits: Limits,
    /// The least runner tier that may run the task.
    pub tier: Tier,
    /// Seeds the guest's `random_get` stream.
    pub seed: u64,
    /// Whether the guest may checkpoint, and how large its state may be (an optional field
    /// the contract allows; absent, the guest sees no `/ckpt`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<CheckpointSpec>,
}

/// A task that may checkpoint: the guest sees a writable `/ckpt`, where it saves its state by
/// writing `/ckpt/next` and renaming it to `/ckpt/state`. The run goes on by starting the
/// module afresh with that state in `/ckpt/state`, its `/out` and standard output as they were
/// and the fuel it had left, whether on the same runner or, after an interruption, another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CheckpointSpec {
    /// The most bytes the saved state may hold.
    pub max_bytes: u64,
}

impl CheckpointSpec {
    /// The largest state a task may declare (256 MiB): a checkpoint travels between runners.
    pub const MAX_BYTES: u64 = 256 << 20;
}

/// Bytes named by a URI and pinned by their BLAKE3 hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ContentRef {
    /// Where the bytes are.
    pub uri: Uri,
    /// What they must hash to.
    pub blake3: Blake3Hash,
}

/// A declared input file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct InputSpec {
    /// The file name under `/in`.
    pub name: Name,
    /// Where the bytes are.
    pub uri: Uri,
    /// What they must hash to.
    pub blake3: Blake3Hash,
}

/// A declared output file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct OutputSpec {
    /// The file name under `/out`.
    pub name: Name,
    /// The most bytes the file may hold.
    pub max_bytes: u64,
    /// Whether the guest may leave the file unwritten.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub optional: bool,
}

/// The limits one run is held to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Limits {
    /// The wasmtime fuel the task may burn.
    pub fuel: u64,
    /// The most linear memory the guest may grow to, in bytes.
    pub memory_bytes: u64,
    /// The wall-clock safety net, in seconds.
    pub wall_seconds: u64,
}

impl Limits {
    /// `limits.memory_bytes` when the manifest does not say: 256 MiB.
    pub const DEFAULT_MEMORY_BYTES: u64 = 256 * 1024 * 1024;
    /// `limits.wall_seconds` when the manifest does not say.
    pub const DEFAULT_WALL_SECONDS: u64 = 600;
    /// The most fuel a task may ask for (wasmtime keeps fuel in an `i64`).
    pub const MAX_FUEL: u64 = 1 << 62;
    /// A wasm32 memory cannot be larger than 4 GiB.
    pub const MAX_MEMORY_BYTES: u64 = 1 << 32;
    /// One WebAssembly page: the least memory a limit may name.
    pub const MIN_MEMORY_BYTES: u64 = 65536;
    /// A task may ask for at most 30 days of wall-clock time.
    pub const MAX_WALL_SECONDS: u64 = 30 * 24 * 3600;
}

impl OutputSpec {
    /// The largest `max_bytes` an output may declare (1 TiB).
    pub const MAX_BYTES: u64 = 1 << 40;
}

/// The most bytes `args` and `env` may hold together.
const MAX_ARGS_ENV_BYTES: usize = 1 << 20;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTask {
    // Checked by `check_schema_version` before deserializing; kept so serde accepts it.
    #[allow(dead_code)]
    schema_version: u64,
    name: Option<Name>,
    module: ContentRef,
    #[serde(default)]
    args: Vec<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    #[serde(default)]
    inputs: Vec<InputSpec>,
    #[serde(default)]
    outputs: Vec<OutputSpec>,
    limits: RawLimits,
    #[serde(default)]
    tier: Tier,
    #[serde(default)]
    seed: u64,
    checkpoint: Option<CheckpointSpec>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    fuel: u64,
    memory_bytes: Option<u64>,
    wall_seconds: Option<u64>,
}

impl TaskManifest {
    /// Parses and validates a task manifest from JSON text.
    pub fn from_json(text: &str) -> Result<Self, ManifestError> {
        Self::from_value(parse_json(text)?)
    }

    /// Validates a task manifest held as a JSON value.
    pub fn from_value(value: Value) -> Result<Self, ManifestError> {
        check_schema_version(&value)?;
        let raw: RawTask = from_value(value)?;
        let limits = raw.limits.validate()?;
        check_unique("inputs", raw.inputs.iter().map(|i| &i.name))?;
        check_unique("outputs", raw.outputs.iter().map(|o| &o.name))?;
        for (i, out) in raw.outputs.iter().enumerate() {
            if out.max_bytes > OutputSpec::MAX_BYTES {
                return Err(ManifestError::invalid(
                    format!("outputs[{i}].max_bytes"),
                    format!(
                        "{} is more than the largest output allowed ({})",
                        out.max_bytes,
                        OutputSpec::MAX_BYTES
                    ),
                ));
            }
        }
        let mut total = 0usize;
        for (i, arg) in raw.args.iter().enumerate() {
            if arg.contains('\0') {
                return Err(ManifestError::invalid(
                    format!("args[{i}]"),
                    "contains a NUL character",
                ));
            }
            total += arg.len() + 1;
        }
        for (key, value) in &raw.env {
            if key.is_empty() || key.contains('=') || key.contains('\0') {
                return Err(ManifestError::invalid(
                    format!("env.{key}"),
                    "a variable name must be non-empty and hold neither '=' nor NUL",
                ));
            }
            if value.contains('\0') {
                return Err(ManifestError::invalid(
                    format!("env.{key}"),
                    "the value contains a NUL character",
                ));
            }
            total += key.len() + value.len() + 2;
        }
        if total > MAX_ARGS_ENV_BYTES {
            return Err(ManifestError::invalid(
                "args",
                format!(
                    "args and env hold {total} bytes together; at most {MAX_ARGS_ENV_BYTES} are allowed"
                ),
            ));
        }
        if let Some(c) = raw.checkpoint
            && !(1..=CheckpointSpec::MAX_BYTES).contains(&c.max_bytes)
        {
            return Err(ManifestError::invalid(
                "checkpoint.max_bytes",
                format!(
                    "must be between 1 and {} (256 MiB), got {}",
                    CheckpointSpec::MAX_BYTES,
                    c.max_bytes
                ),
            ));
        }
        let name = match raw.name {
            Some(name) => name,
            None => Name::parse("task").expect("the default name is valid"),
        };
        Ok(TaskManifest {
            schema_version: SCHEMA_VERSION,
            name,
            module: raw.module,
            args: raw.args,
            env: raw.env,
            inputs: raw.inputs,
            outputs: raw.outputs,
            limits,
            tier: raw.tier,
            seed: raw.seed,
            checkpoint: raw.checkpoint,
        })
    }

    /// The manifest as pretty-printed JSON, in the contract's own form.
    pub fn to_json_pretty(&self) -> String {
        serde_json::to_string_pretty(self).expect("a task manifest always serializes")
    }

    /// The declared output called `name`, if there is one.
    pub fn output(&self, name: &str) -> Option<&OutputSpec> {
        self.outputs.iter().find(|o| o.name.as_str() == name)
    }
}

/// Reads a task manifest through [`TaskManifest::from_value`], with all its checks.
impl<'de> Deserialize<'de> for TaskManifest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(d)?;
        TaskManifest::from_value(value).map_err(serde::de::Error::custom)
    }
}

impl RawLimits {
    fn validate(self) -> Result<Limits, ManifestError> {
        if self.fuel == 0 || self.fuel > Limits::MAX_FUEL {
            return Err(ManifestError::invalid(
                "limits.fuel",
                format!(
                    "must be between 1 and {}, got {}",
                    Limits::MAX_FUEL,
                    self.fuel
                ),
            ));
        }
        let memory_bytes = self.memory_bytes.unwrap_or(Limits::DEFAULT_MEMORY_BYTES);
        if !(Limits::MIN_MEMORY_BYTES..=Limits::MAX_MEMORY_BYTES).contains(&memory_bytes) {
            return Err(ManifestError::invalid(
                "limits.memory_bytes",
                format!(
                    "must be between {} (one page) and {} (4 GiB), got {memory_bytes}",
                    Limits::MIN_MEMORY_BYTES,
                    Limits::MAX_MEMORY_BYTES
                ),
            ));
        }
        let wall_seconds = self.wall_seconds.unwrap_or(Limits::DEFAULT_WALL_SECONDS);
        if wall_seconds == 0 || wall_seconds > Limits::MAX_WALL_SECONDS {
            return Err(ManifestError::invalid(
                "limits.wall_seconds",
                format!(
                    "must be between 1 and {}, got {wall_seconds}",
                    Limits::MAX_WALL_SECONDS
                ),
            ));
        }
        Ok(Limits {
            fuel: self.fuel,
            memory_bytes,
            wall_seconds,
        })
    }
}

/// Checks `schema_version` before anything else, so that a manifest of another version is
/// reported as such rather than by the first field it no longer matches.
pub(crate) fn check_schema_version(value: &Value) -> Result<(), ManifestError> {
    let Some(object) = value.as_object() else {
        return Err(ManifestError::invalid(
            ".",
            "a manifest must be a JSON object",
        ));
    };
    match object.get("schema_version") {
        None => Err(ManifestError::invalid(
            "schema_version",
            "is required and must be 1",
        )),
        Some(v) if v.as_u64() == Some(SCHEMA_VERSION) => Ok(()),
        Some(v) => Err(ManifestError::invalid(
            "schema_version",
            format!("this is version {SCHEMA_VERSION} of the contract; {v} is not supported"),
        )),
    }
}

pub(crate) fn check_unique<'a>(
    field: &str,
    names: impl Iterator<Item = &'a Name>,
) -> Result<(), ManifestError> {
    let mut seen = BTreeSet::new();
    for (i, name) in names.enumerate() {
        if !seen.insert(name) {
            return Err(ManifestError::invalid(
                format!("{field}[{i}].name"),
                format!("{name:?} is declared twice"),
            ));
        }
    }
    Ok(())
}
