//! The few parts of an ELF file that `locate` reads, read in place from the file's mapped
//! bytes: the header, `PT_LOAD` segments, the section headers, and a handful of named symbols.
//!
//! A general ELF parser (goblin, which we used before) decodes every symbol, string table and
//! relocation of a file, while we want six names out of tens of thousands: on a 30 MB
//! libpython that was most of what `strobe dump` spent. Here a symbol of `.dynsym` is found
//! through the file's own hash table (`.gnu.hash`, else `.hash`), which touches a few
//! entries; only names it does not export are searched for in `.symtab`, comparing names as
//! bytes where they lie. Nothing is copied and no string is decoded. A file without section
//! headers (`sstrip`) is read through its dynamic section (`PT_DYNAMIC`) instead.
//!
//! Only 64-bit little-endian files are read: strobe reads 64-bit targets only (its structure
//! layouts are those of 64-bit builds). Every offset, size and count read from the file is
//! checked against the file's length; a malformed table is an error or, for a hash table, a
//! reason to fall back to reading the symbol table entry by entry.

use std::ops::Range;

/// `e_type` of an executable linked at fixed addresses (`ET_EXEC`, elf(5)).
pub(crate) const ET_EXEC: u16 = 2;
/// `p_type`s: a loadable segment; the dynamic section.
const PT_LOAD: u32 = 1;
const PT_DYNAMIC: u32 = 2;
/// `d_tag`s of the dynamic section we read (elf(5)).
const DT_NULL: u64 = 0;
const DT_HASH: u64 = 4;
const DT_STRTAB: u64 = 5;
const DT_SYMTAB: u64 = 6;
const DT_STRSZ: u64 = 10;
const DT_GNU_HASH: u64 = 0x6fff_fef5;
/// `p_flags` bit: the segment is writable.
const PF_W: u32 = 2;
/// `sh_type`s we look at.
const SHT_SYMTAB: u32 = 2;
const SHT_HASH: u32 = 5;
const SHT_NOBITS: u32 = 8;
const SHT_DYNSYM: u32 = 11;
const SHT_GNU_HASH: u32 = 0x6fff_fff6;
/// `st_shndx` of an undefined (imported) symbol.
const SHN_UNDEF: u16 = 0;
/// `e_shstrndx` when the real index is in section 0's `sh_link` (extended numbering).
const SHN_XINDEX: u16 = 0xffff;

const EHDR_SIZE: usize = 64;
const PHDR_SIZE: usize = 56;
const SHDR_SIZE: usize = 64;
const SYM_SIZE: usize = 24;

/// Why a file could not be read as ELF; becomes `LocateError::Elf`'s reason.
pub(crate) type Malformed = String;

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(
        b.get(at..at.checked_add(2)?)?.try_into().ok()?,
    ))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(
        b.get(at..at.checked_add(4)?)?.try_into().ok()?,
    ))
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(
        b.get(at..at.checked_add(8)?)?.try_into().ok()?,
    ))
}

/// `offset..offset + size` of `len` bytes, if it fits.
fn range_in(offset: u64, size: u64, len: usize) -> Option<Range<usize>> {
    let start = usize::try_from(offset).ok()?;
    let end = start.checked_add(usize::try_from(size).ok()?)?;
    (end <= len).then_some(start..end)
}

/// A `PT_LOAD` program header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Segment {
    pub vaddr: u64,
    pub offset: u64,
    pub memsz: u64,
    pub align: u64,
    pub writable: bool,
}

/// A section header, the fields we use.
#[derive(Debug, Clone, Copy)]
struct Section {
    name: u32,
    kind: u32,
    offset: u64,
    size: u64,
    link: u32,
}

/// A symbol's link-time value and size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Symbol {
    pub value: u64,
    pub size: u64,
}

/// An ELF64 little-endian file over its bytes.
pub(crate) struct Elf64<'a> {
    bytes: &'a [u8],
    e_type: u16,
    sections: Vec<Section>,
    shstrndx: usize,
}

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
    fn program_headers(&self) -> Result<std::iter::StepBy<Range<usize>>, Malformed> {
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
    fn file_offset(&self, vaddr: u64) -> Option<u64> {
        let b = self.bytes;
        self.program_headers().ok()?.find_map(|at| {
            let get64 = |o| u64_at(b, at + o);
            let (offset, start, filesz) = (get64(8)?, get64(16)?, get64(32)?);
            (u32_at(b, at)? == PT_LOAD && vaddr >= start && vaddr - start < filesz)
                .then(|| offset + (vaddr - start))
        })
    }

    /// `.dynsym` and its hash tables (GNU, System V) as the dynamic section (`PT_DYNAMIC`)
    /// locates them: for files whose section headers were removed (`sstrip`), which the
    /// dynamic linker does not need. The table's length is not recorded there; it is the
    /// System V table's `nchain`, or the end of the GNU table's last chain.
    #[allow(clippy::type_complexity)]
    fn dynamic_table(&self) -> Option<(SymbolTable<'a>, Option<&'a [u8]>, Option<&'a [u8]>)> {
        let b = self.bytes;
        let dynamic = self
            .program_headers()
            .ok()?
            .find(|&at| u32_at(b, at) == Some(PT_DYNAMIC))?;
        let range = range_in(u64_at(b, dynamic + 8)?, u64_at(b, dynamic + 32)?, b.len())?;
        let (mut symtab, mut strtab, mut strsz, mut gnu, mut sysv) = (None, None, None, None, None);
        for at in range.step_by(16) {
            let (tag, value) = (u64_at(b, at)?, u64_at(b, at + 8)?);
            match tag {
                DT_NULL => break,
                DT_SYMTAB => symtab = Some(value),
                DT_STRTAB => strtab = Some(value),
                DT_STRSZ => strsz = Some(value),
                DT_GNU_HASH => gnu = Some(value),
                DT_HASH => sysv = Some(value),
                _ => {}
            }
        }
        let from = |vaddr: u64| -> Option<&'a [u8]> {
            b.get(usize::try_from(self.file_offset(vaddr)?).ok()?..)
        };
        let strings = from(strtab?)?;
        let strings = strings.get(..usize::try_from(strsz?).ok()?)?;
        let gnu = gnu.and_then(from);
        let sysv = sysv.and_then(from);
        let count = match (sysv, gnu) {
            (Some(h), _) => u32_at(h, 4)? as usize,
            (None, Some(h)) => gnu_symbol_count(h)?,
            (None, None) => return None,
        };
        let entries = from(symtab?)?;
        let entries = entries.get(..count.checked_mul(SYM_SIZE)?)?;
        Some((SymbolTable { entries, strings }, gnu, sysv))
    }

    /// The bytes of section `s` (none for `SHT_NOBITS` or one outside the file).
    fn data(&self, s: &Section) -> Option<&'a [u8]> {
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
    fn table(&self, kind: u32) -> Option<(usize, SymbolTable<'a>)> {
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

    /// The defined symbols named in `wanted`, `.dynsym` first, then `.symtab` for names
    /// `.dynsym` does not have when `search_symtab` says so; `found[i]` is `wanted[i]`'s.
    pub fn symbols(
        &self,
        wanted: &[&str],
        search_symtab: impl Fn(&[Option<Symbol>]) -> bool,
    ) -> Vec<Option<Symbol>> {
        let mut found = vec![None; wanted.len()];
        let dynsym = match self.table(SHT_DYNSYM) {
            Some((index, table)) => Some((
                table,
                self.hash_for(index, SHT_GNU_HASH),
                self.hash_for(index, SHT_HASH),
            )),
            None if self.sections.is_empty() => self.dynamic_table(),
            None => None,
        };
        if let Some((dynsym, gnu, sysv)) = dynsym {
            let hashed = gnu.and_then(|h| {
                wanted
                    .iter()
                    .map(|name| dynsym.gnu_lookup(h, name.as_bytes()))
                    .collect::<Option<Vec<_>>>()
            });
            let hashed = hashed.or_else(|| {
                let h = sysv?;
                wanted
                    .iter()
                    .map(|name| dynsym.sysv_lookup(h, name.as_bytes()))
                    .collect::<Option<Vec<_>>>()
            });
            match hashed {
                Some(hashed) => found = hashed,
                None => dynsym.scan(wanted, &mut found),
            }
        }
        if found.iter().any(Option::is_none) && search_symtab(&found) {
            if let Some((_, symtab)) = self.table(SHT_SYMTAB) {
                symtab.scan(wanted, &mut found);
            }
        }
        found
    }

    /// The contents of the hash section of kind `kind` that indexes symbol table `table`.
    fn hash_for(&self, table: usize, kind: u32) -> Option<&'a [u8]> {
        let s = self
            .sections
            .iter()
            .find(|s| s.kind == kind && s.link as usize == table)?;
        self.data(s)
    }
}

/// How many symbols a `.gnu.hash` table covers: one past the end of the chain that starts
/// at the highest bucket (chains are laid out in symbol order). `None` if malformed.
fn gnu_symbol_count(table: &[u8]) -> Option<usize> {
    let nbuckets = u32_at(table, 0)? as usize;
    let symoffset = u32_at(table, 4)? as usize;
    let bloom_size = u32_at(table, 8)? as usize;
    let buckets_at = 16usize.checked_add(bloom_size.checked_mul(8)?)?;
    let chains_at = buckets_at.checked_add(nbuckets.checked_mul(4)?)?;
    let mut last = symoffset;
    for b in 0..nbuckets {
        last = last.max(u32_at(table, buckets_at + b * 4)? as usize);
    }
    if last < symoffset {
        return None;
    }
    // The chain from `last` ends at the first hash with its low bit set.
    let mut index = last;
    loop {
        let hash = u32_at(
            table,
            chains_at.checked_add((index - symoffset).checked_mul(4)?)?,
        )?;
        if hash & 1 != 0 {
            return index.checked_add(1);
        }
        index += 1;
    }
}

/// The NUL-terminated name at `offset` of a string table, without its NUL.
fn name_at(strings: &[u8], offset: u32) -> Option<&[u8]> {
    let tail = strings.get(offset as usize..)?;
    Some(&tail[..tail.iter().position(|&b| b == 0)?])
}

/// A symbol table's entries and its string table, as bytes.
struct SymbolTable<'a> {
    entries: &'a [u8],
    strings: &'a [u8],
}

/// One symbol table entry: the name's offset, and the symbol if it is defined.
struct Entry {
    name: u32,
    symbol: Option<Symbol>,
}

impl SymbolTable<'_> {
    fn len(&self) -> usize {
        self.entries.len() / SYM_SIZE
    }

    fn entry(&self, index: usize) -> Option<Entry> {
        let at = index.checked_mul(SYM_SIZE)?;
        let e = self.entries.get(at..at.checked_add(SYM_SIZE)?)?;
        let value = u64_at(e, 8)?;
        // Undefined (imported) symbols name something another file defines.
        let defined = u16_at(e, 6)? != SHN_UNDEF && value != 0;
        Some(Entry {
            name: u32_at(e, 0)?,
            symbol: defined.then(|| Symbol {
                value,
                size: u64_at(e, 16).unwrap_or(0),
            }),
        })
    }

    /// Whether the name at `offset` is exactly `name`.
    fn name_is(&self, offset: u32, name: &[u8]) -> bool {
        let at = offset as usize;
        at.checked_add(name.len())
            .and_then(|end| Some((self.strings.get(at..end)?, self.strings.get(end)?)))
            .is_some_and(|(bytes, &nul)| bytes == name && nul == 0)
    }

    /// Every entry compared with the names still missing from `found`; the first defined
    /// entry of a name wins.
    fn scan(&self, wanted: &[&str], found: &mut [Option<Symbol>]) {
        // Most names differ from all of ours in their first byte.
        let firsts: Vec<u8> = wanted.iter().filter_map(|w| w.bytes().next()).collect();
        for index in 0..self.len() {
            let Some(Entry {
                name,
                symbol: Some(symbol),
            }) = self.entry(index)
            else {
                continue;
            };
            let Some(&first) = self.strings.get(name as usize) else {
                continue;
            };
            if !firsts.contains(&first) {
                continue;
            }
            for (w, slot) in wanted.iter().zip(found.iter_mut()) {
                if slot.is_none() && self.name_is(name, w.as_bytes()) {
                    *slot = Some(symbol);
                }
            }
            if found.iter().all(Option::is_some) {
                return;
            }
        }
    }

    /// `name` through a `.gnu.hash` section: `Some(None)` when the table says the name is not
    /// there, `None` when the table is malformed (read the symbols one by one instead).
    ///
    /// The format (the GNU linker's, described in glibc's `dl-lookup.c` and the LSB): a header
    /// of `nbuckets`, `symoffset` (the first hashed symbol), `bloom_size` and `bloom_shift`;
    /// `bloom_size` 64-bit Bloom filter words; `nbuckets` bucket heads (symbol indices);
    /// then one 32-bit hash per symbol from `symoffset` on, whose low bit ends a chain.
    fn gnu_lookup(&self, table: &[u8], name: &[u8]) -> Option<Option<Symbol>> {
        let nbuckets = u32_at(table, 0)? as usize;
        let symoffset = u32_at(table, 4)? as usize;
        let bloom_size = u32_at(table, 8)? as usize;
        let bloom_shift = u32_at(table, 12)?;
        if nbuckets == 0 || bloom_size == 0 {
            return None;
        }
        let hash = name.iter().fold(5381u32, |h, &c| {
            h.wrapping_mul(33).wrapping_add(u32::from(c))
        });
        let bloom_at = 16usize;
        let word_at = bloom_at + (hash as usize / 64 % bloom_size) * 8;
        let word = u64_at(table, word_at)?;
        let mask = (1u64 << (hash % 64)) | (1u64 << ((hash >> (bloom_shift % 32)) % 64));
        if word & mask != mask {
            return Some(None);
        }
        let buckets_at = bloom_at.checked_add(bloom_size.checked_mul(8)?)?;
        let chains_at = buckets_at.checked_add(nbuckets.checked_mul(4)?)?;
        let first = u32_at(table, buckets_at + (hash as usize % nbuckets) * 4)? as usize;
        if first == 0 {
            return Some(None);
        }
        if first < symoffset {
            return None;
        }
        // A chain ends at the table's end at the latest; one that does not is malformed.
        for index in first..self.len() {
            let chain_hash = u32_at(table, chains_at.checked_add((index - symoffset) * 4)?)?;
            if chain_hash | 1 == hash | 1 {
                let entry = self.entry(index)?;
                if entry.symbol.is_some() && self.name_is(entry.name, name) {
                    return Some(entry.symbol);
                }
            }
            if chain_hash & 1 != 0 {
                return Some(None);
            }
        }
        None
    }

    /// `name` through a System V `.hash` section (`nbucket`, `nchain`, buckets, chains, all
    /// 32-bit; elf(5)'s hash function); results as for [`Self::gnu_lookup`].
    fn sysv_lookup(&self, table: &[u8], name: &[u8]) -> Option<Option<Symbol>> {
        let nbucket = u32_at(table, 0)? as usize;
        let nchain = u32_at(table, 4)? as usize;
        if nbucket == 0 {
            return None;
        }
        let hash = name.iter().fold(0u32, |h, &c| {
            let h = (h << 4).wrapping_add(u32::from(c));
            let g = h & 0xf000_0000;
            (h ^ (g >> 24)) & !g
        });
        let chains_at = 8usize.checked_add(nbucket.checked_mul(4)?)?;
        let mut index = u32_at(table, 8 + (hash as usize % nbucket) * 4)? as usize;
        for _ in 0..nchain.min(self.len()) {
            if index == 0 {
                return Some(None);
            }
            let entry = self.entry(index)?;
            if entry.symbol.is_some() && self.name_is(entry.name, name) {
                return Some(entry.symbol);
            }
            index = u32_at(table, chains_at.checked_add(index.checked_mul(4)?)?)? as usize;
        }
        (index == 0).then_some(None)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const WANTED: &[&str] = &["_PyRuntime", "Py_Version", "interp_head", "PyObject_Free"];

    /// The symbols of `wanted` in `path`, looked up through the hash table and by reading
    /// every entry of both tables.
    fn both_ways(path: &str) -> (Vec<Option<Symbol>>, Vec<Option<Symbol>>) {
        let bytes = std::fs::read(path).unwrap();
        let elf = Elf64::parse(&bytes).unwrap();
        let hashed = elf.symbols(WANTED, |_| true);
        let mut scanned = vec![None; WANTED.len()];
        if let Some((_, t)) = elf.table(SHT_DYNSYM) {
            t.scan(WANTED, &mut scanned);
        }
        if let Some((_, t)) = elf.table(SHT_SYMTAB) {
            t.scan(WANTED, &mut scanned);
        }
        (hashed, scanned)
    }

    #[test]
    fn hash_lookups_agree_with_reading_every_entry() {
        // A shared libpython (.gnu.hash, and .symtab holding the static interp_head).
        let (hashed, scanned) = both_ways("/root/.pyenv/versions/3.6.15/lib/libpython3.6m.so.1.0");
        assert_eq!(hashed, scanned);
        assert!(hashed[0].is_none() && hashed[1].is_none());
        assert!(hashed[2].is_some(), "interp_head from .symtab");
        assert!(hashed[3].is_some());
        // A static executable without .symtab: everything from .dynsym's hash table.
        let (hashed, scanned) = both_ways("/usr/bin/python3.11");
        assert_eq!(hashed, scanned);
        assert!(hashed[0].is_some() && hashed[1].is_some() && hashed[3].is_some());
        assert!(hashed[2].is_none());
    }

    #[test]
    fn files_without_section_headers_are_read_through_the_dynamic_section() {
        // What `sstrip` leaves: no section headers at all (e_shoff, e_shnum, e_shstrndx zero).
        for path in [
            "/root/.pyenv/versions/3.12.1/lib/libpython3.12.so.1.0",
            "/usr/bin/python3.11",
        ] {
            let bytes = std::fs::read(path).unwrap();
            let want = Elf64::parse(&bytes).unwrap().symbols(WANTED, |_| false);
            let mut stripped = bytes.clone();
            stripped[0x28..0x30].fill(0);
            stripped[0x3c..0x40].fill(0);
            let elf = Elf64::parse(&stripped).unwrap();
            assert!(elf.sections.is_empty());
            assert_eq!(elf.symbols(WANTED, |_| false), want, "{path}");
            assert!(want[0].is_some() && want[3].is_some(), "{path}");
        }
    }

    #[test]
    fn symtab_is_searched_only_when_asked() {
        let bytes = std::fs::read("/root/.pyenv/versions/3.6.15/lib/libpython3.6m.so.1.0").unwrap();
        let elf = Elf64::parse(&bytes).unwrap();
        let found = elf.symbols(WANTED, |_| false);
        assert!(found[2].is_none(), "interp_head is only in .symtab");
        assert!(found[3].is_some());
    }

    /// A minimal ELF64 file: header, one `.dynsym` with a System V `.hash`, `.dynstr`,
    /// `.shstrtab`, and the given symbols (name, value).
    fn synthetic(symbols: &[(&str, u64)], nbucket: u32) -> Vec<u8> {
        let mut dynstr = vec![0u8];
        let mut syms = vec![0u8; SYM_SIZE]; // index 0 is the null symbol
        for (name, value) in symbols {
            let off = dynstr.len() as u32;
            dynstr.extend_from_slice(name.as_bytes());
            dynstr.push(0);
            let mut e = [0u8; SYM_SIZE];
            e[0..4].copy_from_slice(&off.to_le_bytes());
            e[6..8].copy_from_slice(&1u16.to_le_bytes());
            e[8..16].copy_from_slice(&value.to_le_bytes());
            e[16..24].copy_from_slice(&8u64.to_le_bytes());
            syms.extend_from_slice(&e);
        }
        let n = symbols.len() + 1;
        let elf_hash = |name: &str| {
            name.bytes().fold(0u32, |h, c| {
                let h = (h << 4).wrapping_add(u32::from(c));
                let g = h & 0xf000_0000;
                (h ^ (g >> 24)) & !g
            })
        };
        let mut buckets = vec![0u32; nbucket as usize];
        let mut chains = vec![0u32; n];
        for (i, (name, _)) in symbols.iter().enumerate() {
            let b = (elf_hash(name) % nbucket) as usize;
            chains[i + 1] = buckets[b];
            buckets[b] = (i + 1) as u32;
        }
        let mut hash = Vec::new();
        for w in [nbucket, n as u32].iter().chain(&buckets).chain(&chains) {
            hash.extend_from_slice(&w.to_le_bytes());
        }
        let shstrtab = b"\0.dynsym\0.dynstr\0.hash\0.shstrtab\0.rodata\0".to_vec();
        let rodata = b"\x003.9.18\0".to_vec();
        // Layout: header, then each section's data, then the section headers.
        let mut file = vec![0u8; EHDR_SIZE];
        let place = |data: &[u8], file: &mut Vec<u8>| {
            let at = file.len() as u64;
            file.extend_from_slice(data);
            (at, data.len() as u64)
        };
        let dynsym_at = place(&syms, &mut file);
        let dynstr_at = place(&dynstr, &mut file);
        let hash_at = place(&hash, &mut file);
        let shstr_at = place(&shstrtab, &mut file);
        let rodata_at = place(&rodata, &mut file);
        let shoff = file.len() as u64;
        // (name, type, (offset, size), link)
        let headers = [
            (0u32, 0u32, (0u64, 0u64), 0u32),
            (1, SHT_DYNSYM, dynsym_at, 2),
            (9, 3, dynstr_at, 0),
            (17, SHT_HASH, hash_at, 1),
            (23, 3, shstr_at, 0),
            (33, 1, rodata_at, 0),
        ];
        for (name, kind, (offset, size), link) in headers {
            let mut h = [0u8; SHDR_SIZE];
            h[0..4].copy_from_slice(&name.to_le_bytes());
            h[4..8].copy_from_slice(&kind.to_le_bytes());
            h[24..32].copy_from_slice(&offset.to_le_bytes());
            h[32..40].copy_from_slice(&size.to_le_bytes());
            h[40..44].copy_from_slice(&link.to_le_bytes());
            file.extend_from_slice(&h);
        }
        file[..4].copy_from_slice(b"\x7fELF");
        file[4] = 2;
        file[5] = 1;
        file[0x10..0x12].copy_from_slice(&3u16.to_le_bytes());
        file[0x28..0x30].copy_from_slice(&shoff.to_le_bytes());
        file[0x3a..0x3c].copy_from_slice(&(SHDR_SIZE as u16).to_le_bytes());
        file[0x3c..0x3e].copy_from_slice(&(headers.len() as u16).to_le_bytes());
        file[0x3e..0x40].copy_from_slice(&4u16.to_le_bytes());
        file
    }

    #[test]
    fn sysv_hash_tables_are_followed() {
        let syms = [
            ("_PyRuntime", 0x1000),
            ("Py_Version", 0x2000),
            ("abc", 0x3000),
        ];
        for nbucket in [1, 2, 7] {
            let file = synthetic(&syms, nbucket);
            let elf = Elf64::parse(&file).unwrap();
            let found = elf.symbols(&["Py_Version", "_PyRuntime", "interp_head", "ab"], |_| true);
            assert_eq!(
                found,
                vec![
                    Some(Symbol {
                        value: 0x2000,
                        size: 8
                    }),
                    Some(Symbol {
                        value: 0x1000,
                        size: 8
                    }),
                    None,
                    None
                ],
                "{nbucket} buckets"
            );
            assert_eq!(elf.e_type(), 3);
            let r = elf.section_range(".rodata").unwrap();
            assert_eq!(&file[r], b"\x003.9.18\0");
            assert_eq!(elf.section_range(".data"), None);
        }
    }

    #[test]
    fn a_corrupt_hash_table_falls_back_to_reading_every_entry() {
        let syms = [("_PyRuntime", 0x1000), ("Py_Version", 0x2000)];
        let mut file = synthetic(&syms, 3);
        let elf = Elf64::parse(&file).unwrap();
        let hash = elf.hash_for(1, SHT_HASH).unwrap();
        let hash_at = hash.as_ptr() as usize - file.as_ptr() as usize;
        // Every bucket points far outside the symbol table.
        for b in 0..3 {
            let at = hash_at + 8 + b * 4;
            file[at..at + 4].copy_from_slice(&0xffff_fff0u32.to_le_bytes());
        }
        let elf = Elf64::parse(&file).unwrap();
        let found = elf.symbols(&["_PyRuntime", "Py_Version"], |_| true);
        assert_eq!(found[0].map(|s| s.value), Some(0x1000));
        assert_eq!(found[1].map(|s| s.value), Some(0x2000));
    }

    #[test]
    fn malformed_headers_are_refused() {
        assert!(Elf64::parse(b"\x7fELF").is_err());
        assert!(Elf64::parse(b"MZ\0\0\0\0\0\0\0\0\0\0\0\0\0\0").is_err());
        let mut file = synthetic(&[("a", 1)], 1);
        file[4] = 1; // ELFCLASS32
        assert!(Elf64::parse(&file).err().unwrap().contains("64-bit"));
        let mut file = synthetic(&[("a", 1)], 1);
        file[0x28..0x30].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(Elf64::parse(&file).is_err());
        let mut file = synthetic(&[("a", 1)], 1);
        file[0x3c..0x3e].copy_from_slice(&0xfff0u16.to_le_bytes());
        assert!(Elf64::parse(&file).is_err());
    }
}
