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
//!
//! The jobs apart: this file holds the file's types and the one entry point for names
//! ([`Elf64::symbols`]); `headers.rs` reads the ELF header, program headers and section
//! headers; `symtab.rs` finds names in a symbol table, through its hash table or entry by
//! entry; `dynamic.rs` finds `.dynsym` through the dynamic section when there are no section
//! headers.

use std::ops::Range;

mod dynamic;
mod headers;
mod symtab;

use symtab::SymbolTable;

/// `e_type` of an executable linked at fixed addresses (`ET_EXEC`, elf(5)).
pub(crate) const ET_EXEC: u16 = 2;
/// `p_type` of a loadable segment.
const PT_LOAD: u32 = 1;
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
}

/// The NUL-terminated name at `offset` of a string table, without its NUL.
fn name_at(strings: &[u8], offset: u32) -> Option<&[u8]> {
    let tail = strings.get(offset as usize..)?;
    Some(&tail[..tail.iter().position(|&b| b == 0)?])
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
