//! [`NativeFrame`]: one native frame, unwound and symbolised, as part 2 merges it with the
//! Python frames.

use crate::modules::ModuleId;
use std::fmt;
use std::sync::Arc;

/// How a frame's address was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UnwindMethod {
    /// The instruction pointer of the captured registers (the innermost frame).
    Registers,
    /// From the call frame information (`.eh_frame`, `.debug_frame`) of the frame below.
    Cfi,
    /// From the frame pointer chain: no CFI covered the frame below (JIT code, `perf`
    /// trampolines, binaries built without unwind tables).
    FramePointer,
}

/// Where a frame's name came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SymbolSource {
    /// DWARF: function, file and line (and inlined functions as their own frames).
    Dwarf,
    /// A symbol table (`.symtab`, `.dynsym`): function and offset only.
    SymbolTable,
    /// Nothing: the frame is `module+0xoffset`.
    None,
}

/// One native frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NativeFrame {
    /// The instruction pointer (innermost frame) or return address. Inlined functions share
    /// the address of the frame they were inlined into.
    pub address: u64,
    /// The module the address is in, if any.
    pub module: Option<Arc<ModuleId>>,
    /// The address as the module's file states it (`module+0xoffset`).
    pub module_offset: u64,
    /// The function: demangled, and for the outermost (non-inlined) function at an address
    /// the ELF symbol's name where it names a split part of the DWARF function
    /// (`_PyEval_EvalFrameDefault.cold`).
    pub function: Option<Arc<str>>,
    /// Offset of the address into the function's symbol, where a symbol table gave it.
    pub function_offset: Option<u64>,
    /// Source file, from DWARF.
    pub file: Option<Arc<str>>,
    /// Source line, from DWARF.
    pub line: Option<u32>,
    /// This function was inlined into the next frame (same address).
    pub inlined: bool,
    /// How the address was found.
    pub unwound_by: UnwindMethod,
    /// Where the name came from.
    pub source: SymbolSource,
}

impl fmt::Display for NativeFrame {
    /// `function (file:line)`, `function+0x1f (module)`, or `module+0x1234`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let module = self.module.as_ref().map_or("?", |m| m.short_name());
        match (&self.function, &self.file) {
            (Some(func), Some(file)) => {
                write!(f, "{func} ({file}")?;
                if let Some(line) = self.line {
                    write!(f, ":{line}")?;
                }
                write!(f, ")")
            }
            (Some(func), None) => match self.function_offset {
                Some(off) => write!(f, "{func}+{off:#x} ({module})"),
                None => write!(f, "{func} ({module})"),
            },
            (None, _) => write!(f, "{module}+{:#x}", self.module_offset),
        }
    }
}
