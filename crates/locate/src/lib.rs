//! Finds the CPython runtime inside a target process without running anything in it.

#![warn(missing_docs)]

use std::path::PathBuf;
use strobe_python_abi::Version;

/// Where the interpreter lives in a target process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PythonProcess {
    /// Target process id.
    pub pid: i32,
    /// Exact interpreter version.
    pub version: Version,
    /// The ELF file holding the runtime, as opened from the host (through `/proc/PID/root`).
    pub binary: PathBuf,
    /// The same file as the target's `/proc/PID/maps` names it.
    pub binary_in_target: String,
    /// Difference between run-time and link-time addresses of that ELF (0 for non-PIE).
    pub load_bias: u64,
    /// Address of `_PyRuntime` (3.7+).
    pub runtime: Option<u64>,
    /// Address of the `interp_head` static (≤3.6).
    pub interp_head: Option<u64>,
    /// Address of the `_PyThreadState_Current` variable (≤3.6).
    pub tstate_current: Option<u64>,
    /// The build has `Py_DEBUG` symbols.
    pub debug_build: bool,
}
