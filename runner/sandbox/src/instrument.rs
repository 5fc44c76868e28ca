//! The module rewrite done before compiling: fuel metering, the wall-clock interrupt, and
//! (in [`NanMode::AtSinks`]) NaN canonicalization where NaN bits become observable.
//!
//! # Why Helio meters fuel itself
//!
//! wasmtime's own fuel and epoch checks end in a call to the runtime when they fire. On
//! x86-64 every XMM register is caller-saved, so a float loop that holds its values in
//! registers has to keep them on the stack instead, only because that call might happen: an
//! n-body kernel ran 41% slower with wasmtime's fuel on and 33% slower with epochs on
//! (BENCHMARKS.md). The checks this rewrite inserts never call: when fuel runs out or the
//! wall-clock deadline passes they record why in a global and execute `unreachable`, and the
//! sandbox reads that global to tell the two from a guest's own `unreachable`.
//!
//! # The metering
//!
//! Each function keeps its remaining fuel in an added `i64` local, loaded from the exported
//! global [`FUEL_EXPORT`] on entry and stored back before every call and return (so host
//! functions and callees see it) and reloaded after every call. Fuel is wasmtime's unit, with
//! wasmtime 48's default costs: entering a function costs one unit, every operator one unit
//! except `nop`, `drop`, `block`, `loop`, `unreachable`, `return`, `else` and `end`, which
//! are free, and bulk memory and table operations one more unit per byte or element. The
//! cost of a straight run of operators is subtracted just before the operator that ends it
//! (a branch, a call, `if`, `else`, `end`, ...), so every operator executed is charged
//! exactly once whichever way control leaves. Fuel is checked at every loop header and
//! before every call, so no loop and no recursion runs past it. The check compares the fuel
//! with a poll level (a third added global, kept in a local like the fuel): only below it
//! does it read the interrupt flag, one byte of a one-page memory ([`INTERRUPT_EXPORT`])
//! that the sandbox's watchdog thread sets when the task's `wall_seconds` pass, and set the
//! next level [`POLL_INTERVAL`] lower, but never below zero. So the hot path is a compare of
//! two locals, the flag is read about once a millisecond, and fuel still runs out exactly
//! where it would if every check read the flag.
//!
//! The rewrite is part of the determinism profile: every runner rewrites the same module the
//! same way, so the fuel a task consumes, and where it runs out, are the same everywhere.

use std::convert::Infallible;

use wasm_encoder::reencode::{Error, Reencode};
use wasm_encoder::{
    CodeSection, ConstExpr, ExportKind, ExportSection, Function, GlobalSection, GlobalType,
    ImportSection, Instruction, MemArg, MemorySection, MemoryType, SectionId, TypeSection, ValType,
};
use wasmparser::{
    CompositeInnerType, ExportSectionReader, FunctionBody, GlobalSectionReader,
    ImportSectionReader, MemorySectionReader, Operator, Parser, Payload, TypeRef,
    TypeSectionReader,
};

use crate::nan::{self, Lane, NanMode, Site};

/// The rewrite's version, part of the compiled-module cache's key: bump it whenever the
/// rewrite changes, so that no runner runs an artifact an older rewrite made.
pub const REWRITE_VERSION: u32 = 8;

/// The exported `i64` global holding the fuel left, as of the last call or return.
pub const FUEL_EXPORT: &str = "helio:fuel";
/// The exported `i32` global saying why an inserted check stopped the guest:
/// 0 it did not, [`STOP_OUT_OF_FUEL`] or [`STOP_TIMEOUT`].
pub const STOP_EXPORT: &str = "helio:stop";
/// The exported one-page memory whose first byte is the wall-clock interrupt flag.
pub const INTERRUPT_EXPORT: &str = "helio:interrupt";
/// The interrupt flag's value that asks the guest for its fuel (1 means the deadline
/// passed): the next check that sees it writes the fuel left at [`PROGRESS_FUEL`] and clears
/// the flag. The guest's own state and fuel are untouched, so a run's result is the same
/// whether anyone watches or not.
pub const PROGRESS_REQUEST: u8 = 2;
/// Where in the interrupt memory the guest writes its fuel left (an `i64`, little-endian).
pub const PROGRESS_FUEL: u32 = 8;
/// Fuel between two reads of the interrupt flag (about a millisecond of guest code).
pub const POLL_INTERVAL: i64 = 1 << 20;
/// The interrupt flag's value that asks the guest to pause: the next check clears the flag
/// and calls the host's [`PAUSE_NAME`], which returns when the task may run again (see
/// [`crate::throttle`]). Nothing of the guest's changes, its fuel included.
pub const PAUSE_REQUEST: u8 = 3;
/// The module of the one function the rewrite imports; a task's module may not import from it.
pub const PAUSE_MODULE: &str = "helio:sandbox";
/// The function the rewrite imports, `() -> ()`, called to pause.
pub const PAUSE_NAME: &str = "pause";
/// [`STOP_EXPORT`]'s value when fuel ran out.
pub const STOP_OUT_OF_FUEL: i32 = 1;
/// [`STOP_EXPORT`]'s value when the interrupt flag was set.
pub const STOP_TIMEOUT: i32 = 2;

/// What the pre-scan learns about a module.
#[derive(Default)]
struct Shape {
    /// Parameter count of each type (0 for non-function types).
    type_params: Vec<u32>,
    /// Imported functions: the pause import goes after them, and defined functions move up
    /// one.
    imported_funcs: u32,
    /// Parameter count of each defined function, in order.
    params: Vec<u32>,
    globals: u32,
    memories: u32,
    /// Whether the module uses float SIMD arithmetic (and so needs a `v128` scratch local).
    simd: bool,
}

impl Shape {
    fn scan(wasm: &[u8]) -> Result<Shape, String> {
        let err = |e: wasmparser::BinaryReaderError| e.to_string();
        let mut shape = Shape::default();
        for payload in Parser::new(0).parse_all(wasm) {
            match payload.map_err(err)? {
                Payload::TypeSection(reader) => {
                    for group in reader {
                        for sub in group.map_err(err)?.into_types() {
                            shape.type_params.push(match &sub.composite_type.inner {
                                CompositeInnerType::Func(f) => f.params().len() as u32,
                                _ => 0,
                            });
                        }
                    }
                }
                Payload::ImportSection(reader) => {
                    for import in reader.into_imports() {
                        let import = import.map_err(err)?;
                        if import.module == PAUSE_MODULE {
                            return Err(format!(
                                "the module imports {PAUSE_MODULE}.{}, which only the sandbox \
                                 may import",
                                import.name
                            ));
                        }
                        match import.ty {
                            TypeRef::Func(_) => shape.imported_funcs += 1,
                            TypeRef::Global(_) => shape.globals += 1,
                            TypeRef::Memory(_) => shape.memories += 1,
                            _ => {}
                        }
                    }
                }
                Payload::FunctionSection(reader) => {
                    for ty in reader {
                        let ty = ty.map_err(err)? as usize;
                        shape.params.push(
                            *shape
                                .type_params
                                .get(ty)
                                .ok_or("a function names a missing type")?,
                        );
                    }
                }
                Payload::GlobalSection(reader) => shape.globals += reader.count(),
                Payload::MemorySection(reader) => shape.memories += reader.count(),
                Payload::StartSection { .. } => {
                    return Err(
                        "the module has a start section; a Helio task's code must begin at `_start`, \
                         after the sandbox has set its fuel"
                            .into(),
                    );
                }
                Payload::CodeSectionEntry(body) if !shape.simd => {
                    let mut ops = body.get_operators_reader().map_err(err)?;
                    while !ops.eof() {
                        if matches!(nan::site(&ops.read().map_err(err)?), Some(Site::After(_))) {
                            shape.simd = true;
                            break;
                        }
                    }
                }
                _ => {}
            }
        }
        Ok(shape)
    }
}

/// The fuel an operator costs: wasmtime's model.
fn cost(op: &Operator<'_>) -> i64 {
    use Operator as O;
    match op {
        O::Nop
        | O::Drop
        | O::Block { .. }
        | O::Loop { .. }
        | O::Unreachable
        | O::Return
        | O::Else
        | O::End => 0,
        _ => 1,
    }
}

/// How an operator affects the metering.
enum Flow {
    /// Straight-line code: accumulate its cost.
    Straight,
    /// A bulk operation whose size is the `i32` on top of the stack (`memory.copy`,
    /// `memory.fill`, `memory.init`, `table.copy`, `table.fill`, `table.init`, `table.grow`):
    /// it also costs one unit per byte or element, as in wasmtime, and is checked first.
    Bulk,
    /// Opens a block whose start is not a branch target (`block`, `try_table`, `try`).
    Open,
    /// `loop`: charge what came before (the header is re-entered), then check.
    Loop,
    /// Ends a straight run: `if`, `else`, branches, legacy `catch`.
    Boundary,
    /// `end`: closes a block, or the function.
    End,
    /// A call that returns here: check and store the fuel before, reload after.
    Call,
    /// Leaves the function for good (`return`, tail calls, throws, `unreachable`): store
    /// the fuel first; tail calls also check.
    Leave { check: bool },
    /// `delegate` closes a legacy `try`.
    Delegate,
}

fn flow(op: &Operator<'_>) -> Flow {
    use Operator as O;
    match op {
        O::Block { .. } | O::TryTable { .. } | O::Try { .. } => Flow::Open,
        O::Loop { .. } => Flow::Loop,
        O::If { .. }
        | O::Else
        | O::Br { .. }
        | O::BrIf { .. }
        | O::BrTable { .. }
        | O::BrOnNull { .. }
        | O::BrOnNonNull { .. }
        | O::BrOnCast { .. }
        | O::BrOnCastFail { .. }
        | O::Catch { .. }
        | O::CatchAll => Flow::Boundary,
        O::End => Flow::End,
        O::Call { .. } | O::CallIndirect { .. } | O::CallRef { .. } => Flow::Call,
        O::ReturnCall { .. } | O::ReturnCallIndirect { .. } | O::ReturnCallRef { .. } => {
            Flow::Leave { check: true }
        }
        O::Return | O::Unreachable | O::Throw { .. } | O::Rethrow { .. } | O::ThrowRef => {
            Flow::Leave { check: false }
        }
        O::Delegate { .. } => Flow::Delegate,
        O::MemoryCopy { .. }
        | O::MemoryFill { .. }
        | O::MemoryInit { .. }
        | O::TableCopy { .. }
        | O::TableFill { .. }
        | O::TableInit { .. }
        | O::TableGrow { .. } => Flow::Bulk,
        _ => Flow::Straight,
    }
}

/// Where a pausable rewrite puts its pause import.
#[derive(Clone, Copy)]
struct PauseImport {
    ty: u32,
    func: u32,
}

struct Rewriter {
    shape: Shape,
    nan: bool,
    next: usize,
    fuel: u32,
    stop: u32,
    /// The `i64` global holding the fuel level at which the next check reads the flag.
    poll: u32,
    interrupt: u32,
    /// The pause import's type (added after the module's own) and function index, in a
    /// pausable rewrite.
    pause: Option<PauseImport>,
    type_done: bool,
    import_done: bool,
    memory_done: bool,
    global_done: bool,
    export_done: bool,
}

/// The locals one rewritten function uses.
struct Scratch {
    fuel: u32,
    /// The poll level, as of entry or the last call or check.
    poll: u32,
    f32: u32,
    f64: u32,
    /// Also the scratch of `i32` bits in NaN canonicalization, and of a float store's
    /// address.
    size: u32,
    i64: u32,
    v128: u32,
}

impl Rewriter {
    /// The rewritten function's start: its locals, then the rewrite's scratch locals.
    fn scratch_locals(
        &mut self,
        func: &FunctionBody<'_>,
    ) -> Result<(Function, Scratch), Error<Infallible>> {
        let params = self.shape.params[self.next];
        self.next += 1;
        let mut locals = Vec::new();
        let mut declared = 0u32;
        for pair in func.get_locals_reader()? {
            let (count, ty) = pair?;
            declared += count;
            locals.push((count, self.val_type(ty)?));
        }
        let first = params + declared;
        let s = Scratch {
            fuel: first,
            f32: first + 1,
            f64: first + 2,
            size: first + 3,
            i64: first + 4,
            poll: first + 5,
            v128: first + 6,
        };
        locals.push((1, ValType::I64));
        locals.push((1, ValType::F32));
        locals.push((1, ValType::F64));
        locals.push((1, ValType::I32));
        locals.push((1, ValType::I64));
        locals.push((1, ValType::I64));
        if self.shape.simd {
            locals.push((1, ValType::V128));
        }
        Ok((Function::new(locals), s))
    }

    /// Writes `op`, with the NaN canonicalization its site `at` needs, if any.
    fn emit(
        &mut self,
        f: &mut Function,
        s: &Scratch,
        at: Option<Site>,
        op: Operator<'_>,
    ) -> Result<(), Error<Infallible>> {
        match (at, op) {
            (
                Some(Site::Store(lane)),
                Operator::F32Store { memarg } | Operator::F64Store { memarg },
            ) => {
                let memarg = self.mem_arg(memarg)?;
                let store = match lane {
                    Lane::F32 => Instruction::F32Store(memarg),
                    Lane::F64 => Instruction::F64Store(memarg),
                };
                nan::store(f, lane, (s.f32, s.f64, s.size), &store);
            }
            (Some(Site::Bits(lane)), op) => {
                f.instruction(&self.instruction(op)?);
                nan::bits(f, lane, s.size, s.i64);
            }
            (Some(Site::Before(lane)), op) => {
                nan::scalar(f, lane, s.f32, s.f64);
                f.instruction(&self.instruction(op)?);
            }
            (Some(Site::After(lane)), op) => {
                f.instruction(&self.instruction(op)?);
                nan::vector(f, lane, s.v128);
            }
            (_, op) => {
                f.instruction(&self.instruction(op)?);
            }
        }
        Ok(())
    }

    fn our_memory(&self) -> MemoryType {
        MemoryType {
            minimum: 1,
            maximum: Some(1),
            memory64: false,
            shared: false,
            page_size_log2: None,
        }
    }

    fn add_type(&mut self, types: &mut TypeSection) {
        if self.pause.is_some() {
            types.ty().function([], []);
        }
        self.type_done = true;
    }

    fn add_import(&mut self, imports: &mut ImportSection) {
        if let Some(pause) = self.pause {
            imports.import(
                PAUSE_MODULE,
                PAUSE_NAME,
                wasm_encoder::EntityType::Function(pause.ty),
            );
        }
        self.import_done = true;
    }

    fn add_memory(&mut self, memories: &mut MemorySection) {
        memories.memory(self.our_memory());
        self.memory_done = true;
    }

    fn add_globals(&mut self, globals: &mut GlobalSection) {
        let var = |val_type| GlobalType {
            val_type,
            mutable: true,
            shared: false,
        };
        globals.global(var(ValType::I64), &ConstExpr::i64_const(0));
        globals.global(var(ValType::I32), &ConstExpr::i32_const(0));
        // The first check reads the flag and sets the level.
        globals.global(var(ValType::I64), &ConstExpr::i64_const(i64::MAX));
        self.global_done = true;
    }

    fn add_exports(&mut self, exports: &mut ExportSection) {
        exports.export(FUEL_EXPORT, ExportKind::Global, self.fuel);
        exports.export(STOP_EXPORT, ExportKind::Global, self.stop);
        exports.export(INTERRUPT_EXPORT, ExportKind::Memory, self.interrupt);
        self.export_done = true;
    }

    /// `fuel -= amount`.
    fn charge(&self, f: &mut Function, s: &Scratch, amount: i64) {
        if amount > 0 {
            f.instruction(&Instruction::LocalGet(s.fuel))
                .instruction(&Instruction::I64Const(amount))
                .instruction(&Instruction::I64Sub)
                .instruction(&Instruction::LocalSet(s.fuel));
        }
    }

    /// Traps, saying why, when fuel is below zero or the interrupt flag says the deadline
    /// passed; answers a progress request (the flag set to [`PROGRESS_REQUEST`]) by writing the
    /// fuel left at [`PROGRESS_FUEL`], clearing the flag and going on, and a pause request
    /// ([`PAUSE_REQUEST`]) by clearing the flag and calling the pause import. The common case is one
    /// compare of two locals and a branch not taken: the flag is read only once fuel falls
    /// below the poll level, every [`POLL_INTERVAL`] units, and that level never goes below
    /// zero, so fuel runs out exactly where it did when every check read the flag.
    fn check(&self, f: &mut Function, s: &Scratch) {
        let at = |offset: u64, align: u32| MemArg {
            offset,
            align,
            memory_index: self.interrupt,
        };
        let flag = Instruction::I32Load8U(at(0, 0));
        f.instruction(&Instruction::LocalGet(s.fuel))
            .instruction(&Instruction::LocalGet(s.poll))
            .instruction(&Instruction::I64LtS)
            .instruction(&Instruction::If(wasm_encoder::BlockType::Empty));
        // A progress request: answer it.
        f.instruction(&Instruction::I32Const(0))
            .instruction(&flag)
            .instruction(&Instruction::I32Const(PROGRESS_REQUEST as i32))
            .instruction(&Instruction::I32Eq)
            .instruction(&Instruction::If(wasm_encoder::BlockType::Empty))
            .instruction(&Instruction::I32Const(0))
            .instruction(&Instruction::LocalGet(s.fuel))
            .instruction(&Instruction::I64Store(at(PROGRESS_FUEL as u64, 3)))
            .instruction(&Instruction::I32Const(0))
            .instruction(&Instruction::I32Const(0))
            .instruction(&Instruction::I32Store8(at(0, 0)))
            .instruction(&Instruction::End);
        // A pause request: clear it and pause (the host returns when the task may go on).
        // Only a pausable rewrite has the branch: a call anywhere in a loop keeps Cranelift
        // from holding floats in registers across it, which costs float kernels about a
        // tenth of their speed (BENCHMARKS.md).
        if let Some(pause) = self.pause {
            f.instruction(&Instruction::I32Const(0))
                .instruction(&flag)
                .instruction(&Instruction::I32Const(PAUSE_REQUEST as i32))
                .instruction(&Instruction::I32Eq)
                .instruction(&Instruction::If(wasm_encoder::BlockType::Empty))
                .instruction(&Instruction::I32Const(0))
                .instruction(&Instruction::I32Const(0))
                .instruction(&Instruction::I32Store8(at(0, 0)))
                .instruction(&Instruction::Call(pause.func))
                .instruction(&Instruction::End);
        }
        // Out of fuel, or the deadline passed: stop, saying which (the deadline wins).
        f.instruction(&Instruction::LocalGet(s.fuel))
            .instruction(&Instruction::I64Const(0))
            .instruction(&Instruction::I64LtS)
            .instruction(&Instruction::I32Const(0))
            .instruction(&flag)
            .instruction(&Instruction::I32Const(1))
            .instruction(&Instruction::I32Eq)
            .instruction(&Instruction::I32Or)
            .instruction(&Instruction::If(wasm_encoder::BlockType::Empty));
        self.store(f, s);
        f.instruction(&Instruction::I32Const(STOP_OUT_OF_FUEL))
            .instruction(&Instruction::I32Const(0))
            .instruction(&flag)
            .instruction(&Instruction::I32Const(1))
            .instruction(&Instruction::I32Eq)
            .instruction(&Instruction::I32Add)
            .instruction(&Instruction::GlobalSet(self.stop))
            .instruction(&Instruction::Unreachable)
            .instruction(&Instruction::End);
        // The next poll level: an interval on, never below zero.
        f.instruction(&Instruction::LocalGet(s.fuel))
            .instruction(&Instruction::I64Const(POLL_INTERVAL))
            .instruction(&Instruction::I64Sub)
            .instruction(&Instruction::LocalTee(s.poll))
            .instruction(&Instruction::I64Const(0))
            .instruction(&Instruction::I64LtS)
            .instruction(&Instruction::If(wasm_encoder::BlockType::Empty))
            .instruction(&Instruction::I64Const(0))
            .instruction(&Instruction::LocalSet(s.poll))
            .instruction(&Instruction::End)
            .instruction(&Instruction::LocalGet(s.poll))
            .instruction(&Instruction::GlobalSet(self.poll))
            .instruction(&Instruction::End);
    }

    fn store(&self, f: &mut Function, s: &Scratch) {
        f.instruction(&Instruction::LocalGet(s.fuel))
            .instruction(&Instruction::GlobalSet(self.fuel));
    }

    fn load(&self, f: &mut Function, s: &Scratch) {
        f.instruction(&Instruction::GlobalGet(self.fuel))
            .instruction(&Instruction::LocalSet(s.fuel))
            .instruction(&Instruction::GlobalGet(self.poll))
            .instruction(&Instruction::LocalSet(s.poll));
    }
}

/// Section order in a module's binary, for inserting the sections a module lacks.
fn rank(id: SectionId) -> u8 {
    match id {
        SectionId::Custom => 0,
        SectionId::Type => 1,
        SectionId::Import => 2,
        SectionId::Function => 3,
        SectionId::Table => 4,
        SectionId::Memory => 5,
        SectionId::Tag => 6,
        SectionId::Global => 7,
        SectionId::Export => 8,
        SectionId::Start => 9,
        SectionId::Element => 10,
        SectionId::DataCount => 11,
        SectionId::Code => 12,
        SectionId::Data => 13,
    }
}

impl Reencode for Rewriter {
    type Error = Infallible;

    fn intersperse_section_hook(
        &mut self,
        module: &mut wasm_encoder::Module,
        _after: Option<SectionId>,
        before: Option<SectionId>,
    ) -> Result<(), Error<Infallible>> {
        let passed = |ours: SectionId| before.is_none_or(|b| rank(b) > rank(ours));
        if !self.type_done && passed(SectionId::Type) {
            let mut s = TypeSection::new();
            self.add_type(&mut s);
            module.section(&s);
        }
        if !self.import_done && passed(SectionId::Import) {
            let mut s = ImportSection::new();
            self.add_import(&mut s);
            module.section(&s);
        }
        if !self.memory_done && passed(SectionId::Memory) {
            let mut s = MemorySection::new();
            self.add_memory(&mut s);
            module.section(&s);
        }
        if !self.global_done && passed(SectionId::Global) {
            let mut s = GlobalSection::new();
            self.add_globals(&mut s);
            module.section(&s);
        }
        if !self.export_done && passed(SectionId::Export) {
            let mut s = ExportSection::new();
            self.add_exports(&mut s);
            module.section(&s);
        }
        Ok(())
    }

    fn function_index(&mut self, func: u32) -> Result<u32, Error<Infallible>> {
        // The pause import comes after the module's imports: its own functions move up one.
        Ok(
            if self.pause.is_none() || func < self.shape.imported_funcs {
                func
            } else {
                func + 1
            },
        )
    }

    fn parse_type_section(
        &mut self,
        types: &mut TypeSection,
        section: TypeSectionReader<'_>,
    ) -> Result<(), Error<Infallible>> {
        wasm_encoder::reencode::utils::parse_type_section(self, types, section)?;
        self.add_type(types);
        Ok(())
    }

    fn parse_import_section(
        &mut self,
        imports: &mut ImportSection,
        section: ImportSectionReader<'_>,
    ) -> Result<(), Error<Infallible>> {
        wasm_encoder::reencode::utils::parse_import_section(self, imports, section)?;
        self.add_import(imports);
        Ok(())
    }

    fn parse_memory_section(
        &mut self,
        memories: &mut MemorySection,
        section: MemorySectionReader<'_>,
    ) -> Result<(), Error<Infallible>> {
        wasm_encoder::reencode::utils::parse_memory_section(self, memories, section)?;
        self.add_memory(memories);
        Ok(())
    }

    fn parse_global_section(
        &mut self,
        globals: &mut GlobalSection,
        section: GlobalSectionReader<'_>,
    ) -> Result<(), Error<Infallible>> {
        wasm_encoder::reencode::utils::parse_global_section(self, globals, section)?;
        self.add_globals(globals);
        Ok(())
    }

    fn parse_export_section(
        &mut self,
        exports: &mut ExportSection,
        section: ExportSectionReader<'_>,
    ) -> Result<(), Error<Infallible>> {
        wasm_encoder::reencode::utils::parse_export_section(self, exports, section)?;
        self.add_exports(exports);
        Ok(())
    }

    fn parse_function_body(
        &mut self,
        code: &mut CodeSection,
        func: FunctionBody<'_>,
    ) -> Result<(), Error<Infallible>> {
        let (mut f, s) = self.scratch_locals(&func)?;
        self.load(&mut f, &s);
        // Open blocks; the function body is the outermost.
        let mut depth = 0usize;
        // As in wasmtime, entering a function costs one unit.
        let mut pending = 1i64;
        let mut reader = func.get_operators_reader()?;
        while !reader.eof() {
            let op = reader.read()?;
            let cost = cost(&op);
            let at = if self.nan { nan::site(&op) } else { None };
            let flow = flow(&op);
            if matches!(flow, Flow::Straight | Flow::Open) {
                pending += cost;
            } else {
                // Everything else ends a straight run: charge it, this operator included.
                self.charge(&mut f, &s, pending + cost);
                pending = 0;
            }
            match flow {
                Flow::Straight => {}
                Flow::Open => depth += 1,
                Flow::Bulk => {
                    f.instruction(&Instruction::LocalTee(s.size))
                        .instruction(&Instruction::LocalGet(s.fuel))
                        .instruction(&Instruction::LocalGet(s.size))
                        .instruction(&Instruction::I64ExtendI32U)
                        .instruction(&Instruction::I64Sub)
                        .instruction(&Instruction::LocalSet(s.fuel));
                    self.check(&mut f, &s);
                }
                Flow::Loop => {
                    f.instruction(&self.instruction(op)?);
                    self.check(&mut f, &s);
                    depth += 1;
                    continue;
                }
                Flow::Boundary => {
                    if matches!(op, Operator::If { .. }) {
                        depth += 1;
                    }
                    // A branch to the function's own label returns: store the fuel, as a
                    // `return` does, or the caller would never see what this call burned.
                    if branches_out(&op, depth) {
                        self.store(&mut f, &s);
                    }
                }
                Flow::End => {
                    if depth == 0 {
                        self.store(&mut f, &s);
                    } else {
                        depth -= 1;
                    }
                }
                Flow::Delegate => depth = depth.saturating_sub(1),
                Flow::Call => {
                    self.check(&mut f, &s);
                    self.store(&mut f, &s);
                    f.instruction(&self.instruction(op)?);
                    self.load(&mut f, &s);
                    continue;
                }
                Flow::Leave { check } => {
                    if check {
                        self.check(&mut f, &s);
                    }
                    self.store(&mut f, &s);
                }
            }
            self.emit(&mut f, &s, at, op)?;
        }
        code.function(&f);
        Ok(())
    }
}

/// Whether `op` may branch to the label of the function itself, with `depth` blocks open
/// inside the function's body.
fn branches_out(op: &Operator<'_>, depth: usize) -> bool {
    use Operator as O;
    let Ok(out) = u32::try_from(depth) else {
        return false;
    };
    match op {
        O::Br { relative_depth }
        | O::BrIf { relative_depth }
        | O::BrOnNull { relative_depth }
        | O::BrOnNonNull { relative_depth }
        | O::BrOnCast { relative_depth, .. }
        | O::BrOnCastFail { relative_depth, .. } => *relative_depth == out,
        O::BrTable { targets } => {
            targets.default() == out || targets.targets().any(|t| t.is_ok_and(|t| t == out))
        }
        _ => false,
    }
}

/// Whether a rewritten module can be paused from outside: the volunteer's CPU cap and holds
/// need it, and it costs float kernels speed, so a sandbox asks for it only where it throttles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Pause {
    /// No pause import, no pause branch: pause requests go unanswered.
    #[default]
    Never,
    /// The module imports [`PAUSE_MODULE`].[`PAUSE_NAME`] and calls it on a pause request.
    OnRequest,
}

/// Rewrites a module for the sandbox: fuel metering and the interrupt check always, NaN
/// canonicalization at the sinks in [`NanMode::AtSinks`], and the pause branch where
/// `pause` asks for it. The module must already be valid (the sandbox validates it first);
/// this is public for benchmarks and tools.
pub fn instrument(wasm: &[u8], mode: NanMode, pause: Pause) -> Result<Vec<u8>, String> {
    let shape = Shape::scan(wasm)?;
    let mut rewriter = Rewriter {
        fuel: shape.globals,
        stop: shape.globals + 1,
        poll: shape.globals + 2,
        interrupt: shape.memories,
        pause: (pause == Pause::OnRequest).then_some(PauseImport {
            ty: shape.type_params.len() as u32,
            func: shape.imported_funcs,
        }),
        type_done: false,
        import_done: false,
        shape,
        nan: mode == NanMode::AtSinks,
        next: 0,
        memory_done: false,
        global_done: false,
        export_done: false,
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
