//! Helio's runnable examples: the guests in `guests/` (built for wasm32-wasip1 by this
//! crate's build script) and the tools that turn them into task manifests.
#![deny(missing_docs)]

use std::path::Path;

pub mod batches;

use serde_json::{Value, json};

/// Paths of the example guests, one constant per `guests/src/bin/*.rs`.
pub mod guests {
    include!(concat!(env!("OUT_DIR"), "/guests.rs"));
}

/// Writes a runnable task into `dir`: the module copied beside the manifest, the inputs
/// copied too, and `task.json` with every hash filled in. `extra` is laid over the manifest
/// (for `args`, `outputs`, `limits`, ...). Returns the manifest's path.
pub fn write_task(
    dir: &Path,
    name: &str,
    module: &Path,
    inputs: &[(&str, &Path)],
    extra: Value,
) -> std::io::Result<std::path::PathBuf> {
    std::fs::create_dir_all(dir)?;
    let module_bytes = std::fs::read(module)?;
    let module_name = format!("{name}.wasm");
    std::fs::write(dir.join(&module_name), &module_bytes)?;
    let mut manifest = json!({
        "schema_version": 1,
        "name": name,
        "module": { "uri": module_name, "blake3": blake3::hash(&module_bytes).to_hex().as_str() },
        "inputs": [],
        "limits": { "fuel": 10_000_000_000u64 }
    });
    for (input, path) in inputs {
        let bytes = std::fs::read(path)?;
        std::fs::write(dir.join(input), &bytes)?;
        manifest["inputs"].as_array_mut().unwrap().push(json!({
            "name": input,
            "uri": input,
            "blake3": blake3::hash(&bytes).to_hex().as_str(),
        }));
    }
    if let (Some(m), Value::Object(extra)) = (manifest.as_object_mut(), extra) {
        m.extend(extra);
    }
    let path = dir.join("task.json");
    std::fs::write(&path, serde_json::to_string_pretty(&manifest)? + "\n")?;
    Ok(path)
}
