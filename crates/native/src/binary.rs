//! [`Binary`]: one ELF file as strobe uses it (unwind sections, symbols, DWARF), with its
//! separate debug file when there is one; and [`Binaries`], the cache of them, keyed by
//! (device, inode, build-id) so a file is parsed once however many processes map it.

use crate::elf::{hex, ElfFile};
use crate::symtab::SymbolTable;
use std::collections::HashMap;
use std::fs::File;
use std::ops::Range;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use strobe_remote::SharedBytes;

/// The reader the DWARF is parsed with: sections of a mapped file (or decompressed copies),
/// shared, so the parsed context owns what it refers to.
pub(crate) type DwarfReader = gimli::EndianReader<gimli::RunTimeEndian, SharedBytes>;

/// Where separate debug files are looked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DebugSearch {
    /// Directories that hold `.build-id/xx/rest.debug` trees and debuglink targets, as
    /// absolute paths; each is looked up inside the target's root first, then in ours.
    pub debug_dirs: Vec<String>,
}

impl Default for DebugSearch {
    fn default() -> Self {
        DebugSearch {
            debug_dirs: vec!["/usr/lib/debug".to_string()],
        }
    }
}

/// Identity of a binary: the file strobe opened, and its build-id.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct BinaryKey {
    pub dev: u64,
    pub ino: u64,
    pub build_id: Option<Vec<u8>>,
}

/// An ELF file, its debug file, and what is derived from them on first use.
pub struct Binary {
    /// A number no other binary in this process has (keys the address cache).
    pub(crate) id: u64,
    /// Where strobe opened it (through `/proc/PID/root`, `/proc/PID/map_files`, ...), or a
    /// pseudo-name like `[vdso]` for an image read from memory.
    pub path: PathBuf,
    pub(crate) elf: ElfFile,
    /// The separate debug file found for it, if any.
    pub debug_path: Option<PathBuf>,
    pub(crate) debug: Option<ElfFile>,
    pub(crate) symbols: SymbolTable,
    dwarf: OnceLock<Option<Mutex<addr2line::Context<DwarfReader>>>>,
    cfi: OnceLock<Vec<Range<u64>>>,
}

impl std::fmt::Debug for Binary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Binary")
            .field("path", &self.path)
            .field("debug_path", &self.debug_path)
            .field("build_id", &self.build_id().map(hex))
            .field("symbols", &self.symbols.len())
            .finish()
    }
}

impl Binary {
    fn new(id: u64, path: PathBuf, elf: ElfFile, debug: Option<(PathBuf, ElfFile)>) -> Binary {
        let mut symbols = elf.symbol_table();
        if let Some((_, d)) = &debug {
            symbols = symbols.merged(&d.symbols);
        }
        let (debug_path, debug) = match debug {
            Some((p, d)) => (Some(p), Some(d)),
            None => (None, None),
        };
        Binary {
            id,
            path,
            elf,
            debug_path,
            debug,
            symbols,
            dwarf: OnceLock::new(),
            cfi: OnceLock::new(),
        }
    }

    /// The file's build-id.
    pub fn build_id(&self) -> Option<&[u8]> {
        self.elf.build_id.as_deref()
    }

    /// Whether function names, files and lines come from DWARF (in the file or its debug file).
    pub fn has_dwarf(&self) -> bool {
        self.dwarf_file().is_some()
    }

    fn dwarf_file(&self) -> Option<&ElfFile> {
        self.debug
            .as_ref()
            .filter(|d| d.has_dwarf())
            .or(Some(&self.elf).filter(|e| e.has_dwarf()))
    }

    /// Parse the DWARF context now (it is otherwise parsed on the first symbol looked up in
    /// this binary): decompressing and indexing a large debug file takes a while, better spent
    /// before sampling starts than in the middle of its first samples.
    pub fn preload(&self) {
        let _ = self.dwarf();
    }

    /// The DWARF context, parsed on first use.
    pub(crate) fn dwarf(&self) -> Option<&Mutex<addr2line::Context<DwarfReader>>> {
        self.dwarf
            .get_or_init(|| {
                let file = self.dwarf_file()?;
                let dwarf = gimli::Dwarf::load(|id| -> Result<DwarfReader, gimli::Error> {
                    let data = file
                        .section_data(id.name())
                        .unwrap_or_else(|| SharedBytes::from_vec(Vec::new()));
                    Ok(gimli::EndianReader::new(data, gimli::RunTimeEndian::Little))
                })
                .ok()?;
                addr2line::Context::from_dwarf(dwarf).ok().map(Mutex::new)
            })
            .as_ref()
    }

    /// Unwind section data: from the file itself, except `.debug_frame`, which the debug file
    /// may hold instead.
    pub(crate) fn section(&self, name: &str) -> Option<SharedBytes> {
        self.elf.section_data(name).filter(|d| !d.is_empty())
    }

    pub(crate) fn debug_frame(&self) -> Option<SharedBytes> {
        self.section(".debug_frame").or_else(|| {
            self.debug
                .as_ref()
                .and_then(|d| d.section_data(".debug_frame"))
                .filter(|d| !d.is_empty())
        })
    }

    /// The code from symbol `start` up to symbol `end` (a template CPython copies at run
    /// time), from the file section that holds it; `None` if either symbol is missing, the
    /// range is longer than `limit`, or no section of the file has its bytes.
    pub(crate) fn code_between(&self, start: &str, end: &str, limit: u64) -> Option<Vec<u8>> {
        let address = |name: &str| {
            let labels = self.elf.labels.iter();
            let debug = self.debug.iter().flat_map(|d| d.labels.iter());
            labels
                .chain(debug)
                .find(|l| &*l.name == name)
                .map(|l| l.start)
                .or_else(|| self.symbols.by_name(name).map(|s| s.start))
        };
        let (from, to) = (address(start)?, address(end)?);
        if !(from < to && to - from <= limit) {
            return None;
        }
        // Usually in `.text`; Debian's 3.14 has it in `.rodata` (it is only ever copied).
        self.elf.bytes_at(from..to).map(<[u8]>::to_vec)
    }

    pub(crate) fn section_svma(&self, name: &str) -> Option<Range<u64>> {
        self.elf.section_svma(name)
    }

    /// The section addresses `.eh_frame`'s pointer encodings count from.
    pub(crate) fn eh_frame_bases(&self) -> gimli::BaseAddresses {
        let mut bases = gimli::BaseAddresses::default();
        if let Some(r) = self.section_svma(".eh_frame") {
            bases = bases.set_eh_frame(r.start);
        }
        if let Some(r) = self.section_svma(".eh_frame_hdr") {
            bases = bases.set_eh_frame_hdr(r.start);
        }
        if let Some(r) = self.section_svma(".text") {
            bases = bases.set_text(r.start);
        }
        if let Some(r) = self.section_svma(".got") {
            bases = bases.set_got(r.start);
        }
        bases
    }

    /// The stated addresses covered by CFI (`.eh_frame` or `.debug_frame`), sorted, computed
    /// on first use. Decides whether a frame was unwound by CFI or by frame pointer.
    pub(crate) fn cfi_ranges(&self) -> &[Range<u64>] {
        self.cfi.get_or_init(|| {
            let mut ranges = Vec::new();
            if let Some(data) = self.section(".eh_frame") {
                let bases = self.eh_frame_bases();
                let eh = gimli::EhFrame::new(&data, gimli::LittleEndian);
                collect_fdes(&eh, &bases, &mut ranges);
            }
            if let Some(data) = self.debug_frame() {
                let df = gimli::DebugFrame::new(&data, gimli::LittleEndian);
                collect_fdes(&df, &gimli::BaseAddresses::default(), &mut ranges);
            }
            ranges.sort_by_key(|r| r.start);
            ranges
        })
    }

    /// Whether CFI covers stated address `svma`.
    pub(crate) fn cfi_covers(&self, svma: u64) -> bool {
        let ranges = self.cfi_ranges();
        let i = ranges.partition_point(|r| r.start <= svma);
        // FDEs do not overlap, so only the last one starting at or before svma can hold it.
        i > 0 && ranges[i - 1].contains(&svma)
    }
}

fn collect_fdes<'a, S>(section: &S, bases: &gimli::BaseAddresses, out: &mut Vec<Range<u64>>)
where
    S: gimli::UnwindSection<gimli::EndianSlice<'a, gimli::LittleEndian>>,
{
    let mut entries = section.entries(bases);
    // A malformed entry ends the scan: what was collected so far stays valid.
    while let Ok(Some(entry)) = entries.next() {
        if let gimli::CieOrFde::Fde(partial) = entry {
            if let Ok(fde) = partial.parse(S::cie_from_offset) {
                if fde.len() > 0 {
                    out.push(fde.initial_address()..fde.end_address());
                }
            }
        }
    }
}

/// Why a mapped file could not be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum LoadProblem {
    NotElf(String),
    Io(String),
}

/// The parsed binaries, shared by every process and every module that maps them.
#[derive(Debug, Default)]
pub struct Binaries {
    by_key: HashMap<BinaryKey, Arc<Binary>>,
    /// The vDSO images, by build-id (each process maps its own copy of the same image).
    by_build_id: HashMap<Vec<u8>, Arc<Binary>>,
    next_id: u64,
    search: DebugSearch,
}

impl Binaries {
    /// An empty cache that finds debug files through `search`.
    pub fn new(search: DebugSearch) -> Binaries {
        Binaries {
            search,
            ..Binaries::default()
        }
    }

    /// How many binaries are cached.
    pub fn len(&self) -> usize {
        self.by_key.len() + self.by_build_id.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The binary in `file` (opened as `path`), parsed once per (device, inode, build-id).
    /// `expected` is the build-id the target's image has: a file with another is refused
    /// (the caller reports the mismatch with the build-id it found).
    pub(crate) fn load_file(
        &mut self,
        file: &File,
        path: &Path,
        expected: Option<&[u8]>,
        roots: &[PathBuf],
        target_path: &str,
    ) -> Result<Arc<Binary>, LoadProblem> {
        let md = file
            .metadata()
            .map_err(|e| LoadProblem::Io(e.to_string()))?;
        if let Some(id) = expected {
            let key = BinaryKey {
                dev: md.dev(),
                ino: md.ino(),
                build_id: Some(id.to_vec()),
            };
            if let Some(b) = self.by_key.get(&key) {
                return Ok(Arc::clone(b));
            }
        }
        let bytes = SharedBytes::map_file(file).map_err(|e| LoadProblem::Io(e.to_string()))?;
        let elf = ElfFile::parse(bytes).map_err(|e| LoadProblem::NotElf(e.0))?;
        let key = BinaryKey {
            dev: md.dev(),
            ino: md.ino(),
            build_id: elf.build_id.clone(),
        };
        if let Some(b) = self.by_key.get(&key) {
            return Ok(Arc::clone(b));
        }
        let debug = find_debug_file(&elf, &self.search, roots, target_path);
        let binary = Arc::new(Binary::new(self.next_id, path.to_path_buf(), elf, debug));
        self.next_id += 1;
        self.by_key.insert(key, Arc::clone(&binary));
        Ok(binary)
    }

    /// The binary of an image copied out of the target's memory (the vDSO), by build-id.
    pub(crate) fn load_image(
        &mut self,
        name: &str,
        image: Vec<u8>,
        roots: &[PathBuf],
    ) -> Result<Arc<Binary>, LoadProblem> {
        let elf =
            ElfFile::parse(SharedBytes::from_vec(image)).map_err(|e| LoadProblem::NotElf(e.0))?;
        if let Some(b) = elf
            .build_id
            .as_ref()
            .and_then(|id| self.by_build_id.get(id))
        {
            return Ok(Arc::clone(b));
        }
        let debug = find_debug_file(&elf, &self.search, roots, name);
        let build_id = elf.build_id.clone();
        let binary = Arc::new(Binary::new(self.next_id, PathBuf::from(name), elf, debug));
        self.next_id += 1;
        if let Some(id) = build_id {
            self.by_build_id.insert(id, Arc::clone(&binary));
        }
        Ok(binary)
    }
}

/// The separate debug file of `elf`: by build-id under each debug directory, then by
/// `.gnu_debuglink` next to the binary, in its `.debug/` and under the debug directories;
/// each first inside the target's root, then in ours. A candidate is used only if its
/// build-id is the binary's (or, when the binary has none, its CRC-32 is the debuglink's).
fn find_debug_file(
    elf: &ElfFile,
    search: &DebugSearch,
    roots: &[PathBuf],
    target_path: &str,
) -> Option<(PathBuf, ElfFile)> {
    let mut candidates: Vec<String> = Vec::new();
    if let Some(id) = elf.build_id.as_deref().filter(|id| id.len() >= 2) {
        let h = hex(id);
        for dir in &search.debug_dirs {
            candidates.push(format!("{dir}/.build-id/{}/{}.debug", &h[..2], &h[2..]));
        }
    }
    if let Some((name, _)) = &elf.debuglink {
        let dir = Path::new(target_path)
            .parent()
            .and_then(Path::to_str)
            .unwrap_or("");
        candidates.push(format!("{dir}/{name}"));
        candidates.push(format!("{dir}/.debug/{name}"));
        for d in &search.debug_dirs {
            candidates.push(format!("{d}{dir}/{name}"));
        }
    }
    for root in roots {
        for candidate in &candidates {
            let Some((path, file)) = open_under(root, candidate) else {
                continue;
            };
            let Ok(bytes) = SharedBytes::map_file(&file) else {
                continue;
            };
            let Ok(debug) = ElfFile::parse(bytes) else {
                continue;
            };
            let matches = match (&elf.build_id, &debug.build_id) {
                (Some(a), Some(b)) => a == b,
                _ => elf
                    .debuglink
                    .as_ref()
                    .is_some_and(|(_, crc)| crc32fast::hash(&debug.bytes) == *crc),
            };
            // A debug file has what the binary lacks: DWARF or a full symbol table.
            if matches && (debug.has_dwarf() || debug.sections.contains_key(".symtab")) {
                return Some((path, debug));
            }
        }
    }
    None
}

/// `path` opened inside `root`: with [`strobe_locate::rootfs::open_in_root`] for a target's
/// root (so its symlinks cannot lead out of it), as it is for our own root `/`.
fn open_under(root: &Path, path: &str) -> Option<(PathBuf, File)> {
    if root == Path::new("/") {
        File::open(path).ok().map(|f| (PathBuf::from(path), f))
    } else {
        strobe_locate::rootfs::open_in_root(root, path).ok()
    }
}
