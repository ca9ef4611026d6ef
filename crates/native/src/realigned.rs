//! Frames whose CFI computes the frame from a register framehop does not track.
//!
//! framehop follows only `rsp` and `rbp`. A function that realigns its stack (`and $-64,%rsp`)
//! keeps the old stack pointer in another register and its CFI says so: glibc's
//! `_dl_runtime_resolve_xsave*`, which resolves a library call on its first use (lazy
//! binding), has `CFA = rbx + 56` for most of its body. For such a row framehop has no
//! register value and falls back to the frame pointer, which there is the caller's (or
//! garbage), so the unwind stops or goes wrong at the first frame. Only the innermost frame
//! can be helped: it is the only one whose registers other than `rsp`, `rbp` and `rip` a
//! capture knows (`rbx` from ptrace, perf samples and core files; nothing from `/proc`).
//!
//! [`RegisterRule::at`] reads the row of the innermost instruction from the binary's own
//! `.eh_frame` (through `.eh_frame_hdr`'s table where there is one) or `.debug_frame`, and
//! keeps it only when its CFA is `rbx` plus an offset and the return address and `rbp` are
//! where it can read them; the unwinder caches the answer per instruction address.

use crate::binary::Binary;
use gimli::{
    BaseAddresses, CfaRule, DebugFrame, EhFrame, EhFrameHdr, LittleEndian,
    RegisterRule as DwarfRule, UnwindContext, UnwindSection, X86_64,
};

/// How the caller's registers follow from `rbx` at one instruction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RegisterRule {
    /// CFA (the caller's stack pointer) = `rbx` + this.
    pub(crate) cfa_offset: i64,
    /// The return address is saved at CFA + this.
    pub(crate) ra_offset: i64,
    /// The caller's `rbp` is saved at CFA + this; `None`: `rbp` keeps its value.
    pub(crate) bp_offset: Option<i64>,
}

impl RegisterRule {
    /// The rule at stated address `svma` of `binary`, if its CFA is computed from `rbx`.
    pub(crate) fn at(binary: &Binary, svma: u64) -> Option<RegisterRule> {
        let mut ctx = UnwindContext::new();
        if let Some(data) = binary.section(".eh_frame") {
            let bases = binary.eh_frame_bases();
            let eh = EhFrame::new(&data, LittleEndian);
            let hdr_bytes = binary.section(".eh_frame_hdr");
            let parsed = hdr_bytes
                .as_deref()
                .and_then(|hdr| EhFrameHdr::new(hdr, LittleEndian).parse(&bases, 8).ok());
            let fde = match parsed.as_ref().and_then(|p| p.table()) {
                Some(table) => table
                    .fde_for_address(&eh, &bases, svma, EhFrame::cie_from_offset)
                    .ok(),
                None => eh
                    .fde_for_address(&bases, svma, EhFrame::cie_from_offset)
                    .ok(),
            };
            if let Some(fde) = fde {
                let row = fde
                    .unwind_info_for_address(&eh, &bases, &mut ctx, svma)
                    .ok()?;
                return rule_of(row);
            }
        }
        let data = binary.debug_frame()?;
        let mut df = DebugFrame::new(&data, LittleEndian);
        df.set_address_size(8);
        let bases = BaseAddresses::default();
        let fde = df
            .fde_for_address(&bases, svma, DebugFrame::cie_from_offset)
            .ok()?;
        let row = fde
            .unwind_info_for_address(&df, &bases, &mut ctx, svma)
            .ok()?;
        rule_of(row)
    }

    /// The caller's return address, stack pointer and `rbp`, from `rbx` and `rbp` at the
    /// instruction and the stack (`read` gives the word at an address); `None` where a slot
    /// cannot be read.
    pub(crate) fn caller(
        &self,
        bx: u64,
        bp: u64,
        read: &mut impl FnMut(u64) -> Result<u64, ()>,
    ) -> Option<(u64, u64, u64)> {
        let cfa = bx.checked_add_signed(self.cfa_offset)?;
        let ra = read(cfa.checked_add_signed(self.ra_offset)?).ok()?;
        let bp = match self.bp_offset {
            Some(at) => read(cfa.checked_add_signed(at)?).ok()?,
            None => bp,
        };
        Some((ra, cfa, bp))
    }
}

fn rule_of<T: gimli::ReaderOffset>(row: &gimli::UnwindTableRow<T>) -> Option<RegisterRule> {
    let CfaRule::RegisterAndOffset { register, offset } = *row.cfa() else {
        return None;
    };
    if register != X86_64::RBX {
        return None;
    }
    let DwarfRule::Offset(ra_offset) = row.register(X86_64::RA) else {
        return None;
    };
    let bp_offset = match row.register(X86_64::RBP) {
        DwarfRule::Offset(at) => Some(at),
        DwarfRule::Undefined | DwarfRule::SameValue => None,
        _ => return None,
    };
    Some(RegisterRule {
        cfa_offset: offset,
        ra_offset,
        bp_offset,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// A `.debug_frame` with one CIE (CFA = rsp + 8, return address at CFA - 8) and one FDE
    /// over 0x100..0x200 whose program is `instructions`.
    fn debug_frame(instructions: &[u8]) -> Vec<u8> {
        crate::unwind::debug_frame_section(&[0x0c, 7, 8, 0x80 | 16, 1], 0x100..0x200, instructions)
    }

    fn row_at(data: &[u8], address: u64) -> Option<RegisterRule> {
        let mut df = DebugFrame::new(data, LittleEndian);
        df.set_address_size(8);
        let bases = BaseAddresses::default();
        let fde = df
            .fde_for_address(&bases, address, DebugFrame::cie_from_offset)
            .unwrap();
        let mut ctx = UnwindContext::new();
        rule_of(
            fde.unwind_info_for_address(&df, &bases, &mut ctx, address)
                .unwrap(),
        )
    }

    /// The rows of glibc's `_dl_runtime_resolve_xsavec` (readelf of Debian 12's ld.so):
    /// `push %rbx`, `mov %rsp,%rbx`, then CFA = rbx + 56 with rbx saved at CFA - 56.
    #[test]
    fn the_resolvers_rows() {
        let program = [
            0x44, 0x0e, 56, // advance 4: def_cfa_offset 56
            0x44, 0x83, 7, // advance 4: rbx at CFA - 56
            0x48, 0x0d, 3, // advance 8: def_cfa_register rbx
        ];
        let data = debug_frame(&program);
        // Before `mov %rsp,%rbx`: rsp-based, framehop's own.
        assert_eq!(row_at(&data, 0x100), None);
        assert_eq!(row_at(&data, 0x107), None);
        let rule = row_at(&data, 0x110).unwrap();
        assert_eq!(
            rule,
            RegisterRule {
                cfa_offset: 56,
                ra_offset: -8,
                bp_offset: None
            }
        );
        // rbx = 0x7000: CFA 0x7038, the return address in the slot below it.
        let mut read = |a: u64| if a == 0x7030 { Ok(0x4242) } else { Err(()) };
        assert_eq!(
            rule.caller(0x7000, 0x99, &mut read),
            Some((0x4242, 0x7038, 0x99))
        );
        let mut unreadable = |_| Err(());
        assert_eq!(rule.caller(0x7000, 0x99, &mut unreadable), None);
    }

    /// A saved `rbp` is read from its slot; a CFA from any other register is not ours.
    #[test]
    fn saved_rbp_and_other_registers() {
        // def_cfa rbx+16, rbp at CFA - 16.
        let data = debug_frame(&[0x0c, 3, 16, 0x86, 2]);
        let rule = row_at(&data, 0x180).unwrap();
        assert_eq!(rule.bp_offset, Some(-16));
        // rbx = 0xff0: CFA 0x1000, the return address at 0xff8, rbp at 0xff0.
        let mut read = |a: u64| match a {
            0xff8 => Ok(0xaa),
            0xff0 => Ok(0xbb),
            _ => Err(()),
        };
        assert_eq!(rule.caller(0xff0, 1, &mut read), Some((0xaa, 0x1000, 0xbb)));
        // def_cfa r10+0: not rbx.
        assert_eq!(row_at(&debug_frame(&[0x0c, 10, 0]), 0x180), None);
    }
}
