use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::SCHEMA_VERSION;
use crate::error::{ManifestError, from_value, parse_json};
use crate::manifest::{TaskManifest, check_schema_version, check_unique};
use crate::types::Name;

/// A batch: many tasks that share defaults, how many runners must agree on each, and what a
/// validated task earns.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchManifest {
    /// The batch's name.
    pub batch: Name,
    /// How many runners run each task and how many must agree.
    pub redundancy: Redundancy,
    /// Credit per unit of fuel for a validated task.
    pub credit_rate: f64,
    /// Optional (a Helio addition to version 1): the most error a task's accepted result
    /// may have, judged by its agreeing runners' credibility (e.g. `1e-4`). Then
    /// `redundancy` is a floor, and a task goes to more runners, or to the scheduler's own
    /// run, until its result is that credible. Absent: the quorum alone decides, unless the
    /// scheduler's operator sets a target for every batch.
    pub target_error: Option<f64>,
    /// Every task, with the batch's `defaults` laid under it, in manifest order.
    pub tasks: Vec<TaskManifest>,
}

/// Replication and quorum for each task of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Redundancy {
    /// How many distinct runners get the task at first.
    pub replicas: u32,
    /// How many equal digests accept the task.
    pub quorum: u32,
    /// The most runners tried before the scheduler decides by its own run.
    pub max_replicas: u32,
}

impl Redundancy {
    /// The most replicas a task may ask for.
    pub const MAX_REPLICAS: u32 = 100;
}

impl Default for Redundancy {
    /// Two runners, both must agree, up to five tried: BOINC's usual quorum of two with room
    /// for three tie-breakers.
    fn default() -> Self {
        Redundancy {
            replicas: 2,
            quorum: 2,
            max_replicas: 5,
        }
    }
}

/// The most tasks one batch may hold.
const MAX_TASKS: usize = 1_000_000;

/// A batch manifest as written: its tasks are laid over its `defaults`.
#[derive(Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub(crate) struct RawBatch {
    /// Always 1.
    // Checked by `check_schema_version` before deserializing; kept so serde accepts it.
    #[allow(dead_code)]
    schema_version: u64,
    /// The batch's name.
    batch: Name,
    /// Task manifest fields every task starts from.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    defaults: Map<String, Value>,
    /// How many runners run each task and how many must agree (default: 2 of 2, up to 5).
    #[serde(default)]
    redundancy: Redundancy,
    /// Credit per unit of fuel for a validated task.
    credit_rate: Option<f64>,
    /// The most error a task's accepted result may have, judged by its agreeing runners'
    /// credibility (a Helio addition to version 1).
    target_error: Option<f64>,
    /// The tasks: each a task manifest's fields, laid over `defaults`.
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<Object>))]
    tasks: Vec<Map<String, Value>>,
}

impl BatchManifest {
    /// Parses and validates a batch manifest from JSON text, expanding every task.
    pub fn from_json(text: &str) -> Result<Self, ManifestError> {
        Self::from_value(parse_json(text)?)
    }

    /// Validates a batch manifest held as a JSON value.
    pub fn from_value(value: Value) -> Result<Self, ManifestError> {
        Self::from_value_all(value).map_err(|mut problems| problems.swap_remove(0))
    }

    /// Validates a batch manifest held as a JSON value and, when it is invalid, returns every
    /// problem found (at least one): the batch's own fields, each task that is invalid, and
    /// duplicate task names. A manifest whose JSON does not have the batch's shape gives that
    /// one problem.
    pub fn from_value_all(value: Value) -> Result<Self, Vec<ManifestError>> {
        check_schema_version(&value).map_err(|e| vec![e])?;
        let raw: RawBatch = from_value(value).map_err(|e| vec![e])?;
        let mut problems = Vec::new();
        let r = raw.redundancy;
        if r.replicas == 0 || r.replicas > Redundancy::MAX_REPLICAS {
            problems.push(ManifestError::invalid(
                "redundancy.replicas",
                format!(
                    "must be between 1 and {}, got {}",
                    Redundancy::MAX_REPLICAS,
                    r.replicas
                ),
            ));
        }
        if r.quorum == 0 || r.quorum > r.replicas {
            problems.push(ManifestError::invalid(
                "redundancy.quorum",
                format!(
                    "must be between 1 and replicas ({}), got {}",
                    r.replicas, r.quorum
                ),
            ));
        }
        if r.max_replicas < r.replicas || r.max_replicas > Redundancy::MAX_REPLICAS {
            problems.push(ManifestError::invalid(
                "redundancy.max_replicas",
                format!(
                    "must be between replicas ({}) and {}, got {}",
                    r.replicas,
                    Redundancy::MAX_REPLICAS,
                    r.max_replicas
                ),
            ));
        }
        let credit_rate = raw.credit_rate.unwrap_or(1.0);
        if !credit_rate.is_finite() || credit_rate < 0.0 {
            problems.push(ManifestError::invalid(
                "credit_rate",
                format!("must be a finite number of at least 0, got {credit_rate}"),
            ));
        }
        if let Some(t) = raw.target_error
            && !(t.is_finite() && t > 0.0 && t < 0.5)
        {
            problems.push(ManifestError::invalid(
                "target_error",
                format!("must be a probability above 0 and below 0.5, got {t}"),
            ));
        }
        if raw.tasks.is_empty() {
            problems.push(ManifestError::invalid(
                "tasks",
                "a batch needs at least one task",
            ));
        }
        if raw.tasks.len() > MAX_TASKS {
            problems.push(ManifestError::invalid(
                "tasks",
                format!(
                    "{} tasks; a batch may hold at most {MAX_TASKS}",
                    raw.tasks.len()
                ),
            ));
            return Err(problems);
        }
        let mut tasks = Vec::with_capacity(raw.tasks.len());
        for (i, overlay) in raw.tasks.into_iter().enumerate() {
            let mut merged = raw.defaults.clone();
            lay_over(&mut merged, overlay);
            merged.insert("schema_version".into(), Value::from(SCHEMA_VERSION));
            match TaskManifest::from_value(Value::Object(merged)) {
                Ok(task) => tasks.push(task),
                Err(e) => problems.push(e.within(&format!("tasks[{i}]"))),
            }
        }
        if let Err(e) = check_unique("tasks", tasks.iter().map(|t| &t.name)) {
            problems.push(e);
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(BatchManifest {
            batch: raw.batch,
            redundancy: r,
            credit_rate,
            target_error: raw.target_error,
            tasks,
        })
    }
}

/// Lays `top` over `base`: objects merge key by key (so a task can change `limits.fuel` and
/// keep the default `limits.memory_bytes`); any other value, arrays included, replaces.
fn lay_over(base: &mut Map<String, Value>, top: Map<String, Value>) {
    for (key, value) in top {
        match (base.get_mut(&key), value) {
            (Some(Value::Object(below)), Value::Object(above)) => lay_over(below, above),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}
