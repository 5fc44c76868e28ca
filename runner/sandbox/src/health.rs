//! The health-check task a scheduler gives a cold runner (new, restarted or back from
//! offline) before any real work: a small module whose result depends on the seed the
//! scheduler picks for that one check, on a mebibyte of memory written and read back in a
//! scattered order, on integer and floating-point arithmetic and on a NaN's bits. The
//! scheduler runs the same task in its own sandbox; a runner whose digest differs (bad
//! memory, an overclocked core, a sandbox that is not the profile it claims) gets no task.

use helio_sdk::{Blake3Hash, ManifestError, TaskManifest};
use wasm_encoder::{
    BlockType, CodeSection, EntityType, ExportKind, ExportSection, Function, FunctionSection,
    ImportSection, Instruction as I, MemArg, MemorySection, MemoryType, Module, TypeSection,
    ValType,
};

/// The batch name a health-check lease carries.
pub const HEALTH_CHECK_BATCH: &str = "health-check";

/// 64-bit words the check writes and reads back: one mebibyte.
const WORDS: i32 = 1 << 17;
/// Where those words start in linear memory (below: the seed, the result, the iovec).
const DATA: u64 = 65_536;

/// Fuel a health check is given: several times what it uses.
pub const HEALTH_CHECK_FUEL: u64 = 50_000_000;
/// Its wall-clock limit: generous, since a check runs beside a volunteer's other work.
pub const HEALTH_CHECK_WALL_SECONDS: u32 = 30;

/// The health-check module (the same bytes every time, so its hash names it). A flat
/// listing of the module, section by section and instruction by instruction, kept whole so
/// that it reads as the module does.
pub fn health_check_module() -> Vec<u8> {
    let mut module = Module::new();
    let mut types = TypeSection::new();
    types
        .ty()
        .function([ValType::I32, ValType::I32], [ValType::I32]);
    types.ty().function([ValType::I32; 4], [ValType::I32]);
    types.ty().function([], []);
    module.section(&types);
    let mut imports = ImportSection::new();
    imports.import(
        "wasi_snapshot_preview1",
        "random_get",
        EntityType::Function(0),
    );
    imports.import(
        "wasi_snapshot_preview1",
        "fd_write",
        EntityType::Function(1),
    );
    module.section(&imports);
    let mut funcs = FunctionSection::new();
    funcs.function(2);
    module.section(&funcs);
    let pages = (DATA + WORDS as u64 * 8) / 65_536;
    let mut memories = MemorySection::new();
    memories.memory(MemoryType {
        minimum: pages,
        maximum: Some(pages),
        memory64: false,
        shared: false,
        page_size_log2: None,
    });
    module.section(&memories);
    let mut exports = ExportSection::new();
    exports.export("_start", ExportKind::Func, 2);
    exports.export("memory", ExportKind::Memory, 0);
    module.section(&exports);

    let at = |offset: u64| MemArg {
        offset,
        align: 3,
        memory_index: 0,
    };
    let word = |offset: u64| MemArg {
        offset,
        align: 2,
        memory_index: 0,
    };
    // Locals: 0 i (i32), 1 state, 2 acc, 3 x (i64), 4 f, 5 nan (f64).
    let mut f = Function::new([(1, ValType::I32), (3, ValType::I64), (2, ValType::F64)]);
    let mut code = Vec::new();
    // 32 random bytes at 0: the seed's stream. A failing call traps.
    code.extend([
        I::I32Const(0),
        I::I32Const(32),
        I::Call(0),
        I::If(BlockType::Empty),
        I::Unreachable,
        I::End,
        I::I32Const(0),
        I::I64Load(at(0)),
        I::I32Const(0),
        I::I64Load(at(16)),
        I::I64Xor,
        I::LocalSet(1),
        I::I32Const(0),
        I::I64Load(at(8)),
        I::LocalSet(2),
    ]);
    // Fill: a 64-bit LCG, each word its state folded.
    code.extend(over_words([
        I::LocalGet(1),
        I::I64Const(6_364_136_223_846_793_005),
        I::I64Mul,
        I::I64Const(1_442_695_040_888_963_407),
        I::I64Add,
        I::LocalTee(1),
        I::LocalGet(1),
        I::I64Const(29),
        I::I64ShrU,
        I::I64Xor,
        I::LocalSet(3),
        I::LocalGet(0),
        I::I32Const(3),
        I::I32Shl,
        I::LocalGet(3),
        I::I64Store(at(DATA)),
    ]));
    // Read back in a scattered order (an odd stride is a permutation of the words), mixing
    // each into an integer and a floating-point accumulator.
    code.extend(over_words([
        I::LocalGet(0),
        I::I32Const(40_503),
        I::I32Mul,
        I::I32Const(WORDS - 1),
        I::I32And,
        I::I32Const(3),
        I::I32Shl,
        I::I64Load(at(DATA)),
        I::LocalSet(3),
        I::LocalGet(2),
        I::I64Const(5),
        I::I64Rotl,
        I::LocalGet(3),
        I::I64Xor,
        I::I64Const(0x0100_0000_01b3),
        I::I64Mul,
        I::LocalSet(2),
        I::LocalGet(4),
        I::LocalGet(3),
        I::I64Const(11),
        I::I64ShrU,
        I::F64ConvertI64U,
        I::F64Const(1e-9.into()),
        I::F64Mul,
        I::F64Add,
        I::LocalSet(4),
    ]));
    // A NaN made from the sum (the square root of its negation): its bits are the
    // determinism profile's.
    code.extend([
        I::LocalGet(4),
        I::F64Const(1.0.into()),
        I::F64Add,
        I::F64Neg,
        I::F64Sqrt,
        I::LocalSet(5),
        // The 16 result bytes at 32: the integer accumulator, then the sum's bits xor the
        // NaN's.
        I::I32Const(0),
        I::LocalGet(2),
        I::I64Store(at(32)),
        I::I32Const(0),
        I::LocalGet(4),
        I::I64ReinterpretF64,
        I::LocalGet(5),
        I::I64ReinterpretF64,
        I::I64Xor,
        I::I64Store(at(40)),
        // One iovec at 48 naming them; written to stdout.
        I::I32Const(0),
        I::I32Const(32),
        I::I32Store(word(48)),
        I::I32Const(0),
        I::I32Const(16),
        I::I32Store(word(52)),
        I::I32Const(1),
        I::I32Const(48),
        I::I32Const(1),
        I::I32Const(56),
        I::Call(1),
        I::If(BlockType::Empty),
        I::Unreachable,
        I::End,
        I::End,
    ]);
    for i in &code {
        f.instruction(i);
    }
    let mut section = CodeSection::new();
    section.function(&f);
    module.section(&section);
    module.finish()
}

/// `body` once for each word, its index in local 0.
fn over_words<'a>(body: impl IntoIterator<Item = I<'a>>) -> Vec<I<'a>> {
    let mut code = vec![I::I32Const(0), I::LocalSet(0), I::Loop(BlockType::Empty)];
    code.extend(body);
    code.extend([
        I::LocalGet(0),
        I::I32Const(1),
        I::I32Add,
        I::LocalTee(0),
        I::I32Const(WORDS),
        I::I32LtU,
        I::BrIf(0),
        I::End,
    ]);
    code
}

/// The manifest of the health check with `seed`, for the module whose hash is `module`.
pub fn health_check_manifest(
    module: &Blake3Hash,
    seed: u64,
) -> Result<TaskManifest, ManifestError> {
    TaskManifest::from_value(serde_json::json!({
        "schema_version": 1,
        "name": "health-check",
        "module": { "uri": "health-check.wasm", "blake3": module.to_string() },
        "limits": {
            "fuel": HEALTH_CHECK_FUEL,
            "memory_bytes": 2 * 1024 * 1024,
            "wall_seconds": HEALTH_CHECK_WALL_SECONDS
        },
        "seed": seed,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{LoadedTask, Sandbox, SandboxConfig};

    fn run(seed: u64) -> crate::RunOutput {
        let wasm = health_check_module();
        let manifest = health_check_manifest(&Blake3Hash::of(&wasm), seed).unwrap();
        let task = LoadedTask {
            manifest,
            module: wasm.into(),
            inputs: Vec::new(),
        };
        let sandbox = Sandbox::new(SandboxConfig::default()).unwrap();
        task.run(&sandbox).unwrap()
    }

    #[test]
    fn the_check_succeeds_within_its_fuel_and_its_result_follows_the_seed() {
        let a = run(1);
        assert!(a.report.outcome.is_success(), "{:?}", a.report.outcome);
        assert_eq!(a.stdout.len(), 16);
        assert!(a.report.fuel_consumed > 1_000_000);
        assert!(a.report.fuel_consumed < HEALTH_CHECK_FUEL / 2);
        // The same seed gives the same digest; another seed another result.
        assert_eq!(run(1).report.digest, a.report.digest);
        let b = run(2);
        assert_ne!(b.stdout, a.stdout);
        assert_ne!(b.report.digest, a.report.digest);
        // The NaN's bits are the canonical ones: the second word is the sum's bits xor them.
        let sum_xor_nan = u64::from_le_bytes(a.stdout[8..16].try_into().unwrap());
        let sum_bits = sum_xor_nan ^ crate::CANONICAL_F64;
        assert!(f64::from_bits(sum_bits).is_finite());
        assert!(f64::from_bits(sum_bits) > 0.0);
    }
}
