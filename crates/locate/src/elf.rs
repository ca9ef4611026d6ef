//! Opening a target's mapped ELF files from our side and extracting what we need from them.

use crate::elf64::{Elf64, ET_EXEC};
use crate::error::LocateError;
use crate::maps::Mapping;
use crate::rootfs::open_in_root;
use std::collections::HashMap;
use std::fs::{File, Metadata};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use strobe_remote::{procfs, SharedBytes};

/// Symbols we look up. `_Py_RefTotal` / `_Py_NegativeRefcount` exist only in `Py_DEBUG`
/// builds (`Py_REF_DEBUG`, implied by `Py_DEBUG`, see `Include/object.h`); release builds of
/// 2.7–3.15 have neither (checked against pyenv's and Debian sid's builds).
pub(crate) const WANTED: &[&str] = &[
    "_PyRuntime",
    "Py_Version",
    "interp_head",
    "_PyThreadState_Current",
    "_Py_RefTotal",
    "_Py_NegativeRefcount",
    // ≤3.6: the collector's flag, a static of Modules/gcmodule.c (`.symtab` only).
    "collecting",
];

/// Larger files are not interpreters; refusing them bounds what a strange mapping costs.
const MAX_FILE: u64 = 1 << 30;

/// A `PT_LOAD` program header.
pub(crate) use crate::elf64::Segment as Load;
/// A symbol's link-time value and size.
pub(crate) use crate::elf64::Symbol as Sym;

/// What we keep of an ELF file.
#[derive(Debug, Clone)]
pub(crate) struct ElfInfo {
    /// The file as we opened it.
    pub path: PathBuf,
    /// `ET_EXEC`: linked at fixed addresses.
    pub fixed: bool,
    pub loads: Vec<Load>,
    /// The [`WANTED`] symbols present, from `.dynsym` or `.symtab`.
    pub syms: HashMap<&'static str, Sym>,
    /// The file's `.rodata`, searched for a version string only when the target's memory
    /// does not tell the version (`ElfInfo::rodata_versions`): scanning the megabytes of
    /// a libpython's `.rodata` cost more than the rest of an attach.
    pub rodata: Option<SharedBytes>,
}

impl ElfInfo {
    pub fn sym(&self, name: &str) -> Option<Sym> {
        self.syms.get(name).copied()
    }

    /// Versions found as strings in `.rodata`.
    pub fn rodata_versions(&self) -> Vec<strobe_python_abi::Version> {
        self.rodata
            .as_deref()
            .map(crate::version::in_rodata)
            .unwrap_or_default()
    }

    /// Holds an interpreter runtime we know how to find.
    pub fn has_runtime(&self) -> bool {
        ["_PyRuntime", "interp_head", "_PyThreadState_Current"]
            .iter()
            .any(|s| self.syms.contains_key(s))
    }

    /// The difference between run-time and link-time addresses, from the mapping of the
    /// file with the lowest file offset: the kernel maps the `PT_LOAD` segment containing
    /// that offset so that `p_vaddr + bias` lands at `p_offset`'s place in the mapping.
    pub fn load_bias(&self, first: &Mapping) -> Option<u64> {
        if self.fixed {
            return Some(0);
        }
        let seg = self
            .loads
            .iter()
            .find(|l| l.offset >= first.offset && l.offset - first.offset < l.align.max(4096))?;
        let at = first.start.checked_add(seg.offset - first.offset)?;
        Some(at.wrapping_sub(seg.vaddr))
    }
}

/// `gnu_dev_major`/`gnu_dev_minor` from glibc's `<sys/sysmacros.h>`: how Linux packs a
/// device number into `st_dev`.
fn dev_parts(dev: u64) -> (u32, u32) {
    let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff);
    let minor = (dev & 0xff) | ((dev >> 12) & !0xff);
    (major as u32, minor as u32)
}

/// Whether metadata `md` is that of the file behind mapping `m` (same device and inode).
fn same_file(md: &Metadata, m: &Mapping) -> bool {
    md.ino() == m.inode && dev_parts(md.dev()) == (m.dev_major, m.dev_minor)
}

/// A file opened to be read: the path it was opened by, the handle, and its metadata taken
/// once (identity, size, modification time).
struct Opened {
    path: PathBuf,
    file: File,
    metadata: Option<Metadata>,
}

/// A file's identity and version as its metadata gives them (device, inode, size, modification
/// time): what an analysis is reused for.
type FileKey = (u64, u64, u64, i64, i64);

/// Analyses of the interpreter files opened lately. Attaching to many processes of the same
/// interpreter (`--subprocesses`: a pool's workers) reads and parses its file once, not once
/// per process: tens of megabytes and milliseconds each.
static ANALYZED: Mutex<Vec<(FileKey, ElfInfo)>> = Mutex::new(Vec::new());
/// Files whose analysis is kept.
const ANALYZED_FILES: usize = 16;
/// Analyses reused so far (tests check that reuse happens).
static REUSED: AtomicU64 = AtomicU64::new(0);

/// How many times an ELF analysis was reused instead of redone (per process, all files).
pub fn analyses_reused() -> u64 {
    REUSED.load(Ordering::Relaxed)
}

/// The analysis ([`analyze`]) of the file behind mapping `m` of process `pid`, opened as
/// [`open_mapped_file`] does; reused when the same file (same identity, size and modification time)
/// was analysed before, for any process.
pub(crate) fn analyze_mapped(pid: i32, m: &Mapping) -> Result<ElfInfo, LocateError> {
    let Opened {
        path,
        file,
        metadata,
    } = open_mapped_file(pid, m)?;
    let key = metadata
        .as_ref()
        .map(|md| (md.dev(), md.ino(), md.len(), md.mtime(), md.mtime_nsec()));
    let lock = || ANALYZED.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(key) = key {
        if let Some((_, info)) = lock().iter().find(|(k, _)| *k == key) {
            REUSED.fetch_add(1, Ordering::Relaxed);
            return Ok(ElfInfo {
                path,
                ..info.clone()
            });
        }
    }
    let len = metadata.as_ref().map_or(0, Metadata::len);
    let bytes = read_checked(pid, &path, &file, len)?;
    let info = analyze(pid, path, &bytes)?;
    if let Some(key) = key {
        let mut cache = lock();
        if cache.len() >= ANALYZED_FILES {
            cache.remove(0);
        }
        cache.push((key, info.clone()));
    }
    Ok(info)
}

/// Open the file behind a mapping of process `pid`, as the same file the target mapped.
///
/// The kernel prints mapping paths relative to *our* root when it can reach the file from
/// here (a chrooted target shows `/var/cache/.../usr/bin/python3`), and relative to the
/// target's mount namespace when it cannot (a container). So we try the path inside
/// `/proc/PID/root`, then as it is, keeping the one whose open handle has the mapping's device
/// and inode; then `/proc/PID/map_files/`, which is the mapped file itself (root only); and
/// last the path inside the target's root even if it does not match (overlay filesystems
/// report other device numbers).
///
/// Paths inside the target's root are opened with [`open_in_root`]: through `/proc/PID/root`
/// the kernel would follow an absolute symlink of the target's filesystem to *our* file of
/// that name, so a container could make us read any host file. A host path that
/// does not match the mapping is never used.
fn open_mapped_file(pid: i32, m: &Mapping) -> Result<Opened, LocateError> {
    let path = m.path.as_deref().unwrap_or_default();
    let opened = |(path, file): (PathBuf, File)| Opened {
        path,
        metadata: file.metadata().ok(),
        file,
    };
    let matches = |o: &Opened| o.metadata.as_ref().is_some_and(|md| same_file(md, m));
    let mut in_root = open_in_root(&procfs::root(pid), path).ok().map(opened);
    if let Some(o) = in_root.take_if(|o| matches(o)) {
        return Ok(o);
    }
    let map_file = procfs::proc_dir(pid).join(format!("map_files/{:x}-{:x}", m.start, m.end));
    let open = |p: PathBuf| File::open(&p).ok().map(|file| opened((p, file)));
    open(PathBuf::from(path))
        .filter(matches)
        .or_else(|| open(map_file))
        .or(in_root)
        .ok_or_else(|| LocateError::Elf {
            pid,
            path: PathBuf::from(path),
            reason: "the file is not reachable from here (not through /proc/PID/root either)"
                .into(),
        })
}

/// The whole file behind `file` (opened as `chosen`, `len` bytes long), mapped read-only
/// (bounded by [`MAX_FILE`]). A file truncated under the mapping is handled as `SharedBytes`
/// documents (crates/remote/src/map_binary.rs): the files are binaries the target has mapped
/// and runs. Only the pages read are ever loaded.
fn read_checked(
    pid: i32,
    chosen: &Path,
    file: &File,
    len: u64,
) -> Result<SharedBytes, LocateError> {
    let chosen = chosen.to_path_buf();
    if len > MAX_FILE {
        return Err(LocateError::Elf {
            pid,
            path: chosen,
            reason: format!("{len} bytes is too large for an interpreter"),
        });
    }
    // Map the handle we checked, never the path again.
    SharedBytes::map_file(file).map_err(|e| LocateError::Elf {
        pid,
        path: chosen,
        reason: e.to_string(),
    })
}

/// Read an ELF file's header, loadable segments and wanted symbols (see `elf64/` for how
/// little of the file that touches), and note where its `.rodata` is.
pub(crate) fn analyze(
    pid: i32,
    path: PathBuf,
    bytes: &SharedBytes,
) -> Result<ElfInfo, LocateError> {
    let malformed = |reason: String| LocateError::Elf {
        pid,
        path: path.clone(),
        reason,
    };
    let elf = Elf64::parse(bytes).map_err(malformed)?;
    let loads = elf.loads().map_err(malformed)?;
    // .dynsym first: exported symbols are what the interpreter's ABI promises. .symtab adds
    // statics such as `interp_head` (≤3.6) in unstripped builds. Every other name we want is
    // exported API (PyAPI_DATA / PyAPI_FUNC) wherever it exists, so where .dynsym has
    // `_PyRuntime` (3.7+, exported) .symtab has nothing more for us: checked against pyenv's
    // 2.7–3.13, Debian's 3.11 and sid's 3.13–3.15 and their debug builds. An executable that
    // does not export its symbols (an application embedding a static libpython without
    // --export-dynamic) has no `_PyRuntime` in .dynsym, so .symtab is searched.
    let found = elf.symbols(WANTED, |found| {
        WANTED
            .iter()
            .zip(found)
            .any(|(&name, sym)| name == "_PyRuntime" && sym.is_none())
    });
    let syms = WANTED
        .iter()
        .zip(found)
        .filter_map(|(&name, sym)| Some((name, sym?)))
        .collect();
    let rodata = elf
        .section_range(".rodata")
        .and_then(|range| bytes.slice(range));
    Ok(ElfInfo {
        path,
        fixed: elf.e_type() == ET_EXEC,
        loads,
        syms,
        rodata,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn device_numbers_decode_like_glibc() {
        // makedev(0xfe, 0) and makedev(259, 2) (an NVMe partition).
        assert_eq!(dev_parts(0xfe00), (0xfe, 0));
        assert_eq!(dev_parts((259 << 8) | 2), (259, 2));
    }

    fn map(start: u64, offset: u64) -> Mapping {
        Mapping {
            start,
            end: start + 0x1000,
            read: true,
            write: false,
            exec: false,
            offset,
            dev_major: 0,
            dev_minor: 0,
            inode: 1,
            path: Some("/x".into()),
            deleted: false,
        }
    }

    fn info(fixed: bool, loads: Vec<Load>) -> ElfInfo {
        ElfInfo {
            path: "/x".into(),
            fixed,
            loads,
            syms: HashMap::new(),
            rodata: None,
        }
    }

    #[test]
    fn bias_of_a_shared_library() {
        let loads = vec![
            Load {
                vaddr: 0,
                offset: 0,
                memsz: 0x5000,
                align: 0x1000,
                writable: false,
            },
            Load {
                vaddr: 0x6000,
                offset: 0x5000,
                memsz: 0x100,
                align: 0x1000,
                writable: true,
            },
        ];
        assert_eq!(
            info(false, loads).load_bias(&map(0x7f00_0000_0000, 0)),
            Some(0x7f00_0000_0000)
        );
    }

    #[test]
    fn bias_when_the_lowest_mapping_is_not_at_offset_zero() {
        // Only the second segment is mapped where we look (vaddr and offset differ by a page).
        let loads = vec![Load {
            vaddr: 0x41_2345,
            offset: 0x2345,
            memsz: 0x100,
            align: 0x1000,
            writable: false,
        }];
        assert_eq!(
            info(false, loads).load_bias(&map(0x5555_0000_2000, 0x2000)),
            Some(0x5555_0000_2000 + 0x345 - 0x41_2345)
        );
    }

    #[test]
    fn finds_py_version_in_a_real_libpython() {
        // pyenv's libpython3.9 keeps PY_VERSION only as the tail of its install prefix.
        let path = PathBuf::from("/root/.pyenv/versions/3.9.18/lib/libpython3.9.so.1.0");
        let bytes = SharedBytes::map_file(&File::open(&path).unwrap()).unwrap();
        let info = analyze(0, path, &bytes).unwrap();
        assert_eq!(
            info.rodata_versions(),
            vec![crate::version::parse("3.9.18").unwrap()]
        );
        assert!(!info.fixed);
        assert!(info.sym("_PyRuntime").is_some());
        assert!(info.sym("Py_Version").is_none());
        assert!(info.sym("_Py_RefTotal").is_none());
    }

    #[test]
    fn fixed_executables_have_no_bias() {
        assert_eq!(info(true, vec![]).load_bias(&map(0x40_0000, 0)), Some(0));
    }
}
