//! [`SharedSwitches`]: one [`CpuSwitches`] for every process the sampler samples.
//!
//! Each sampled process has its own [`super::KernelThreads`], and each used to open its own
//! per-CPU events: under `--subprocesses` N processes meant N events a CPU, N rings, and every
//! switch on the machine parsed N times a round. The sampler is one thread, so the one reader
//! is shared by reference counting: the sampler's set of processes (`crate::processes`) makes
//! it and hands a clone to each process's `KernelThreads`, which watches its process in it the
//! first time one of its threads' states is needed and unwatches it when dropped (the process
//! is no longer sampled). The set drains it once at the start of each round of the family
//! ([`SharedSwitches::drain`]); a process's round reads its threads' states as of that drain.
//! A drain elsewhere (before a `--blocking` freeze, after a native round's read) means
//! "records up to now", for every process alike.
//!
//! Once asked to record preempted threads' registers, the reader does so only while that pays
//! for itself ([`Worth`]), decided at the first drain of a round.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Instant;

use strobe_remote::{CpuSwitches, LastSwitch, PerfError, UserRegs};
use strobe_target::CpuPreemptions;

use super::worth::Worth;

/// Pages of ring a CPU for [`CpuSwitches`]: 8192 records of 32 bytes, two a context switch,
/// ~200 ms of a CPU switching 20,000 times a second between two drains before records are lost
/// (and the threads read through `/proc` until their next switch).
const CPU_RING_PAGES: usize = 64;

/// The per-CPU switch records, once tried.
#[derive(Debug)]
enum CpuWide {
    Untried,
    On(Box<CpuSwitches>),
    Refused,
}

/// The reader, and once preemption records were asked for, whether they are worth it.
#[derive(Debug)]
struct Shared {
    cpu: CpuWide,
    worth: Option<Worth>,
}

/// See the module documentation. Clones share the one reader.
#[derive(Debug, Clone)]
pub(crate) struct SharedSwitches(Rc<RefCell<Shared>>);

impl Default for SharedSwitches {
    fn default() -> SharedSwitches {
        SharedSwitches::new()
    }
}

impl SharedSwitches {
    /// Not opened yet: opened the first time a process is watched.
    pub(crate) fn new() -> SharedSwitches {
        SharedSwitches::of(CpuWide::Untried)
    }

    /// Never opened, as where the kernel refuses per-CPU events (per-thread watches are used).
    #[cfg(test)]
    pub(crate) fn refused() -> SharedSwitches {
        SharedSwitches::of(CpuWide::Refused)
    }

    fn of(cpu: CpuWide) -> SharedSwitches {
        SharedSwitches(Rc::new(RefCell::new(Shared { cpu, worth: None })))
    }

    /// Keep process `pid`'s switches, opening the events the first time any process asks;
    /// false if the kernel refused them (then never tried again).
    pub(crate) fn watch(&self, pid: i32) -> bool {
        let cpu = &mut self.0.borrow_mut().cpu;
        if matches!(*cpu, CpuWide::Untried) {
            *cpu = match CpuSwitches::open(CPU_RING_PAGES) {
                Ok(c) => CpuWide::On(Box::new(c)),
                Err(_) => CpuWide::Refused,
            };
        }
        match cpu {
            CpuWide::On(c) => {
                c.watch(pid as u32);
                true
            }
            _ => false,
        }
    }

    /// Stop keeping process `pid`'s switches, and forget its threads.
    pub(crate) fn unwatch(&self, pid: i32) {
        // Never borrowed across a call out of this module; `try_` in case it is in a drop
        // during an unwind.
        if let Ok(mut shared) = self.0.try_borrow_mut() {
            if let CpuWide::On(c) = &mut shared.cpu {
                c.unwatch(pid as u32);
            }
        }
    }

    /// Parse every CPU's records written since the last drain (of any process's).
    pub(crate) fn drain(&self) {
        if let CpuWide::On(c) = &mut self.0.borrow_mut().cpu {
            c.drain();
        }
    }

    /// [`SharedSwitches::drain`] at the start of a round; then, once a
    /// [`super::worth::WINDOW`], whether preemption records are worth it. Decided only here,
    /// never inside a capture (opening or closing the events takes the time of a few system
    /// calls a CPU, which a capture would spend between its read and its stops).
    pub(crate) fn drain_for_round(&self) {
        let Shared { cpu, worth } = &mut *self.0.borrow_mut();
        let CpuWide::On(c) = cpu else {
            return;
        };
        c.drain();
        match worth
            .as_mut()
            .and_then(|w| w.decide(Instant::now(), c.preemptions()))
        {
            Some(false) => c.stop_recording_preemptions(),
            Some(true) => {
                if let (Err(_), Some(w)) = (c.record_preemptions(), worth.as_mut()) {
                    // Allowed before, refused now (tracefs unmounted?): preempted threads are
                    // stopped until a later window tries again.
                    w.on = false;
                }
            }
            None => {}
        }
    }

    /// Seconds (windows) decided with preemption records on, and off; `None` if they were
    /// never asked for.
    pub(crate) fn record_windows(&self) -> Option<(u64, u64)> {
        let shared = self.0.borrow();
        shared.worth.as_ref().map(|w| (w.windows_on, w.windows_off))
    }

    /// Of process `pid`'s threads, keep only those for which `keep` is true.
    pub(crate) fn retain(&self, pid: i32, keep: impl FnMut(u32) -> bool) {
        if let CpuWide::On(c) = &mut self.0.borrow_mut().cpu {
            c.retain(pid as u32, keep);
        }
    }

    /// Record the registers of every watched thread at its preemptions from now on
    /// ([`CpuSwitches::record_preemptions`]), for [`CpuPreemptions`], while they are worth it
    /// ([`Worth`]); false if the reader is not open. Asked again (by another process of the
    /// family), the decision stands.
    pub(crate) fn record_preemptions(&self) -> Result<bool, PerfError> {
        let Shared { cpu, worth } = &mut *self.0.borrow_mut();
        let CpuWide::On(c) = cpu else {
            return Ok(false);
        };
        if worth.is_none() {
            c.record_preemptions()?;
            *worth = Some(Worth::new(Instant::now(), c.preemptions()));
        }
        Ok(true)
    }

    /// Record watched threads' registers at their sleeps too
    /// ([`CpuSwitches::record_sleeps`]), for [`CpuPreemptions::blocked`]; false if the reader
    /// is not open.
    pub(crate) fn record_sleeps(&self) -> Result<bool, PerfError> {
        match &mut self.0.borrow_mut().cpu {
            CpuWide::On(c) => c.record_sleeps().map(|()| true),
            _ => Ok(false),
        }
    }

    /// `read` of the reader, if it is open.
    pub(crate) fn with<R>(&self, read: impl FnOnce(&CpuSwitches) -> R) -> Option<R> {
        match &self.0.borrow().cpu {
            CpuWide::On(c) => Some(read(c)),
            _ => None,
        }
    }
}

/// What `strobe_target` needs to read a preempted thread without a stop. The mark of a
/// preemption is its switch record's time.
impl CpuPreemptions for SharedSwitches {
    fn preempted(&self, tid: i32) -> Option<(u64, UserRegs)> {
        let tid = u32::try_from(tid).ok()?;
        let Shared { cpu, worth } = &mut *self.0.borrow_mut();
        let CpuWide::On(c) = cpu else {
            return None;
        };
        // A thread a capture would stop, found preempted: what the records save.
        if let Some(w) = worth
            .as_mut()
            .filter(|_| c.last(tid) == Some(LastSwitch::Preempted))
        {
            w.found_preempted();
        }
        c.preempted(tid)
    }

    fn blocked(&self, tid: i32) -> Option<(u64, UserRegs)> {
        let tid = u32::try_from(tid).ok()?;
        let Shared { cpu, worth } = &mut *self.0.borrow_mut();
        let CpuWide::On(c) = cpu else {
            return None;
        };
        let found = c.blocked(tid);
        // Read from its record instead of `/proc` or a stop: what recording sleeps saves.
        if let (Some(w), Some(_)) = (worth.as_mut(), found) {
            w.found_preempted();
        }
        found
    }

    fn refresh(&self) {
        self.drain();
    }

    fn unmoved(&self, tid: i32, mark: u64) -> bool {
        let Ok(tid) = u32::try_from(tid) else {
            return false;
        };
        self.with(|c| c.still_out(tid, mark)).unwrap_or(false)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::KernelThreads;
    use super::*;

    /// Two processes' views share one reader: each watches its process when its first state
    /// is needed, and a view dropped (its process no longer sampled) unwatches it.
    #[test]
    fn views_watch_their_process_and_unwatch_it_when_dropped() {
        let shared = SharedSwitches::new();
        let me = std::process::id() as i32;
        // Another process, blocked reading its stdin until we close it (or drop it).
        let mut child = std::process::Command::new("cat")
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let other = child.id() as i32;
        let mut a = KernelThreads::new(me, shared.clone());
        let mut b = KernelThreads::new(other, shared.clone());
        let tid = nix::unistd::gettid().as_raw() as u32;
        assert_eq!(a.read_state(tid), Some('R'));
        assert!(b.read_state(other as u32).is_some());
        let watching = |pid: i32| shared.with(|c| c.watching(pid as u32));
        if watching(me).is_some() {
            assert_eq!(watching(me), Some(true));
            assert_eq!(watching(other), Some(true));
            drop(b);
            assert_eq!(watching(other), Some(false));
            assert_eq!(watching(me), Some(true));
        }
        // Else per-CPU events are refused here (not root): nothing is shared.
        drop(child.stdin.take());
        child.wait().unwrap();
    }
}
