//! Where the fields of a sample record are: shared by [`super::PerfThread`], which drains
//! every record, and `crate::PreemptWatch`, which reads only the newest.

use crate::stack::UserRegs;

/// A sample record's fields (of the `sample_type` `encode_attr` sets) and where its stack
/// bytes are, decoded from a record of `size` bytes that `read(offset, out)` copies from.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SampleLayout {
    pub(crate) pid: u32,
    pub(crate) tid: u32,
    pub(crate) time_ns: u64,
    pub(crate) regs: Option<UserRegs>,
    /// The stack's offset in the record.
    pub(crate) stack_at: u64,
    /// How many stack bytes the kernel filled.
    pub(crate) stack_len: usize,
}

impl SampleLayout {
    pub(crate) fn decode(size: u64, read: impl Fn(u64, &mut [u8])) -> Option<SampleLayout> {
        // ip, pid+tid, time, abi, then (if abi != 0) bx, bp, sp, ip, then the stack's size.
        let mut fixed = [0u8; 9 * 8];
        let fixed_len = usize::try_from(size.checked_sub(8)?).ok()?.min(fixed.len());
        read(8, &mut fixed[..fixed_len]);
        let word = |i: usize| strobe_memory::le::u64_at(&fixed, i * 8);
        let pid_tid = word(1)?;
        let time_ns = word(2)?;
        let abi = word(3)?;
        let (regs, next) = if abi != 0 {
            let regs = UserRegs {
                bx: Some(word(4)?),
                bp: Some(word(5)?),
                sp: word(6)?,
                ip: word(7)?,
            };
            (Some(regs), 8)
        } else {
            (None, 4)
        };
        let stack_size = word(next)?;
        let stack_at = 8 + (next as u64 + 1) * 8;
        let stack_len = if stack_size == 0 {
            0
        } else {
            // The data is followed by `dyn_size`: how much of it the kernel really filled.
            if stack_at.checked_add(stack_size)?.checked_add(8)? > size {
                return None;
            }
            let mut dyn_size = [0u8; 8];
            read(stack_at + stack_size, &mut dyn_size);
            u64::from_le_bytes(dyn_size).min(stack_size) as usize
        };
        Some(SampleLayout {
            pid: pid_tid as u32,
            tid: (pid_tid >> 32) as u32,
            time_ns,
            regs,
            stack_at,
            stack_len,
        })
    }
}
