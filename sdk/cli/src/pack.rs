//! `helio pack`: a job crate or a ready module, its inputs and parameters, into a directory
//! holding the module, the inputs and a task or batch manifest that refers to them by
//! relative URIs, so that the directory can be copied or uploaded as it is.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use helio_sdk::{BatchManifest, Blake3Hash, Name, TaskManifest};
use serde_json::{Map, Value, json};

use crate::sweep::{Axis, combinations, parse_csv};

/// The most tasks one batch may hold (the contract's limit).
pub const MAX_TASKS: usize = 1_000_000;

/// What to pack.
#[derive(Debug, Clone, Default)]
pub struct PackOptions {
    /// A `.wasm` file, or a directory holding a job crate (`Cargo.toml`).
    pub source: PathBuf,
    /// The binary to build, when the crate has several.
    pub bin: Option<String>,
    /// The directory to write.
    pub out: PathBuf,
    /// The task's or batch's name; default the module's.
    pub name: Option<String>,
    /// Arguments every task gets, before its sweep parameters.
    pub args: Vec<String>,
    /// Environment variables.
    pub env: Vec<(String, String)>,
    /// The seed (a single task, or every task of a batch that does not sweep seeds).
    pub seed: Option<u64>,
    /// Inputs every task gets: `(name, file)`.
    pub inputs: Vec<(String, PathBuf)>,
    /// One task per file of a directory, each file as the input of this name.
    pub each_input: Option<(String, PathBuf)>,
    /// Declared outputs: `(name, max_bytes, optional)`.
    pub outputs: Vec<(String, u64, bool)>,
    /// `limits.fuel`.
    pub fuel: u64,
    /// `limits.memory_bytes`.
    pub memory_bytes: Option<u64>,
    /// `limits.wall_seconds`.
    pub wall_seconds: Option<u64>,
    /// The least runner tier.
    pub tier: Option<String>,
    /// Parameters to sweep.
    pub sweeps: Vec<Axis>,
    /// A CSV of parameter rows to sweep.
    pub sweep_csv: Option<PathBuf>,
    /// Sweep the seed over `1..=n`.
    pub seeds: Option<u64>,
    /// `redundancy` as `(replicas, quorum, max_replicas)`.
    pub redundancy: Option<(u32, u32, u32)>,
    /// `credit_rate`.
    pub credit_rate: Option<f64>,
    /// `target_error`: the most error an accepted result may have, judged by its runners'
    /// credibility.
    pub target_error: Option<f64>,
}

/// What was written.
#[derive(Debug, Clone)]
pub struct Packed {
    /// The manifest's path (`task.json` or `batch.json`).
    pub manifest: PathBuf,
    /// How many tasks it holds.
    pub tasks: usize,
    /// The module's BLAKE3.
    pub module: Blake3Hash,
    /// Whether it is a batch.
    pub batch: bool,
}

fn io(what: &str, path: &Path) -> impl FnOnce(std::io::Error) -> String {
    let message = format!("{what} {}", path.display());
    move |e| format!("{message}: {e}")
}

/// The module's bytes and its name: built from a crate directory, or read from a file.
fn module(o: &PackOptions) -> Result<(Vec<u8>, String), String> {
    let wasm = if o.source.is_dir() {
        let manifest = o.source.join("Cargo.toml");
        if !manifest.exists() {
            return Err(format!(
                "{} is a directory without a Cargo.toml; give a job crate or a .wasm file",
                o.source.display()
            ));
        }
        let options = helio_wasm_build::BuildOptions {
            bin: o.bin.clone(),
            ..Default::default()
        };
        let guests = helio_wasm_build::build(&manifest, &options)?;
        let chosen = match (&o.bin, guests.as_slice()) {
            (Some(bin), _) => guests.iter().find(|g| &g.name == bin),
            (None, [one]) => Some(one),
            _ => None,
        };
        match chosen {
            Some(g) => g.wasm.clone(),
            None => {
                let names: Vec<&str> = guests.iter().map(|g| g.name.as_str()).collect();
                return Err(format!(
                    "{} builds {}; say which with --bin",
                    o.source.display(),
                    if names.is_empty() {
                        "no binary".to_string()
                    } else {
                        format!("the binaries {}", names.join(", "))
                    }
                ));
            }
        }
    } else {
        o.source.clone()
    };
    let bytes = std::fs::read(&wasm).map_err(io("cannot read the module", &wasm))?;
    let stem = wasm
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "module".into());
    Ok((bytes, stem))
}

/// Copies `file` into `out/inputs/` under its BLAKE3 (so equal inputs are stored once) and
/// returns the input's manifest entry.
fn stage_input(out: &Path, name: &str, file: &Path) -> Result<Value, String> {
    Name::parse(name).map_err(|e| format!("input name {name:?}: {e}"))?;
    let bytes = std::fs::read(file).map_err(io(&format!("input {name:?}: cannot read"), file))?;
    let hash = Blake3Hash::of(&bytes).to_string();
    let dir = out.join("inputs");
    std::fs::create_dir_all(&dir).map_err(io("cannot create", &dir))?;
    let staged = dir.join(&hash);
    if !staged.exists() {
        std::fs::write(&staged, &bytes).map_err(io("cannot write", &staged))?;
    }
    Ok(json!({ "name": name, "uri": format!("inputs/{hash}"), "blake3": hash }))
}

/// A task name from a file name: what the contract allows, the rest as `_`.
fn name_from(text: &str) -> String {
    let cleaned: String = text
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .take(100)
        .collect();
    if cleaned.is_empty() || cleaned == "." || cleaned == ".." {
        "task".into()
    } else {
        cleaned
    }
}

/// Packs `o`: writes the module, the inputs and the manifest into `o.out`.
pub fn pack(o: &PackOptions) -> Result<Packed, String> {
    let (bytes, stem) = module(o)?;
    let problems = crate::module::problems(&bytes);
    if !problems.is_empty() {
        return Err(format!(
            "the module {} breaks the job contract:\n  - {}",
            o.source.display(),
            problems.join("\n  - ")
        ));
    }
    std::fs::create_dir_all(&o.out).map_err(io("cannot create", &o.out))?;
    let module_hash = Blake3Hash::of(&bytes);
    let module_file = format!("{}.wasm", name_from(&stem));
    let module_path = o.out.join(&module_file);
    std::fs::write(&module_path, &bytes).map_err(io("cannot write", &module_path))?;

    let name = o.name.clone().unwrap_or_else(|| name_from(&stem));
    let (common, inputs) = common_fields(o, &module_file, &module_hash)?;
    let is_batch = !o.sweeps.is_empty()
        || o.sweep_csv.is_some()
        || o.seeds.is_some()
        || o.each_input.is_some();
    if !is_batch {
        let path = write_task(o, common, &name)?;
        return Ok(Packed {
            manifest: path,
            tasks: 1,
            module: module_hash,
            batch: false,
        });
    }
    let axes = BatchAxes::of(o)?;
    let tasks = axes.tasks(o, &name, &inputs)?;
    let count = tasks.len();
    let path = write_batch(o, common, &name, tasks)?;
    Ok(Packed {
        manifest: path,
        tasks: count,
        module: module_hash,
        batch: true,
    })
}

/// The fields every task of the pack shares (module, env, inputs, outputs, limits, tier),
/// and the staged inputs.
fn common_fields(
    o: &PackOptions,
    module_file: &str,
    module_hash: &Blake3Hash,
) -> Result<(Map<String, Value>, Vec<Value>), String> {
    let mut common = Map::new();
    common.insert(
        "module".into(),
        json!({ "uri": module_file, "blake3": module_hash.to_string() }),
    );
    if !o.env.is_empty() {
        let env: BTreeMap<&str, &str> = o
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        common.insert("env".into(), json!(env));
    }
    let inputs = o
        .inputs
        .iter()
        .map(|(n, f)| stage_input(&o.out, n, f))
        .collect::<Result<Vec<_>, _>>()?;
    common.insert("inputs".into(), Value::Array(inputs.clone()));
    let outputs: Vec<Value> = o
        .outputs
        .iter()
        .map(|(n, max, optional)| {
            let mut v = json!({ "name": n, "max_bytes": max });
            if *optional {
                v["optional"] = json!(true);
            }
            v
        })
        .collect();
    common.insert("outputs".into(), Value::Array(outputs));
    let mut limits = json!({ "fuel": o.fuel });
    if let Some(m) = o.memory_bytes {
        limits["memory_bytes"] = json!(m);
    }
    if let Some(w) = o.wall_seconds {
        limits["wall_seconds"] = json!(w);
    }
    common.insert("limits".into(), limits);
    if let Some(t) = &o.tier {
        common.insert("tier".into(), json!(t));
    }
    Ok((common, inputs))
}

/// Writes and checks the manifest of a single task; returns its path.
fn write_task(o: &PackOptions, common: Map<String, Value>, name: &str) -> Result<PathBuf, String> {
    let mut task = common;
    task.insert("schema_version".into(), json!(1));
    task.insert("name".into(), json!(name));
    task.insert("args".into(), json!(o.args));
    if let Some(seed) = o.seed {
        task.insert("seed".into(), json!(seed));
    }
    let value = Value::Object(task);
    TaskManifest::from_value(value.clone()).map_err(|e| format!("the task manifest: {e}"))?;
    let path = o.out.join("task.json");
    write_json(&path, &value)?;
    Ok(path)
}

/// The axes of a batch: sweeps, CSV rows, seeds and per-task inputs, in that order.
struct BatchAxes {
    axes: Vec<Axis>,
    csv_rows: Option<(Vec<String>, Vec<Vec<String>>)>,
    each_files: Vec<PathBuf>,
}

impl BatchAxes {
    fn of(o: &PackOptions) -> Result<BatchAxes, String> {
        let mut axes = o.sweeps.clone();
        let mut csv_rows = None;
        if let Some(file) = &o.sweep_csv {
            let text = std::fs::read_to_string(file).map_err(io("cannot read", file))?;
            let (names, rows) =
                parse_csv(&text).map_err(|e| format!("--sweep-csv {}: {e}", file.display()))?;
            axes.push(Axis {
                name: "\0csv".into(),
                values: (0..rows.len()).map(|i| i.to_string()).collect(),
            });
            csv_rows = Some((names, rows));
        }
        if let Some(n) = o.seeds {
            if n == 0 {
                return Err("--seeds must be at least 1".into());
            }
            axes.push(Axis {
                name: "\0seed".into(),
                values: (1..=n).map(|s| s.to_string()).collect(),
            });
        }
        let mut each_files = Vec::new();
        if let Some((_, dir)) = &o.each_input {
            let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
                .map_err(io("--each-input: cannot list", dir))?
                .map(|e| e.map(|e| e.path()))
                .collect::<Result<_, _>>()
                .map_err(io("--each-input: cannot list", dir))?;
            files.retain(|f| f.is_file());
            files.sort();
            if files.is_empty() {
                return Err(format!("--each-input: {} holds no files", dir.display()));
            }
            axes.push(Axis {
                name: "\0file".into(),
                values: (0..files.len()).map(|i| i.to_string()).collect(),
            });
            each_files = files;
        }
        Ok(BatchAxes {
            axes,
            csv_rows,
            each_files,
        })
    }

    /// One task per combination of the axes' values, named `NAME-0001` on (or after the
    /// input file, when each task is one file).
    fn tasks(&self, o: &PackOptions, name: &str, inputs: &[Value]) -> Result<Vec<Value>, String> {
        let BatchAxes {
            axes,
            csv_rows,
            each_files,
        } = self;
        let combos = combinations(axes, MAX_TASKS)?;
        let width = combos.len().to_string().len().max(4);
        let mut tasks = Vec::with_capacity(combos.len());
        let mut staged_each: BTreeMap<usize, Value> = BTreeMap::new();
        for (index, combo) in combos.iter().enumerate() {
            let mut args = o.args.clone();
            let mut task = Map::new();
            let mut task_name = format!("{name}-{:0width$}", index + 1);
            for (axis, value) in combo {
                match axis.as_str() {
                    "\0csv" => {
                        let (names, rows) = csv_rows.as_ref().unwrap();
                        let row = &rows[value.parse::<usize>().unwrap()];
                        for (n, v) in names.iter().zip(row) {
                            args.extend([format!("--{n}"), v.clone()]);
                        }
                    }
                    "\0seed" => {
                        task.insert("seed".into(), json!(value.parse::<u64>().unwrap()));
                    }
                    "\0file" => {
                        let i: usize = value.parse().unwrap();
                        let (input_name, _) = o.each_input.as_ref().unwrap();
                        if let std::collections::btree_map::Entry::Vacant(slot) =
                            staged_each.entry(i)
                        {
                            slot.insert(stage_input(&o.out, input_name, &each_files[i])?);
                        }
                        let mut all = inputs.to_vec();
                        all.push(staged_each[&i].clone());
                        task.insert("inputs".into(), Value::Array(all));
                        let stem = each_files[i]
                            .file_stem()
                            .map(|s| s.to_string_lossy().into_owned())
                            .unwrap_or_default();
                        if combos.len() == each_files.len() {
                            task_name = format!("{name}-{}", name_from(&stem));
                        }
                    }
                    param => args.extend([format!("--{param}"), value.clone()]),
                }
            }
            task.insert("name".into(), json!(task_name));
            if !args.is_empty() {
                task.insert("args".into(), json!(args));
            }
            if let (Some(seed), false) = (o.seed, task.contains_key("seed")) {
                task.insert("seed".into(), json!(seed));
            }
            tasks.push(Value::Object(task));
        }
        Ok(tasks)
    }
}

/// Writes and checks the batch manifest of `tasks` over `common`; returns its path.
fn write_batch(
    o: &PackOptions,
    common: Map<String, Value>,
    name: &str,
    tasks: Vec<Value>,
) -> Result<PathBuf, String> {
    let mut batch = json!({
        "schema_version": 1,
        "batch": name,
        "defaults": Value::Object(common),
        "tasks": tasks,
    });
    if let Some((replicas, quorum, max_replicas)) = o.redundancy {
        batch["redundancy"] =
            json!({ "replicas": replicas, "quorum": quorum, "max_replicas": max_replicas });
    }
    if let Some(rate) = o.credit_rate {
        batch["credit_rate"] = json!(rate);
    }
    if let Some(target) = o.target_error {
        batch["target_error"] = json!(target);
    }
    BatchManifest::from_value_all(batch.clone()).map_err(|problems| {
        let lines: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
        format!("the batch manifest:\n  - {}", lines.join("\n  - "))
    })?;
    let path = o.out.join("batch.json");
    write_json(&path, &batch)?;
    Ok(path)
}

fn write_json(path: &Path, value: &Value) -> Result<(), String> {
    let text = serde_json::to_string_pretty(value).map_err(|e| e.to_string())? + "\n";
    std::fs::write(path, text).map_err(io("cannot write", path))
}
