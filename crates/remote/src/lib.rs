//! Reading another process's memory and state.
//!
//! [`RemoteMemory`] is the only way the walker sees a target: the live implementation
//! ([`ProcessMemory`], `process_vm_readv`) lives here, and tests use in-memory images
//! (`strobe-testkit`). This is the only crate allowed to contain `unsafe` code.

#![warn(missing_docs)]

mod memory;
pub use memory::{le, MemError, RemoteMemory};
