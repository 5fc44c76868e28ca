//! Checks a module against the job contract without running it.

use helio_sdk::{WASI_FUNCTIONS, WASI_MODULE};
use wasmparser::{ExternalKind, Parser, Payload, TypeRef, Validator, WasmFeatures};

/// Every way `bytes` breaks the contract: not valid WebAssembly, imports from outside
/// `wasi_snapshot_preview1`, no `_start` or `memory` export, a `start` section. Empty when
/// the module is fine.
pub fn problems(bytes: &[u8]) -> Vec<String> {
    if !bytes.starts_with(b"\0asm") {
        return vec!["not a WebAssembly module (it does not start with \\0asm)".into()];
    }
    let mut features = WasmFeatures::default();
    features.remove(WasmFeatures::THREADS | WasmFeatures::SHARED_EVERYTHING_THREADS);
    features.remove(WasmFeatures::MEMORY64);
    if let Err(e) = Validator::new_with_features(features).validate_all(bytes) {
        return vec![format!("not valid WebAssembly for a Helio runner: {e}")];
    }
    let mut problems = Vec::new();
    let (mut start, mut memory) = (false, false);
    for payload in Parser::new(0).parse_all(bytes) {
        let Ok(payload) = payload else { break };
        match payload {
            Payload::ImportSection(reader) => {
                for import in reader.into_imports().flatten() {
                    let allowed = import.module == WASI_MODULE
                        && WASI_FUNCTIONS.contains(&import.name)
                        && matches!(import.ty, TypeRef::Func(_));
                    if !allowed {
                        problems.push(format!(
                            "imports `{}`.`{}`; a Helio module may import only the functions of {WASI_MODULE}",
                            import.module, import.name
                        ));
                    }
                }
            }
            Payload::ExportSection(reader) => {
                for export in reader.into_iter().flatten() {
                    match (export.name, export.kind) {
                        ("_start", ExternalKind::Func) => start = true,
                        ("memory", ExternalKind::Memory) => memory = true,
                        _ => {}
                    }
                }
            }
            Payload::StartSection { .. } => problems
                .push("has a start section; a Helio task's code must begin at `_start`".into()),
            _ => {}
        }
    }
    if !start {
        problems.push("does not export a `_start` function (is it a WASI command?)".into());
    }
    if !memory {
        problems.push("does not export its `memory`".into());
    }
    problems
}
