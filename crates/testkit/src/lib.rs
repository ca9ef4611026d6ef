//! Test support for strobe.
//!
//! [`ImageMemory`] is a sparse synthetic address space implementing `RemoteMemory`: tests lay
//! out CPython structures in it exactly as a header says, then run the real walker over it.
//! [`Ready`] starts a real target process and waits for its `READY` line.
//! [`interpreters`] is the one registry of the interpreters live tests run (with
//! [`per_interpreter!`] stamping one test per interpreter), [`TempDir`] a directory removed on
//! drop, [`Rng`] the deterministic generator of the property tests, and [`procfs`] what `/proc`
//! says about a target's threads; [`run_ok`] runs a tool a test needs. [`cpus`]: the CPUs a
//! test may use, [`last_cpu`] the one tests that need threads to share a CPU pin them to
//! ([`pin`], or [`Ready::python_script_on`] for a Python target started there).

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod cpus;
pub mod interpreters;
pub mod procfs;
mod ready;
mod rng;
mod tempdir;

pub use cpus::{last_cpu, pin};
pub use interpreters::Interpreter;
pub use ready::Ready;
pub use rng::Rng;
pub use tempdir::TempDir;

use std::collections::BTreeMap;
use strobe_memory::{MemError, RemoteMemory};

/// Run `cmd` to its end and return what it wrote to stdout; panics, with its stderr, if it
/// cannot be started or fails (a compiler or a tool a test needs).
pub fn run_ok(cmd: &mut std::process::Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Copy the executable `from` to `to` (with its permissions), for a test to run the copy.
///
/// Copied by a `cp` child, not in this process: a file being written cannot be executed
/// (`ETXTBSY`), and while this process held it open for writing, a child that another test
/// thread forked meanwhile would inherit the descriptor until its own `exec`, so starting the
/// copy could fail with "Text file busy" (seen in CI).
pub fn copy_executable(from: &std::path::Path, to: &std::path::Path) {
    run_ok(std::process::Command::new("cp").arg("--").arg(from).arg(to));
}

/// A sparse address space made of non-overlapping regions.
#[derive(Debug, Clone, Default)]
pub struct ImageMemory {
    regions: BTreeMap<u64, Vec<u8>>,
    next_alloc: u64,
}

impl ImageMemory {
    /// An empty image; [`ImageMemory::alloc`] hands out addresses from 0x10_0000 upwards.
    pub fn new() -> Self {
        ImageMemory {
            regions: BTreeMap::new(),
            next_alloc: 0x10_0000,
        }
    }

    /// Map `len` zero bytes at a fresh 16-byte-aligned address (with a gap after it, so that
    /// reads past the end fault) and return the address.
    pub fn alloc(&mut self, len: usize) -> u64 {
        let addr = self.next_alloc;
        self.map(addr, vec![0; len]);
        self.next_alloc = (addr + len as u64 + 0x1000 + 15) & !15;
        addr
    }

    /// Map `bytes` at `addr`. Panics if it overlaps an existing region (a test bug).
    pub fn map(&mut self, addr: u64, bytes: Vec<u8>) {
        let end = addr + bytes.len() as u64;
        if let Some((&a, r)) = self.regions.range(..end).next_back() {
            assert!(
                a + r.len() as u64 <= addr,
                "region at {addr:#x} overlaps {a:#x}"
            );
        }
        self.regions.insert(addr, bytes);
    }

    /// Overwrite bytes at `addr` (must lie inside one mapped region).
    pub fn write(&mut self, addr: u64, bytes: &[u8]) {
        let (&base, region) = self
            .regions
            .range_mut(..=addr)
            .next_back()
            .unwrap_or_else(|| panic!("write to unmapped {addr:#x}"));
        let off = (addr - base) as usize;
        assert!(
            off + bytes.len() <= region.len(),
            "write past region at {addr:#x}"
        );
        region[off..off + bytes.len()].copy_from_slice(bytes);
    }

    /// Write a little-endian `u64`.
    pub fn write_u64(&mut self, addr: u64, v: u64) {
        self.write(addr, &v.to_le_bytes());
    }

    /// Write a little-endian `u32`.
    pub fn write_u32(&mut self, addr: u64, v: u32) {
        self.write(addr, &v.to_le_bytes());
    }

    /// Write a little-endian `i32`.
    pub fn write_i32(&mut self, addr: u64, v: i32) {
        self.write(addr, &v.to_le_bytes());
    }

    /// Write one byte.
    pub fn write_u8(&mut self, addr: u64, v: u8) {
        self.write(addr, &[v]);
    }

    /// Number of mapped regions.
    pub fn region_count(&self) -> usize {
        self.regions.len()
    }
}

impl RemoteMemory for ImageMemory {
    fn read_into(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemError> {
        let fault = MemError::Fault {
            addr,
            len: buf.len(),
        };
        let (&base, region) = self
            .regions
            .range(..=addr)
            .next_back()
            .ok_or(fault.clone())?;
        let off = usize::try_from(addr - base).map_err(|_| fault.clone())?;
        let end = off.checked_add(buf.len()).ok_or(fault.clone())?;
        let src = region.get(off..end).ok_or(fault)?;
        buf.copy_from_slice(src);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_inside_and_faults_outside() {
        let mut m = ImageMemory::new();
        let a = m.alloc(16);
        m.write_u64(a + 8, 0xdead_beef);
        assert_eq!(m.read_u64(a + 8), Ok(0xdead_beef));
        assert!(matches!(m.read_u64(a + 12), Err(MemError::Fault { .. })));
        assert!(matches!(m.read_u64(a - 8), Err(MemError::Fault { .. })));
        assert!(matches!(
            m.read_vec(a, 1 << 20, 4096),
            Err(MemError::TooLarge { .. })
        ));
    }
}
