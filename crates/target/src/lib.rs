//! The target: a Python process strobe has attached to.
//!
//! Everything between a PID and a walker, and between a walker and a
//! [`Snapshot`](snapshot::Snapshot).
//!
//! [`Target::attach`] opens the process (`strobe_remote::ProcessMemory`), finds the runtime
//! (`strobe_locate::locate`), resolves the struct layout (`strobe_walker::layout::resolve`, which
//! prefers the target's own `_Py_DebugOffsets` on 3.13+) and builds a walker. Each
//! [`Target::snapshot`] then reads thread states from `/proc`, walks every thread's stack,
//! and adds names and kernel thread ids.
//!
//! [`Target::open_core`] does the same for a core file (`strobe_corefile::Core`): the walker
//! reads the core through the same [`strobe_memory::RemoteMemory`] trait ([`TargetMemory`]),
//! the threads come from the core's notes, and nothing is read from `/proc`.
//!
//! This file is the crate's front: the [`Target`] type, its options and accessors. The jobs
//! behind it each have a module: `attach.rs` (opening a process or a core), `assemble.rs`
//! (taking a snapshot and assembling dump's model), `threads.rs` (thread names, kernel thread
//! ids and PID namespaces), `locals.rs` (pairing frames found again with the walked ones for
//! their locals), `sampling.rs` (what the sampler calls: the walker, native samples),
//! `native.rs` (native stacks), `asyncio.rs` (`dump --async`), `error.rs` ([`AttachError`]),
//! `memory.rs` ([`TargetMemory`]) and `snapshot.rs` (dump's model).

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod assemble;
mod asyncio;
mod attach;
mod error;
mod locals;
mod memory;
mod native;
mod sampling;
pub mod snapshot;
mod threads;

pub use error::{exited_or, AttachError};
pub use memory::TargetMemory;
pub use strobe_corefile::{CoreError, CoreOptions};

use native::NativeState;
pub use native::{
    CpuPreemptions, EachNative, NativeRequest, NativeResult, NativeStack, StoppedAwake, WatchesOf,
};
use std::sync::Arc;
use strobe_corefile::Core;
use strobe_locate::PythonProcess;
use strobe_walker::walk::Walker;

/// How often a snapshot of a running (not frozen) target is retried when the target changed
/// under the reader. Each attempt takes well under a millisecond.
pub(crate) const TRANSIENT_ATTEMPTS: usize = 5;

/// What a snapshot should include.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotOptions {
    /// Look up `threading` thread names.
    pub names: bool,
    /// Stop the target with ptrace for the duration of the read.
    pub blocking: bool,
    /// Add native frames: each thread's native stack, merged with its Python frames read at
    /// the same instant (a sleeping thread is not stopped; a running one is stopped alone,
    /// briefly). Done after a `blocking` read, which it then replaces thread by thread.
    pub native: bool,
    /// Add each Python frame's arguments and local variables (`FrameSnapshot::locals`), read
    /// right after the stacks (during the freeze with `blocking`).
    pub locals: bool,
}

/// An attached target process.
#[derive(Debug)]
pub struct Target {
    process: PythonProcess,
    walker: Walker<TargetMemory>,
    /// The core file, when the target is one (else a live process).
    core: Option<Arc<Core>>,
    warnings: Vec<String>,
    from_debug_offsets: bool,
    executable: Option<String>,
    /// Modules, unwind rules and symbols, from the first snapshot with native frames on.
    native: Option<NativeState>,
}

impl Target {
    /// The core file, when the target is one.
    pub fn core(&self) -> Option<&Core> {
        self.core.as_deref()
    }

    /// The target's PID.
    pub fn pid(&self) -> i32 {
        self.process.pid
    }

    /// Where the interpreter was found.
    pub fn process(&self) -> &PythonProcess {
        &self.process
    }

    /// Caveats found while attaching (e.g. a layout borrowed from a neighbouring release).
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// Whether the interpreter is a free-threaded (`Py_GIL_DISABLED`) build, which has no GIL.
    pub fn free_threaded(&self) -> bool {
        self.walker.layout().flavour.free_threaded
    }
}
