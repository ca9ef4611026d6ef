//! Reading another process's memory and state: the system calls.
//!
//! [`ProcessMemory`] implements `strobe_memory::RemoteMemory` for a live process with
//! `process_vm_readv` (tests use in-memory images from `strobe-testkit` instead). [`Freeze`]
//! stops a process for consistent snapshots, and [`procfs`] reads the little we need from
//! `/proc`. This crate reads; it does not interpret what it reads. It is the only crate
//! allowed to contain `unsafe` code: the raw `process_vm_readv` call in `process.rs`, whose
//! iovec arrays are reused from sample to sample (`nix`'s wrapper would need freshly built
//! slices, i.e. allocations, per call), and `setpriority` in `priority.rs`.

#![warn(missing_docs)]

mod error;
mod freeze;
mod priority;
mod process;
pub mod procfs;

pub use error::RemoteError;
pub use freeze::{try_wait, Freeze};
pub use priority::{set_thread_nice, thread_nice};
pub use process::{merged_ranges, ProcessMemory};
