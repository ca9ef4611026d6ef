//! [`ModuleMap`]: a process's executable mappings, each with the binary behind it, checked
//! against the image in the target's memory.

use crate::binary::{Binaries, Binary, LoadProblem};
use crate::elf::{build_id_in_notes, hex};
use std::collections::HashMap;
use std::fs::File;
use std::ops::Range;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use strobe_locate::maps::Mapping;
use strobe_memory::{le, RemoteMemory};
use strobe_remote::procfs;

/// One page: the ELF header and program headers of a mapped file are read from it.
const HEADER_PAGE: usize = 4096;
/// The vDSO is two to four pages; a larger `[vdso]` mapping is not read.
const MAX_VDSO: u64 = 1 << 20;
/// Notes (the build-id among them) are a few hundred bytes.
const MAX_NOTES: u64 = 4096;
const PT_LOAD: u32 = 1;
const PT_NOTE: u32 = 4;

/// What a module is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModuleKind {
    /// A mapped ELF file (the executable, a shared library, an extension module).
    File,
    /// The kernel's vDSO, read from the target's memory.
    Vdso,
    /// Executable memory not backed by a file: JIT code, or anything not recognised.
    Anonymous,
    /// CPython's `perf` trampolines (3.12+, `-X perf`): anonymous memory filled with copies of
    /// the interpreter's `_Py_trampoline_func_start` template, recognised by its bytes.
    PerfTrampolines,
}

/// Name of the modules of kind [`ModuleKind::PerfTrampolines`].
pub const PERF_TRAMPOLINES: &str = "[perf-trampolines]";

/// The longest trampoline template we expect (CPython's is 8 to 16 bytes).
const TRAMPOLINE_LIMIT: u64 = 64;

/// Name and identity of a module, as frames refer to it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ModuleId {
    /// The path as the target names it (from `/proc/PID/maps`), `[vdso]`, or `[anon]`.
    pub path: String,
    /// The build-id of the image in the target's memory, when it has one.
    pub build_id: Option<Vec<u8>>,
}

impl ModuleId {
    /// The file name (last path component), as frames print it.
    pub fn short_name(&self) -> &str {
        self.path.rsplit('/').next().unwrap_or(&self.path)
    }
}

/// Why a module has no binary to unwind and symbolise with (its frames are then unwound by
/// frame pointer and shown as `module+0xoffset`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModuleProblem {
    /// No file could be opened for the mapping.
    #[error("{path}: the file is not reachable (neither as named, nor through /proc/PID/root or /proc/PID/map_files)")]
    Unreachable {
        /// The module.
        path: String,
    },
    /// The file there now is not the one the target mapped.
    #[error("{path}: the file on disk (build-id {found}) is not the one mapped (build-id {expected}); it was replaced since the process loaded it")]
    Replaced {
        /// The module.
        path: String,
        /// Build-id of the image in memory.
        expected: String,
        /// Build-id of the file found.
        found: String,
    },
    /// The image in memory could not be read or is not ELF.
    #[error("{path}: the image in memory cannot be read as ELF ({reason})")]
    BadImage {
        /// The module.
        path: String,
        /// What went wrong.
        reason: String,
    },
    /// The file could not be used.
    #[error("{path}: {reason}")]
    Unusable {
        /// The module.
        path: String,
        /// What went wrong.
        reason: String,
    },
}

/// One executable mapping (or several adjacent ones of the same file) of the target.
#[derive(Debug, Clone)]
pub struct Module {
    /// Name and build-id.
    pub id: Arc<ModuleId>,
    /// What it is.
    pub kind: ModuleKind,
    /// The executable addresses.
    pub avma: Range<u64>,
    /// Load bias: a stated address (as in the ELF file) plus this is the address in the
    /// target. 0 for anonymous memory (offsets are then from `avma.start`).
    pub bias: u64,
    /// The binary, when one was found and matches the image.
    pub binary: Option<Arc<Binary>>,
    /// Why there is no binary.
    pub problem: Option<ModuleProblem>,
    /// For [`ModuleKind::PerfTrampolines`]: the template the trampolines are copies of.
    pub trampoline_template: Option<Vec<u8>>,
}

impl Module {
    /// The stated (file) address of target address `avma`, which is also the `+0xoffset`
    /// shown for frames without symbols (`addr2line -e FILE 0xoffset` resolves it).
    pub fn svma(&self, avma: u64) -> u64 {
        match self.kind {
            ModuleKind::Anonymous | ModuleKind::PerfTrampolines => {
                avma.wrapping_sub(self.avma.start)
            }
            _ => avma.wrapping_sub(self.bias),
        }
    }

    /// The bytes the module's binary has at target addresses `avma` (its code as the file
    /// holds it, which is what the target runs: the binary's build-id matched the image's),
    /// when they lie in one loaded section of it. `None` for memory with no binary.
    pub fn file_bytes(&self, avma: Range<u64>) -> Option<&[u8]> {
        if !matches!(self.kind, ModuleKind::File | ModuleKind::Vdso) || avma.start < self.avma.start
        {
            return None;
        }
        let start = self.svma(avma.start);
        let end = start.checked_add(avma.end.checked_sub(avma.start)?)?;
        self.binary.as_ref()?.elf.bytes_at(start..end)
    }
}

/// The executable modules of a process, by address.
#[derive(Debug, Clone, Default)]
pub struct ModuleMap {
    /// Sorted by `avma.start`, not overlapping.
    modules: Vec<Module>,
}

impl ModuleMap {
    /// Read `/proc/PID/maps` and build the modules, loading binaries through `binaries`.
    /// Modules whose file cannot be used are kept (with their [`ModuleProblem`]); the second
    /// value lists those problems, for one warning each.
    pub fn read<M: RemoteMemory>(
        pid: i32,
        mem: &M,
        binaries: &mut Binaries,
    ) -> Result<(ModuleMap, Vec<ModuleProblem>), crate::NativeError> {
        let path = procfs::proc_dir(pid).join("maps");
        let text = std::fs::read_to_string(&path).map_err(|e| crate::NativeError::Maps {
            pid,
            errno: e.raw_os_error().unwrap_or(0),
        })?;
        let maps = strobe_locate::maps::parse(&text);
        Ok(ModuleMap::from_mappings(pid, &maps, mem, binaries))
    }

    /// [`ModuleMap::read`] on mappings already parsed.
    pub fn from_mappings<M: RemoteMemory>(
        pid: i32,
        maps: &[Mapping],
        mem: &M,
        binaries: &mut Binaries,
    ) -> (ModuleMap, Vec<ModuleProblem>) {
        let roots = vec![procfs::root(pid), PathBuf::from("/")];
        ModuleMap::build(maps, mem, binaries, &roots, Files::Process(pid))
    }

    /// The modules of a process that no longer runs (a core file): `maps` are its file
    /// mappings (`exec` set where the code is), `find` gives the path from here of the file
    /// a mapping names (already checked to be the one the process had, where that could be
    /// checked), `root` is where its separate debug files are looked up (`--sysroot`, or `/`).
    /// Nothing is read from `/proc`.
    pub fn from_core_mappings<M: RemoteMemory>(
        maps: &[Mapping],
        mem: &M,
        binaries: &mut Binaries,
        root: &Path,
        find: &FileFinder<'_>,
    ) -> (ModuleMap, Vec<ModuleProblem>) {
        let roots = vec![root.to_path_buf()];
        ModuleMap::build(maps, mem, binaries, &roots, Files::Given(find))
    }

    fn build<M: RemoteMemory>(
        maps: &[Mapping],
        mem: &M,
        binaries: &mut Binaries,
        roots: &[PathBuf],
        files_from: Files<'_>,
    ) -> (ModuleMap, Vec<ModuleProblem>) {
        let mut modules = Vec::new();
        let mut problems = Vec::new();
        // Files: every executable mapping of a file, with the same file's offset-0 mapping,
        // where the ELF header is.
        type FileKey<'m> = (u32, u32, u64, &'m str);
        let mut files: HashMap<FileKey<'_>, Vec<&Mapping>> = HashMap::new();
        let mut order: Vec<FileKey<'_>> = Vec::new();
        for m in maps {
            if m.is_file() {
                let key = (
                    m.dev_major,
                    m.dev_minor,
                    m.inode,
                    m.path.as_deref().unwrap_or(""),
                );
                let entry = files.entry(key).or_default();
                if entry.is_empty() {
                    order.push(key);
                }
                entry.push(m);
            } else if m.exec {
                match m.path.as_deref() {
                    Some("[vdso]") => {
                        let (module, problem) = vdso_module(m, mem, binaries, roots);
                        modules.push(module);
                        problems.extend(problem);
                    }
                    // The legacy vsyscall page is not readable and holds no unwind info.
                    Some("[vsyscall]") => {}
                    name => modules.push(Module {
                        id: Arc::new(ModuleId {
                            path: name.unwrap_or("[anon]").to_string(),
                            build_id: None,
                        }),
                        kind: ModuleKind::Anonymous,
                        avma: m.start..m.end,
                        bias: 0,
                        binary: None,
                        problem: None,
                        trampoline_template: None,
                    }),
                }
            }
        }
        for key in order {
            let maps_of_file = &files[&key];
            let exec: Vec<&&Mapping> = maps_of_file.iter().filter(|m| m.exec).collect();
            let (Some(first), Some(last)) = (exec.first(), exec.last()) else {
                continue;
            };
            let avma = first.start..last.end;
            let (module, problem) =
                file_module(files_from, key.3, maps_of_file, avma, mem, binaries, roots);
            modules.push(module);
            problems.extend(problem);
        }
        mark_trampolines(&mut modules, mem);
        modules.sort_by_key(|m| m.avma.start);
        (ModuleMap { modules }, problems)
    }

    /// The module containing target address `avma`.
    pub fn find(&self, avma: u64) -> Option<&Module> {
        let i = self.modules.partition_point(|m| m.avma.start <= avma);
        self.modules
            .get(i.checked_sub(1)?)
            .filter(|m| m.avma.contains(&avma))
    }

    /// All modules, by address.
    pub fn modules(&self) -> &[Module] {
        &self.modules
    }
}

/// Anonymous modules that start with the interpreter's perf trampoline template become
/// [`ModuleKind::PerfTrampolines`] (their frames are then unwound by the rule of the template,
/// which in 3.12 and 3.13 keeps no frame pointer).
fn mark_trampolines<M: RemoteMemory>(modules: &mut [Module], mem: &M) {
    let template = modules.iter().find_map(|m| {
        m.binary.as_ref()?.code_between(
            "_Py_trampoline_func_start",
            "_Py_trampoline_func_end",
            TRAMPOLINE_LIMIT,
        )
    });
    let Some(template) = template else { return };
    let mut head = vec![0u8; template.len()];
    for m in modules
        .iter_mut()
        .filter(|m| m.kind == ModuleKind::Anonymous)
    {
        if m.avma.end - m.avma.start >= template.len() as u64
            && mem.read_into(m.avma.start, &mut head).is_ok()
            && head == template
        {
            m.kind = ModuleKind::PerfTrampolines;
            m.id = Arc::new(ModuleId {
                path: PERF_TRAMPOLINES.to_string(),
                build_id: None,
            });
            m.trampoline_template = Some(template.clone());
        }
    }
}

/// What the target's memory says about a mapped ELF image: load bias and build-id.
struct MemoryImage {
    bias: u64,
    build_id: Option<Vec<u8>>,
}

/// Read the ELF header page at `start` (a mapping of file offset 0) and the notes it points
/// at.
fn image_in_memory<M: RemoteMemory>(mem: &M, start: u64, len: u64) -> Result<MemoryImage, String> {
    let n = (len as usize).min(HEADER_PAGE);
    let mut page = vec![0u8; n];
    mem.read_into(start, &mut page).map_err(|e| e.to_string())?;
    if page.get(..4) != Some(b"\x7fELF") || page.get(4) != Some(&2) || page.get(5) != Some(&1) {
        return Err("no 64-bit little-endian ELF header".into());
    }
    let phoff = le::u64_at(&page, 0x20).ok_or("short header")? as usize;
    let phentsize = le::u16_at(&page, 0x36).ok_or("short header")? as usize;
    let phnum = le::u16_at(&page, 0x38).ok_or("short header")? as usize;
    if phentsize < 56 || phnum > 256 {
        return Err("implausible program headers".into());
    }
    let phdrs_len = phentsize * phnum;
    let phdrs = match page.get(phoff..phoff.saturating_add(phdrs_len)) {
        Some(p) => p.to_vec(),
        None => mem
            .read_vec(start.wrapping_add(phoff as u64), phdrs_len, 256 * 64)
            .map_err(|e| e.to_string())?,
    };
    let ph = |i: usize| {
        let at = i * phentsize;
        (
            le::u32_at(&phdrs, at).unwrap_or(0),
            le::u64_at(&phdrs, at + 8).unwrap_or(0), // p_offset
            le::u64_at(&phdrs, at + 16).unwrap_or(0), // p_vaddr
            le::u64_at(&phdrs, at + 32).unwrap_or(0), // p_filesz
        )
    };
    let first_load = (0..phnum)
        .map(ph)
        .find(|p| p.0 == PT_LOAD)
        .ok_or("no loadable segment")?;
    // The offset-0 mapping holds the first loadable segment's first page.
    let bias = start.wrapping_sub(first_load.2 & !(HEADER_PAGE as u64 - 1));
    let mut build_id = None;
    for (kind, _, vaddr, filesz) in (0..phnum).map(ph) {
        if kind != PT_NOTE || filesz == 0 || filesz > MAX_NOTES {
            continue;
        }
        let at = bias.wrapping_add(vaddr);
        let notes = match at.checked_sub(start) {
            Some(off) if off + filesz <= page.len() as u64 => {
                page[off as usize..(off + filesz) as usize].to_vec()
            }
            _ => match mem.read_vec(at, filesz as usize, MAX_NOTES as usize) {
                Ok(v) => v,
                Err(_) => continue,
            },
        };
        if let Some(id) = build_id_in_notes(&notes) {
            build_id = Some(id);
            break;
        }
    }
    Ok(MemoryImage { bias, build_id })
}

/// Gives the path from here of the file a core names (see [`ModuleMap::from_core_mappings`]).
pub type FileFinder<'a> = dyn Fn(&str) -> Option<PathBuf> + 'a;

/// Where the files behind mappings are opened from.
#[derive(Clone, Copy)]
enum Files<'a> {
    /// A live process's: through `/proc/PID/root`, as named, `/proc/PID/map_files`.
    Process(i32),
    /// A core's: as the caller finds them.
    Given(&'a FileFinder<'a>),
}

fn file_module<M: RemoteMemory>(
    files_from: Files<'_>,
    path: &str,
    maps_of_file: &[&Mapping],
    avma: Range<u64>,
    mem: &M,
    binaries: &mut Binaries,
    roots: &[PathBuf],
) -> (Module, Option<ModuleProblem>) {
    let header = maps_of_file.iter().find(|m| m.offset == 0);
    let image = match header {
        Some(h) => image_in_memory(mem, h.start, h.end - h.start),
        None => Err("the file's first page is not mapped".to_string()),
    };
    let mut module = Module {
        id: Arc::new(ModuleId {
            path: path.to_string(),
            build_id: image.as_ref().ok().and_then(|i| i.build_id.clone()),
        }),
        kind: ModuleKind::File,
        avma,
        bias: image.as_ref().map_or(0, |i| i.bias),
        binary: None,
        problem: None,
        trampoline_template: None,
    };
    let image = match image {
        Ok(i) => i,
        Err(reason) => {
            let p = ModuleProblem::BadImage {
                path: path.to_string(),
                reason,
            };
            module.problem = Some(p.clone());
            return (module, Some(p));
        }
    };
    let first = maps_of_file[0];
    let mut replaced = None;
    let mut last_error = None;
    let found = match files_from {
        Files::Process(pid) => candidates(pid, first, path),
        Files::Given(find) => find(path)
            .and_then(|p| File::open(&p).ok().map(|f| (p, f)))
            .into_iter()
            .collect(),
    };
    for (candidate, file) in found {
        // Without a build-id in memory, only the very file the target mapped will do.
        if let Files::Process(pid) = files_from {
            if image.build_id.is_none()
                && !same_file(&file, first)
                && !candidate.starts_with(map_files(pid))
            {
                continue;
            }
        }
        match binaries.load_file(&file, &candidate, image.build_id.as_deref(), roots, path) {
            Ok(b) if b.build_id() == image.build_id.as_deref() => {
                module.binary = Some(b);
                return (module, None);
            }
            Ok(b) => replaced = Some(b.build_id().map_or_else(|| "none".to_string(), hex)),
            Err(LoadProblem::NotElf(e) | LoadProblem::Io(e)) => last_error = Some(e),
        }
    }
    let p = match (replaced, last_error) {
        (Some(found), _) => ModuleProblem::Replaced {
            path: path.to_string(),
            expected: image
                .build_id
                .as_deref()
                .map_or_else(|| "none".to_string(), hex),
            found,
        },
        (None, Some(reason)) => ModuleProblem::Unusable {
            path: path.to_string(),
            reason,
        },
        (None, None) => ModuleProblem::Unreachable {
            path: path.to_string(),
        },
    };
    module.problem = Some(p.clone());
    (module, Some(p))
}

fn map_files(pid: i32) -> PathBuf {
    procfs::proc_dir(pid).join("map_files")
}

/// Files that may be the one behind mapping `m`, in the order to try them: the path inside
/// the target's root and as it is (each only if it is the mapped file by device and inode),
/// the mapped file itself through `/proc/PID/map_files` (root only), then the path inside the
/// target's root whatever it is (overlay filesystems show other device numbers; the build-id
/// check decides).
fn candidates(pid: i32, m: &Mapping, path: &str) -> Vec<(PathBuf, File)> {
    let open = |p: PathBuf| File::open(&p).ok().map(|f| (p, f));
    let by_map = map_files(pid).join(format!("{:x}-{:x}", m.start, m.end));
    if m.deleted {
        return open(by_map).into_iter().collect();
    }
    let mut in_root = strobe_locate::rootfs::open_in_root(&procfs::root(pid), path).ok();
    let mut out: Vec<(PathBuf, File)> = Vec::new();
    out.extend(in_root.take_if(|(_, f)| same_file(f, m)));
    out.extend(open(PathBuf::from(path)).filter(|(_, f)| same_file(f, m)));
    out.extend(open(by_map));
    out.extend(in_root);
    out
}

/// Whether `file` is the file of mapping `m` (device and inode as maps prints them).
fn same_file(file: &File, m: &Mapping) -> bool {
    file.metadata().is_ok_and(|md| {
        let dev = md.dev();
        // Linux's `new_encode_dev` layout, as `st_dev` carries it.
        let major = ((dev >> 8) & 0xfff) as u32 | (((dev >> 32) & !0xfff) as u32);
        let minor = (dev & 0xff) as u32 | (((dev >> 12) & !0xff) as u32);
        md.ino() == m.inode && major == m.dev_major && minor == m.dev_minor
    })
}

fn vdso_module<M: RemoteMemory>(
    m: &Mapping,
    mem: &M,
    binaries: &mut Binaries,
    roots: &[PathBuf],
) -> (Module, Option<ModuleProblem>) {
    let mut module = Module {
        id: Arc::new(ModuleId {
            path: "[vdso]".to_string(),
            build_id: None,
        }),
        kind: ModuleKind::Vdso,
        avma: m.start..m.end,
        bias: m.start,
        binary: None,
        problem: None,
        trampoline_template: None,
    };
    let len = m.end - m.start;
    let loaded = if len > MAX_VDSO {
        Err("larger than a vDSO can be".to_string())
    } else {
        mem.read_vec(m.start, len as usize, MAX_VDSO as usize)
            .map_err(|e| e.to_string())
            .and_then(|image| {
                let info = image_in_memory(mem, m.start, len)?;
                let b = binaries
                    .load_image("[vdso]", image, roots)
                    .map_err(|e| format!("{e:?}"))?;
                Ok((info, b))
            })
    };
    match loaded {
        Ok((info, binary)) => {
            module.bias = info.bias;
            module.id = Arc::new(ModuleId {
                path: "[vdso]".to_string(),
                build_id: info.build_id,
            });
            module.binary = Some(binary);
            (module, None)
        }
        Err(reason) => {
            let p = ModuleProblem::BadImage {
                path: "[vdso]".to_string(),
                reason,
            };
            module.problem = Some(p.clone());
            (module, Some(p))
        }
    }
}
