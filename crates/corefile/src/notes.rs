//! The notes of a Linux x86-64 core: threads (`NT_PRSTATUS`), the process (`NT_PRPSINFO`),
//! the mapped files (`NT_FILE`) and the auxiliary vector (`NT_AUXV`).
//!
//! Layouts from the kernel's `include/uapi/linux/elfcore.h` (`struct elf_prstatus`,
//! `struct elf_prpsinfo`), `arch/x86/include/asm/user_64.h` (`struct user_regs_struct`) and
//! `fs/binfmt_elf.c` (`fill_files_note`), which gdb's `gcore` writes the same way.

use crate::elf::Note;
use strobe_memory::le;

/// `NT_PRSTATUS`.
const NT_PRSTATUS: u32 = 1;
/// `NT_PRPSINFO`.
const NT_PRPSINFO: u32 = 3;
/// `NT_AUXV`.
const NT_AUXV: u32 = 6;
/// `NT_FILE` ("FILE").
const NT_FILE: u32 = 0x4649_4c45;

/// `pr_pid` in `struct elf_prstatus` (after siginfo 12, cursig 2 + pad 2, sigpend 8, sighold 8).
const PRSTATUS_PID: usize = 32;
/// `pr_reg` in `struct elf_prstatus` (after pid, ppid, pgrp, sid and four `timeval`s).
const PRSTATUS_REGS: usize = 112;
/// `struct user_regs_struct` is 27 `unsigned long`s.
const REGS: usize = 27;
/// Register indices in `user_regs_struct`: r15 r14 r13 r12 rbp rbx r11 r10 r9 r8 rax rcx rdx
/// rsi rdi orig_rax rip cs eflags rsp ...
const REG_RBP: usize = 4;
const REG_RBX: usize = 5;
const REG_ORIG_RAX: usize = 15;
const REG_RIP: usize = 16;
const REG_RSP: usize = 19;
/// `pr_pid` and `pr_fname[16]` in `struct elf_prpsinfo` (x86-64).
const PRPSINFO_PID: usize = 24;
const PRPSINFO_FNAME: usize = 40;

/// One thread of the dumped process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CoreThread {
    /// Kernel thread id (`pr_pid`), as the process saw it.
    pub tid: u32,
    /// Instruction pointer.
    pub rip: u64,
    /// Stack pointer.
    pub rsp: u64,
    /// Frame pointer.
    pub rbp: u64,
    /// `rbx` (a realigning function's frame may be computed from it).
    pub rbx: u64,
    /// The system call the thread was in (`orig_rax`), if any.
    pub syscall: Option<u64>,
}

/// A file mapping from `NT_FILE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileMapping {
    /// First address.
    pub start: u64,
    /// One past the last address.
    pub end: u64,
    /// Offset in the file of `start`, in bytes.
    pub offset: u64,
    /// The path as the dumped process saw it (relative to its root), without ` (deleted)`.
    pub path: String,
    /// The kernel marked the file deleted.
    pub deleted: bool,
}

/// What the notes say.
#[derive(Debug, Default, Clone)]
pub(crate) struct CoreNotes {
    pub threads: Vec<CoreThread>,
    pub files: Vec<FileMapping>,
    pub auxv: Vec<(u64, u64)>,
    pub pid: Option<u32>,
    pub command: Option<String>,
}

impl CoreNotes {
    pub fn add(&mut self, note: &Note<'_>) {
        // Only notes owned by "CORE" carry these types with these meanings ("LINUX" notes
        // reuse small numbers for other things).
        if note.name != b"CORE" {
            return;
        }
        match note.n_type {
            NT_PRSTATUS => {
                if let Some(t) = prstatus(note.desc) {
                    self.threads.push(t);
                }
            }
            NT_PRPSINFO => {
                self.pid = le::u32_at(note.desc, PRPSINFO_PID).filter(|&p| p > 0);
                self.command = note
                    .desc
                    .get(PRPSINFO_FNAME..PRPSINFO_FNAME + 16)
                    .map(|f| f.split(|&b| b == 0).next().unwrap_or(f))
                    .map(|f| String::from_utf8_lossy(f).into_owned());
            }
            NT_AUXV => {
                self.auxv = note
                    .desc
                    .chunks_exact(16)
                    .filter_map(|c| Some((le::u64_at(c, 0)?, le::u64_at(c, 8)?)))
                    .collect();
            }
            NT_FILE => self.files = files(note.desc),
            _ => {}
        }
    }
}

fn prstatus(desc: &[u8]) -> Option<CoreThread> {
    let tid = le::u32_at(desc, PRSTATUS_PID)?;
    let regs = desc.get(PRSTATUS_REGS..PRSTATUS_REGS + REGS * 8)?;
    let reg = |i: usize| le::u64_at(regs, i * 8);
    Some(CoreThread {
        tid,
        rip: reg(REG_RIP)?,
        rsp: reg(REG_RSP)?,
        rbp: reg(REG_RBP)?,
        rbx: reg(REG_RBX)?,
        // -1 outside a system call (arch/x86/include/asm/syscall.h).
        syscall: reg(REG_ORIG_RAX).filter(|&nr| (nr as i64) >= 0),
    })
}

/// `NT_FILE`: `count`, `page_size`, `count` × (start, end, offset in pages), then `count`
/// NUL-terminated paths. Entries that do not fit the descriptor are dropped.
fn files(desc: &[u8]) -> Vec<FileMapping> {
    let (Some(count), Some(page)) = (le::u64_at(desc, 0), le::u64_at(desc, 8)) else {
        return Vec::new();
    };
    // Each entry takes 24 bytes of the table and at least one byte of names.
    let count = usize::try_from(count)
        .unwrap_or(usize::MAX)
        .min(desc.len() / 25);
    let Some(names_at) = count.checked_mul(24).and_then(|n| n.checked_add(16)) else {
        return Vec::new();
    };
    let mut names = desc.get(names_at..).unwrap_or(&[]).split(|&b| b == 0);
    let mut out = Vec::with_capacity(count);
    for i in 0..count {
        let at = 16 + i * 24;
        let (Some(start), Some(end), Some(pgoff), Some(name)) = (
            le::u64_at(desc, at),
            le::u64_at(desc, at + 8),
            le::u64_at(desc, at + 16),
            names.next(),
        ) else {
            break;
        };
        if end <= start {
            continue;
        }
        let Some(offset) = pgoff.checked_mul(page) else {
            continue;
        };
        let name = String::from_utf8_lossy(name);
        let (path, deleted) = match name.strip_suffix(" (deleted)") {
            Some(p) => (p.to_string(), true),
            None => (name.into_owned(), false),
        };
        out.push(FileMapping {
            start,
            end,
            offset,
            path,
            deleted,
        });
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn file_note_entries_and_names() {
        let mut d = Vec::new();
        for v in [2u64, 4096, 0x1000, 0x3000, 0, 0x5000, 0x6000, 2] {
            d.extend(v.to_le_bytes());
        }
        d.extend(b"/usr/bin/python3\0/lib/x.so (deleted)\0");
        let got = files(&d);
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].path, "/usr/bin/python3");
        assert_eq!(
            (got[0].start, got[0].end, got[0].offset),
            (0x1000, 0x3000, 0)
        );
        assert_eq!(got[1].offset, 0x2000);
        assert!(got[1].deleted);
        assert_eq!(got[1].path, "/lib/x.so");
    }

    #[test]
    fn a_file_note_claiming_too_many_entries_is_cut_to_its_size() {
        let mut d = Vec::new();
        for v in [u64::MAX, 4096, 0x1000, 0x2000, 0] {
            d.extend(v.to_le_bytes());
        }
        d.extend(b"/a\0");
        let got = files(&d);
        assert!(got.len() <= 1);
    }

    #[test]
    fn prstatus_gives_the_thread_id_and_registers() {
        let mut d = vec![0u8; 336];
        d[PRSTATUS_PID..PRSTATUS_PID + 4].copy_from_slice(&4242u32.to_le_bytes());
        let reg = |i: usize| PRSTATUS_REGS + i * 8;
        d[reg(REG_RIP)..reg(REG_RIP) + 8].copy_from_slice(&0x40_1000u64.to_le_bytes());
        d[reg(REG_RSP)..reg(REG_RSP) + 8].copy_from_slice(&0x7ffd_0000u64.to_le_bytes());
        d[reg(REG_RBP)..reg(REG_RBP) + 8].copy_from_slice(&0x7ffd_0040u64.to_le_bytes());
        d[reg(REG_RBX)..reg(REG_RBX) + 8].copy_from_slice(&0x7ffd_0100u64.to_le_bytes());
        let t = prstatus(&d).unwrap();
        assert_eq!((t.tid, t.rip, t.rsp), (4242, 0x40_1000, 0x7ffd_0000));
        assert_eq!((t.rbp, t.rbx), (0x7ffd_0040, 0x7ffd_0100));
        assert!(prstatus(&d[..200]).is_none());
    }
}
