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
//! Each canonicalization is branch-free: `select(x, NaN, x == x)` for scalars and
//! `v128.bitselect(x, NaN, fNxM.eq(x, x))` for vectors, through scratch locals appended to
//! each function.

use std::convert::Infallible;

use wasm_encoder::reencode::{Error, Reencode};
use wasm_encoder::{CodeSection, Function, Ieee32, Ieee64, Instruction, ValType};
use wasmparser::{CompositeInnerType, FunctionBody, Operator, Parser, Payload};

/// The canonical quiet NaN of f32.
pub const CANONICAL_F32: u32 = 0x7fc0_0000;
/// The canonical quiet NaN of f64.
pub const CANONICAL_F64: u64 = 0x7ff8_0000_0000_0000;

#[derive(Clone, Copy)]
enum Lane {
    F32,
    F64,
}

/// Where an operator needs canonicalization.
enum Site {
    /// Canonicalize the scalar on top of the stack before the operator.
    Before(Lane),
    /// Canonicalize the vector the operator leaves on top of the stack.
    After(Lane),
}

fn site(op: &Operator<'_>) -> Option<Site> {
    use Operator as O;
    Some(match op {
        O::F32Store { .. }
        | O::I32ReinterpretF32
        | O::F32Copysign
        | O::F32x4Splat
        | O::F32x4ReplaceLane { .. } => Site::Before(Lane::F32),
        O::F64Store { .. }
        | O::I64ReinterpretF64
        | O::F64Copysign
        | O::F64x2Splat
        | O::F64x2ReplaceLane { .. } => Site::Before(Lane::F64),
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

struct Rewriter {
    /// Parameter count of each defined function, in order.
    params: Vec<u32>,
    next: usize,
    /// Whether the module uses float SIMD arithmetic (and so needs a `v128` scratch local).
    simd: bool,
}

impl Reencode for Rewriter {
    type Error = Infallible;

    fn parse_function_body(
        &mut self,
        code: &mut CodeSection,
        func: FunctionBody<'_>,
    ) -> Result<(), Error<Infallible>> {
        let params = self.params[self.next];
        self.next += 1;
        let mut locals = Vec::new();
        let mut declared = 0u32;
        for pair in func.get_locals_reader()? {
            let (count, ty) = pair?;
            declared += count;
            locals.push((count, self.val_type(ty)?));
        }
        let (s32, s64, sv) = (
            params + declared,
            params + declared + 1,
            params + declared + 2,
        );
        locals.push((1, ValType::F32));
        locals.push((1, ValType::F64));
        if self.simd {
            locals.push((1, ValType::V128));
        }
        let mut f = Function::new(locals);
        let mut reader = func.get_operators_reader()?;
        while !reader.eof() {
            let op = reader.read()?;
            let at = site(&op);
            if let Some(Site::Before(lane)) = at {
                scalar(&mut f, lane, s32, s64);
            }
            f.instruction(&self.instruction(op)?);
            if let Some(Site::After(lane)) = at {
                vector(&mut f, lane, sv);
            }
        }
        code.function(&f);
        Ok(())
    }
}

/// `x` on the stack becomes `select(x, NaN, x == x)`.
fn scalar(f: &mut Function, lane: Lane, s32: u32, s64: u32) {
    let (local, nan, eq) = match lane {
        Lane::F32 => (
            s32,
            Instruction::F32Const(Ieee32::new(CANONICAL_F32)),
            Instruction::F32Eq,
        ),
        Lane::F64 => (
            s64,
            Instruction::F64Const(Ieee64::new(CANONICAL_F64)),
            Instruction::F64Eq,
        ),
    };
    f.instruction(&Instruction::LocalTee(local))
        .instruction(&nan)
        .instruction(&Instruction::LocalGet(local))
        .instruction(&Instruction::LocalGet(local))
        .instruction(&eq)
        .instruction(&Instruction::Select);
}

/// `v` on the stack becomes `v128.bitselect(v, NaN×lanes, eq(v, v))`.
fn vector(f: &mut Function, lane: Lane, sv: u32) {
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

/// Rewrites `wasm` so that NaNs are canonical wherever their bits can be observed.
pub fn canonicalize_at_sinks(wasm: &[u8]) -> Result<Vec<u8>, String> {
    let mut types: Vec<u32> = Vec::new();
    let mut params = Vec::new();
    let mut simd = false;
    for payload in Parser::new(0).parse_all(wasm) {
        match payload.map_err(|e| e.to_string())? {
            Payload::TypeSection(reader) => {
                for group in reader {
                    for sub in group.map_err(|e| e.to_string())?.into_types() {
                        types.push(match &sub.composite_type.inner {
                            CompositeInnerType::Func(f) => f.params().len() as u32,
                            _ => 0,
                        });
                    }
                }
            }
            Payload::FunctionSection(reader) => {
                for ty in reader {
                    let ty = ty.map_err(|e| e.to_string())? as usize;
                    params.push(*types.get(ty).ok_or("a function names a missing type")?);
                }
            }
            Payload::CodeSectionEntry(body) if !simd => {
                let mut ops = body.get_operators_reader().map_err(|e| e.to_string())?;
                while !ops.eof() {
                    if matches!(
                        site(&ops.read().map_err(|e| e.to_string())?),
                        Some(Site::After(_))
                    ) {
                        simd = true;
                        break;
                    }
                }
            }
            _ => {}
        }
    }
    let mut rewriter = Rewriter {
        params,
        next: 0,
        simd,
    };
    let mut module = wasm_encoder::Module::new();
    rewriter
        .parse_core_module(&mut module, Parser::new(0), wasm)
        .map_err(|e| match e {
            Error::ParseError(e) => e.to_string(),
            other => format!("{other:?}"),
        })?;
    Ok(module.finish())
}
