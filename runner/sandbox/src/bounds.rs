//! Bounds on what the sandbox compiles. Compiling costs host memory and time in proportion to
//! a module's functions and their bodies, before any fuel is spent: a 4 MB module of a
//! million empty functions took 5.35 GB and 28 s to compile. One pass over the binary's
//! section headers and function bodies, before wasmtime sees it, refuses a module past any
//! bound in milliseconds, naming the bound. The defaults are far above what the project's
//! jobs need (at most 1,000 functions, 16 KiB bodies, 43 locals) and what large compiled C
//! or Rust programs have, and bound compilation to a few hundred MB.

/// The most a module may ask of the compiler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompileBounds {
    /// The module's size in bytes.
    pub module_bytes: usize,
    /// Functions defined in the module (imports aside).
    pub functions: u32,
    /// Bytes of one function's body.
    pub body_bytes: usize,
    /// Locals of one function (parameters aside).
    pub locals: u64,
    /// Threads compiling one module's functions at once: compile memory grows with the
    /// functions in flight, so this bounds it on a machine of many cores. Changes nothing in
    /// what is compiled.
    pub threads: usize,
}

impl CompileBounds {
    /// The default bound on a module's size, which is also the most a module file is read.
    pub const MODULE_BYTES: usize = 64 << 20;
}

impl Default for CompileBounds {
    fn default() -> Self {
        CompileBounds {
            module_bytes: Self::MODULE_BYTES,
            functions: 50_000,
            body_bytes: 512 << 10,
            locals: 10_000,
            threads: std::thread::available_parallelism()
                .map_or(1, |n| n.get())
                .min(MAX_COMPILE_THREADS),
        }
    }
}

/// The most threads that compile one module at once, by default.
pub const MAX_COMPILE_THREADS: usize = 4;

impl CompileBounds {
    /// Checks `bytes` against the bounds. A module that does not parse is left to the
    /// validator, which says why.
    pub fn check(&self, bytes: &[u8]) -> Result<(), String> {
        if bytes.len() > self.module_bytes {
            return Err(format!(
                "the module is {} bytes, more than the {} this runner compiles",
                bytes.len(),
                self.module_bytes
            ));
        }
        let mut index = 0u32;
        for payload in wasmparser::Parser::new(0).parse_all(bytes) {
            let Ok(payload) = payload else {
                return Ok(());
            };
            match payload {
                wasmparser::Payload::FunctionSection(reader) if reader.count() > self.functions => {
                    return Err(format!(
                        "the module defines {} functions, more than the {} this runner compiles",
                        reader.count(),
                        self.functions
                    ));
                }
                wasmparser::Payload::CodeSectionEntry(body) => {
                    let size = body.range().len();
                    if size > self.body_bytes {
                        return Err(format!(
                            "function {index}'s body is {size} bytes, more than the {} this runner compiles",
                            self.body_bytes
                        ));
                    }
                    let Ok(reader) = body.get_locals_reader() else {
                        return Ok(());
                    };
                    let mut locals = 0u64;
                    for group in reader {
                        let Ok((count, _)) = group else {
                            return Ok(());
                        };
                        locals += u64::from(count);
                    }
                    if locals > self.locals {
                        return Err(format!(
                            "function {index} has {locals} locals, more than the {} this runner compiles",
                            self.locals
                        ));
                    }
                    index += 1;
                }
                _ => {}
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasm_encoder::{
        CodeSection, Function, FunctionSection, Instruction, Module, TypeSection, ValType,
    };

    /// A module of `n` functions, each with `locals` i32 locals and `consts` constants
    /// dropped in its body.
    fn module(n: u32, locals: u32, consts: u32) -> Vec<u8> {
        let mut types = TypeSection::new();
        types.ty().function([], []);
        let mut functions = FunctionSection::new();
        let mut code = CodeSection::new();
        for _ in 0..n {
            functions.function(0);
            let mut f = Function::new([(locals, ValType::I32)]);
            for _ in 0..consts {
                f.instruction(&Instruction::I32Const(1));
                f.instruction(&Instruction::Drop);
            }
            f.instruction(&Instruction::End);
            code.function(&f);
        }
        let mut m = Module::new();
        m.section(&types).section(&functions).section(&code);
        m.finish()
    }

    #[test]
    fn a_module_past_any_bound_is_refused_naming_it() {
        let b = CompileBounds {
            module_bytes: 100_000,
            functions: 10,
            body_bytes: 1_000,
            locals: 50,
            threads: 1,
        };
        assert_eq!(b.check(&module(10, 50, 10)), Ok(()));
        let many = b.check(&module(11, 0, 0)).unwrap_err();
        assert!(many.contains("defines 11 functions"), "{many}");
        let long = b.check(&module(1, 0, 400)).unwrap_err();
        assert!(long.contains("function 0's body is"), "{long}");
        let wide = b.check(&module(2, 51, 0)).unwrap_err();
        assert!(wide.contains("has 51 locals"), "{wide}");
        let big = b.check(&module(1, 0, 40_000)).unwrap_err();
        assert!(big.contains("more than the 100000"), "{big}");
        // What does not parse is the validator's to explain.
        assert_eq!(b.check(b"\0asm\x01\0\0\0\x0a\xff"), Ok(()));
    }
}
