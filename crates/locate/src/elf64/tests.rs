//! The hash lookups against reading every entry, on real interpreters and synthetic files.

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
