//! A core file as a target: an ELF core (written by the kernel or by gdb's `gcore`), mapped
//! with `memmap2` (through `strobe_remote::SharedBytes`) and read through the same
//! [`RemoteMemory`] trait as a live process.
//!
//! - Memory comes from the core's `PT_LOAD` segments. Pages the core left out (the kernel and
//!   `gcore` skip file-backed pages nobody wrote to: the text and read-only data of the
//!   executable and its libraries) come from the files its `NT_FILE` note names, each checked
//!   against the build-id the core holds for it where the core holds one.
//! - Threads and their registers come from `NT_PRSTATUS`, the process id from `NT_PRPSINFO`.
//! - Nothing is read from `/proc`: the process is gone.
//!
//! Paths in `NT_FILE` are the dumped process's: `--sysroot` (a chroot, a container's root)
//! opens them inside it with [`strobe_locate::rootfs::open_in_root`], and `--executable` replaces
//! the executable's.
//!
//! The core is mapped, not read: opening a 1 GB core touches its headers and notes only, and a
//! dump touches the pages the walker reads. Like the binaries `SharedBytes` maps, a core must
//! not be truncated while strobe reads it (a mapped page past the new end raises SIGBUS); cores
//! are written once and then only read.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod elf;
mod notes;

pub use notes::{CoreThread, FileMapping};

use std::fs::File;
use std::path::{Path, PathBuf};
use strobe_memory::{MemError, RemoteMemory};
use strobe_remote::SharedBytes;

/// Why a core file cannot be read. Every message is meant for the user.
#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    /// The file could not be opened or mapped.
    #[error("cannot open core file {}: {error}", path.display())]
    Open {
        /// The core file.
        path: PathBuf,
        /// What the system said.
        error: std::io::Error,
    },
    /// Not an ELF core.
    #[error("{} is not an ELF core file: {what}", path.display())]
    NotCore {
        /// The file.
        path: PathBuf,
        /// What it is instead.
        what: String,
    },
    /// A core of another machine.
    #[error(
        "{} is a core file of another architecture (ELF machine {machine}): strobe reads \
         x86-64 cores",
        path.display()
    )]
    Architecture {
        /// The core file.
        path: PathBuf,
        /// `e_machine`.
        machine: u16,
    },
    /// The file is shorter than its headers say.
    #[error(
        "core file {} is truncated: it has {size} bytes, but its {what} extend to byte \
         {needed}; it was cut short while being written (disk full, a core size limit such \
         as `ulimit -c`, or an interrupted copy): take the core again",
        path.display()
    )]
    Truncated {
        /// The core file.
        path: PathBuf,
        /// Its size.
        size: u64,
        /// Where the furthest structure ends.
        needed: u64,
        /// Which structure that is.
        what: &'static str,
    },
    /// No thread notes.
    #[error(
        "core file {} has no thread notes (NT_PRSTATUS): it is not a process core strobe \
         can read",
        path.display()
    )]
    NoThreads {
        /// The core file.
        path: PathBuf,
    },
    /// `--executable` is not the program that was dumped.
    #[error(
        "core file {} was not written by {}: the dumped executable ({core_path}) has build-id \
         {core_id}, {} has {file_id}; pass the executable the process ran with --executable",
        core.display(),
        executable.display(),
        executable.display()
    )]
    WrongExecutable {
        /// The core file.
        core: PathBuf,
        /// The file given with `--executable`.
        executable: PathBuf,
        /// The executable's path in the core's `NT_FILE` note.
        core_path: String,
        /// Build-id the core holds.
        core_id: String,
        /// Build-id of the file given.
        file_id: String,
    },
    /// `--executable` was given, but the core names no executable to replace.
    #[error(
        "core file {} names no executable in its NT_FILE note, so --executable cannot be \
         applied",
        path.display()
    )]
    NoExecutable {
        /// The core file.
        path: PathBuf,
    },
}

/// How the files a core names are found.
#[derive(Debug, Clone, Copy, Default)]
pub struct CoreOptions<'a> {
    /// The executable the dumped process ran, in place of the path the core names.
    pub executable: Option<&'a Path>,
    /// The dumped process's root directory (a chroot or a container's root): the core's paths
    /// are resolved inside it.
    pub sysroot: Option<&'a Path>,
}

/// A `PT_LOAD` segment.
#[derive(Debug, Clone, Copy)]
struct Segment {
    /// `PF_X` set.
    exec: bool,
    vaddr: u64,
    memsz: u64,
    offset: u64,
    filesz: u64,
}

/// One file `NT_FILE` names, opened from here.
#[derive(Debug)]
struct NamedFile {
    /// The path as the core names it.
    path: String,
    /// Where it was found from here, and its bytes; or why it cannot be used.
    opened: Result<(PathBuf, SharedBytes), String>,
}

/// An opened core file. Implements [`RemoteMemory`] over the dumped address space.
#[derive(Debug)]
pub struct Core {
    path: PathBuf,
    bytes: SharedBytes,
    /// Sorted by address.
    segments: Vec<Segment>,
    notes: notes::CoreNotes,
    /// `notes.files` sorted by address, each with the index of its file in `files`.
    mappings: Vec<(FileMapping, usize)>,
    files: Vec<NamedFile>,
    /// Index into `files` of the executable.
    executable: Option<usize>,
    sysroot: Option<PathBuf>,
    warnings: Vec<String>,
}

/// `AT_PHDR`, `AT_ENTRY` in the auxiliary vector (`include/uapi/linux/auxvec.h`).
const AT_PHDR: u64 = 3;
const AT_ENTRY: u64 = 9;
/// Most files opened for one core (a process maps a few hundred at most).
const MAX_FILES: usize = 4096;
/// The first page of an ELF file: where its headers, and usually its build-id note, are.
const PAGE: u64 = 4096;

impl Core {
    /// Map the core at `path` and read its headers and notes; open the files it names.
    pub fn open(path: &Path, opts: CoreOptions<'_>) -> Result<Core, CoreError> {
        let open_err = |error| CoreError::Open {
            path: path.to_path_buf(),
            error,
        };
        let file = File::open(path).map_err(open_err)?;
        let bytes = SharedBytes::map_file(&file).map_err(open_err)?;
        let not_core = |what: String| CoreError::NotCore {
            path: path.to_path_buf(),
            what,
        };
        let size = bytes.len() as u64;
        let truncated = |needed: u64, what| CoreError::Truncated {
            path: path.to_path_buf(),
            size,
            needed,
            what,
        };
        let header = elf::header(&bytes).map_err(|p| match p {
            _ if bytes.len() < 64 && bytes.starts_with(b"\x7fELF") => truncated(64, "file header"),
            elf::ElfProblem::NotElf64 => not_core("not a 64-bit little-endian ELF file".into()),
            elf::ElfProblem::OutOfFile(what) => {
                not_core(format!("{what} extend past the end of the file"))
            }
        })?;
        if header.e_type != elf::ET_CORE {
            return Err(not_core(format!(
                "its ELF type is {} (4 is a core; 2 an executable, 3 a shared object)",
                header.e_type
            )));
        }
        if header.machine != elf::EM_X86_64 {
            return Err(CoreError::Architecture {
                path: path.to_path_buf(),
                machine: header.machine,
            });
        }
        let phdrs = elf::program_headers(&bytes, &header).map_err(|_| {
            let end = header
                .phoff
                .saturating_add((header.phnum as u64).saturating_mul(header.phentsize as u64));
            truncated(end, "program headers")
        })?;
        let mut segments = Vec::new();
        let mut notes = notes::CoreNotes::default();
        for ph in &phdrs {
            let end = ph.offset.saturating_add(ph.filesz);
            match ph.p_type {
                elf::PT_LOAD => {
                    if end > size {
                        return Err(truncated(end, "memory segments"));
                    }
                    segments.push(Segment {
                        exec: ph.flags & 1 != 0,
                        vaddr: ph.vaddr,
                        memsz: ph.memsz,
                        offset: ph.offset,
                        filesz: ph.filesz.min(ph.memsz),
                    });
                }
                elf::PT_NOTE => {
                    if end > size {
                        return Err(truncated(end, "notes"));
                    }
                    let data = &bytes[ph.offset as usize..end as usize];
                    for note in elf::notes(data) {
                        notes.add(&note);
                    }
                }
                _ => {}
            }
        }
        segments.sort_by_key(|s| s.vaddr);
        if notes.threads.is_empty() {
            return Err(CoreError::NoThreads {
                path: path.to_path_buf(),
            });
        }
        let mut core = Core {
            path: path.to_path_buf(),
            bytes,
            segments,
            notes,
            mappings: Vec::new(),
            files: Vec::new(),
            executable: None,
            sysroot: opts.sysroot.map(Path::to_path_buf),
            warnings: Vec::new(),
        };
        core.open_files(opts)?;
        Ok(core)
    }

    /// Open every file `NT_FILE` names, check each against the build-id the core holds.
    fn open_files(&mut self, opts: CoreOptions<'_>) -> Result<(), CoreError> {
        let mut mapped: Vec<FileMapping> = self.notes.files.clone();
        mapped.sort_by_key(|m| m.start);
        let mut files: Vec<NamedFile> = Vec::new();
        let mut mappings = Vec::with_capacity(mapped.len());
        for m in mapped {
            let index = match files.iter().position(|f| f.path == m.path) {
                Some(i) => i,
                None => {
                    files.push(NamedFile {
                        path: m.path.clone(),
                        opened: Err(String::new()),
                    });
                    files.len() - 1
                }
            };
            mappings.push((m, index));
        }
        self.mappings = mappings;
        // The executable: the file mapped where the auxiliary vector says the program's
        // headers (or its entry point) are.
        let at = |key| self.notes.auxv.iter().find(|(k, _)| *k == key).map(|e| e.1);
        self.executable = [AT_PHDR, AT_ENTRY]
            .into_iter()
            .filter_map(at)
            .find_map(|addr| self.mapping_at(addr).map(|(_, i)| i));
        if opts.executable.is_some() && self.executable.is_none() {
            return Err(CoreError::NoExecutable {
                path: self.path.clone(),
            });
        }
        for (i, file) in files.iter_mut().enumerate() {
            let given = opts.executable.filter(|_| self.executable == Some(i));
            let opened = if i >= MAX_FILES {
                Err(format!("more than {MAX_FILES} files named: not opened"))
            } else {
                match (given, opts.sysroot) {
                    (Some(exe), _) => open_regular(exe.to_path_buf()),
                    // Inside the sysroot by the kernel (`openat2`, non-blocking: a FIFO opens
                    // and is refused below), so that no link there leads out of it.
                    (None, Some(root)) => strobe_locate::rootfs::open_in_root(root, &file.path)
                        .map_err(|e| format!("not found under {}: {e}", root.display()))
                        .and_then(|(p, f)| map_regular(p, &f)),
                    (None, None) => open_regular(PathBuf::from(&file.path)),
                }
            };
            let opened = match opened {
                Ok((p, b)) => match self.build_id_mismatch(i, &b) {
                    None => Ok((p, b)),
                    Some((core_id, file_id)) => {
                        if let Some(exe) = given {
                            return Err(CoreError::WrongExecutable {
                                core: self.path.clone(),
                                executable: exe.to_path_buf(),
                                core_path: file.path.clone(),
                                core_id,
                                file_id,
                            });
                        }
                        Err(format!(
                            "{} is not the file the process had mapped (build-id {file_id}, \
                             the core holds {core_id})",
                            p.display()
                        ))
                    }
                },
                Err(e) => Err(e),
            };
            file.opened = opened;
        }
        self.files = files;
        Ok(())
    }

    /// The build-ids (core's, file's, in hex) when the core holds the first page of file
    /// `index` (the kernel and gcore keep ELF headers) with a build-id note in it, and the
    /// file's differs.
    fn build_id_mismatch(&self, index: usize, file: &[u8]) -> Option<(String, String)> {
        let in_core = self.core_build_id(index)?;
        let (id, _) = elf::build_id(file).unwrap_or_default();
        let shown = |id: &[u8]| {
            if id.is_empty() {
                "none".to_string()
            } else {
                hex(id)
            }
        };
        (in_core != id).then(|| (shown(&in_core), shown(&id)))
    }

    /// The build-id in the core's copy of the first page of file `index`.
    fn core_build_id(&self, index: usize) -> Option<Vec<u8>> {
        let (m, _) = self
            .mappings
            .iter()
            .find(|(m, i)| *i == index && m.offset == 0)?;
        let mut page = vec![0u8; (m.end - m.start).min(PAGE) as usize];
        if !self.read_dumped(m.start, &mut page) {
            return None;
        }
        elf::build_id(&page).map(|(id, _)| id)
    }

    /// The core file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The dumped process's id (`NT_PRPSINFO`, else the first thread's).
    pub fn pid(&self) -> u32 {
        self.notes
            .pid
            .or_else(|| self.notes.threads.first().map(|t| t.tid))
            .unwrap_or(0)
    }

    /// The process's command name (`NT_PRPSINFO`'s `pr_fname`), if the core has it.
    pub fn command(&self) -> Option<&str> {
        self.notes.command.as_deref()
    }

    /// The dumped threads, in the core's order.
    pub fn threads(&self) -> &[CoreThread] {
        &self.notes.threads
    }

    /// The file mappings (`NT_FILE`), in address order.
    pub fn mappings(&self) -> impl Iterator<Item = &FileMapping> {
        self.mappings.iter().map(|(m, _)| m)
    }

    /// The `--sysroot` the core's files are looked up in.
    pub fn sysroot(&self) -> Option<&Path> {
        self.sysroot.as_deref()
    }

    /// Whether the file mapping `m` (one of [`Core::mappings`]) held code: the core's segment
    /// there says so (`PF_X`; the kernel writes a segment for every mapping), else (gcore
    /// leaves code mappings out) the file's own `PT_LOAD` holding the mapped offset does.
    pub fn mapping_executable(&self, m: &FileMapping) -> bool {
        if let Some(s) = self.segment_at(m.start) {
            return s.exec;
        }
        let Some((_, index)) = self.mappings.iter().find(|(x, _)| x == m) else {
            return false;
        };
        let Some(Ok((_, bytes))) = self.files.get(*index).map(|f| f.opened.as_ref()) else {
            return false;
        };
        let Ok(h) = elf::header(bytes) else {
            return false;
        };
        elf::program_headers(bytes, &h).is_ok_and(|phdrs| {
            phdrs.iter().any(|ph| {
                ph.p_type == elf::PT_LOAD
                    && ph.flags & 1 != 0
                    && ph.offset & !(PAGE - 1) <= m.offset
                    && m.offset < ph.offset.saturating_add(ph.filesz)
            })
        })
    }

    /// The executable's path as the core names it.
    pub fn executable(&self) -> Option<&str> {
        self.executable.map(|i| self.files[i].path.as_str())
    }

    /// The file named `path` in the core (as the core names it), opened from here: its path
    /// here and bytes, or why it cannot be had (missing, or not the file the process mapped).
    pub fn file(&self, path: &str) -> Result<(PathBuf, SharedBytes), String> {
        match self.files.iter().find(|f| f.path == path) {
            Some(f) => f.opened.clone(),
            None => Err(format!("the core names no file {path}")),
        }
    }

    /// Files the core names that could not be opened or did not match, one line each.
    pub fn file_problems(&self) -> Vec<String> {
        let mut out = self.warnings.clone();
        out.extend(
            self.files
                .iter()
                .filter_map(|f| f.opened.as_ref().err().map(|e| format!("{}: {e}", f.path))),
        );
        out
    }

    /// Whether the core itself holds the bytes at `addr` (not through a named file).
    pub fn holds(&self, addr: u64, len: usize) -> bool {
        let mut buf = vec![0u8; len.min(1 << 20)];
        self.read_dumped(addr, &mut buf)
    }

    /// Whether the core lacks thread `t`'s stack: no bytes, or only zeros, where its stack
    /// pointer points (a live stack there holds return addresses and saved registers). gdb
    /// 13's `gcore` writes zeros for a whole 1 MiB chunk it fails to read, which happens on
    /// thread stacks whose guard pages glibc 2.41+ installs inside the mapping
    /// (`MADV_GUARD_INSTALL`): the kernel's cores have them.
    pub fn stack_missing(&self, t: &CoreThread) -> bool {
        let mut top = [0u8; 64];
        !self.read_dumped(t.rsp, &mut top) || top.iter().all(|&b| b == 0)
    }

    fn segment_at(&self, addr: u64) -> Option<&Segment> {
        let i = self.segments.partition_point(|s| s.vaddr <= addr);
        let s = self.segments.get(i.checked_sub(1)?)?;
        (addr - s.vaddr < s.memsz).then_some(s)
    }

    fn mapping_at(&self, addr: u64) -> Option<(&FileMapping, usize)> {
        let i = self.mappings.partition_point(|(m, _)| m.start <= addr);
        let (m, f) = self.mappings.get(i.checked_sub(1)?)?;
        (addr < m.end).then_some((m, *f))
    }

    /// Copy from the core's own segments only; `false` if any byte is not in them.
    fn read_dumped(&self, addr: u64, buf: &mut [u8]) -> bool {
        let mut done = 0;
        while done < buf.len() {
            let Some(a) = addr.checked_add(done as u64) else {
                return false;
            };
            let Some(n) = self.copy_from_core(a, &mut buf[done..]) else {
                return false;
            };
            done += n;
        }
        true
    }

    /// Copy what the segment holding `addr` has in the file, up to `out.len()` bytes.
    fn copy_from_core(&self, addr: u64, out: &mut [u8]) -> Option<usize> {
        let s = self.segment_at(addr)?;
        let inside = addr - s.vaddr;
        if inside >= s.filesz {
            return None;
        }
        let n = usize::try_from((s.filesz - inside).min(out.len() as u64)).ok()?;
        let from = usize::try_from(s.offset.checked_add(inside)?).ok()?;
        out[..n].copy_from_slice(self.bytes.get(from..from.checked_add(n)?)?);
        Some(n)
    }

    /// Copy from the file mapped at `addr`, up to `out.len()` bytes. Bytes of the mapping past
    /// the file's end (the rest of its last page) read as zeros, as they do in the process.
    fn copy_from_file(&self, addr: u64, out: &mut [u8]) -> Option<usize> {
        let (m, f) = self.mapping_at(addr)?;
        let (_, bytes) = self.files.get(f)?.opened.as_ref().ok()?;
        let n = usize::try_from((m.end - addr).min(out.len() as u64)).ok()?;
        let from = m.offset.checked_add(addr - m.start)?;
        let out = &mut out[..n];
        let have = bytes.len() as u64;
        if from >= have {
            out.fill(0);
        } else {
            let from = from as usize;
            let k = n.min(bytes.len() - from);
            out[..k].copy_from_slice(&bytes[from..from + k]);
            out[k..].fill(0);
        }
        Some(n)
    }
}

impl RemoteMemory for Core {
    fn read_into(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemError> {
        let fault = MemError::Fault {
            addr,
            len: buf.len(),
        };
        let mut done = 0;
        while done < buf.len() {
            let a = addr.checked_add(done as u64).ok_or(fault.clone())?;
            let out = &mut buf[done..];
            let n = self
                .copy_from_core(a, out)
                .or_else(|| {
                    // A hole left by the core: stop at the next segment's start so that
                    // dumped (possibly written-to) pages win over the file's.
                    let next = self.segments.partition_point(|s| s.vaddr <= a);
                    let limit = self
                        .segments
                        .get(next)
                        .map_or(out.len() as u64, |s| s.vaddr - a)
                        .min(out.len() as u64) as usize;
                    self.copy_from_file(a, &mut out[..limit.max(1)])
                })
                .filter(|&n| n > 0)
                .ok_or(fault.clone())?;
            done += n;
        }
        Ok(())
    }
}

/// The regular file at `p` (a path named on our side), opened and mapped. Regular files only:
/// opening a FIFO a hostile core names would block, so the path is checked first.
fn open_regular(p: PathBuf) -> Result<(PathBuf, SharedBytes), String> {
    let md = std::fs::metadata(&p).map_err(|e| format!("{}: {e}", p.display()))?;
    if !md.is_file() {
        return Err(format!("{} is not a regular file", p.display()));
    }
    let f = File::open(&p).map_err(|e| format!("{}: {e}", p.display()))?;
    map_regular(p, &f)
}

/// `f` (opened as `p`) mapped, if it is a regular file.
fn map_regular(p: PathBuf, f: &File) -> Result<(PathBuf, SharedBytes), String> {
    if !f.metadata().is_ok_and(|m| m.is_file()) {
        return Err(format!("{} is not a regular file", p.display()));
    }
    let b = SharedBytes::map_file(f).map_err(|e| format!("{}: {e}", p.display()))?;
    Ok((p, b))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
