//! Reading another process's memory and state.
//!
//! [`RemoteMemory`] is the only way the walker sees a target: the live implementation
//! ([`ProcessMemory`], `process_vm_readv`) lives here, and tests use in-memory images
//! (`strobe-testkit`). [`Freeze`] stops a process for consistent snapshots, [`procfs`] reads
//! the little we need from `/proc`, and [`native_tids_from_pthreads`] recovers kernel thread
//! ids for old Pythons. This is the only crate allowed to contain `unsafe` code, and it has
//! one block: the raw `process_vm_readv` call in `process.rs`, whose iovec arrays are reused from
//! sample to sample (`nix`'s wrapper would need freshly built slices, i.e. allocations, per call).

#![warn(missing_docs)]

mod error;
mod freeze;
mod memory;
mod priority;
mod process;
pub mod procfs;
mod pthreads;

pub use error::RemoteError;
pub use freeze::{try_wait, Freeze};
pub use memory::{le, MemError, RemoteMemory};
pub use priority::{set_thread_nice, thread_nice};
pub use process::{merged_ranges, ProcessMemory};
pub use pthreads::native_tids_from_pthreads;
