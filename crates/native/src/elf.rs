//! The parts of an ELF file that unwinding and symbols need, read from its mapped bytes:
//! sections (decompressed where `SHF_COMPRESSED`), the build-id, the
//! `.gnu_debuglink`, and the function symbols of `.symtab` and `.dynsym`.

use crate::symtab::{SymbolTable, TableSymbol};
use goblin::elf::program_header::PT_NOTE;
use goblin::elf::section_header::{SHF_COMPRESSED, SHT_NOBITS, SHT_NOTE};
use goblin::elf::sym::{STT_FUNC, STT_GNU_IFUNC, STT_NOTYPE};
use goblin::elf::Elf;
use std::collections::HashMap;
use std::io::Read;
use std::ops::Range;
use strobe_memory::le;
use strobe_remote::SharedBytes;

/// `NT_GNU_BUILD_ID`.
const NT_GNU_BUILD_ID: u32 = 3;
/// `ELFCOMPRESS_ZLIB`.
const ELFCOMPRESS_ZLIB: u32 = 1;
/// A decompressed section larger than this is refused (a corrupt header could claim anything).
const MAX_DECOMPRESSED: u64 = 1 << 30;
/// A build-id longer than this is not one (SHA-1 gives 20 bytes, some linkers up to 32).
const MAX_BUILD_ID: usize = 64;

/// One section: where it lives in the file and where it is meant to be loaded.
#[derive(Debug, Clone)]
pub(crate) struct Section {
    /// Stated address (`sh_addr`) and size.
    pub svma: Range<u64>,
    /// Bytes in the file, `None` for `SHT_NOBITS` (e.g. `.text` in a separate debug file).
    pub file_range: Option<Range<usize>>,
    /// `SHF_COMPRESSED`: the bytes start with an `Elf64_Chdr`.
    pub compressed: bool,
}

/// An ELF file, parsed once.
#[derive(Debug)]
pub(crate) struct ElfFile {
    pub bytes: SharedBytes,
    pub sections: HashMap<String, Section>,
    pub build_id: Option<Vec<u8>>,
    /// `.gnu_debuglink`: the debug file's name and the CRC-32 of its contents.
    pub debuglink: Option<(String, u32)>,
    pub symbols: Vec<TableSymbol>,
    /// The untyped symbols (assembler labels) named in [`LABELS`].
    pub labels: Vec<TableSymbol>,
}

/// Assembler labels kept from the symbol tables: the bounds of CPython's perf trampoline
/// template (3.12+, `Python/asm_trampoline.S`, which gives them no type).
pub(crate) const LABELS: &[&str] = &["_Py_trampoline_func_start", "_Py_trampoline_func_end"];

/// Why bytes are not an ELF file we can use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NotElf(pub String);

impl ElfFile {
    /// Parse `bytes` (a mapped file, or an image copied out of the target).
    pub fn parse(bytes: SharedBytes) -> Result<ElfFile, NotElf> {
        let elf = Elf::parse(&bytes).map_err(|e| NotElf(e.to_string()))?;
        if !elf.is_64 || !elf.little_endian {
            return Err(NotElf("not a 64-bit little-endian ELF file".into()));
        }
        let len = bytes.len();
        let mut sections = HashMap::new();
        for sh in &elf.section_headers {
            let Some(name) = elf.shdr_strtab.get_at(sh.sh_name) else {
                continue;
            };
            let file_range = if sh.sh_type == SHT_NOBITS {
                None
            } else {
                usize::try_from(sh.sh_offset)
                    .ok()
                    .zip(usize::try_from(sh.sh_size).ok())
                    .and_then(|(o, s)| Some(o..o.checked_add(s)?))
                    .filter(|r| r.end <= len)
            };
            sections.insert(
                name.to_string(),
                Section {
                    svma: sh.sh_addr..sh.sh_addr.saturating_add(sh.sh_size),
                    file_range,
                    compressed: sh.sh_flags & u64::from(SHF_COMPRESSED) != 0,
                },
            );
        }
        // Notes from the note sections, or from PT_NOTE segments where sections are gone.
        let mut note_ranges: Vec<Range<usize>> = elf
            .section_headers
            .iter()
            .filter(|sh| sh.sh_type == SHT_NOTE)
            .filter_map(|sh| {
                let o = usize::try_from(sh.sh_offset).ok()?;
                Some(o..o.checked_add(usize::try_from(sh.sh_size).ok()?)?)
            })
            .collect();
        if note_ranges.is_empty() {
            note_ranges = elf
                .program_headers
                .iter()
                .filter(|ph| ph.p_type == PT_NOTE)
                .filter_map(|ph| {
                    let o = usize::try_from(ph.p_offset).ok()?;
                    Some(o..o.checked_add(usize::try_from(ph.p_filesz).ok()?)?)
                })
                .collect();
        }
        let build_id = note_ranges
            .iter()
            .filter_map(|r| bytes.get(r.clone()))
            .find_map(build_id_in_notes);
        let debuglink = sections
            .get(".gnu_debuglink")
            .and_then(|s| s.file_range.clone())
            .and_then(|r| bytes.get(r))
            .and_then(parse_debuglink);
        let mut symbols = Vec::new();
        let mut labels = Vec::new();
        for (table, strtab) in [(&elf.syms, &elf.strtab), (&elf.dynsyms, &elf.dynstrtab)] {
            for sym in table.iter() {
                let kind = sym.st_type();
                let Some(name) = strtab.get_at(sym.st_name).filter(|n| !n.is_empty()) else {
                    continue;
                };
                if kind == STT_NOTYPE && sym.st_shndx != 0 && LABELS.contains(&name) {
                    labels.push(TableSymbol {
                        start: sym.st_value,
                        size: 0,
                        name: name.into(),
                    });
                }
                if (kind != STT_FUNC && kind != STT_GNU_IFUNC) || sym.st_shndx == 0 {
                    continue;
                }
                // A symbol without a size (assembly: `_init`, `_start`, trampolines) covers up
                // to the next symbol, but never past its own section: the `.plt` stubs after
                // `.init` are not part of `_init`.
                let size = if sym.st_size != 0 {
                    sym.st_size
                } else {
                    elf.section_headers
                        .get(sym.st_shndx)
                        .map(|sh| sh.sh_addr.saturating_add(sh.sh_size))
                        .filter(|&end| end > sym.st_value)
                        .map_or(0, |end| end - sym.st_value)
                };
                symbols.push(TableSymbol {
                    start: sym.st_value,
                    size,
                    name: name.into(),
                });
            }
        }
        drop(elf);
        Ok(ElfFile {
            bytes,
            sections,
            build_id,
            debuglink,
            symbols,
            labels,
        })
    }

    /// The bytes of section `name`, decompressed if need be; `None` if it is absent, has no
    /// bytes in this file, or cannot be decompressed.
    pub fn section_data(&self, name: &str) -> Option<SharedBytes> {
        let s = self.sections.get(name)?;
        let raw = self.bytes.slice(s.file_range.clone()?)?;
        if !s.compressed {
            return Some(raw);
        }
        // Elf64_Chdr: ch_type, ch_reserved, ch_size, ch_addralign.
        let kind = le::u32_at(&raw, 0)?;
        let size = le::u64_at(&raw, 8)?;
        if kind != ELFCOMPRESS_ZLIB || size > MAX_DECOMPRESSED {
            return None;
        }
        let mut out = Vec::with_capacity(usize::try_from(size).ok()?);
        flate2::read::ZlibDecoder::new(raw.get(24..)?)
            .take(size)
            .read_to_end(&mut out)
            .ok()?;
        (out.len() as u64 == size).then(|| SharedBytes::from_vec(out))
    }

    /// The stated address range of section `name`.
    /// The file's bytes at stated addresses `svma`, from the one loaded section with file
    /// bytes (not compressed) that holds them all. Sections that are not loaded (`.debug_*`,
    /// `.comment`) state address 0, so their bytes never count as any address's.
    pub fn bytes_at(&self, svma: Range<u64>) -> Option<&[u8]> {
        let s = self.sections.values().find(|s| {
            s.svma.start != 0
                && !s.compressed
                && s.file_range.is_some()
                && s.svma.start <= svma.start
                && svma.end <= s.svma.end
        })?;
        let file = s.file_range.clone()?;
        let at = file
            .start
            .checked_add(usize::try_from(svma.start - s.svma.start).ok()?)?;
        let len = usize::try_from(svma.end.checked_sub(svma.start)?).ok()?;
        let end = at.checked_add(len)?;
        if end > file.end {
            return None;
        }
        self.bytes.get(at..end)
    }

    pub fn section_svma(&self, name: &str) -> Option<Range<u64>> {
        self.sections.get(name).map(|s| s.svma.clone())
    }

    /// Whether the file carries DWARF line and function information.
    pub fn has_dwarf(&self) -> bool {
        self.sections
            .get(".debug_info")
            .is_some_and(|s| s.file_range.as_ref().is_some_and(|r| !r.is_empty()))
    }

    /// The function symbols of this file, as a lookup table.
    pub fn symbol_table(&self) -> SymbolTable {
        SymbolTable::new(self.symbols.clone())
    }
}

/// The `NT_GNU_BUILD_ID` descriptor among the notes in `notes`.
pub(crate) fn build_id_in_notes(notes: &[u8]) -> Option<Vec<u8>> {
    let mut at = 0usize;
    while at + 12 <= notes.len() {
        let namesz = le::u32_at(notes, at)? as usize;
        let descsz = le::u32_at(notes, at + 4)? as usize;
        let kind = le::u32_at(notes, at + 8)?;
        let name_at = at + 12;
        let desc_at = name_at.checked_add(namesz.checked_add(3)? & !3)?;
        let next = desc_at.checked_add(descsz.checked_add(3)? & !3)?;
        let name = notes.get(name_at..name_at + namesz)?;
        let desc = notes.get(desc_at..desc_at.checked_add(descsz)?)?;
        if kind == NT_GNU_BUILD_ID && name == b"GNU\0" && !desc.is_empty() && descsz <= MAX_BUILD_ID
        {
            return Some(desc.to_vec());
        }
        at = next;
    }
    None
}

/// `.gnu_debuglink`: a NUL-terminated file name, padding to 4 bytes, then a CRC-32.
fn parse_debuglink(data: &[u8]) -> Option<(String, u32)> {
    let nul = data.iter().position(|&b| b == 0)?;
    let name = std::str::from_utf8(&data[..nul]).ok()?;
    let crc_at = (nul + 1 + 3) & !3;
    let crc = le::u32_at(data, crc_at)?;
    (!name.is_empty() && !name.contains('/')).then(|| (name.to_string(), crc))
}

/// Hex text of a build-id, as in `/usr/lib/debug/.build-id/` paths.
pub fn hex(id: &[u8]) -> String {
    id.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_build_id_among_other_notes() {
        let mut notes = Vec::new();
        // An ABI tag note first (type 1, name "GNU", 16 bytes), then the build-id.
        for (kind, desc) in [
            (1u32, vec![0u8; 16]),
            (3, vec![0xab, 0xcd, 0xef, 0x01, 0x23]),
        ] {
            notes.extend_from_slice(&4u32.to_le_bytes());
            notes.extend_from_slice(&(desc.len() as u32).to_le_bytes());
            notes.extend_from_slice(&kind.to_le_bytes());
            notes.extend_from_slice(b"GNU\0");
            notes.extend_from_slice(&desc);
            while notes.len() % 4 != 0 {
                notes.push(0);
            }
        }
        assert_eq!(
            build_id_in_notes(&notes),
            Some(vec![0xab, 0xcd, 0xef, 0x01, 0x23])
        );
        assert_eq!(build_id_in_notes(&notes[..20]), None, "truncated");
        assert_eq!(hex(&[0xab, 0x01]), "ab01");
    }

    /// `_init` has no size (it is assembly in crti.o) and the `.plt` stubs follow `.init`:
    /// an address in a stub is not `_init+offset`.
    #[test]
    fn unsized_symbols_end_with_their_section() {
        let dir = strobe_testkit::TempDir::new();
        let src = dir.path().join("plt.c");
        std::fs::write(
            &src,
            "#include <stdio.h>\nint main(void) { puts(\"x\"); return 0; }\n",
        )
        .unwrap();
        let exe = dir.path().join("plt");
        let built = std::process::Command::new("cc")
            .arg("-O0")
            .arg("-o")
            .arg(&exe)
            .arg(&src)
            .status()
            .unwrap();
        assert!(built.success(), "cc failed (run .ci/provision.sh)");
        let elf = ElfFile::parse(SharedBytes::from_vec(std::fs::read(&exe).unwrap())).unwrap();
        let table = elf.symbol_table();
        let init = elf.section_svma(".init").unwrap();
        let (sym, _) = table.lookup(init.start).unwrap();
        assert_eq!(&*sym.name, "_init");
        let plt = elf
            .section_svma(".plt.sec")
            .or_else(|| elf.section_svma(".plt"))
            .unwrap();
        assert!(plt.start >= init.end);
        for at in [plt.start, plt.start + 4, plt.end - 1] {
            if let Some((sym, off)) = table.lookup(at) {
                assert_ne!(&*sym.name, "_init", "{at:#x} is _init+{off:#x}");
            }
        }
    }

    #[test]
    fn debuglink_name_and_crc() {
        let mut d = b"python3.14\0\0".to_vec();
        d.extend_from_slice(&0xdeadbeefu32.to_le_bytes());
        assert_eq!(
            parse_debuglink(&d),
            Some(("python3.14".to_string(), 0xdeadbeef))
        );
        assert_eq!(parse_debuglink(b"../x\0\0\0\0\0\0\0\0"), None);
    }
}
