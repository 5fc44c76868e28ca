//! `helio validate`: checks a task or batch manifest and everything it names that can be
//! reached, and explains every problem found.

use std::collections::BTreeSet;
use std::path::Path;

use helio_sdk::{BatchManifest, Blake3Hash, TaskManifest, Uri};

use crate::fetch::{Source, read, resolve};
use serde_json::Value;

/// What `validate` found.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// `task` or `batch` (or `unknown` when the text is not JSON).
    pub kind: &'static str,
    /// Tasks in the manifest (when it is valid).
    pub tasks: usize,
    /// Every problem, each naming the field, file or import.
    pub problems: Vec<String>,
    /// What was not checked, and why (remote objects).
    pub notes: Vec<String>,
}

/// Validates the manifest at `path`. `Err` only when the file cannot be read at all.
pub fn validate(path: &Path) -> Result<Report, String> {
    validate_source(&Source::Local(path.to_path_buf()))
}

/// Validates the manifest at `source`, a file or a URL; relative URIs in it resolve against
/// its location. `Err` only when the manifest cannot be read at all.
pub fn validate_source(source: &Source) -> Result<Report, String> {
    let bytes = read(source)?;
    let text = String::from_utf8(bytes).map_err(|_| format!("{source} is not UTF-8 text"))?;
    let mut report = Report {
        kind: "unknown",
        tasks: 0,
        problems: Vec::new(),
        notes: Vec::new(),
    };
    let value: Value = match serde_json::from_str(&text) {
        Ok(v) => v,
        Err(e) => {
            report.problems.push(format!("not JSON: {e}"));
            return Ok(report);
        }
    };
    let is_batch = value.get("tasks").is_some() || value.get("batch").is_some();
    let tasks = if is_batch {
        report.kind = "batch";
        match BatchManifest::from_value_all(value) {
            Ok(b) => b.tasks,
            Err(problems) => {
                report
                    .problems
                    .extend(problems.iter().map(|p| p.to_string()));
                return Ok(report);
            }
        }
    } else {
        report.kind = "task";
        match TaskManifest::from_value(value) {
            Ok(t) => vec![t],
            Err(e) => {
                report.problems.push(e.to_string());
                return Ok(report);
            }
        }
    };
    report.tasks = tasks.len();
    // Each object once, however many tasks name it.
    let mut seen = BTreeSet::new();
    for task in &tasks {
        let objects =
            std::iter::once(("module".to_string(), &task.module.uri, &task.module.blake3)).chain(
                task.inputs
                    .iter()
                    .map(|i| (format!("input {:?}", i.name.as_str()), &i.uri, &i.blake3)),
            );
        for (what, uri, hash) in objects {
            if !seen.insert((uri.to_string(), *hash)) {
                continue;
            }
            check_object(
                &mut report,
                source,
                &task.name.to_string(),
                &what,
                uri,
                hash,
            );
        }
    }
    Ok(report)
}

fn check_object(
    report: &mut Report,
    base: &Source,
    task: &str,
    what: &str,
    uri: &Uri,
    expected: &Blake3Hash,
) {
    let source = match resolve(base, uri) {
        Ok(s) => s,
        Err(e) => {
            report.problems.push(format!("task {task}: {what}: {e}"));
            return;
        }
    };
    let bytes = match read(&source) {
        Ok(b) => b,
        Err(e) => {
            report
                .problems
                .push(format!("task {task}: {what} ({uri}): {e}"));
            return;
        }
    };
    let actual = Blake3Hash::of(&bytes);
    if actual != *expected {
        report.problems.push(format!(
            "task {task}: {what} ({uri}): BLAKE3 mismatch: the manifest says {expected}, the file hashes to {actual}"
        ));
        return;
    }
    if what == "module" {
        for p in crate::module::problems(&bytes) {
            report
                .problems
                .push(format!("task {task}: module ({uri}) {p}"));
        }
    }
}
