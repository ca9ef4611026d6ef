//! What a target's memory is read from: a live process or a core file.

use std::sync::Arc;
use strobe_corefile::Core;
use strobe_memory::{MemError, RemoteMemory};
use strobe_remote::ProcessMemory;

/// A target's address space: a running process (`process_vm_readv`) or a core file (mapped).
#[derive(Debug)]
pub enum TargetMemory {
    /// A live process.
    Process(ProcessMemory),
    /// A core file, shared with the [`crate::Target`] that reads its threads.
    Core(Arc<Core>),
}

impl RemoteMemory for TargetMemory {
    #[inline]
    fn read_into(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemError> {
        match self {
            TargetMemory::Process(m) => m.read_into(addr, buf),
            TargetMemory::Core(c) => c.read_into(addr, buf),
        }
    }

    #[inline]
    fn read_batch(&self, reqs: &[(u64, usize)], buf: &mut [u8]) -> Result<(), MemError> {
        match self {
            TargetMemory::Process(m) => m.read_batch(reqs, buf),
            TargetMemory::Core(c) => c.read_batch(reqs, buf),
        }
    }
}
