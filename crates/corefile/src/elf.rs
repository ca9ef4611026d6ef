//! The few ELF64 structures a core file (and a file it names) is read through: the file header,
//! program headers and notes. Decoded by hand, little-endian, every offset and count checked
//! against the bytes there are.

use strobe_memory::le;

/// `ET_CORE`.
pub(crate) const ET_CORE: u16 = 4;
/// `EM_X86_64`.
pub(crate) const EM_X86_64: u16 = 62;
/// `PT_LOAD`.
pub(crate) const PT_LOAD: u32 = 1;
/// `PT_NOTE`.
pub(crate) const PT_NOTE: u32 = 4;
/// `e_phnum` saying the real count is in section header 0's `sh_info` (`PN_XNUM`).
const PN_XNUM: u16 = 0xffff;

/// Why bytes are not the ELF file we want.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ElfProblem {
    /// No `\x7fELF` magic, or not 64-bit little-endian.
    NotElf64,
    /// A header field points outside the file.
    OutOfFile(&'static str),
}

/// The file header fields we use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    pub e_type: u16,
    pub machine: u16,
    pub phoff: u64,
    pub phnum: usize,
    pub phentsize: usize,
}

/// One program header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Phdr {
    pub p_type: u32,
    pub flags: u32,
    pub offset: u64,
    pub vaddr: u64,
    pub filesz: u64,
    pub memsz: u64,
}

/// One note: its owner name (without the NUL), type and descriptor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Note<'a> {
    pub name: &'a [u8],
    pub n_type: u32,
    pub desc: &'a [u8],
}

pub(crate) fn header(bytes: &[u8]) -> Result<Header, ElfProblem> {
    // e_ident: magic, EI_CLASS = ELFCLASS64 (2), EI_DATA = ELFDATA2LSB (1).
    if bytes.get(..4) != Some(b"\x7fELF") || le::u8_at(bytes, 4) != Some(2) {
        return Err(ElfProblem::NotElf64);
    }
    if le::u8_at(bytes, 5) != Some(1) {
        return Err(ElfProblem::NotElf64);
    }
    let short = ElfProblem::OutOfFile("the file header");
    let e_type = le::u16_at(bytes, 16).ok_or(short.clone())?;
    let machine = le::u16_at(bytes, 18).ok_or(short.clone())?;
    let phoff = le::u64_at(bytes, 32).ok_or(short.clone())?;
    let shoff = le::u64_at(bytes, 40).ok_or(short.clone())?;
    let phentsize = usize::from(le::u16_at(bytes, 54).ok_or(short.clone())?);
    let phnum = le::u16_at(bytes, 56).ok_or(short.clone())?;
    let mut count = usize::from(phnum);
    if phnum == PN_XNUM {
        // More than 65534 segments (gcore of a process with many mappings): the count is
        // section header 0's sh_info (at +44 in an Elf64_Shdr).
        let at = usize::try_from(shoff).map_err(|_| short.clone())?;
        let info = le::u32_at(bytes, at.checked_add(44).ok_or(short.clone())?)
            .ok_or(ElfProblem::OutOfFile("section header 0 (PN_XNUM)"))?;
        count = usize::try_from(info).map_err(|_| short.clone())?;
    }
    Ok(Header {
        e_type,
        machine,
        phoff,
        phnum: count,
        phentsize,
    })
}

/// The program headers, each checked to lie inside `bytes` (their segments are not).
pub(crate) fn program_headers(bytes: &[u8], h: &Header) -> Result<Vec<Phdr>, ElfProblem> {
    let bad = ElfProblem::OutOfFile("the program headers");
    if h.phnum > 0 && h.phentsize < 56 {
        return Err(bad);
    }
    let start = usize::try_from(h.phoff).map_err(|_| bad.clone())?;
    let len = h.phnum.checked_mul(h.phentsize).ok_or(bad.clone())?;
    let table = bytes
        .get(start..start.checked_add(len).ok_or(bad.clone())?)
        .ok_or(bad.clone())?;
    let mut out = Vec::with_capacity(h.phnum);
    for i in 0..h.phnum {
        let at = i * h.phentsize;
        let ph = (|| {
            Some(Phdr {
                p_type: le::u32_at(table, at)?,
                flags: le::u32_at(table, at + 4)?,
                offset: le::u64_at(table, at + 8)?,
                vaddr: le::u64_at(table, at + 16)?,
                filesz: le::u64_at(table, at + 32)?,
                memsz: le::u64_at(table, at + 40)?,
            })
        })()
        .ok_or(bad.clone())?;
        out.push(ph);
    }
    Ok(out)
}

/// The notes in `data` (a `PT_NOTE` segment's bytes), stopping at the first malformed one.
pub(crate) fn notes(data: &[u8]) -> impl Iterator<Item = Note<'_>> {
    let mut at = 0usize;
    std::iter::from_fn(move || {
        let namesz = usize::try_from(le::u32_at(data, at)?).ok()?;
        let descsz = usize::try_from(le::u32_at(data, at + 4)?).ok()?;
        let n_type = le::u32_at(data, at + 8)?;
        let name_at = at.checked_add(12)?;
        let desc_at = name_at.checked_add(align4(namesz)?)?;
        let end = desc_at.checked_add(align4(descsz)?)?;
        let name = data.get(name_at..name_at.checked_add(namesz)?)?;
        let desc = data.get(desc_at..desc_at.checked_add(descsz)?)?;
        at = end;
        let name = name.strip_suffix(b"\0").unwrap_or(name);
        Some(Note { name, n_type, desc })
    })
}

fn align4(n: usize) -> Option<usize> {
    n.checked_add(3).map(|n| n & !3)
}

/// `NT_GNU_BUILD_ID` (type 3, owner "GNU") in the `PT_NOTE` segments of an ELF file's bytes:
/// the id and its offset in the file.
pub(crate) fn build_id(bytes: &[u8]) -> Option<(Vec<u8>, u64)> {
    let h = header(bytes).ok()?;
    for ph in program_headers(bytes, &h).ok()? {
        if ph.p_type != PT_NOTE {
            continue;
        }
        let start = usize::try_from(ph.offset).ok()?;
        let end = start.checked_add(usize::try_from(ph.filesz).ok()?)?;
        let Some(data) = bytes.get(start..end) else {
            continue;
        };
        for note in notes(data) {
            if note.n_type == 3 && note.name == b"GNU" && !note.desc.is_empty() {
                // The descriptor is a slice of `data`: its offset in the file follows.
                let off = (note.desc.as_ptr() as usize).checked_sub(data.as_ptr() as usize)?;
                return Some((note.desc.to_vec(), ph.offset.checked_add(off as u64)?));
            }
        }
    }
    None
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn note(name: &[u8], n_type: u32, desc: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend((name.len() as u32 + 1).to_le_bytes());
        v.extend((desc.len() as u32).to_le_bytes());
        v.extend(n_type.to_le_bytes());
        v.extend(name);
        v.push(0);
        while v.len() % 4 != 0 {
            v.push(0);
        }
        v.extend(desc);
        while v.len() % 4 != 0 {
            v.push(0);
        }
        v
    }

    #[test]
    fn notes_are_split_with_padding_and_stop_at_a_short_one() {
        let mut data = note(b"CORE", 1, &[1, 2, 3, 4, 5]);
        data.extend(note(b"GNU", 3, &[9; 20]));
        data.extend([0xff; 7]);
        let got: Vec<Note> = notes(&data).collect();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].name, b"CORE");
        assert_eq!(got[0].desc, &[1, 2, 3, 4, 5]);
        assert_eq!(got[1].n_type, 3);
        assert_eq!(got[1].desc, &[9; 20]);
    }

    #[test]
    fn a_real_interpreter_has_a_build_id() {
        let bytes = std::fs::read("/usr/bin/python3.11").unwrap();
        let (id, off) = build_id(&bytes).unwrap();
        assert_eq!(id.len(), 20);
        assert_eq!(&bytes[off as usize..off as usize + 20], &id[..]);
    }

    #[test]
    fn headers_outside_the_file_are_refused() {
        assert_eq!(header(b"\x7fELF"), Err(ElfProblem::NotElf64));
        let mut b = vec![0u8; 64];
        b[..4].copy_from_slice(b"\x7fELF");
        b[4] = 2;
        b[5] = 1;
        b[32..40].copy_from_slice(&1000u64.to_le_bytes());
        b[54..56].copy_from_slice(&56u16.to_le_bytes());
        b[56..58].copy_from_slice(&3u16.to_le_bytes());
        let h = header(&b).unwrap();
        assert!(program_headers(&b, &h).is_err());
    }
}
