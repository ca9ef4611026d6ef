//! Native stacks of a target process: its modules, unwinding of captured stacks, and symbols.
//!
//! The pieces, in the order a stack flows through them:
//! - a capture (crate `strobe-remote`: [`strobe_remote::ThreadTracer`],
//!   [`strobe_remote::PerfThread`], [`strobe_remote::BlockedThread`]) gives registers and the
//!   stack bytes from the stack pointer up;
//! - [`ModuleMap`] lists the target's executable mappings with the binary behind each, opened
//!   through `/proc/PID/root` (containers, chroots) or `/proc/PID/map_files`, and used only if
//!   its build-id is the one of the image in the target's memory; the vDSO comes from memory;
//! - [`Unwinder`] turns registers and stack into return addresses, by CFI (`.eh_frame`,
//!   `.debug_frame`) or by frame pointer where no CFI covers an address, and says which;
//! - [`Symbolizer`] names them: DWARF function, file, line and inlined functions (from the
//!   binary or its separate debug file, by build-id or `.gnu_debuglink`), else the symbol
//!   table's `symbol+offset`, else `module+0xoffset`, as [`NativeFrame`]s.
//!
//! # Why framehop
//! Unwinding uses framehop (gimli underneath) rather than gimli's `UnwindTable` directly:
//! it caches unwind rules per address (a warm unwind is a hash lookup per frame instead of
//! an FDE search and CFA program evaluation), handles the `.plt` CFA expressions that
//! gimli leaves to the caller, falls back to frame pointers where a module has no CFI, and
//! analyses prologues and epilogues for an innermost frame caught there. What it does not
//! say, which rule moved each frame, we recover from the CFI ranges of each binary.
//!
//! This crate does no `unsafe`: mapping files and all system calls are in `strobe-remote`.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod binary;
mod elf;
mod frame;
mod merge;
mod modules;
mod realigned;
mod symbolize;
mod symtab;
mod unwind;

pub use binary::{Binaries, Binary, DebugSearch};
pub use elf::hex as build_id_hex;
pub use frame::{NativeFrame, SymbolSource, UnwindMethod};
pub use merge::{
    is_plumbing, merge, EvalShape, KernelBoundary, MergeError, MergedFrame, NativeEnd,
    KERNEL_FRAME, TRUNCATED_FRAME,
};
pub use modules::{
    FileFinder, Module, ModuleId, ModuleKind, ModuleMap, ModuleProblem, PERF_TRAMPOLINES,
};
pub use symbolize::Symbolizer;
pub use unwind::{UnwindEnd, Unwinder, Unwound, UnwoundFrame, DEFAULT_MAX_DEPTH};

/// Why the native view of a process could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum NativeError {
    /// `/proc/PID/maps` could not be read.
    #[error(
        "cannot read the memory map of process {pid} (errno {errno}): the process exited, or \
         strobe lacks permission (run as root or with CAP_SYS_PTRACE)"
    )]
    Maps {
        /// The process.
        pid: i32,
        /// The OS error number.
        errno: i32,
    },
}
