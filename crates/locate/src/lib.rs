//! Finds the CPython runtime inside a target process without running anything in it.
//!
//! [`locate`] reads `/proc/PID/maps`, picks the ELF file that holds the interpreter (the
//! executable for static builds, else a `libpython*.so*`), decided by its symbols rather than
//! by file names, computes its load bias, resolves the runtime's symbols and establishes the
//! exact version from the target's memory.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod elf;
mod elf64;
mod error;
pub mod maps;
mod offline;
pub mod rootfs;
pub mod version;

pub use elf::analyses_reused;
pub use error::LocateError;
pub use offline::{locate_in, OpenMapped};

use elf::ElfInfo;
use maps::Mapping;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use strobe_memory::RemoteMemory;
use strobe_python_abi::Version;
use strobe_remote::procfs;

/// `PF_KTHREAD` and `PF_EXITING` from the kernel's `include/linux/sched.h`, in the `flags`
/// field of `/proc/PID/stat`: a kernel thread; a process that has begun exiting (as
/// `strobe_remote::procfs` reads them, here from the one stat line `locate` reads).
const PF_KTHREAD: u64 = 0x0020_0000;
const PF_EXITING: u64 = 0x0000_0004;

/// The writable segments we scan for the `sys.version` buffer are a few hundred KiB in real
/// interpreters; refuse anything beyond this.
const MAX_DATA_SCAN: usize = 64 << 20;

/// Where the exact version came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionSource {
    /// The `Py_Version` constant (3.11+), read from the target's memory.
    PyVersionSymbol,
    /// The `sys.version` string `Py_GetVersion()` left in the interpreter's data segment.
    VersionBuffer,
    /// The `PY_VERSION` string in the ELF file's `.rodata`.
    ElfString,
}

/// Where the interpreter lives in a target process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PythonProcess {
    /// Target process id.
    pub pid: i32,
    /// Exact interpreter version.
    pub version: Version,
    /// How `version` was established.
    pub version_source: VersionSource,
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
    /// Address of the collector's `collecting` static (≤3.6, unstripped builds only; from 3.7
    /// it is a field of `_PyRuntime` or of each interpreter).
    pub gc_collecting: Option<u64>,
    /// The build has `Py_DEBUG` symbols.
    pub debug_build: bool,
    /// Caveats worth showing the user (e.g. a fallback that was taken).
    pub notes: Vec<String>,
    /// The target's executable as `/proc/PID/exe` named it while the interpreter was looked
    /// for; `None` for a core file, or when the link could not be read.
    pub executable: Option<PathBuf>,
}

/// One file mapped into the target, with its mappings in address order.
struct MappedFile<'a> {
    first: &'a Mapping,
    mappings: Vec<&'a Mapping>,
}

impl MappedFile<'_> {
    fn path(&self) -> &str {
        self.first.path.as_deref().unwrap_or_default()
    }

    fn file_name(&self) -> &str {
        self.path().rsplit('/').next().unwrap_or_default()
    }

    /// The mapping with the lowest file offset.
    fn lowest(&self) -> &Mapping {
        self.mappings
            .iter()
            .min_by_key(|m| m.offset)
            .copied()
            .unwrap_or(self.first)
    }
}

/// Find the interpreter in process `pid`, reading its memory through `mem`.
pub fn locate<M: RemoteMemory>(pid: i32, mem: &M) -> Result<PythonProcess, LocateError> {
    if !procfs::exists(pid) {
        return Err(LocateError::NoSuchProcess { pid });
    }
    let maps_path = procfs::proc_dir(pid).join("maps");
    let text = std::fs::read_to_string(&maps_path).map_err(|e| match e.kind() {
        std::io::ErrorKind::PermissionDenied => LocateError::PermissionDenied { pid },
        _ if procfs::is_gone_or_exiting(pid) => LocateError::Exited { pid },
        _ => LocateError::Remote(strobe_remote::RemoteError::Proc {
            path: maps_path.clone(),
            error: e,
        }),
    })?;
    locate_with_maps(pid, mem, &text)
}

/// [`locate`], given the text of the process's `/proc/PID/maps` as just read by the caller
/// (`ProcessMemory::open_with_maps` reads it to check access): attaching reads it once.
pub fn locate_with_maps<M: RemoteMemory>(
    pid: i32,
    mem: &M,
    text: &str,
) -> Result<PythonProcess, LocateError> {
    // One read of the stat line, after the maps (kernel threads and zombies have readable,
    // empty ones): it names the process and tells a kernel thread, a zombie, or a process
    // that began exiting while its maps were read, from a Python process.
    let stat = procfs::stat(pid).map_err(|e| LocateError::from_remote(pid, e))?;
    if stat.flags & PF_KTHREAD != 0 {
        return Err(LocateError::KernelThread {
            pid,
            comm: stat.comm,
        });
    }
    if matches!(stat.state, 'Z' | 'X' | 'x') {
        return Err(LocateError::Zombie {
            pid,
            comm: stat.comm,
        });
    }
    let mappings = maps::parse(text);
    // A user-space process always has mappings; none means its memory was torn down on exit.
    if mappings.is_empty() || stat.flags & PF_EXITING != 0 {
        return Err(LocateError::Exited { pid });
    }
    let files = group_files(&mappings);

    // The executable is identified by identity (the inode /proc/PID/exe points at, or failing
    // that the same path, for overlay filesystems whose maps show other inode numbers), never
    // by name: renamed copies and venv symlinks are still Python.
    let exe_ino = std::fs::metadata(procfs::proc_dir(pid).join("exe"))
        .ok()
        .map(|md| md.ino());
    let exe_path = procfs::exe(pid).ok();
    let exe_name = exe_path
        .as_ref()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| stat.comm.clone());
    let is_exe = |f: &&MappedFile| {
        Some(f.first.inode) == exe_ino
            || exe_path
                .as_ref()
                .is_some_and(|p| p.to_str() == Some(f.path()))
    };
    let mut candidates: Vec<&MappedFile> = Vec::new();
    candidates.extend(files.iter().filter(is_exe));
    // A static interpreter in the executable wins over a libpython an extension module may
    // have dragged in; an embedding application has no runtime of its own, so libpython it is.
    candidates.extend(
        files
            .iter()
            .filter(|f| f.file_name().starts_with("libpython") && f.file_name().contains(".so")),
    );

    for file in candidates {
        let info = match elf::analyze_mapped(pid, file.lowest()) {
            Ok(x) => x,
            Err(_) if procfs::is_gone_or_exiting(pid) => return Err(LocateError::Exited { pid }),
            Err(e) => return Err(e),
        };
        if !info.has_runtime() {
            continue;
        }
        let mut found = describe(pid, mem, file, info)?;
        found.executable = exe_path;
        return Ok(found);
    }
    if procfs::is_gone_or_exiting(pid) {
        return Err(LocateError::Exited { pid });
    }
    Err(LocateError::NotPython {
        pid,
        name: exe_name,
    })
}

fn group_files(mappings: &[Mapping]) -> Vec<MappedFile<'_>> {
    let mut files: Vec<MappedFile> = Vec::new();
    for m in mappings.iter().filter(|m| m.is_file()) {
        let key = (m.dev_major, m.dev_minor, m.inode);
        match files
            .iter_mut()
            .find(|f| (f.first.dev_major, f.first.dev_minor, f.first.inode) == key)
        {
            Some(f) => f.mappings.push(m),
            None => files.push(MappedFile {
                first: m,
                mappings: vec![m],
            }),
        }
    }
    files
}

/// `X.Y` from a `libpythonX.Y[m|d|t...].so...` file name.
fn minor_from_lib_name(name: &str) -> Option<(u8, u8)> {
    let rest = name.strip_prefix("libpython")?;
    let (major, rest) = rest.split_once('.')?;
    let digits = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    Some((major.parse().ok()?, rest.get(..digits)?.parse().ok()?))
}

fn describe<M: RemoteMemory>(
    pid: i32,
    mem: &M,
    file: &MappedFile,
    info: ElfInfo,
) -> Result<PythonProcess, LocateError> {
    let bias = info
        .load_bias(file.lowest())
        .ok_or_else(|| LocateError::Elf {
            pid,
            path: info.path.clone(),
            reason: format!(
                "no loadable segment matches its mapping at file offset {:#x}",
                file.lowest().offset
            ),
        })?;
    let addr = |name: &str| info.sym(name).map(|s| s.value.wrapping_add(bias));
    let lib_minor = minor_from_lib_name(file.file_name());
    let (version, version_source) = exact_version(pid, mem, &info, bias, lib_minor)?;

    let mut notes = Vec::new();
    let runtime = addr("_PyRuntime");
    let interp_head = addr("interp_head");
    let tstate_current = addr("_PyThreadState_Current");
    if runtime.is_none() && interp_head.is_none() {
        notes.push(format!(
            "{} has no symbol table (stripped), so the interpreter list (interp_head) cannot \
             be found: falling back to _PyThreadState_Current, which shows only the thread \
             holding the GIL",
            file.path()
        ));
    }
    Ok(PythonProcess {
        pid,
        version,
        version_source,
        binary: info.path.clone(),
        binary_in_target: file.path().to_string(),
        load_bias: bias,
        runtime,
        interp_head,
        tstate_current,
        // The name is generic: only trusted where no `_PyRuntime` holds the flag.
        gc_collecting: addr("collecting").filter(|_| runtime.is_none()),
        debug_build: info.sym("_Py_RefTotal").is_some()
            || info.sym("_Py_NegativeRefcount").is_some(),
        notes,
        executable: None,
    })
}

/// Whether `v` agrees with what the file tells us independently of version strings.
fn plausible(v: Version, info: &ElfInfo, lib_minor: Option<(u8, u8)>) -> bool {
    let at_least = |major: u8, minor: u8| (v.major, v.minor) >= (major, minor);
    lib_minor.is_none_or(|mm| mm == (v.major, v.minor))
        // _PyRuntime appeared in 3.7 (Include/internal/pystate.h), Py_Version in 3.11.
        && info.sym("_PyRuntime").is_some() == at_least(3, 7)
        && info.sym("Py_Version").is_some() == at_least(3, 11)
        && matches!(v.level, 0xa | 0xb | 0xc | 0xf)
}

fn exact_version<M: RemoteMemory>(
    pid: i32,
    mem: &M,
    info: &ElfInfo,
    bias: u64,
    lib_minor: Option<(u8, u8)>,
) -> Result<(Version, VersionSource), LocateError> {
    let unknown = |found: String| LocateError::UnknownVersion {
        pid,
        binary: info.path.clone(),
        found,
    };
    // 3.11+: `const unsigned long Py_Version = PY_VERSION_HEX;` (Python/getversion.c).
    if let Some(sym) = info.sym("Py_Version") {
        let at = sym.value.wrapping_add(bias);
        let hex = if sym.size == 4 {
            mem.read_u32(at).map(u64::from)
        } else {
            mem.read_u64(at)
        }
        .map_err(|e| LocateError::from_mem(pid, e))?;
        let v = Version::from_hex(hex);
        if !plausible(v, info, lib_minor) {
            return Err(unknown(format!(
                "Py_Version reads {hex:#x}, which does not fit the binary"
            )));
        }
        return Ok((v, VersionSource::PyVersionSymbol));
    }

    // Older: the string Py_GetVersion() formatted into its static buffer at start-up, found
    // in the file's writable segments (.data/.bss) in the target.
    let mut in_memory = Vec::new();
    for load in info.loads.iter().filter(|l| l.writable) {
        let len = usize::try_from(load.memsz).unwrap_or(usize::MAX);
        let data = mem
            .read_vec(load.vaddr.wrapping_add(bias), len, MAX_DATA_SCAN)
            .map_err(|e| LocateError::from_mem(pid, e))?;
        for v in version::in_version_buffers(&data) {
            if !in_memory.contains(&v) {
                in_memory.push(v);
            }
        }
    }
    let fits = |found: &[Version]| match found
        .iter()
        .filter(|&&v| plausible(v, info, lib_minor))
        .collect::<Vec<_>>()[..]
    {
        [&v] => Some(v),
        _ => None,
    };
    if let Some(v) = fits(&in_memory) {
        return Ok((v, VersionSource::VersionBuffer));
    }
    // Last, the file's read-only strings: only read when memory did not tell.
    let in_rodata = info.rodata_versions();
    if let Some(v) = fits(&in_rodata) {
        return Ok((v, VersionSource::ElfString));
    }
    let list = |vs: &[Version]| {
        if vs.is_empty() {
            "none".to_string()
        } else {
            vs.iter()
                .map(|v| v.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        }
    };
    let expected = lib_minor
        .map(|(a, b)| format!(", expected {a}.{b} from the library name"))
        .unwrap_or_default();
    Err(unknown(format!(
        "no Py_Version symbol; sys.version strings in memory: {}; version strings in .rodata: \
         {}{expected}",
        list(&in_memory),
        list(&in_rodata)
    )))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn library_names_give_the_minor_version() {
        assert_eq!(minor_from_lib_name("libpython3.9.so.1.0"), Some((3, 9)));
        assert_eq!(minor_from_lib_name("libpython3.6m.so.1.0"), Some((3, 6)));
        assert_eq!(minor_from_lib_name("libpython3.13t.so.1.0"), Some((3, 13)));
        assert_eq!(minor_from_lib_name("libpython2.7.so.1.0"), Some((2, 7)));
        assert_eq!(minor_from_lib_name("libpython3.so"), None);
        assert_eq!(minor_from_lib_name("libpythonista.so"), None);
    }
}
