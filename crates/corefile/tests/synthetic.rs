//! A core built by hand: where each byte of a read comes from (the core's segments, the file
//! a mapping names, zeros past that file's end) and where reads fail.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use strobe_corefile::{Core, CoreError, CoreOptions};
use strobe_memory::{MemError, RemoteMemory};
use strobe_testkit::TempDir;

const SEG_A: u64 = 0x10000;
const SEG_B: u64 = 0x13000;
const PAGE: usize = 0x1000;

fn note(out: &mut Vec<u8>, n_type: u32, desc: &[u8]) {
    out.extend(5u32.to_le_bytes());
    out.extend((desc.len() as u32).to_le_bytes());
    out.extend(n_type.to_le_bytes());
    out.extend(b"CORE\0\0\0\0");
    out.extend(desc);
    out.resize(out.len().next_multiple_of(4), 0);
}

/// A core with one thread (tid 77), segment A (two pages, only the first in the core) and
/// segment B (one page), and an `NT_FILE` mapping `file` at A (offset 0, two pages).
fn build_core(file: &Path, e_type: u16) -> Vec<u8> {
    let mut notes = Vec::new();
    let mut prstatus = vec![0u8; 336];
    prstatus[32..36].copy_from_slice(&77u32.to_le_bytes());
    note(&mut notes, 1, &prstatus);
    let mut nt_file = Vec::new();
    for v in [1u64, PAGE as u64, SEG_A, SEG_A + 2 * PAGE as u64, 0] {
        nt_file.extend(v.to_le_bytes());
    }
    nt_file.extend(file.to_str().unwrap().as_bytes());
    nt_file.push(0);
    note(&mut notes, 0x4649_4c45, &nt_file);

    let phoff = 64u64;
    let notes_at = phoff + 3 * 56;
    let data_at = (notes_at + notes.len() as u64).next_multiple_of(PAGE as u64);
    let mut core = vec![0u8; 64];
    core[..4].copy_from_slice(b"\x7fELF");
    core[4] = 2;
    core[5] = 1;
    core[6] = 1;
    core[16..18].copy_from_slice(&e_type.to_le_bytes());
    core[18..20].copy_from_slice(&62u16.to_le_bytes());
    core[32..40].copy_from_slice(&phoff.to_le_bytes());
    core[54..56].copy_from_slice(&56u16.to_le_bytes());
    core[56..58].copy_from_slice(&3u16.to_le_bytes());
    let phdr = |p_type: u32, offset: u64, vaddr: u64, filesz: u64, memsz: u64| {
        let mut p = Vec::new();
        p.extend(p_type.to_le_bytes());
        p.extend(6u32.to_le_bytes());
        for v in [offset, vaddr, 0, filesz, memsz, 1] {
            p.extend(v.to_le_bytes());
        }
        p
    };
    let page = PAGE as u64;
    core.extend(phdr(4, notes_at, 0, notes.len() as u64, 0));
    core.extend(phdr(1, data_at, SEG_A, page, 2 * page));
    core.extend(phdr(1, data_at + page, SEG_B, page, page));
    core.extend(&notes);
    core.resize(data_at as usize, 0);
    core.extend(vec![0xaa; PAGE]);
    core.extend(vec![0xbb; PAGE]);
    core
}

/// The file behind segment A: its first page differs from the core's (the core wins there),
/// its second page holds 0xcc for 0x800 bytes, then the file ends.
fn write_file(dir: &TempDir) -> std::path::PathBuf {
    let path = dir.join("lib.so");
    let mut bytes = vec![0x11; PAGE];
    bytes.extend(vec![0xcc; 0x800]);
    std::fs::write(&path, bytes).unwrap();
    path
}

fn open(dir: &TempDir, core: &[u8]) -> Result<Core, CoreError> {
    let path = dir.join("core");
    std::fs::write(&path, core).unwrap();
    Core::open(&path, CoreOptions::default())
}

#[test]
fn reads_come_from_the_core_then_the_named_file() {
    let dir = TempDir::new();
    let file = write_file(&dir);
    let core = open(&dir, &build_core(&file, 4)).unwrap();
    assert_eq!(core.threads().len(), 1);
    assert_eq!(core.threads()[0].tid, 77);
    assert_eq!(core.pid(), 77);

    // Across the end of A's dumped page into the page the core left out: core, then file.
    let mut buf = [0u8; 32];
    core.read_into(SEG_A + PAGE as u64 - 16, &mut buf).unwrap();
    assert_eq!(&buf[..16], &[0xaa; 16]);
    assert_eq!(&buf[16..], &[0xcc; 16]);
    // Past the file's end inside the mapping: zeros, as the process saw them.
    core.read_into(SEG_A + PAGE as u64 + 0x7f8, &mut buf)
        .unwrap();
    assert_eq!(&buf[..8], &[0xcc; 8]);
    assert_eq!(&buf[8..], &[0; 24]);
    // Segment B, from the core.
    core.read_into(SEG_B + 8, &mut buf).unwrap();
    assert_eq!(buf, [0xbb; 32]);
    // The gap between A's mapping and B: nothing there.
    let gap = SEG_A + 2 * PAGE as u64;
    assert_eq!(
        core.read_into(gap, &mut buf),
        Err(MemError::Fault { addr: gap, len: 32 })
    );
    // A read that runs from A into the gap fails as a whole.
    assert!(core.read_into(gap - 8, &mut buf).is_err());
    // Address arithmetic at the top of the address space.
    assert!(core.read_into(u64::MAX - 4, &mut buf).is_err());
}

#[test]
fn without_the_named_file_the_left_out_page_is_unreadable() {
    let dir = TempDir::new();
    let file = dir.join("gone.so");
    let core = open(&dir, &build_core(&file, 4)).unwrap();
    let mut buf = [0u8; 8];
    core.read_into(SEG_A, &mut buf).unwrap();
    assert!(core.read_into(SEG_A + PAGE as u64, &mut buf).is_err());
    assert_eq!(core.file_problems().len(), 1, "{:?}", core.file_problems());
}

#[test]
fn broken_cores_are_refused_with_what_is_wrong() {
    let dir = TempDir::new();
    let file = write_file(&dir);
    let good = build_core(&file, 4);
    let err = open(&dir, &good[..good.len() - 100]).unwrap_err();
    assert!(matches!(err, CoreError::Truncated { .. }), "{err}");
    let err = open(&dir, &good[..40]).unwrap_err();
    assert!(matches!(err, CoreError::Truncated { .. }), "{err}");
    let err = open(&dir, &build_core(&file, 2)).unwrap_err();
    assert!(matches!(err, CoreError::NotCore { .. }), "{err}");
    assert!(err.to_string().contains("an executable"), "{err}");
    let err = open(&dir, b"#!/bin/sh\n").unwrap_err();
    assert!(matches!(err, CoreError::NotCore { .. }), "{err}");
}
