//! `.dynsym` found through the dynamic section (`PT_DYNAMIC`), for files whose section
//! headers were removed (`sstrip`).

use super::symtab::gnu_symbol_count;
use super::{range_in, u32_at, u64_at, Elf64, SymbolTable, SYM_SIZE};

/// `p_type` of the dynamic section.
const PT_DYNAMIC: u32 = 2;
/// `d_tag`s of the dynamic section we read (elf(5)).
const DT_NULL: u64 = 0;
const DT_HASH: u64 = 4;
const DT_STRTAB: u64 = 5;
const DT_SYMTAB: u64 = 6;
const DT_STRSZ: u64 = 10;
const DT_GNU_HASH: u64 = 0x6fff_fef5;

impl<'a> Elf64<'a> {
    /// `.dynsym` and its hash tables (GNU, System V) as the dynamic section (`PT_DYNAMIC`)
    /// locates them: for files whose section headers were removed (`sstrip`), which the
    /// dynamic linker does not need. The table's length is not recorded there; it is the
    /// System V table's `nchain`, or the end of the GNU table's last chain.
    #[allow(clippy::type_complexity)]
    pub(super) fn dynamic_table(
        &self,
    ) -> Option<(SymbolTable<'a>, Option<&'a [u8]>, Option<&'a [u8]>)> {
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
}
