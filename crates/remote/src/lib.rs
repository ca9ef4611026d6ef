//! Reading another process's memory and state: the system calls.
//!
//! [`ProcessMemory`] implements `strobe_memory::RemoteMemory` for a live process with
//! `process_vm_readv` (tests use in-memory images from `strobe-testkit` instead). [`Freeze`]
//! stops a process for consistent snapshots, and [`procfs`] reads the little we need from
//! `/proc`. This crate reads; it does not interpret what it reads. It is the only crate
//! allowed to contain `unsafe` code: the raw `process_vm_readv` call in `process.rs`, whose
//! iovec arrays are reused from sample to sample (`nix`'s wrapper would need freshly built
//! slices, i.e. allocations, per call), `setpriority` in `priority.rs`, `PTRACE_LISTEN` in
//! `ptrace_stack.rs`, the perf events in `perf.rs` (their mapped ring buffers in `perf/ring.rs`,
//! a tracepoint filter's `ioctl` in `perf/trigger.rs`; `CpuSwitches`' per-CPU events go through them), the file mapping
//! of `map_binary.rs`, and `openat2` in `open_root.rs` (a target's file opened inside its root).
//!
//! Native stacks are captured three ways (see `stack.rs`): [`ThreadTracer`] (one thread
//! stopped briefly, or a round's running threads stopped together: [`capture_together`]), [`PerfThread`] (the kernel's copy at a sampling interrupt) and
//! [`BlockedThread`] (a sleeping thread, read without a stop); [`PreemptWatch`] keeps the
//! kernel's copy taken when a thread was last preempted (a study for issue 12, not yet used).

#![warn(missing_docs)]

mod cpu_switches;
mod error;
mod freeze;
mod idle;
mod map_binary;
mod open_root;
mod perf;
mod preempt;
mod priority;
mod process;
pub mod procfs;
mod ptrace_stack;
mod stack;
mod switches;
#[cfg(test)]
mod test_threads;

pub use cpu_switches::CpuSwitches;
pub use error::RemoteError;
pub use freeze::{try_wait, Freeze};
pub use idle::{BlockedCapture, BlockedThread, SyscallLine, SyscallState};
pub use map_binary::SharedBytes;
pub use open_root::{open_in_root, open_nonblocking};
pub use perf::{
    perf_clock_ns, tracepoint_id, PerfConfig, PerfError, PerfSample, PerfThread, PerfTrigger,
    MAX_PERF_STACK, STILL_RUNNABLE_FILTER,
};
pub use preempt::{PreemptWatch, Preemption};
pub use priority::{
    set_thread_nice, set_thread_realtime, set_thread_timeshared, thread_is_realtime, thread_nice,
};
pub use process::{merged_ranges, ProcessMemory};
pub use ptrace_stack::{capture_together, StopSyscall, ThreadTracer, Together, TracedCapture};
pub use stack::{copy_stack, copy_stacks, StackCopy, StackError, StackSpan, UserRegs};
pub use switches::{LastSwitch, SwitchWatch};
