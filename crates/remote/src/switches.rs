//! [`SwitchWatch`]: whether a thread is on a CPU, from the kernel's record of its context
//! switches, read from memory without a system call.
//!
//! The sampler needs to know, every round, whether each Python thread that does not hold the
//! GIL is running. `/proc/PID/task/TID/stat` answers with one `pread` per thread per round
//! (~1.3 µs on the 2-vCPU test VM, most of it the kernel formatting 52 fields we do not read):
//! at 100 Hz with seven idle threads that was more than the stack walk. Here the kernel tells
//! us instead, and only when something changed: a `perf_event_open(2)` dummy software event on
//! the thread with `context_switch` set writes an 8-byte `PERF_RECORD_SWITCH` record into the
//! event's ring buffer each time the thread is switched in or out, marking a switch out that
//! was a preemption (the thread stays runnable, `R` in `/proc`). The ring is mapped read-only,
//! which makes the kernel overwrite old records instead of dropping new ones; the newest record
//! is always the 8 bytes before `data_head`. A round then reads one `u64` per thread.
//!
//! What the target pays: one 8-byte record per context switch of a watched thread, written by
//! the kernel on the thread's own time (well under a microsecond), and nothing while it runs.
//!
//! Semantics against `/proc`: a thread woken but not yet given a CPU reads as not running here
//! (its last record is still the switch out) where `/proc` says `R`; it turns running when it
//! gets a CPU. Everything else agrees: switched in, or preempted, is running; switched out
//! otherwise (sleep, wait, stop) is not. Before the first switch after opening there is no
//! record, and the caller keeps the state it read from `/proc` at opening.

use std::cell::Cell;
use std::os::fd::OwnedFd;
use std::sync::atomic::Ordering;

use crate::perf::{
    open_error, perf_event_open, AttrBytes, PerfError, Ring, ATTR_EXCLUDE_HV, ATTR_EXCLUDE_KERNEL,
    ATTR_SIZE, PAGE_DATA_HEAD, PERF_TYPE_SOFTWARE,
};

pub(crate) const PERF_COUNT_SW_DUMMY: u64 = 9;
/// `perf_event_attr.context_switch` (Linux 4.3).
pub(crate) const ATTR_CONTEXT_SWITCH: u64 = 1 << 26;
const PERF_RECORD_SWITCH: u64 = 14;
const MISC_SWITCH_OUT: u64 = 1 << 13;
const MISC_SWITCH_OUT_PREEMPT: u64 = 1 << 14;
/// A switch record without `sample_id_all` is its header alone.
const RECORD_BYTES: u64 = 8;
/// Reads of the newest record that raced with the kernel writing another, before giving up.
const RETRIES: usize = 3;

/// A thread's last context switch, as the kernel recorded it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LastSwitch {
    /// No switch since the watch was opened.
    None,
    /// Switched in: on a CPU now.
    In,
    /// Switched out by preemption: runnable, waiting for a CPU.
    Preempted,
    /// Switched out to wait (sleep, block, stop).
    Blocked,
}

impl LastSwitch {
    /// Whether the thread is running or runnable (`R` in `/proc`), if a switch says so.
    pub fn running(self) -> Option<bool> {
        match self {
            LastSwitch::None => None,
            LastSwitch::In | LastSwitch::Preempted => Some(true),
            LastSwitch::Blocked => Some(false),
        }
    }
}

/// See the module documentation.
#[derive(Debug)]
pub struct SwitchWatch {
    _fd: OwnedFd,
    /// One data page.
    ring: Ring,
    /// The last record decoded, and the ring's position it was the newest record at: while
    /// the position stays, so does the newest record, and [`SwitchWatch::last`] reads only
    /// the control page (a thread that has not switched since the previous round costs one
    /// cache line, not two on two pages).
    decoded: Cell<Option<(u64, LastSwitch)>>,
}

impl SwitchWatch {
    /// Watch thread `tid` (an id in strobe's PID namespace) of process `pid`.
    pub fn open(pid: i32, tid: i32) -> Result<SwitchWatch, PerfError> {
        let fd = perf_event_open(&attr(), tid).map_err(|errno| open_error(pid, tid, errno))?;
        let ring = Ring::map(&fd, 1, false)?;
        if ring.data_size() < RECORD_BYTES as usize {
            return Err(PerfError::Config("the kernel reported an impossible ring"));
        }
        Ok(SwitchWatch {
            _fd: fd,
            ring,
            decoded: Cell::new(None),
        })
    }

    /// The thread's last context switch; `None` if it cannot be told (the newest record is
    /// not a switch record, or the kernel kept writing while it was read): ask `/proc` then.
    pub fn last(&self) -> Option<LastSwitch> {
        let head = self.ring.control(PAGE_DATA_HEAD);
        let mut before = head.load(Ordering::Acquire);
        for _ in 0..RETRIES {
            if before == 0 {
                return Some(LastSwitch::None);
            }
            if !before.is_multiple_of(RECORD_BYTES) {
                return None;
            }
            if let Some((position, last)) = self.decoded.get() {
                if position == before {
                    return Some(last);
                }
            }
            let at = self.ring.offset_of(before - RECORD_BYTES);
            let header = self.ring.word(at).load(Ordering::Acquire);
            let after = head.load(Ordering::Acquire);
            if after != before {
                before = after;
                continue;
            }
            let last = decode(header)?;
            self.decoded.set(Some((before, last)));
            return Some(last);
        }
        None
    }

    /// Load the cache lines [`SwitchWatch::last`] will read (the position, and the newest
    /// record unless it was decoded at this position already), without decoding anything: a
    /// caller about to look up many watches touches them all first, so that their misses
    /// overlap instead of coming one after another.
    pub fn touch(&self) {
        let head = self.position();
        let decoded = self.decoded.get().is_some_and(|(at, _)| at == head);
        if head != 0 && head.is_multiple_of(RECORD_BYTES) && !decoded {
            let at = self.ring.offset_of(head - RECORD_BYTES);
            std::hint::black_box(self.ring.word(at).load(Ordering::Relaxed));
        }
    }

    /// Where the kernel is in the ring: the bytes of records written since the watch was
    /// opened. It moves exactly when the thread is switched in or out, so two equal positions
    /// mean the thread has not been on a CPU in between (nor left one).
    pub fn position(&self) -> u64 {
        self.ring.control(PAGE_DATA_HEAD).load(Ordering::Acquire)
    }
}

/// `perf_event_attr` for a dummy software event recording context switches, as bytes.
fn attr() -> [u8; ATTR_SIZE] {
    let mut a = AttrBytes::new(PERF_TYPE_SOFTWARE, PERF_COUNT_SW_DUMMY);
    // No samples (period 0, sample_type 0): only the side-band switch records.
    let flags = ATTR_EXCLUDE_KERNEL | ATTR_EXCLUDE_HV | ATTR_CONTEXT_SWITCH;
    a.put(40, &flags.to_le_bytes());
    a.0
}

/// A record header (`type: u32, misc: u16, size: u16`, little-endian) as a switch.
fn decode(header: u64) -> Option<LastSwitch> {
    let kind = header & 0xffff_ffff;
    let misc = (header >> 32) & 0xffff;
    let size = header >> 48;
    if kind != PERF_RECORD_SWITCH || size != RECORD_BYTES {
        return None;
    }
    Some(LastSwitch::from_misc(misc))
}

impl LastSwitch {
    /// The switch a switch record's `misc` bits describe (per-thread and CPU-wide records
    /// alike).
    pub(crate) fn from_misc(misc: u64) -> LastSwitch {
        if misc & MISC_SWITCH_OUT == 0 {
            LastSwitch::In
        } else if misc & MISC_SWITCH_OUT_PREEMPT != 0 {
            LastSwitch::Preempted
        } else {
            LastSwitch::Blocked
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::test_threads::{state, wait_asleep};
    use std::sync::mpsc;

    fn header(kind: u64, misc: u64, size: u64) -> u64 {
        kind | (misc << 32) | (size << 48)
    }

    #[test]
    fn headers_decode_as_the_kernel_writes_them() {
        assert_eq!(decode(header(14, 0, 8)), Some(LastSwitch::In));
        assert_eq!(
            decode(header(14, MISC_SWITCH_OUT, 8)),
            Some(LastSwitch::Blocked)
        );
        assert_eq!(
            decode(header(14, MISC_SWITCH_OUT | MISC_SWITCH_OUT_PREEMPT, 8)),
            Some(LastSwitch::Preempted)
        );
        // Another record type, or a switch record with a sample id appended: not ours to read.
        assert_eq!(decode(header(9, 0, 8)), None);
        assert_eq!(decode(header(14, 0, 24)), None);
    }

    /// A thread of this process that sleeps in `recv` until told to spin, then spins until
    /// told to stop; it reports its kernel id.
    #[test]
    fn follows_a_thread_from_sleeping_to_running() {
        let (tid_tx, tid_rx) = mpsc::channel();
        let (go_tx, go_rx) = mpsc::channel::<()>();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let spin_stop = std::sync::Arc::clone(&stop);
        let (spinning_tx, spinning_rx) = mpsc::channel::<()>();
        let (end_tx, end_rx) = mpsc::channel::<()>();
        let t = std::thread::spawn(move || {
            tid_tx.send(nix::unistd::gettid().as_raw()).unwrap();
            go_rx.recv().unwrap();
            spinning_tx.send(()).unwrap();
            while !spin_stop.load(Ordering::Relaxed) {
                std::hint::spin_loop();
            }
            end_rx.recv().unwrap();
        });
        let tid = tid_rx.recv().unwrap();
        let pid = std::process::id() as i32;
        let w = SwitchWatch::open(pid, tid).unwrap();
        // It blocks in recv; once it has switched out to wait, that is the newest record
        // (until it is woken). Wait for the kernel to have recorded that: asleep off its CPU.
        let (pid, tid) = (pid as u32, tid as u32);
        wait_asleep(pid, tid);
        // Opened before it slept, so a switch out was recorded; or opened after (no record).
        assert!(matches!(
            w.last(),
            Some(LastSwitch::Blocked | LastSwitch::None)
        ));
        // Asleep, it is neither switched in nor out: the position stays.
        let asleep_at = w.position();
        assert_eq!(state(pid, tid), 'S');
        assert_eq!(w.position(), asleep_at);
        go_tx.send(()).unwrap();
        spinning_rx.recv().unwrap();
        assert!(w.position() > asleep_at, "it ran, so it was switched in");
        // It has run since (it sent), so it was switched in; spinning it stays running or is
        // preempted, never blocked.
        let seen = w.last().unwrap();
        assert!(
            matches!(seen, LastSwitch::In | LastSwitch::Preempted),
            "{seen:?}"
        );
        assert_eq!(seen.running(), Some(true));
        // And back to waiting: blocked, exactly.
        stop.store(true, Ordering::Relaxed);
        wait_asleep(pid, tid);
        assert_eq!(w.last(), Some(LastSwitch::Blocked));
        end_tx.send(()).unwrap();
        t.join().unwrap();
    }
}
