//! The registers of a watched thread at its newest preemption, for [`super::CpuSwitches`].
//!
//! A thread preempted from its CPU (runnable, waiting for one) executes nothing until it is
//! switched in again: its registers, its stack and its Python frames stay as they were. The
//! kernel's switch records say when that is so, but not the registers, which `/proc` does not
//! give for a runnable thread either. The `sched:sched_switch` tracepoint fires in the
//! scheduler while the thread switched out is still the current task, so a sample of it with
//! `PERF_SAMPLE_REGS_USER` holds the user registers the thread entered the kernel with (the
//! interrupt that preempted it, or the system call it was in).
//!
//! One such event per CPU (no per-task perf context to swap at each switch, which is what made
//! per-thread events cost a busy target a fifth of its throughput: docs/PERFORMANCE.md, issue
//! 12), written into the same ring as that CPU's switch records (`PERF_EVENT_IOC_SET_OUTPUT`),
//! so that the sample comes right before the switch-out record of the same switch. The kernel
//! filters the hits first (`prev_state` says the thread stays runnable, `prev_pid` is one of
//! the watched threads, by ranges), and copies registers only: three words, no stack (the
//! stack of a thread that is not running is read like a sleeping thread's).
//!
//! With sleeps asked for too ([`super::CpuSwitches::record_sleeps`]), the filter keeps every
//! switch out of a watched thread: one that goes to sleep executes nothing either until it is
//! switched in again (woken, it still waits for a CPU), and its registers at the switch are
//! those it entered its system call with.
//!
//! Needs what per-CPU events need, kernel time counted (the sample point is in the scheduler:
//! root or CAP_PERFMON), tracefs for the tracepoint's id, and strobe in the initial PID
//! namespace (the filter compares the kernel's own thread ids).

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use nix::errno::Errno;

use super::ATTR_SAMPLE_ID_ALL;
use crate::perf::{
    perf_event_open_on, tracepoint_id, AttrBytes, PerfError, ATTR_EXCLUDE_HV, ATTR_SIZE,
    ATTR_USE_CLOCKID, PERF_SAMPLE_REGS_USER, PERF_SAMPLE_TID, PERF_SAMPLE_TIME,
    PERF_TYPE_TRACEPOINT, REGS_MASK, STILL_RUNNABLE_FILTER,
};
use crate::UserRegs;

/// `perf_event_attr.disabled`: opened off, enabled once its output and filter are set.
const ATTR_DISABLED: u64 = 1;
/// Header, pid and tid, time, the registers' ABI, then `rbx`, `rbp`, `rsp`, `rip`.
pub(super) const SAMPLE_BYTES: u64 = 64;
/// `PERF_EVENT_IOC_ENABLE`: `_IO('$', 0)`.
const IOC_ENABLE: nix::libc::c_ulong = 0x2400;
/// `PERF_EVENT_IOC_SET_OUTPUT`: `_IO('$', 5)`.
const IOC_SET_OUTPUT: nix::libc::c_ulong = 0x2405;
/// Thread id ranges in the filter, at most (more are merged over their smallest gaps).
const MAX_RANGES: usize = 24;
/// Ids between two watched threads closer than this are covered by one range: the threads of
/// a process usually come in runs, and another task's preemption in a gap costs only a
/// record, dropped when drained.
const GAP: u32 = 32;
/// Least time between two openings of the events (for threads not covered yet).
const REOPEN_EVERY: Duration = Duration::from_millis(100);
/// The inode of the initial PID namespace (`PROC_PID_INIT_INO`).
const INIT_PID_NS: &str = "pid:[4026531836]";

/// The tracepoint's events, one per CPU, and the thread ranges their filter keeps.
#[derive(Debug)]
pub(super) struct Preemptions {
    /// The tracepoint's id.
    id: u64,
    /// Each CPU, and the descriptor of its switch-record event (owned by the caller, which
    /// keeps it open as long as this).
    outputs: Vec<(u32, RawFd)>,
    events: Vec<OwnedFd>,
    /// Inclusive thread id ranges, sorted.
    ranges: Vec<(u32, u32)>,
    /// When the events were last opened.
    opened: Instant,
    /// Every switch out of the threads is kept, not only preemptions (see
    /// `CpuSwitches::record_preemptions`).
    sleeps: bool,
}

impl Preemptions {
    /// One event per CPU of `outputs` (each CPU's switch-record event, whose ring the samples
    /// go into, and which must stay open as long as this), with a filter that keeps nothing
    /// until [`Preemptions::cover`].
    pub(super) fn open(
        outputs: &[(u32, &OwnedFd)],
        sleeps: bool,
    ) -> Result<Preemptions, PerfError> {
        let in_init_ns = std::fs::read_link("/proc/self/ns/pid")
            .is_ok_and(|link| link.as_os_str() == INIT_PID_NS);
        if !in_init_ns {
            return Err(PerfError::Config(
                "strobe runs in a PID namespace of its own, so the scheduler's thread ids cannot \
                 be matched to the target's",
            ));
        }
        let mut p = Preemptions {
            id: tracepoint_id("sched", "sched_switch")?,
            outputs: outputs
                .iter()
                .map(|&(cpu, fd)| (cpu, fd.as_raw_fd()))
                .collect(),
            events: Vec::new(),
            ranges: Vec::new(),
            opened: Instant::now(),
            sleeps,
        };
        p.events = p.open_events()?;
        Ok(p)
    }

    /// Whether thread `tid`'s preemptions are kept by the filter.
    pub(super) fn covers(&self, tid: u32) -> bool {
        self.ranges.iter().any(|&(lo, hi)| lo <= tid && tid <= hi)
    }

    /// Keep the preemptions of the ranges covering `tids` from now on: the events are opened
    /// again with a new filter (the kernel sets an event's filter once), at most every
    /// [`REOPEN_EVERY`] (false if it is too soon).
    pub(super) fn cover(&mut self, tids: impl Iterator<Item = u32>) -> Result<bool, PerfError> {
        // Asked at every drain while a thread is not covered: nothing is computed until the
        // events may be opened again.
        if self.opened.elapsed() < REOPEN_EVERY {
            return Ok(false);
        }
        let ranges = ranges_of(tids.collect());
        if ranges == self.ranges {
            return Ok(true);
        }
        let old = std::mem::replace(&mut self.ranges, ranges);
        match self.open_events() {
            Ok(events) => {
                // The old events go after the new ones are on: a preemption in between is in
                // the ring twice, the same sample.
                self.events = events;
                Ok(true)
            }
            Err(e) => {
                self.ranges = old;
                Err(e)
            }
        }
    }

    /// An enabled event on every CPU, writing into that CPU's ring, filtered by
    /// [`Preemptions::ranges`].
    fn open_events(&mut self) -> Result<Vec<OwnedFd>, PerfError> {
        self.opened = Instant::now();
        let filter = filter_of(&self.ranges, self.sleeps);
        let text = std::ffi::CString::new(filter.as_str())
            .map_err(|_| PerfError::Config("a tracepoint filter cannot contain a NUL byte"))?;
        let mut events = Vec::with_capacity(self.outputs.len());
        for &(cpu, output) in &self.outputs {
            let refused = |errno| PerfError::CpuRefused { cpu, errno };
            let fd = perf_event_open_on(&attr(self.id), -1, cpu as i32).map_err(refused)?;
            ioctl(&fd, IOC_SET_OUTPUT, output as nix::libc::c_ulong).map_err(refused)?;
            crate::perf::set_filter(&fd, &text).map_err(|errno| PerfError::Filter {
                filter: filter.clone(),
                errno,
            })?;
            events.push(fd);
        }
        for (fd, &(cpu, _)) in events.iter().zip(&self.outputs) {
            ioctl(fd, IOC_ENABLE, 0).map_err(|errno| PerfError::CpuRefused { cpu, errno })?;
        }
        Ok(events)
    }
}

/// The thread, time and registers of a sample of the tracepoint (`word(at)` reads the
/// record's word at byte `at`; the record has at least [`SAMPLE_BYTES`]); `None` for a task
/// without user registers (a kernel thread: ABI 0).
pub(super) fn decode(word: impl Fn(u64) -> u64) -> Option<(u32, u64, UserRegs)> {
    let tid = (word(8) >> 32) as u32;
    if word(24) == 0 {
        return None;
    }
    // `REGS_MASK`'s registers in the order of their numbers: `rbx`, `rbp`, `rsp`, `rip`.
    Some((
        tid,
        word(16),
        UserRegs {
            bx: Some(word(32)),
            bp: Some(word(40)),
            sp: word(48),
            ip: word(56),
        },
    ))
}

/// Ranges covering `tids`: neighbours closer than [`GAP`] share one, and at most
/// [`MAX_RANGES`] (the closest merged first).
fn ranges_of(mut tids: Vec<u32>) -> Vec<(u32, u32)> {
    tids.sort_unstable();
    tids.dedup();
    let mut ranges: Vec<(u32, u32)> = Vec::new();
    for tid in tids {
        match ranges.last_mut() {
            Some((_, hi)) if tid - *hi < GAP => *hi = tid,
            _ => ranges.push((tid, tid)),
        }
    }
    while ranges.len() > MAX_RANGES {
        let at = (1..ranges.len())
            .min_by_key(|&i| ranges[i].0 - ranges[i - 1].1)
            .unwrap_or(1);
        ranges[at - 1].1 = ranges[at].1;
        ranges.remove(at);
    }
    ranges
}

/// The ftrace filter keeping a switch out of a thread in `ranges` that stays runnable, or with
/// `sleeps` any switch out of one (none, for no ranges: thread ids are never negative).
fn filter_of(ranges: &[(u32, u32)], sleeps: bool) -> String {
    if ranges.is_empty() {
        return "prev_pid < 0".into();
    }
    let terms: Vec<String> = ranges
        .iter()
        .map(|&(lo, hi)| match lo == hi {
            true => format!("prev_pid == {lo}"),
            false => format!("(prev_pid >= {lo} && prev_pid <= {hi})"),
        })
        .collect();
    match sleeps {
        true => terms.join(" || "),
        false => format!("({STILL_RUNNABLE_FILTER}) && ({})", terms.join(" || ")),
    }
}

/// `perf_event_attr` for the tracepoint `id` on a CPU, sampling each hit's user registers.
fn attr(id: u64) -> [u8; ATTR_SIZE] {
    let mut a = AttrBytes::new(PERF_TYPE_TRACEPOINT, id);
    let mut put = |off: usize, bytes: &[u8]| a.put(off, bytes);
    put(16, &1u64.to_le_bytes());
    let sample = PERF_SAMPLE_TID | PERF_SAMPLE_TIME | PERF_SAMPLE_REGS_USER;
    put(24, &sample.to_le_bytes());
    // Kernel time counted: the tracepoint is in the kernel. With `sample_id_all` its lost
    // records carry a time, as the switch records' do.
    let flags = ATTR_DISABLED | ATTR_EXCLUDE_HV | ATTR_SAMPLE_ID_ALL | ATTR_USE_CLOCKID;
    put(40, &flags.to_le_bytes());
    put(80, &REGS_MASK.to_le_bytes());
    put(92, &nix::libc::CLOCK_MONOTONIC.to_le_bytes());
    a.0
}

#[allow(unsafe_code)]
fn ioctl(fd: &OwnedFd, request: nix::libc::c_ulong, arg: nix::libc::c_ulong) -> Result<(), Errno> {
    // SAFETY: `fd` is an open perf event; both requests take an integer argument (a descriptor,
    // or nothing), not a pointer, so the kernel reads no memory of ours.
    let r = unsafe { nix::libc::ioctl(fd.as_raw_fd(), request, arg) };
    if r < 0 {
        return Err(Errno::last());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_join_neighbours_and_stay_few() {
        assert_eq!(ranges_of(vec![]), vec![]);
        assert_eq!(ranges_of(vec![5, 3, 4, 3]), vec![(3, 5)]);
        assert_eq!(ranges_of(vec![100, 131, 200]), vec![(100, 131), (200, 200)]);
        assert_eq!(ranges_of(vec![100, 132]), vec![(100, 100), (132, 132)]);
        let spread: Vec<u32> = (0..100).map(|i| i * 1000 + (i % 7)).collect();
        let r = ranges_of(spread.clone());
        assert_eq!(r.len(), MAX_RANGES);
        assert!(spread
            .iter()
            .all(|t| r.iter().any(|&(lo, hi)| lo <= *t && *t <= hi)));
    }

    #[test]
    fn filters_name_the_ranges() {
        assert_eq!(filter_of(&[], false), "prev_pid < 0");
        assert_eq!(filter_of(&[], true), "prev_pid < 0");
        assert_eq!(
            filter_of(&[(3, 5), (9, 9)], false),
            "(prev_state == 0 || prev_state == 256) && \
             ((prev_pid >= 3 && prev_pid <= 5) || prev_pid == 9)"
        );
        assert_eq!(
            filter_of(&[(3, 5), (9, 9)], true),
            "(prev_pid >= 3 && prev_pid <= 5) || prev_pid == 9"
        );
    }

    #[test]
    fn attr_bytes_match_the_kernel_layout() {
        let a = attr(316);
        let u64_at = |o: usize| u64::from_le_bytes(a[o..o + 8].try_into().unwrap_or_default());
        assert_eq!(u64_at(0) & 0xffff_ffff, 2, "tracepoint");
        assert_eq!(u64_at(8), 316);
        assert_eq!(u64_at(16), 1, "every hit");
        assert_eq!(u64_at(24), (1 << 12) | 0b110, "tid, time, user registers");
        assert_eq!(u64_at(40), 1 | (1 << 6) | (1 << 18) | (1 << 25));
        assert_eq!(u64_at(80), 0b1_1100_0010, "bx, bp, sp, ip");
    }
}
