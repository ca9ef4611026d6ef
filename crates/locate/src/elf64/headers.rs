//! The ELF header, the program headers (`PT_LOAD` segments, link-time addresses to file
//! offsets) and the section headers (sections by name and kind, their bytes), each offset,
//! size and count checked against the file's length.

use std::ops::Range;

use super::{
    name_at, range_in, u16_at, u32_at, u64_at, Elf64, Malformed, Section, Segment, SymbolTable,
    EHDR_SIZE, PF_W, PHDR_SIZE, PT_LOAD, SHDR_SIZE, SHN_XINDEX, SHT_NOBITS,
};

impl<'a> Elf64<'a> {
    /// Check the identification and read the section headers (a few dozen entries).
    pub fn parse(bytes: &'a [u8]) -> Result<Elf64<'a>, Malformed> {
        let ident = bytes.get(..16).ok_or("shorter than an ELF header")?;
        if ident[..4] != *b"\x7fELF" {
            return Err("not an ELF file".into());
        }
        // EI_CLASS 2 = ELFCLASS64, EI_DATA 1 = ELFDATA2LSB.
        if ident[4] != 2 || ident[5] != 1 {
            return Err("not a 64-bit little-endian ELF file (strobe reads 64-bit targets)".into());
        }
        if bytes.len() < EHDR_SIZE {
            return Err("shorter than an ELF header".into());
        }
        let field16 = |at| u16_at(bytes, at).unwrap_or(0);
        let e_type = field16(0x10);
        let shoff = u64_at(bytes, 0x28).unwrap_or(0);
        let shentsize = usize::from(field16(0x3a));
        let mut shnum = usize::from(field16(0x3c));
        let mut shstrndx = field16(0x3e) as usize;
        let mut sections = Vec::new();
        if shoff != 0 {
            if shentsize < SHDR_SIZE {
                return Err(format!("section header size {shentsize} is too small"));
            }
            let first = range_in(shoff, SHDR_SIZE as u64, bytes.len())
                .ok_or("the section headers lie outside the file")?;
            // Extended numbering (elf(5)): more than 0xff00 sections, or a string table index
            // beyond that, are stored in section 0.
            if shnum == 0 {
                shnum = usize::try_from(u64_at(bytes, first.start + 32).unwrap_or(0))
                    .unwrap_or(usize::MAX);
            }
            if shstrndx == usize::from(SHN_XINDEX) {
                shstrndx = u32_at(bytes, first.start + 40).unwrap_or(0) as usize;
            }
            let all = shnum
                .checked_mul(shentsize)
                .and_then(|size| range_in(shoff, size as u64, bytes.len()))
                .ok_or("the section headers lie outside the file")?;
            sections.reserve(shnum);
            for at in all.step_by(shentsize) {
                let get32 = |o| u32_at(bytes, at + o).unwrap_or(0);
                let get64 = |o| u64_at(bytes, at + o).unwrap_or(0);
                sections.push(Section {
                    name: get32(0),
                    kind: get32(4),
                    offset: get64(24),
                    size: get64(32),
                    link: get32(40),
                });
            }
        }
        Ok(Elf64 {
            bytes,
            e_type,
            sections,
            shstrndx,
        })
    }

    /// `e_type`.
    pub fn e_type(&self) -> u16 {
        self.e_type
    }

    /// Where each program header starts in the file.
    pub(super) fn program_headers(&self) -> Result<std::iter::StepBy<Range<usize>>, Malformed> {
        let b = self.bytes;
        let phoff = u64_at(b, 0x20).unwrap_or(0);
        let phentsize = usize::from(u16_at(b, 0x36).unwrap_or(0));
        let phnum = usize::from(u16_at(b, 0x38).unwrap_or(0));
        if phnum == 0 {
            return Ok((0..0).step_by(1));
        }
        if phentsize < PHDR_SIZE {
            return Err(format!("program header size {phentsize} is too small"));
        }
        let all = range_in(phoff, (phnum * phentsize) as u64, b.len())
            .ok_or("the program headers lie outside the file")?;
        Ok(all.step_by(phentsize))
    }

    /// The `PT_LOAD` segments, in file order.
    pub fn loads(&self) -> Result<Vec<Segment>, Malformed> {
        let b = self.bytes;
        Ok(self
            .program_headers()?
            .filter(|&at| u32_at(b, at) == Some(PT_LOAD))
            .map(|at| {
                let get64 = |o| u64_at(b, at + o).unwrap_or(0);
                Segment {
                    vaddr: get64(16),
                    offset: get64(8),
                    memsz: get64(40),
                    align: get64(48),
                    writable: u32_at(b, at + 4).unwrap_or(0) & PF_W != 0,
                }
            })
            .collect())
    }

    /// The file offset of link-time address `vaddr`, through the `PT_LOAD` segment holding it.
    pub(super) fn file_offset(&self, vaddr: u64) -> Option<u64> {
        let b = self.bytes;
        self.program_headers().ok()?.find_map(|at| {
            let get64 = |o| u64_at(b, at + o);
            let (offset, start, filesz) = (get64(8)?, get64(16)?, get64(32)?);
            (u32_at(b, at)? == PT_LOAD && vaddr >= start && vaddr - start < filesz)
                .then(|| offset + (vaddr - start))
        })
    }

    /// The bytes of section `s` (none for `SHT_NOBITS` or one outside the file).
    pub(super) fn data(&self, s: &Section) -> Option<&'a [u8]> {
        if s.kind == SHT_NOBITS {
            return None;
        }
        self.bytes
            .get(range_in(s.offset, s.size, self.bytes.len())?)
    }

    /// Where in the file the section named `name` lies (the first of that name).
    pub fn section_range(&self, name: &str) -> Option<Range<usize>> {
        let names = self.data(self.sections.get(self.shstrndx)?)?;
        let s = self
            .sections
            .iter()
            .find(|s| s.kind != SHT_NOBITS && name_at(names, s.name) == Some(name.as_bytes()))?;
        range_in(s.offset, s.size, self.bytes.len())
    }

    /// The symbol table of section kind `kind` (`SHT_DYNSYM` or `SHT_SYMTAB`) and its index.
    pub(super) fn table(&self, kind: u32) -> Option<(usize, SymbolTable<'a>)> {
        let (index, s) = self
            .sections
            .iter()
            .enumerate()
            .find(|(_, s)| s.kind == kind)?;
        let strings = self.data(self.sections.get(s.link as usize)?)?;
        Some((
            index,
            SymbolTable {
                entries: self.data(s)?,
                strings,
            },
        ))
    }

    /// The contents of the hash section of kind `kind` that indexes symbol table `table`.
    pub(super) fn hash_for(&self, table: usize, kind: u32) -> Option<&'a [u8]> {
        let s = self
            .sections
            .iter()
            .find(|s| s.kind == kind && s.link as usize == table)?;
        self.data(s)
    }
}
