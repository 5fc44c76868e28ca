//! NaN canonicalization where NaN bits become observable.
//!
//! Hardware disagrees on the bits of a NaN that arithmetic makes (x86-64 sets the sign,
//! AArch64 does not; they propagate payloads differently). Cranelift can canonicalize the
//! result of every float operation, but that costs about 5× on float-heavy code. NaN bits only
//! become observable where a scalar float is stored to memory, reinterpreted as an integer,
//! lends its sign (`copysign`'s second operand) or is moved into a `v128` lane; a `v128` is
//! plain bits, so float SIMD arithmetic is canonicalized at its result instead. This module
//! rewrites a module before it is compiled so that at each of those places a NaN becomes the
//! canonical quiet NaN (`0x7fc00000`, `0x7ff8000000000000`), lane by lane for SIMD.
//!
//! A stored float is stored as it is, then stored again as the canonical NaN behind a
//! branch that is only taken for a NaN (stores are frequent, and a predicted branch is the
//! cheapest test); the other scalar sites use
//! `select(x, NaN, x == x)`, reinterpreted bits an integer test, and vectors
//! `v128.bitselect(x, NaN, fNxM.eq(x, x))`, all through scratch locals appended to each
//! function. The rewrite itself is done, together with fuel metering, in
//! [`crate::instrument`].

use wasm_encoder::{Function, Ieee32, Ieee64, Instruction};
use wasmparser::Operator;

/// How the sandbox makes NaN bits deterministic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NanMode {
    /// Rewrite the module so NaNs are canonical wherever their bits become observable
    /// (stores, reinterpretation, `copysign`, SIMD lanes). The profile's mode.
    AtSinks,
    /// Cranelift canonicalizes the result of every float operation. A reference for tests and
    /// benchmarks: it agrees with `AtSinks` on NaNs made by arithmetic, but keeps the payload
    /// of a NaN loaded from memory and the sign `neg`/`abs` give a NaN, which `AtSinks`
    /// canonicalizes when they are stored.
    EveryOperation,
    /// No canonicalization: NaN bits are whatever the host's hardware makes, so results
    /// differ between architectures. Only to show that the cross-architecture check catches
    /// such a runner (`scripts/cross-determinism`); never the default but in a build with
    /// the `host-nans` feature.
    HostBits,
}

impl Default for NanMode {
    /// [`NanMode::AtSinks`]; [`NanMode::HostBits`] in a build with the `host-nans` feature.
    fn default() -> Self {
        if cfg!(feature = "host-nans") {
            NanMode::HostBits
        } else {
            NanMode::AtSinks
        }
    }
}

/// The canonical quiet NaN of f32.
pub const CANONICAL_F32: u32 = 0x7fc0_0000;
/// The canonical quiet NaN of f64.
pub const CANONICAL_F64: u64 = 0x7ff8_0000_0000_0000;

#[derive(Clone, Copy)]
pub(crate) enum Lane {
    F32,
    F64,
}

/// Where an operator needs canonicalization.
pub(crate) enum Site {
    /// A float store: store the value, then the canonical NaN over it behind a branch that
    /// is only taken for a NaN ([`store`]); stores are frequent, and a predicted branch is
    /// the cheapest test.
    Store(Lane),
    /// Canonicalize the bits a reinterpretation leaves on top of the stack ([`bits`]).
    Bits(Lane),
    /// Canonicalize the scalar on top of the stack before the operator.
    Before(Lane),
    /// Canonicalize the vector the operator leaves on top of the stack.
    After(Lane),
}

pub(crate) fn site(op: &Operator<'_>) -> Option<Site> {
    use Operator as O;
    Some(match op {
        O::F32Store { .. } => Site::Store(Lane::F32),
        O::F64Store { .. } => Site::Store(Lane::F64),
        O::I32ReinterpretF32 => Site::Bits(Lane::F32),
        O::I64ReinterpretF64 => Site::Bits(Lane::F64),
        O::F32Copysign | O::F32x4Splat | O::F32x4ReplaceLane { .. } => Site::Before(Lane::F32),
        O::F64Copysign | O::F64x2Splat | O::F64x2ReplaceLane { .. } => Site::Before(Lane::F64),
        O::F32x4Add
        | O::F32x4Sub
        | O::F32x4Mul
        | O::F32x4Div
        | O::F32x4Sqrt
        | O::F32x4Min
        | O::F32x4Max
        | O::F32x4Ceil
        | O::F32x4Floor
        | O::F32x4Trunc
        | O::F32x4Nearest
        | O::F32x4DemoteF64x2Zero
        | O::F32x4RelaxedMadd
        | O::F32x4RelaxedNmadd
        | O::F32x4RelaxedMin
        | O::F32x4RelaxedMax => Site::After(Lane::F32),
        O::F64x2Add
        | O::F64x2Sub
        | O::F64x2Mul
        | O::F64x2Div
        | O::F64x2Sqrt
        | O::F64x2Min
        | O::F64x2Max
        | O::F64x2Ceil
        | O::F64x2Floor
        | O::F64x2Trunc
        | O::F64x2Nearest
        | O::F64x2PromoteLowF32x4
        | O::F64x2RelaxedMadd
        | O::F64x2RelaxedNmadd
        | O::F64x2RelaxedMin
        | O::F64x2RelaxedMax => Site::After(Lane::F64),
        _ => return None,
    })
}

/// The bits `b` of a float on the stack become `select(b, NaN bits, |b| <= infinity bits)`:
/// a NaN is exactly a float whose bits without the sign exceed those of infinity.
pub(crate) fn bits(f: &mut Function, lane: Lane, s32: u32, s64: u32) {
    match lane {
        Lane::F32 => f
            .instruction(&Instruction::LocalTee(s32))
            .instruction(&Instruction::I32Const(CANONICAL_F32 as i32))
            .instruction(&Instruction::LocalGet(s32))
            .instruction(&Instruction::I32Const(0x7fff_ffff))
            .instruction(&Instruction::I32And)
            .instruction(&Instruction::I32Const(0x7f80_0000))
            .instruction(&Instruction::I32LeU)
            .instruction(&Instruction::Select),
        Lane::F64 => f
            .instruction(&Instruction::LocalTee(s64))
            .instruction(&Instruction::I64Const(CANONICAL_F64 as i64))
            .instruction(&Instruction::LocalGet(s64))
            .instruction(&Instruction::I64Const(0x7fff_ffff_ffff_ffff))
            .instruction(&Instruction::I64And)
            .instruction(&Instruction::I64Const(0x7ff0_0000_0000_0000))
            .instruction(&Instruction::I64LeU)
            .instruction(&Instruction::Select),
    };
}

/// What canonicalizing a scalar of `lane` needs: its scratch local, the canonical NaN and
/// the comparisons.
struct Scalar {
    local: u32,
    nan: Instruction<'static>,
    /// `>=`: for a value and itself, false only for a NaN.
    ge: Instruction<'static>,
}

fn scalar_parts(lane: Lane, s32: u32, s64: u32) -> Scalar {
    match lane {
        Lane::F32 => Scalar {
            local: s32,
            nan: Instruction::F32Const(Ieee32::new(CANONICAL_F32)),
            ge: Instruction::F32Ge,
        },
        Lane::F64 => Scalar {
            local: s64,
            nan: Instruction::F64Const(Ieee64::new(CANONICAL_F64)),
            ge: Instruction::F64Ge,
        },
    }
}

/// A store of `x` at address `a` (both on the stack; `store` is the store itself) becomes:
/// store `x` at `a`, then, unless `x >= x`, store the canonical NaN at `a` over it. Only a
/// NaN is not `>=` itself, and `>=` is one flag on x86-64 (`ucomisd` then `jae`), where
/// `x != x` takes two. What the common path stores is `x` itself, not a value merged from
/// the two arms of a branch: merging `x` with the NaN before one store made Cranelift spill
/// `x` and reload it, and the address, around every store.
pub(crate) fn store(
    f: &mut Function,
    lane: Lane,
    scratch: (u32, u32, u32),
    store: &Instruction<'_>,
) {
    let (s32, s64, addr) = scratch;
    let Scalar { local, nan, ge, .. } = scalar_parts(lane, s32, s64);
    f.instruction(&Instruction::LocalSet(local))
        .instruction(&Instruction::LocalTee(addr))
        .instruction(&Instruction::LocalGet(local))
        .instruction(store)
        .instruction(&Instruction::LocalGet(local))
        .instruction(&Instruction::LocalGet(local))
        .instruction(&ge)
        .instruction(&Instruction::If(wasm_encoder::BlockType::Empty))
        .instruction(&Instruction::Else)
        .instruction(&Instruction::LocalGet(addr))
        .instruction(&nan)
        .instruction(store)
        .instruction(&Instruction::End);
}

/// `x` on the stack becomes `select(x, NaN, x >= x)`.
pub(crate) fn scalar(f: &mut Function, lane: Lane, s32: u32, s64: u32) {
    let Scalar { local, nan, ge, .. } = scalar_parts(lane, s32, s64);
    f.instruction(&Instruction::LocalTee(local))
        .instruction(&nan)
        .instruction(&Instruction::LocalGet(local))
        .instruction(&Instruction::LocalGet(local))
        .instruction(&ge)
        .instruction(&Instruction::Select);
}

/// `v` on the stack becomes `v128.bitselect(v, NaN×lanes, eq(v, v))`.
pub(crate) fn vector(f: &mut Function, lane: Lane, sv: u32) {
    let (nan, eq) = match lane {
        Lane::F32 => (
            i128::from_le_bytes(splat(&CANONICAL_F32.to_le_bytes())),
            Instruction::F32x4Eq,
        ),
        Lane::F64 => (
            i128::from_le_bytes(splat(&CANONICAL_F64.to_le_bytes())),
            Instruction::F64x2Eq,
        ),
    };
    f.instruction(&Instruction::LocalTee(sv))
        .instruction(&Instruction::V128Const(nan))
        .instruction(&Instruction::LocalGet(sv))
        .instruction(&Instruction::LocalGet(sv))
        .instruction(&eq)
        .instruction(&Instruction::V128Bitselect);
}

fn splat(lane: &[u8]) -> [u8; 16] {
    let mut out = [0u8; 16];
    for chunk in out.chunks_mut(lane.len()) {
        chunk.copy_from_slice(lane);
    }
    out
}
