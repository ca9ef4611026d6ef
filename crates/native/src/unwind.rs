//! [`Unwinder`]: return addresses from registers and a copied stack, by CFI where a module
//! has it and by frame pointer where not.
//!
//! The unwinding itself is framehop's (see the crate docs for why). It does not say which
//! rule moved each frame, so we keep, per binary, the address ranges its CFI covers
//! (`Binary::cfi_ranges`) and look the caller's address up there: covered means CFI, not
//! covered (no module, a JIT or trampoline region, a binary without unwind tables) means
//! framehop fell back to the frame pointer.

use crate::frame::UnwindMethod;
use crate::modules::{ModuleKind, ModuleMap};
use framehop::x86_64::{CacheX86_64, UnwindRegsX86_64, UnwinderX86_64};
use framehop::{ExplicitModuleSectionInfo, Module as FhModule, Unwinder as _};
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
}

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
        let mut read_stack = |addr: u64| -> Result<u64, ()> {
            if addr < stack_start || addr.saturating_add(8) > stack_end {
                exhausted = true;
                return Err(());
            }
            le::u64_at(stack, (addr - stack_start) as usize).ok_or(())
        };
        let start = UnwindRegsX86_64::new(regs.ip, regs.sp, regs.bp.unwrap_or(UNKNOWN_BP));
        let mut iter = self
            .inner
            .iter_frames(regs.ip, start, &mut self.cache, &mut read_stack);
        let mut method = UnwindMethod::Registers;
        let end = loop {
            if out.frames.len() >= self.max_depth {
                break UnwindEnd::DepthLimit;
            }
            match iter.next() {
                Ok(Some(address)) => {
                    let lookup = address.address_for_lookup();
                    out.frames.push(UnwoundFrame {
                        address: address.address(),
                        lookup,
                        method,
                    });
                    // The next frame is found by this frame's rule.
                    method = if covered_by_cfi(&self.modules, lookup) {
                        UnwindMethod::Cfi
                    } else {
                        UnwindMethod::FramePointer
                    };
                }
                Ok(None) => break UnwindEnd::Complete,
                Err(e) => break UnwindEnd::Stopped(e.to_string()),
            }
        };
        out.end = Some(match end {
            UnwindEnd::Stopped(_) if exhausted => UnwindEnd::StackExhausted,
            end => end,
        });
    }
}

fn covered_by_cfi(modules: &ModuleMap, avma: u64) -> bool {
    modules.find(avma).is_some_and(|m| {
        m.binary
            .as_ref()
            .is_some_and(|b| b.cfi_covers(m.svma(avma)))
    })
}
