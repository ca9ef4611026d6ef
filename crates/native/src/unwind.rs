//! [`Unwinder`]: return addresses from registers and a copied stack, by CFI where a module
//! has it and by frame pointer where not.
//!
//! The unwinding itself is framehop's (see the crate docs for why). It does not say which
//! rule moved each frame, so we keep, per binary, the address ranges its CFI covers
//! (`Binary::cfi_ranges`) and look the caller's address up there: covered means CFI, not
//! covered (no module, a JIT region, a binary without unwind tables) means framehop fell back
//! to the frame pointer.
//!
//! CPython's `perf` trampolines (3.12+, `-X perf`) are code in anonymous memory with no CFI,
//! and in 3.12 and 3.13 no frame pointer either (`sub $8,%rsp; call *%rcx`), so neither rule
//! gets through them. The module map recognises their memory by the interpreter's template
//! bytes; for those modules we give framehop a generated `.debug_frame` stating the one rule
//! that holds at the return address of every trampoline.
//!
//! An innermost frame whose CFI computes the frame from `rbx` (a function that realigns its
//! stack, such as the dynamic loader's lazy-binding resolver) is stepped by its own rule
//! from the captured `rbx` (`crate::realigned`), and framehop goes on from its caller.

use crate::frame::UnwindMethod;
use crate::modules::{ModuleKind, ModuleMap};
use crate::realigned::RegisterRule;
use framehop::x86_64::{CacheX86_64, UnwindRegsX86_64, UnwinderX86_64};
use framehop::{ExplicitModuleSectionInfo, FrameAddress, Module as FhModule, Unwinder as _};
use rustc_hash::FxHashMap;
use std::ops::Range;
use strobe_memory::le;
use strobe_remote::{SharedBytes, UserRegs};

/// How deep an unwind goes at most: deeper stacks are cut (and say so).
pub const DEFAULT_MAX_DEPTH: usize = 512;

/// One unwound frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnwoundFrame {
    /// The instruction pointer (first frame) or a return address (the others).
    pub address: u64,
    /// The address to symbolise: the return address minus one (inside the call instruction,
    /// which matters when the call is a function's last instruction), the instruction pointer
    /// itself for the first frame.
    pub lookup: u64,
    /// How this frame was found.
    pub method: UnwindMethod,
}

/// How an unwind ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UnwindEnd {
    /// The outermost frame was reached (CFI says there is no caller: `_start`, `clone3`).
    Complete,
    /// A caller's frame lies outside the copied stack (a deep stack, a short copy).
    StackExhausted,
    /// The maximum depth was reached.
    DepthLimit,
    /// The unwinder could not go on (a frame pointer that points nowhere, a bad CFI rule).
    Stopped(String),
}

/// Frames of one stack, innermost first, and why the list ends.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Unwound {
    /// The frames.
    pub frames: Vec<UnwoundFrame>,
    /// Why there are no more (`None` before the first unwind).
    pub end: Option<UnwindEnd>,
    /// The frame pointer the unwind started from when the capture did not have it
    /// ([`strobe_remote::BlockedThread`]) and it was recovered from the stack; see
    /// [`Unwinder::unwind`].
    pub recovered_bp: Option<u64>,
    /// One past the highest stack address the unwind read (0 if it read none): a complete
    /// unwind needs the stack copied only up to here, and so, the outermost frames staying
    /// where they are, does the next unwind of the same thread (see
    /// [`strobe_remote::StackSpan`]).
    pub reach: u64,
}

/// Innermost instruction addresses whose `rbx` rule is remembered at most; the memo starts
/// over when full.
const MAX_REGISTER_RULES: usize = 1 << 16;
/// How far above the stack pointer a missing frame pointer is looked for.
const BP_SCAN_BYTES: usize = 16 * 1024;
/// How many frame-pointer candidates are tried at most.
const BP_CANDIDATES: usize = 16;
/// The frame pointer given to the unwinder when it is unknown: a kernel address, so that any
/// rule that uses it reads outside the copied stack and fails, instead of 0, which ends an
/// unwind as if the outermost frame had been reached.
const UNKNOWN_BP: u64 = 0xffff_ffff_ffff_f000;

/// An unwinder for one process's modules, with its rule cache.
pub struct Unwinder {
    inner: UnwinderX86_64<SharedBytes>,
    cache: CacheX86_64,
    modules: ModuleMap,
    max_depth: usize,
    /// Per innermost instruction address: the `rbx` rule of its CFI row, if it has one.
    register_rules: FxHashMap<u64, Option<RegisterRule>>,
}

impl std::fmt::Debug for Unwinder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Unwinder")
            .field("modules", &self.modules.modules().len())
            .field("max_depth", &self.max_depth)
            .finish()
    }
}

impl Unwinder {
    /// An unwinder for the modules of `modules` that have a binary.
    pub fn new(modules: &ModuleMap) -> Unwinder {
        let mut inner = UnwinderX86_64::new();
        for m in modules.modules() {
            if m.kind == ModuleKind::PerfTrampolines {
                let rule = m.trampoline_template.as_deref().and_then(trampoline_rule);
                if let Some(saves_bp) = rule {
                    let len = m.avma.end - m.avma.start;
                    let info = ExplicitModuleSectionInfo {
                        base_svma: 0,
                        debug_frame: Some(SharedBytes::from_vec(trampoline_debug_frame(
                            len, saves_bp,
                        ))),
                        ..Default::default()
                    };
                    inner.add_module(FhModule::new(
                        m.id.path.clone(),
                        m.avma.clone(),
                        m.avma.start,
                        info,
                    ));
                }
                continue;
            }
            let Some(b) = &m.binary else { continue };
            if m.kind == ModuleKind::Anonymous {
                continue;
            }
            let info = ExplicitModuleSectionInfo {
                base_svma: 0,
                text_svma: b.section_svma(".text"),
                text: b.section(".text"),
                got_svma: b.section_svma(".got"),
                eh_frame_svma: b.section_svma(".eh_frame"),
                eh_frame: b.section(".eh_frame"),
                eh_frame_hdr_svma: b.section_svma(".eh_frame_hdr"),
                eh_frame_hdr: b.section(".eh_frame_hdr"),
                debug_frame: b.debug_frame(),
                ..Default::default()
            };
            inner.add_module(FhModule::new(
                m.id.path.clone(),
                m.avma.clone(),
                m.bias,
                info,
            ));
        }
        Unwinder {
            inner,
            cache: CacheX86_64::new(),
            modules: modules.clone(),
            max_depth: DEFAULT_MAX_DEPTH,
            register_rules: FxHashMap::default(),
        }
    }

    /// Change the depth bound.
    pub fn set_max_depth(&mut self, depth: usize) {
        self.max_depth = depth.max(1);
    }

    /// The modules this unwinder knows.
    pub fn modules(&self) -> &ModuleMap {
        &self.modules
    }

    /// Unwind from `regs` over `stack`, the bytes copied from `regs.sp` up, into `out`. Never
    /// reads anything but `stack`.
    ///
    /// A capture without the frame pointer (`regs.bp` is `None`: a thread read asleep, from
    /// `/proc`) unwinds as far as CFI allows without it. Where a frame's CFI computes its
    /// frame from `rbp` (code built with frame pointers, `-O0`, `alloca`) and no frame below it
    /// saved `rbp` on the stack, that is not far: then the frame record that frame pushed is
    /// looked for on the stack (a slot holding a saved `rbp` that points further up the stack,
    /// or 0, next to a return address into a module), and a candidate is kept only if the
    /// unwind from it reaches the outermost frame ([`UnwindEnd::Complete`]), which a wrong
    /// guess does not.
    pub fn unwind(&mut self, regs: &UserRegs, stack: &[u8], out: &mut Unwound) {
        out.recovered_bp = None;
        self.unwind_from(regs, stack, out);
        if regs.bp.is_some() || out.end == Some(UnwindEnd::Complete) {
            return;
        }
        let first = std::mem::take(out);
        let end = regs.sp.saturating_add(stack.len() as u64);
        let slots = stack.len().min(BP_SCAN_BYTES) / 8;
        let mut tried = 0;
        for slot in 0..slots.saturating_sub(1) {
            let at = regs.sp + slot as u64 * 8;
            let (Some(saved), Some(ret)) =
                (le::u64_at(stack, slot * 8), le::u64_at(stack, slot * 8 + 8))
            else {
                break;
            };
            if !(saved == 0 || (saved > at && saved < end)) || self.modules.find(ret).is_none() {
                continue;
            }
            tried += 1;
            let guess = UserRegs {
                bp: Some(at),
                ..*regs
            };
            self.unwind_from(&guess, stack, out);
            if out.end == Some(UnwindEnd::Complete) {
                out.recovered_bp = Some(at);
                return;
            }
            if tried == BP_CANDIDATES {
                break;
            }
        }
        *out = first;
    }

    fn unwind_from(&mut self, regs: &UserRegs, stack: &[u8], out: &mut Unwound) {
        out.frames.clear();
        let stack_start = regs.sp;
        let stack_end = stack_start.saturating_add(stack.len() as u64);
        let mut exhausted = false;
        let mut reach = 0u64;
        let mut read_stack = |addr: u64| -> Result<u64, ()> {
            if addr < stack_start || addr.saturating_add(8) > stack_end {
                exhausted = true;
                return Err(());
            }
            reach = reach.max(addr + 8);
            le::u64_at(stack, (addr - stack_start) as usize).ok_or(())
        };
        let bp = regs.bp.unwrap_or(UNKNOWN_BP);
        let mut fh_regs = UnwindRegsX86_64::new(regs.ip, regs.sp, bp);
        // The innermost frame by its `rbx` rule, where it has one and the capture has `rbx`.
        let first_rule = match regs.bx {
            Some(bx) => self.register_rule(regs.ip).map(|rule| (rule, bx)),
            None => None,
        };
        let mut address = FrameAddress::InstructionPointer(regs.ip);
        out.frames.push(UnwoundFrame {
            address: regs.ip,
            lookup: regs.ip,
            method: UnwindMethod::Registers,
        });
        let end = loop {
            if out.frames.len() >= self.max_depth {
                break UnwindEnd::DepthLimit;
            }
            // The next frame is found by this frame's rule.
            let lookup = address.address_for_lookup();
            let mut method = if covered_by_cfi(&self.modules, lookup) {
                UnwindMethod::Cfi
            } else {
                UnwindMethod::FramePointer
            };
            let step = match first_rule {
                Some((rule, bx)) if out.frames.len() == 1 => {
                    match rule.caller(bx, bp, &mut read_stack) {
                        Some((ra, sp, caller_bp)) => {
                            fh_regs = UnwindRegsX86_64::new(ra, sp, caller_bp);
                            method = UnwindMethod::Cfi;
                            Ok(Some(ra))
                        }
                        None => break UnwindEnd::Stopped("rbx-based frame unreadable".into()),
                    }
                }
                _ => self
                    .inner
                    .unwind_frame(address, &mut fh_regs, &mut self.cache, &mut read_stack)
                    .map_err(|e| e.to_string()),
            };
            match step {
                Ok(Some(ra)) => {
                    let Some(next) = FrameAddress::from_return_address(ra) else {
                        break UnwindEnd::Stopped(framehop::Error::ReturnAddressIsNull.to_string());
                    };
                    out.frames.push(UnwoundFrame {
                        address: next.address(),
                        lookup: next.address_for_lookup(),
                        method,
                    });
                    address = next;
                }
                Ok(None) => break UnwindEnd::Complete,
                Err(e) => break UnwindEnd::Stopped(e),
            }
        };
        out.reach = reach;
        out.end = Some(match end {
            UnwindEnd::Stopped(_) if exhausted => UnwindEnd::StackExhausted,
            end => end,
        });
    }

    /// The `rbx` rule of the CFI row at innermost address `ip`, remembered per address.
    fn register_rule(&mut self, ip: u64) -> Option<RegisterRule> {
        if let Some(rule) = self.register_rules.get(&ip) {
            return *rule;
        }
        let rule = self.modules.find(ip).and_then(|m| {
            let binary = m.binary.as_ref()?;
            (m.kind == ModuleKind::File || m.kind == ModuleKind::Vdso)
                .then(|| RegisterRule::at(binary, m.svma(ip)))
                .flatten()
        });
        if self.register_rules.len() >= MAX_REGISTER_RULES {
            self.register_rules.clear();
        }
        self.register_rules.insert(ip, rule);
        rule
    }
}

fn covered_by_cfi(modules: &ModuleMap, avma: u64) -> bool {
    modules.find(avma).is_some_and(|m| {
        (m.kind == ModuleKind::PerfTrampolines
            && m.trampoline_template
                .as_deref()
                .and_then(trampoline_rule)
                .is_some())
            || m.binary
                .as_ref()
                .is_some_and(|b| b.cfi_covers(m.svma(avma)))
    })
}

/// How a CPython perf trampoline template (x86-64) keeps its frame, if it is one of the two
/// known ones: `sub $8,%rsp; call *%rcx` (3.12, 3.13: no frame pointer, `Some(false)`) or
/// `push %rbp; mov %rsp,%rbp; call *%rcx` (3.14: `Some(true)`), either after an optional
/// `endbr64`. In both, at the return address of the `call` the caller's stack pointer is 16
/// bytes up and the return address is the last 8 of them.
fn trampoline_rule(template: &[u8]) -> Option<bool> {
    const ENDBR64: &[u8] = &[0xf3, 0x0f, 0x1e, 0xfa];
    const SUB_CALL: &[u8] = &[0x48, 0x83, 0xec, 0x08, 0xff, 0xd1];
    const PUSH_CALL: &[u8] = &[0x55, 0x48, 0x89, 0xe5, 0xff, 0xd1];
    let code = template.strip_prefix(ENDBR64).unwrap_or(template);
    if code.starts_with(SUB_CALL) {
        Some(false)
    } else if code.starts_with(PUSH_CALL) {
        Some(true)
    } else {
        None
    }
}

/// A `.debug_frame` with one CIE and one FDE covering `len` bytes from relative address 0:
/// CFA = rsp + 16, return address at CFA - 8, and, if `saves_bp`, rbp at CFA - 16 (else rbp
/// keeps its value). It is right at the return address of each trampoline's `call`, which is
/// where every frame of a trampoline but an innermost one is.
fn trampoline_debug_frame(len: u64, saves_bp: bool) -> Vec<u8> {
    const DW_CFA_DEF_CFA: u8 = 0x0c;
    const DW_CFA_OFFSET: u8 = 0x80;
    const RSP: u8 = 7;
    const RBP: u8 = 6;
    const RA: u8 = 16;
    let mut cie = vec![DW_CFA_DEF_CFA, RSP, 16, DW_CFA_OFFSET | RA, 1];
    if saves_bp {
        cie.extend([DW_CFA_OFFSET | RBP, 2]);
    }
    debug_frame_section(&cie, 0..len, &[])
}

/// A `.debug_frame` of one CIE (version 1, no augmentation, code alignment 1, data alignment
/// -8, return address column 16) whose initial program is `cie_program`, and one FDE over
/// `range` whose program is `fde_program`.
pub(crate) fn debug_frame_section(
    cie_program: &[u8],
    range: Range<u64>,
    fde_program: &[u8],
) -> Vec<u8> {
    const RA: u8 = 16;
    // Data alignment -8 is sleb128 0x78.
    let mut cie = vec![0xff, 0xff, 0xff, 0xff, 1, 0, 1, 0x78, RA];
    cie.extend(cie_program);
    let mut fde = vec![0, 0, 0, 0]; // CIE pointer: offset 0 of the section
    fde.extend(range.start.to_le_bytes());
    fde.extend((range.end - range.start).to_le_bytes());
    fde.extend(fde_program);
    let mut out = Vec::new();
    for mut entry in [cie, fde] {
        // Entries are padded with DW_CFA_nop to a multiple of the address size.
        while (entry.len() + 4) % 8 != 0 {
            entry.push(0);
        }
        out.extend((entry.len() as u32).to_le_bytes());
        out.extend(entry);
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use gimli::{
        BaseAddresses, CfaRule, DebugFrame, LittleEndian, RegisterRule, UnwindContext,
        UnwindSection, X86_64,
    };

    /// The templates of pyenv's 3.12.1 and 3.13.0 and of Debian's 3.14 (with `endbr64`).
    #[test]
    fn trampoline_templates() {
        let sub = [
            0x48, 0x83, 0xec, 0x08, 0xff, 0xd1, 0x48, 0x83, 0xc4, 0x08, 0xc3,
        ];
        assert_eq!(trampoline_rule(&sub), Some(false));
        let push = [
            0xf3, 0x0f, 0x1e, 0xfa, 0x55, 0x48, 0x89, 0xe5, 0xff, 0xd1, 0x5d, 0xc3,
        ];
        assert_eq!(trampoline_rule(&push), Some(true));
        assert_eq!(trampoline_rule(&push[4..]), Some(true));
        // Anything else gets no rule (frame pointers are tried instead).
        assert_eq!(trampoline_rule(&[0x55, 0xff, 0xd1, 0x5d, 0xc3]), None);
        assert_eq!(trampoline_rule(&[]), None);
    }

    /// The generated `.debug_frame` says what its documentation says, read by gimli.
    #[test]
    fn trampoline_cfi() {
        for saves_bp in [false, true] {
            let data = trampoline_debug_frame(0x1000, saves_bp);
            let mut section = DebugFrame::new(&data, LittleEndian);
            section.set_address_size(8);
            let bases = BaseAddresses::default();
            let fde = section
                .fde_for_address(&bases, 0x6, DebugFrame::cie_from_offset)
                .unwrap();
            assert_eq!(fde.initial_address(), 0);
            assert_eq!(fde.len(), 0x1000);
            let mut ctx = UnwindContext::new();
            let row = fde
                .unwind_info_for_address(&section, &bases, &mut ctx, 0xfff)
                .unwrap();
            assert_eq!(
                *row.cfa(),
                CfaRule::RegisterAndOffset {
                    register: X86_64::RSP,
                    offset: 16
                }
            );
            assert_eq!(row.register(X86_64::RA), RegisterRule::Offset(-8));
            let bp = if saves_bp {
                RegisterRule::Offset(-16)
            } else {
                RegisterRule::Undefined
            };
            assert_eq!(row.register(X86_64::RBP), bp);
        }
    }
}
