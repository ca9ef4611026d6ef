//! [`PreemptWatch`]: a preempted thread's user registers and stack as the kernel saw them
//! when it took the thread's CPU away, read without stopping the thread (issue 12).
//!
//! A per-thread `sched:sched_switch` perf event, filtered to switches of a thread that stays
//! runnable ([`PerfTrigger::preemptions`]), samples the user registers and stack at each
//! preemption (see `perf/trigger.rs`). Its ring is mapped read-only and written backward
//! (`write_backward`): the kernel overwrites the oldest records instead of dropping new ones,
//! and the newest record always starts at `data_head`, so nothing is drained; a round reads
//! one record of the threads it needs, when it needs them.
//!
//! # Consistency
//! The record is the thread's state now exactly while the thread has not run since it was
//! written. [`crate::SwitchWatch`] proves that: read its position, see
//! [`crate::LastSwitch::Preempted`], read [`PreemptWatch::newest`] and whatever else belongs
//! to the same instant (the thread's Python frames), then read the position again. Unchanged,
//! the thread was not switched in meanwhile: its last switch out was a preemption, whose
//! sample the kernel wrote before the switch record, and the thread's memory is as the record
//! shows it. A new record can only be written after a switch in, so the ring's newest record
//! stays put as well (the ring holds two records, so the one being read is not what a
//! concurrent write overwrites; [`PreemptWatch::newest`] also checks `data_head` did not move).

use std::os::fd::OwnedFd;
use std::sync::atomic::{fence, Ordering};

use crate::perf::{
    encode_attr, open_error, page_size, perf_event_open, PerfConfig, PerfError, PerfTrigger, Ring,
    SampleLayout, Writing, PAGE_DATA_HEAD, PERF_RECORD_SAMPLE,
};
use crate::stack::{StackSpan, UserRegs};

/// The fixed part of a sample record: header, ip, pid/tid, time, abi, three registers, the
/// stack's size, and `dyn_size` after the stack.
const RECORD_OVERHEAD: usize = 8 * 10;

/// The newest preemption a [`PreemptWatch`] holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Preemption {
    /// The user registers the thread was preempted with (for a thread preempted in a system
    /// call, those it entered the call with).
    pub regs: UserRegs,
    /// `CLOCK_MONOTONIC` nanoseconds of the switch.
    pub time_ns: u64,
}

/// See the module documentation.
#[derive(Debug)]
pub struct PreemptWatch {
    _fd: OwnedFd,
    tid: i32,
    /// Two records' worth of pages, written backward and overwritten.
    ring: Ring,
}

impl PreemptWatch {
    /// Watch thread `tid` of process `pid`, keeping `stack_bytes` (a multiple of 8, at most
    /// [`crate::MAX_PERF_STACK`]) of user stack per preemption. `trigger` is normally
    /// [`PerfTrigger::preemptions`] (read once, for all threads).
    pub fn open(
        pid: i32,
        tid: i32,
        stack_bytes: u32,
        trigger: &PerfTrigger,
    ) -> Result<PreemptWatch, PerfError> {
        let page = page_size();
        // Room for two records of the largest size.
        let ring_pages = (2 * (stack_bytes as usize + RECORD_OVERHEAD))
            .div_ceil(page)
            .next_power_of_two();
        let config = PerfConfig {
            stack_bytes,
            ring_pages,
            ..PerfConfig::default()
        };
        config.check()?;
        let attr = encode_attr(&config, trigger, Writing::Backward);
        let fd = perf_event_open(&attr, tid).map_err(|errno| open_error(pid, tid, errno))?;
        trigger.apply_filter(&fd)?;
        let ring = Ring::map(&fd, ring_pages, false)?;
        Ok(PreemptWatch { _fd: fd, tid, ring })
    }

    /// The thread's newest preemption record: its registers, with its user stack copied into
    /// `stack` (as much as the record holds and `span` asks for: a byte count, or a
    /// [`StackSpan`]). `None` if there is none yet, the newest record is not a sample of this
    /// thread with registers, or the kernel wrote another while it was read. Whether it is
    /// the thread's state *now* is for the caller to prove (see the module documentation).
    pub fn newest(&self, span: impl Into<StackSpan>, stack: &mut Vec<u8>) -> Option<Preemption> {
        let head_at = self.ring.control(PAGE_DATA_HEAD);
        let head = head_at.load(Ordering::Acquire);
        if head == 0 || !head.is_multiple_of(8) {
            return None;
        }
        let header = self.word(head);
        let size = header >> 48;
        if header & 0xffff_ffff != u64::from(PERF_RECORD_SAMPLE)
            || size < 8
            || size > self.ring.data_size() as u64
        {
            return None;
        }
        let layout = SampleLayout::decode(size, |at, out| self.copy_out(head + at, out))?;
        let regs = layout.regs?;
        stack.clear();
        stack.resize(layout.stack_len.min(span.into().bytes_from(regs.sp)), 0);
        self.copy_out(head + layout.stack_at, stack);
        // The copy's loads happen before the second look at the head (a seqlock's read side).
        fence(Ordering::Acquire);
        if head_at.load(Ordering::Relaxed) != head || layout.tid != self.tid as u32 {
            return None;
        }
        Some(Preemption {
            regs,
            time_ns: layout.time_ns,
        })
    }

    /// Copy the bytes at ring position `pos` (a multiple of 8) into `out`, a word at a time,
    /// across the ring's end if need be.
    fn copy_out(&self, pos: u64, out: &mut [u8]) {
        for (i, chunk) in out.chunks_mut(8).enumerate() {
            let word = self.word(pos + 8 * i as u64).to_le_bytes();
            chunk.copy_from_slice(&word[..chunk.len()]);
        }
    }

    /// The 8 bytes at ring position `pos` (a multiple of 8).
    fn word(&self, pos: u64) -> u64 {
        let at = self.ring.offset_of(pos);
        self.ring.word(at).load(Ordering::Relaxed)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::{LastSwitch, SwitchWatch};
    use std::sync::atomic::{AtomicBool, AtomicU64};
    use std::sync::{mpsc, Arc};

    const MAGIC: u64 = 0x5354_524f_4245_2131;

    /// Two threads of this process spin on one CPU, so the kernel preempts each in turn. One
    /// keeps a marker and its iteration count in a stack slot, and publishes the count. Each
    /// time it is seen preempted and still so after its newest record was read, the record's
    /// stack holds the slot with the count it has now (or one more: it may have been preempted
    /// between writing the slot and publishing), which no older record could.
    #[test]
    fn a_preempted_thread_reads_as_it_is_now() {
        let cpu = strobe_testkit::cpus::allowed_cpus()[0];
        let stop = Arc::new(AtomicBool::new(false));
        let count = Arc::new(AtomicU64::new(0));
        let (tx, rx) = mpsc::channel();
        let (spin_stop, spin_count) = (Arc::clone(&stop), Arc::clone(&count));
        let watched = std::thread::spawn(move || {
            strobe_testkit::pin(0, cpu);
            let mut slot = [MAGIC, 0u64];
            tx.send((nix::unistd::gettid().as_raw(), &slot as *const _ as u64))
                .unwrap();
            let mut n = 0;
            while !spin_stop.load(Ordering::Relaxed) {
                n += 1;
                slot[1] = n;
                std::hint::black_box(&mut slot);
                spin_count.store(n, Ordering::Release);
            }
        });
        let rival_stop = Arc::clone(&stop);
        let rival = std::thread::spawn(move || {
            strobe_testkit::pin(0, cpu);
            while !rival_stop.load(Ordering::Relaxed) {
                std::hint::spin_loop();
            }
        });
        let (tid, slot_at) = rx.recv().unwrap();
        let pid = std::process::id() as i32;
        let switches = SwitchWatch::open(pid, tid).unwrap();
        let trigger = PerfTrigger::preemptions().unwrap();
        let preempt = PreemptWatch::open(pid, tid, 16 * 1024, &trigger).unwrap();
        let mut stack = Vec::new();
        // Twenty distinct preemptions, each checked as it is, however many times.
        let (mut seen, mut last_time) = (0, 0);
        while seen < 20 {
            let at = switches.position();
            if switches.last() != Some(LastSwitch::Preempted) {
                continue;
            }
            let Some(p) = preempt.newest(16 * 1024, &mut stack) else {
                continue;
            };
            let live = count.load(Ordering::Acquire);
            if switches.position() != at {
                continue;
            }
            let off = slot_at
                .checked_sub(p.regs.sp)
                .expect("the slot lies above the stack pointer") as usize;
            let word = |i: usize| strobe_memory::le::u64_at(&stack, off + 8 * i);
            assert_eq!(word(0), Some(MAGIC), "the slot is in the copied stack");
            let n = word(1).unwrap();
            assert!(n == live || n == live + 1, "slot {n}, live count {live}");
            if p.time_ns != last_time {
                assert!(p.time_ns > last_time, "records come newest first");
                (seen, last_time) = (seen + 1, p.time_ns);
            }
        }
        stop.store(true, Ordering::Relaxed);
        watched.join().unwrap();
        rival.join().unwrap();
    }
}
