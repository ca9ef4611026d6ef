//! [`PerfThread`]: the kernel's own snapshot of a thread's user registers and stack, taken at
//! a `cpu-clock` sampling interrupt, or at the thread's switches out of its CPU
//! ([`PerfTrigger`], in `perf/trigger.rs`), with `perf_event_open(2)`'s
//! `PERF_SAMPLE_REGS_USER` and `PERF_SAMPLE_STACK_USER`, read from the event's ring buffer.
//! The thread is never stopped.
//!
//! Everything the kernel defines is encoded and decoded here by hand, little-endian, from
//! `include/uapi/linux/perf_event.h` and `arch/x86/include/uapi/asm/perf_regs.h` (the `libc`
//! crate has none of it).

use crate::stack::UserRegs;
use nix::errno::Errno;
use std::os::fd::{AsFd, BorrowedFd, FromRawFd, OwnedFd};
use std::sync::atomic::Ordering;

mod layout;
mod ring;
mod trigger;

pub(crate) use layout::SampleLayout;
pub(crate) use ring::Ring;

pub(crate) use trigger::{set_filter, PERF_TYPE_TRACEPOINT};
pub use trigger::{tracepoint_id, PerfTrigger, STILL_RUNNABLE_FILTER};

pub(crate) const PERF_TYPE_SOFTWARE: u32 = 1;

const PERF_SAMPLE_IP: u64 = 1 << 0;
pub(crate) const PERF_SAMPLE_TID: u64 = 1 << 1;
pub(crate) const PERF_SAMPLE_TIME: u64 = 1 << 2;
pub(crate) const PERF_SAMPLE_REGS_USER: u64 = 1 << 12;
const PERF_SAMPLE_STACK_USER: u64 = 1 << 13;

// Bits of the flags word at offset 40 of `perf_event_attr`.
pub(crate) const ATTR_EXCLUDE_KERNEL: u64 = 1 << 5;
pub(crate) const ATTR_EXCLUDE_HV: u64 = 1 << 6;
pub(crate) const ATTR_USE_CLOCKID: u64 = 1 << 25;
/// `perf_event_attr.write_backward` (Linux 4.7).
const ATTR_WRITE_BACKWARD: u64 = 1 << 27;

/// `PERF_ATTR_SIZE_VER2`: the attribute up to `clockid`, all we set.
pub(crate) const ATTR_SIZE: usize = 96;

// `enum perf_event_x86_regs`: the bit of each register in `sample_regs_user`. The kernel
// writes the selected registers in bit order, so a sample holds bx, bp, sp, ip.
const REG_BX: u64 = 1;
const REG_BP: u64 = 6;
const REG_SP: u64 = 7;
const REG_IP: u64 = 8;
pub(crate) const REGS_MASK: u64 = (1 << REG_BX) | (1 << REG_BP) | (1 << REG_SP) | (1 << REG_IP);

pub(crate) const PERF_RECORD_LOST: u32 = 2;
pub(crate) const PERF_RECORD_SAMPLE: u32 = 9;

const PERF_FLAG_FD_CLOEXEC: nix::libc::c_ulong = 8;

// `struct perf_event_mmap_page`: where the ring buffer's positions are.
pub(crate) const PAGE_DATA_HEAD: usize = 1024;
pub(crate) const PAGE_DATA_TAIL: usize = 1032;
pub(crate) const PAGE_DATA_OFFSET: usize = 1040;
pub(crate) const PAGE_DATA_SIZE: usize = 1048;

/// The kernel bounds a sample's user stack so that the record's size fits its `u16` header
/// field; asking for more is clamped, so we never ask for more than this.
pub const MAX_PERF_STACK: u32 = 65_528 - 256;

/// How [`PerfThread`] samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PerfConfig {
    /// Samples per second of the thread's CPU time (`cpu-clock` counts only while it runs).
    pub frequency_hz: u64,
    /// Bytes of user stack the kernel copies from the stack pointer at each sample (a multiple
    /// of 8, at most [`MAX_PERF_STACK`]).
    pub stack_bytes: u32,
    /// Pages of ring buffer (a power of two); it must hold the samples taken between two
    /// drains, each about `stack_bytes` long, or samples are lost (and counted).
    pub ring_pages: usize,
    /// Also sample while the thread runs in the kernel (its user registers and stack are
    /// still the ones recorded). Needs `perf_event_paranoid` ≤ 1 or CAP_PERFMON.
    pub kernel_time: bool,
}

impl PerfConfig {
    /// Whether the kernel can be given this configuration: the stack size a multiple of 8 and
    /// at most [`MAX_PERF_STACK`], the ring a power of two pages, the frequency 1 Hz to 1 MHz.
    pub(crate) fn check(&self) -> Result<(), PerfError> {
        if self.stack_bytes & 7 != 0 || self.stack_bytes > MAX_PERF_STACK {
            return Err(PerfError::Config(
                "the stack size must be a multiple of 8 and at most 65272 bytes",
            ));
        }
        if !self.ring_pages.is_power_of_two() {
            return Err(PerfError::Config(
                "the ring buffer must be a power of two pages",
            ));
        }
        if self.frequency_hz == 0 || self.frequency_hz > 1_000_000 {
            return Err(PerfError::Config("the frequency must be 1 Hz to 1 MHz"));
        }
        Ok(())
    }
}

impl Default for PerfConfig {
    fn default() -> Self {
        PerfConfig {
            frequency_hz: 100,
            stack_bytes: 32 * 1024,
            ring_pages: 64,
            kernel_time: false,
        }
    }
}

/// Why a perf event could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum PerfError {
    /// The kernel refused the event: a permission matter.
    #[error(
        "perf events refused for thread {tid} of process {pid} ({errno}; \
         kernel.perf_event_paranoid is {paranoid}): run strobe as root or grant it CAP_PERFMON \
         (sudo setcap cap_perfmon+ep $(which strobe)); as an unprivileged user you may only \
         sample your own processes, in user space, with perf_event_paranoid at 2 or lower; in a \
         container add --cap-add PERFMON (and check the seccomp profile allows perf_event_open)"
    )]
    Refused {
        /// The process.
        pid: i32,
        /// The thread.
        tid: i32,
        /// `EACCES` or `EPERM`.
        errno: Errno,
        /// `/proc/sys/kernel/perf_event_paranoid`, or `unknown`.
        paranoid: String,
    },
    /// This kernel (or virtual machine) has no such event.
    #[error(
        "perf events are not available here ({errno}): the kernel lacks \
         CONFIG_PERF_EVENTS or the cpu-clock event; use ptrace capture instead"
    )]
    Unsupported {
        /// What the kernel said.
        errno: Errno,
    },
    /// The thread does not exist (any more).
    #[error("thread {tid} of process {pid} exited")]
    ThreadGone {
        /// The process.
        pid: i32,
        /// The thread.
        tid: i32,
    },
    /// Out of file descriptors (one event per sampled thread).
    #[error(
        "too many open files opening a perf event per thread ({errno}): raise the limit \
         (ulimit -n)"
    )]
    TooManyFiles {
        /// `EMFILE` or `ENFILE`.
        errno: Errno,
    },
    /// The ring buffer could not be mapped, usually the locked-memory limit for perf buffers.
    #[error(
        "mapping a {kib} KiB perf ring buffer failed ({errno}): the per-user limit is \
         /proc/sys/kernel/perf_event_mlock_kb (root and CAP_IPC_LOCK are exempt); use fewer \
         ring pages or smaller stacks"
    )]
    Mmap {
        /// Size asked for.
        kib: usize,
        /// What the kernel said.
        errno: Errno,
    },
    /// The configuration is not one the kernel accepts.
    #[error("invalid perf sampling configuration: {0}")]
    Config(&'static str),
    /// A tracepoint could not be found in tracefs.
    #[error(
        "tracepoint {name} not found ({errno}): mount tracefs (mount -t tracefs nodev \
         /sys/kernel/tracing) or use the software context-switch event"
    )]
    Tracepoint {
        /// `category:name`.
        name: String,
        /// What reading its id gave.
        errno: Errno,
    },
    /// The kernel refused a tracepoint filter.
    #[error("the kernel refused the tracepoint filter `{filter}` ({errno})")]
    Filter {
        /// The filter.
        filter: String,
        /// What the kernel said.
        errno: Errno,
    },
    /// A per-CPU event (every task's context switches on one CPU) was refused.
    #[error(
        "perf events on CPU {cpu} refused ({errno}): watching a CPU's context switches needs \
         root, CAP_PERFMON or kernel.perf_event_paranoid at 0 or lower"
    )]
    CpuRefused {
        /// The CPU.
        cpu: u32,
        /// What the kernel said.
        errno: Errno,
    },
    /// Any other failure of `perf_event_open`.
    #[error("perf_event_open for thread {tid} of process {pid} failed: {errno}")]
    Open {
        /// The process.
        pid: i32,
        /// The thread.
        tid: i32,
        /// What the kernel said.
        errno: Errno,
    },
}

/// One sample as the kernel recorded it, borrowed from the ring buffer (or, when it wrapped
/// around the buffer's end, from a scratch copy).
#[derive(Debug)]
pub struct PerfSample<'a> {
    /// The process.
    pub pid: u32,
    /// The thread.
    pub tid: u32,
    /// `CLOCK_MONOTONIC` nanoseconds of the interrupt.
    pub time_ns: u64,
    /// The user registers, or `None` if the kernel had none to give (the thread was not in
    /// user context, e.g. exiting).
    pub regs: Option<UserRegs>,
    /// The user stack from `regs.sp` up, as much as was there (may be shorter than asked).
    pub stack: &'a [u8],
}

/// A `cpu-clock` sampling event on one thread, with its ring buffer mapped.
///
/// Drain it with [`PerfThread::drain`] often enough that the ring does not fill (samples that
/// do not fit are dropped by the kernel and counted in [`PerfThread::lost`]). The fd can be
/// polled for readability ([`AsFd`]).
#[derive(Debug)]
pub struct PerfThread {
    fd: OwnedFd,
    pid: i32,
    tid: i32,
    ring: Ring,
    /// Where we have read up to (the kernel's `data_tail` once we publish it).
    tail: u64,
    lost: u64,
    scratch: Vec<u8>,
}

impl PerfThread {
    /// Open a `cpu-clock` sampling event on thread `tid` of process `pid` and map its ring
    /// buffer.
    pub fn open(pid: i32, tid: i32, config: &PerfConfig) -> Result<PerfThread, PerfError> {
        PerfThread::open_on(pid, tid, config, &PerfTrigger::CpuClock)
    }

    /// [`PerfThread::open`] with samples taken at `trigger` (`config.frequency_hz` applies to
    /// [`PerfTrigger::CpuClock`] alone, `config.kernel_time` is implied by the others).
    pub fn open_on(
        pid: i32,
        tid: i32,
        config: &PerfConfig,
        trigger: &PerfTrigger,
    ) -> Result<PerfThread, PerfError> {
        config.check()?;
        let attr = encode_attr(config, trigger, Writing::Forward);
        let fd = perf_event_open(&attr, tid).map_err(|errno| open_error(pid, tid, errno))?;
        trigger.apply_filter(&fd)?;
        let ring = Ring::map(&fd, config.ring_pages, true)?;
        let tail = ring.control(PAGE_DATA_TAIL).load(Ordering::Relaxed);
        Ok(PerfThread {
            fd,
            pid,
            tid,
            ring,
            tail,
            lost: 0,
            scratch: Vec::new(),
        })
    }

    /// The process sampled.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// The thread sampled.
    pub fn tid(&self) -> i32 {
        self.tid
    }

    /// Samples the kernel dropped because the ring was full, so far.
    pub fn lost(&self) -> u64 {
        self.lost
    }

    /// Call `f` on every sample recorded since the last drain, oldest first, and give their
    /// space back to the kernel. Returns how many samples there were.
    pub fn drain(&mut self, mut f: impl FnMut(&PerfSample<'_>)) -> usize {
        // Acquire: the record bytes the kernel wrote before publishing `data_head` are visible.
        let head = self.ring.control(PAGE_DATA_HEAD).load(Ordering::Acquire);
        let mut count = 0;
        let mut scratch = std::mem::take(&mut self.scratch);
        while self.tail < head {
            let mut header = [0u8; 8];
            self.copy_out(self.tail, &mut header);
            let kind = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
            let size = u64::from(u16::from_le_bytes([header[6], header[7]]));
            if size < 8 || self.tail + size > head {
                // A record that does not fit what was published: the ring is not what we think.
                // Skip everything rather than decode garbage.
                self.tail = head;
                break;
            }
            match kind {
                PERF_RECORD_SAMPLE => {
                    if let Some(sample) = self.decode_sample(self.tail, size, &mut scratch) {
                        f(&sample);
                        count += 1;
                    }
                }
                PERF_RECORD_LOST => {
                    // { header; u64 id; u64 lost; }
                    let mut body = [0u8; 16];
                    self.copy_out(self.tail + 8, &mut body);
                    let n = u64::from_le_bytes(body[8..16].try_into().unwrap_or([0; 8]));
                    self.lost = self.lost.saturating_add(n);
                }
                _ => {}
            }
            self.tail += size;
        }
        self.scratch = scratch;
        // Release: our reads of the records happen before the kernel may overwrite them.
        self.ring
            .control(PAGE_DATA_TAIL)
            .store(self.tail, Ordering::Release);
        count
    }

    /// Decode the sample record of `size` bytes at ring position `pos`.
    fn decode_sample<'s>(
        &'s self,
        pos: u64,
        size: u64,
        scratch: &'s mut Vec<u8>,
    ) -> Option<PerfSample<'s>> {
        let layout = SampleLayout::decode(size, |at, out| self.copy_out(pos + at, out))?;
        let stack: &[u8] = if layout.stack_len == 0 {
            &[]
        } else {
            self.borrow_or_copy(pos + layout.stack_at, layout.stack_len, scratch)
        };
        Some(PerfSample {
            pid: layout.pid,
            tid: layout.tid,
            time_ns: layout.time_ns,
            regs: layout.regs,
            stack,
        })
    }

    /// The `len` bytes at ring position `pos`: borrowed when contiguous, else copied into
    /// `scratch` (a record may wrap around the end of the ring).
    fn borrow_or_copy<'s>(&'s self, pos: u64, len: usize, scratch: &'s mut Vec<u8>) -> &'s [u8] {
        let size = self.ring.data_size();
        let off = self.ring.offset_of(pos);
        if off + len <= size {
            self.span(off, len)
        } else {
            scratch.clear();
            scratch.resize(len, 0);
            self.copy_out(pos, scratch);
            scratch
        }
    }

    /// Copy the bytes at ring position `pos` into `out`, across the ring's end if need be.
    fn copy_out(&self, pos: u64, out: &mut [u8]) {
        let size = self.ring.data_size();
        let off = self.ring.offset_of(pos);
        let first = out.len().min(size - off);
        out[..first].copy_from_slice(self.span(off, first));
        let rest = out.len() - first;
        if rest > 0 {
            out[first..].copy_from_slice(self.span(0, rest.min(size)));
        }
    }

    /// The data area's bytes `off..off + len`. Only called for bytes between our tail and the
    /// head the kernel published, which it does not write until we move the tail past them.
    #[allow(unsafe_code)]
    fn span(&self, off: usize, len: usize) -> &[u8] {
        // SAFETY: the bytes are published records the kernel does not modify until
        // `data_tail` passes them, which happens only in `drain` after every borrow of them
        // (tied to `&self`) has ended.
        unsafe { self.ring.span(off, len) }
    }
}

impl AsFd for PerfThread {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// How the kernel writes an event's ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Writing {
    /// Records follow each other forward; a full ring drops new records until drained.
    Forward,
    /// `write_backward` (Linux 4.7): each record goes in front of the previous one, and a
    /// ring mapped read-only is overwritten, oldest first (see `crate::PreemptWatch`).
    Backward,
}

/// `perf_event_attr` for an event sampling registers and stack at `trigger`, its ring written
/// as `writing` says, as bytes.
pub(crate) fn encode_attr(
    config: &PerfConfig,
    trigger: &PerfTrigger,
    writing: Writing,
) -> [u8; ATTR_SIZE] {
    let (kind, event) = trigger.event();
    let mut a = AttrBytes::new(kind, event);
    let mut put = |off: usize, bytes: &[u8]| a.put(off, bytes);
    // cpu-clock counts nanoseconds, so a fixed period is an exact sampling interval of the
    // thread's CPU time (no frequency adjustment by the kernel); the others sample each hit.
    let period = match trigger {
        PerfTrigger::CpuClock => (1_000_000_000 / config.frequency_hz).max(1),
        _ => 1,
    };
    put(16, &period.to_le_bytes());
    let sample_type = PERF_SAMPLE_IP
        | PERF_SAMPLE_TID
        | PERF_SAMPLE_TIME
        | PERF_SAMPLE_REGS_USER
        | PERF_SAMPLE_STACK_USER;
    put(24, &sample_type.to_le_bytes());
    let mut flags = ATTR_EXCLUDE_HV | ATTR_USE_CLOCKID;
    if !config.kernel_time && !trigger.in_kernel() {
        flags |= ATTR_EXCLUDE_KERNEL;
    }
    if writing == Writing::Backward {
        flags |= ATTR_WRITE_BACKWARD;
    }
    put(40, &flags.to_le_bytes());
    put(80, &REGS_MASK.to_le_bytes());
    put(88, &config.stack_bytes.to_le_bytes());
    put(92, &nix::libc::CLOCK_MONOTONIC.to_le_bytes());
    a.0
}

/// Now, on the clock our perf events stamp their records with (`use_clockid` with
/// `CLOCK_MONOTONIC`, the same on every CPU), in nanoseconds.
pub fn perf_clock_ns() -> u64 {
    let t = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC);
    t.map_or(u64::MAX, |t| {
        (t.tv_sec() as u64).saturating_mul(1_000_000_000) + t.tv_nsec() as u64
    })
}

/// A `perf_event_attr` being encoded, as the bytes `perf_event_open(2)` reads: its type,
/// size and config set, every other field zero until put.
pub(crate) struct AttrBytes(pub(crate) [u8; ATTR_SIZE]);

impl AttrBytes {
    /// An event of type `kind` (`PERF_TYPE_*`) and `config`.
    pub(crate) fn new(kind: u32, config: u64) -> AttrBytes {
        let mut a = AttrBytes([0u8; ATTR_SIZE]);
        a.put(0, &kind.to_le_bytes());
        a.put(4, &(ATTR_SIZE as u32).to_le_bytes());
        a.put(8, &config.to_le_bytes());
        a
    }

    /// Write `bytes` (a field, little-endian) at offset `off`.
    pub(crate) fn put(&mut self, off: usize, bytes: &[u8]) {
        self.0[off..off + bytes.len()].copy_from_slice(bytes);
    }
}

/// The raw system call: on thread `tid`, any CPU, no group.
pub(crate) fn perf_event_open(attr: &[u8; ATTR_SIZE], tid: i32) -> Result<OwnedFd, Errno> {
    perf_event_open_on(attr, tid, -1)
}

/// The raw system call: on thread `tid` (-1: every task) on CPU `cpu` (-1: any), no group.
#[allow(unsafe_code)]
pub(crate) fn perf_event_open_on(
    attr: &[u8; ATTR_SIZE],
    tid: i32,
    cpu: i32,
) -> Result<OwnedFd, Errno> {
    // SAFETY: `attr` is a valid, initialised buffer of ATTR_SIZE bytes whose size field says
    // ATTR_SIZE, so the kernel reads only inside it; the other arguments are integers.
    let fd = unsafe {
        nix::libc::syscall(
            nix::libc::SYS_perf_event_open,
            attr.as_ptr(),
            tid as nix::libc::pid_t,
            cpu as nix::libc::c_int,
            -1 as nix::libc::c_int,
            PERF_FLAG_FD_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(Errno::last());
    }
    let fd = i32::try_from(fd).map_err(|_| Errno::EBADF)?;
    // SAFETY: the kernel just returned this descriptor to us; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

pub(crate) fn page_size() -> usize {
    nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .and_then(|p| usize::try_from(p).ok())
        .unwrap_or(4096)
}

pub(crate) fn open_error(pid: i32, tid: i32, errno: Errno) -> PerfError {
    match errno {
        Errno::EACCES | Errno::EPERM => PerfError::Refused {
            pid,
            tid,
            errno,
            paranoid: std::fs::read_to_string("/proc/sys/kernel/perf_event_paranoid")
                .map(|s| s.trim().to_string())
                .unwrap_or_else(|_| "unknown".to_string()),
        },
        Errno::ESRCH => PerfError::ThreadGone { pid, tid },
        Errno::ENOENT | Errno::ENODEV | Errno::EOPNOTSUPP | Errno::ENOSYS => {
            PerfError::Unsupported { errno }
        }
        Errno::EMFILE | Errno::ENFILE => PerfError::TooManyFiles { errno },
        errno => PerfError::Open { pid, tid, errno },
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn attr_bytes_match_the_kernel_layout() {
        let a = encode_attr(
            &PerfConfig {
                frequency_hz: 1000,
                stack_bytes: 16384,
                ring_pages: 8,
                kernel_time: false,
            },
            &PerfTrigger::CpuClock,
            Writing::Forward,
        );
        let u64_at = |o: usize| u64::from_le_bytes(a[o..o + 8].try_into().unwrap());
        assert_eq!(u32::from_le_bytes(a[4..8].try_into().unwrap()), 96);
        assert_eq!(u64_at(16), 1_000_000, "period in ns");
        assert_eq!(u64_at(24), 0b11_0000_0000_0111);
        assert_eq!(u64_at(40), (1 << 5) | (1 << 6) | (1 << 25));
        assert_eq!(u64_at(80), 0x1c2, "bx, bp, sp, ip");
        assert_eq!(u32::from_le_bytes(a[88..92].try_into().unwrap()), 16384);
    }

    #[test]
    fn switch_triggers_sample_every_hit_counting_kernel_time() {
        let config = PerfConfig::default();
        let u64_at =
            |a: &[u8; ATTR_SIZE], o: usize| u64::from_le_bytes(a[o..o + 8].try_into().unwrap());
        let sw = encode_attr(&config, &PerfTrigger::SwitchOut, Writing::Forward);
        assert_eq!(
            u32::from_le_bytes(sw[0..4].try_into().unwrap()),
            1,
            "software"
        );
        assert_eq!(u64_at(&sw, 8), 3, "PERF_COUNT_SW_CONTEXT_SWITCHES");
        assert_eq!(u64_at(&sw, 16), 1, "every switch");
        assert_eq!(u64_at(&sw, 40), (1 << 6) | (1 << 25), "kernel not excluded");
        let tp = encode_attr(
            &config,
            &PerfTrigger::Tracepoint {
                id: 321,
                filter: None,
            },
            Writing::Backward,
        );
        assert_eq!(
            u32::from_le_bytes(tp[0..4].try_into().unwrap()),
            2,
            "tracepoint"
        );
        assert_eq!(u64_at(&tp, 8), 321);
        assert_eq!(u64_at(&tp, 16), 1);
        assert_eq!(u64_at(&tp, 40) & (1 << 5), 0);
        assert_eq!(u64_at(&tp, 40) & (1 << 27), 1 << 27, "written backward");
        assert_eq!(u64_at(&sw, 40) & (1 << 27), 0, "written forward");
    }
}
