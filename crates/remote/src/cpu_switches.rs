//! [`CpuSwitches`]: every context switch of the watched processes' threads, from one perf
//! event per CPU instead of one per thread ([`crate::SwitchWatch`]).
//!
//! A per-thread event costs its thread at every context switch: the kernel swaps the task's
//! perf context in and out (3.5% to 17% of the throughput of benches/native_target.py with
//! 50 busy threads on two 2-vCPU VMs, against 0.4% for these; docs/PERFORMANCE.md, issue 12). A dummy
//! software event on a CPU (pid -1) with `context_switch` set instead writes a
//! `PERF_RECORD_SWITCH_CPU_WIDE` record for every switch on that CPU, in and out, whoever the
//! task, with no per-task context to swap. With `sample_id_all` and `PERF_SAMPLE_TID |
//! PERF_SAMPLE_TIME` each record says whose switch it was and when (`CLOCK_MONOTONIC`, the
//! same clock on every CPU), so that a thread that moved between CPUs is read from its newest
//! record, whichever ring it is in.
//!
//! One `CpuSwitches` serves any number of processes ([`CpuSwitches::watch`] each): every
//! record is parsed once, whoever's it is, so the sampler of a `--subprocesses` family opens
//! one for all of its processes rather than one each.
//!
//! The rings are drained ([`CpuSwitches::drain`], once a round): the sampler keeps each watched
//! thread's last switch and a count of its switches (the analogue of `SwitchWatch::position`,
//! but it moves only at a drain). Records of other processes are parsed and dropped. A ring that
//! filled between drains drops records (we see it full; the kernel's `PERF_RECORD_LOST` comes
//! once it can write again): every thread's state is then unknown ([`CpuSwitches::last`] gives
//! `None`: ask `/proc`) until a record of it newer than the loss.
//!
//! Needs root, CAP_PERFMON or `perf_event_paranoid` ≤ 0; the caller falls back to per-thread
//! watches when refused.

use std::collections::{HashMap, HashSet};
use std::os::fd::OwnedFd;
use std::sync::atomic::Ordering;

use rustc_hash::FxBuildHasher;

use crate::perf::{
    open_error, perf_clock_ns, perf_event_open_on, AttrBytes, PerfError, Ring, ATTR_EXCLUDE_HV,
    ATTR_EXCLUDE_KERNEL, ATTR_SIZE, ATTR_USE_CLOCKID, PAGE_DATA_HEAD, PAGE_DATA_TAIL,
    PERF_RECORD_LOST, PERF_RECORD_SAMPLE, PERF_SAMPLE_TID, PERF_SAMPLE_TIME, PERF_TYPE_SOFTWARE,
};
use crate::switches::{ATTR_CONTEXT_SWITCH, PERF_COUNT_SW_DUMMY};
use crate::{LastSwitch, UserRegs};

mod preemptions;
use preemptions::Preemptions;

/// `perf_event_attr.sample_id_all`.
const ATTR_SAMPLE_ID_ALL: u64 = 1 << 18;
const PERF_RECORD_SWITCH_CPU_WIDE: u32 = 15;
/// Header, next/prev pid and tid, then the sample id: pid and tid, time.
const SWITCH_BYTES: u64 = 32;
/// Header, id, count lost, then the sample id.
const LOST_BYTES: u64 = 40;

/// What is known of one watched thread.
#[derive(Debug, Clone, Copy)]
struct Seen {
    pid: u32,
    /// Its newest record's time, or the newest loss's if later: a record older than this
    /// does not tell its state.
    time: u64,
    /// Its last switch, `None` once records may have been lost since.
    last: Option<LastSwitch>,
    /// Its switches drained so far, plus one for every loss.
    switches: u64,
    /// Its registers at the switch `last` is, where that is a preemption and they were
    /// recorded ([`CpuSwitches::record_preemptions`]).
    regs: Option<UserRegs>,
}

/// One CPU's event and ring.
#[derive(Debug)]
struct CpuRing {
    cpu: u32,
    fd: OwnedFd,
    ring: Ring,
    /// Where we have read up to (published as `data_tail` after each drain).
    tail: u64,
    /// The latest preemption sample drained from this ring, until the switch record it goes
    /// with (the next record of the ring, unless records were lost): the thread, the
    /// sample's time and its registers.
    pending: Option<(u32, u64, UserRegs)>,
}

/// See the module documentation.
#[derive(Debug)]
pub struct CpuSwitches {
    rings: Vec<CpuRing>,
    /// (Looked up for every record of every task on the CPUs, and the threads' for each of
    /// theirs: tens of thousands a second on a busy machine, so hashed with Fx, not SipHash.)
    pids: HashSet<u32, FxBuildHasher>,
    threads: HashMap<u32, Seen, FxBuildHasher>,
    /// The newest loss's time: threads first seen in a record older than it are unknown.
    lost_at: u64,
    lost: u64,
    records: u64,
    /// The registers of watched threads at their preemptions, while asked for.
    preemptions: Option<Preemptions>,
    /// Preemption samples drained, of watched threads.
    preemption_samples: u64,
    /// Switches out of watched threads that were preemptions, drained.
    preempted_outs: u64,
    /// A watched thread was seen that the preemptions' filter does not cover yet.
    uncovered: bool,
    /// Registers are recorded at every switch out, sleeps included, not only at preemptions.
    sleeps: bool,
}

impl CpuSwitches {
    /// One event on every online CPU, each with `ring_pages` pages of ring (a power of two,
    /// checked where each ring is mapped): enough for the switches of every task on the CPU
    /// between two drains (32 bytes each, two a switch).
    pub fn open(ring_pages: usize) -> Result<CpuSwitches, PerfError> {
        let rings = online_cpus()
            .into_iter()
            .map(|cpu| {
                let fd =
                    perf_event_open_on(&attr(), -1, cpu as i32).map_err(|errno| match errno {
                        nix::errno::Errno::EACCES | nix::errno::Errno::EPERM => {
                            PerfError::CpuRefused { cpu, errno }
                        }
                        errno => open_error(-1, -1, errno),
                    })?;
                let ring = Ring::map(&fd, ring_pages, true)?;
                let tail = ring.control(PAGE_DATA_TAIL).load(Ordering::Relaxed);
                Ok(CpuRing {
                    cpu,
                    fd,
                    ring,
                    tail,
                    pending: None,
                })
            })
            .collect::<Result<Vec<_>, PerfError>>()?;
        Ok(CpuSwitches::with_rings(rings))
    }

    /// Reading `rings`, nothing watched yet.
    fn with_rings(rings: Vec<CpuRing>) -> CpuSwitches {
        CpuSwitches {
            rings,
            pids: HashSet::default(),
            threads: HashMap::default(),
            lost_at: 0,
            lost: 0,
            records: 0,
            preemptions: None,
            sleeps: false,
            preemption_samples: 0,
            preempted_outs: 0,
            uncovered: false,
        }
    }

    /// From now on, record the user registers of every watched thread at each of its
    /// preemptions (see `cpu_switches/preemptions.rs`), for [`CpuSwitches::preempted`]. A
    /// thread is covered from the first drain after its first switch record. Fails where the
    /// kernel refuses the tracepoint or tracefs is not mounted.
    pub fn record_preemptions(&mut self) -> Result<(), PerfError> {
        if self.preemptions.is_some() {
            return Ok(());
        }
        let outputs: Vec<(u32, &OwnedFd)> = self.rings.iter().map(|r| (r.cpu, &r.fd)).collect();
        self.preemptions = Some(Preemptions::open(&outputs, self.sleeps)?);
        self.uncovered = !self.threads.is_empty();
        Ok(())
    }

    /// Record the registers of watched threads at every switch out, sleeps included, whenever
    /// preemptions are recorded ([`CpuSwitches::record_preemptions`]; events already open are
    /// opened again), for [`CpuSwitches::blocked`]: a thread that went to sleep has executed
    /// nothing since, woken or not, until it is switched in. What it costs the target is in
    /// proportion to its switches out, as [`CpuSwitches::preemptions`] then counts.
    pub fn record_sleeps(&mut self) -> Result<(), PerfError> {
        if self.sleeps {
            return Ok(());
        }
        self.sleeps = true;
        if self.preemptions.is_some() {
            self.preemptions = None;
            self.record_preemptions()?;
        }
        Ok(())
    }

    /// No longer record registers at preemptions (the events are closed). A thread whose
    /// last switch is a preemption recorded before keeps its registers until it switches.
    pub fn stop_recording_preemptions(&mut self) {
        self.preemptions = None;
        self.uncovered = false;
    }

    /// Thread `tid`'s registers at its newest preemption, with the time of that preemption's
    /// switch record, if its last switch (as of the last drain) is that preemption and they
    /// were recorded. While [`CpuSwitches::moved_since`] that time is false, it has not run
    /// since: its registers, stack and memory it alone writes are as they were then.
    pub fn preempted(&self, tid: u32) -> Option<(u64, UserRegs)> {
        let seen = self.threads.get(&tid)?;
        match seen.last {
            Some(LastSwitch::Preempted) => seen.regs.map(|regs| (seen.time, regs)),
            _ => None,
        }
    }

    /// Thread `tid`'s registers at its newest switch out to a wait (a sleep, a block, a stop),
    /// with that switch record's time, if it is its last switch (as of the last drain) and
    /// they were recorded ([`CpuSwitches::record_sleeps`]). Until it is switched in again it
    /// executes nothing, woken or not, as [`CpuSwitches::preempted`]'s threads.
    pub fn blocked(&self, tid: u32) -> Option<(u64, UserRegs)> {
        let seen = self.threads.get(&tid)?;
        match seen.last {
            Some(LastSwitch::Blocked) => seen.regs.map(|regs| (seen.time, regs)),
            _ => None,
        }
    }

    /// Whether thread `tid`, switched out at `time_ns` (the mark [`CpuSwitches::preempted`] or
    /// [`CpuSwitches::blocked`] gave), still is, with no switch since as of the last drain: it
    /// has not run since.
    pub fn still_out(&self, tid: u32, time_ns: u64) -> bool {
        !self.moved_since(tid, time_ns)
            && matches!(
                self.last(tid),
                Some(LastSwitch::Preempted | LastSwitch::Blocked)
            )
    }

    /// Preemption samples of watched threads drained so far.
    pub fn preemption_samples(&self) -> u64 {
        self.preemption_samples
    }

    /// Switches out of watched threads that were preemptions (with [`CpuSwitches::record_sleeps`],
    /// every switch out), drained so far, whether or not their registers were recorded: what
    /// recording them costs is in proportion to this.
    pub fn preemptions(&self) -> u64 {
        self.preempted_outs
    }

    /// Keep the switches of process `pid`'s threads (ids in strobe's PID namespace) from the
    /// next drain on.
    pub fn watch(&mut self, pid: u32) {
        self.pids.insert(pid);
    }

    /// Stop keeping process `pid`'s threads.
    pub fn unwatch(&mut self, pid: u32) {
        self.pids.remove(&pid);
        self.threads.retain(|_, s| s.pid != pid);
    }

    /// Whether process `pid`'s threads are kept.
    pub fn watching(&self, pid: u32) -> bool {
        self.pids.contains(&pid)
    }

    /// Of process `pid`'s threads, keep only those for which `keep` is true (the others
    /// exited); other processes' threads stay.
    pub fn retain(&mut self, pid: u32, mut keep: impl FnMut(u32) -> bool) {
        self.threads.retain(|&tid, s| s.pid != pid || keep(tid));
    }

    /// Forget thread `tid` (it exited).
    pub fn forget(&mut self, tid: u32) {
        self.threads.remove(&tid);
    }

    /// Thread `tid`'s last switch; `None` if unknown (no record of it since it was watched,
    /// or records lost since its last): ask `/proc`.
    pub fn last(&self, tid: u32) -> Option<LastSwitch> {
        self.threads.get(&tid).and_then(|s| s.last)
    }

    /// How many times thread `tid` was seen to switch (in or out), as of the last drain, plus
    /// one for every loss of records since it was first seen; `None` if never seen. Two equal
    /// counts mean it did not get or leave a CPU between the drains they were read after.
    pub fn switches(&self, tid: u32) -> Option<u64> {
        self.threads.get(&tid).map(|s| s.switches)
    }

    /// Whether thread `tid` was seen to switch (in or out) after `time_ns` (a
    /// [`crate::perf_clock_ns`] reading), as of the last drain, or records were lost since
    /// (it may have). A thread stopped and let go at `time_ns` has not had a CPU since while
    /// this is false, whatever its last switch (out, into the stop) says.
    pub fn moved_since(&self, tid: u32, time_ns: u64) -> bool {
        match self.threads.get(&tid) {
            Some(seen) => seen.time > time_ns,
            None => self.lost_at > time_ns,
        }
    }

    /// Records the kernel dropped because a ring was full, so far.
    pub fn lost(&self) -> u64 {
        self.lost
    }

    /// Records parsed so far, of every task.
    pub fn records(&self) -> u64 {
        self.records
    }

    /// Parse every CPU's records written since the last drain and give their space back.
    /// Returns how many records there were (of every task).
    pub fn drain(&mut self) -> usize {
        let mut count = 0;
        for r in 0..self.rings.len() {
            count += self.drain_ring(r);
        }
        self.records += count as u64;
        if self.uncovered {
            if let Some(p) = &mut self.preemptions {
                // Too soon, or refused: the threads not covered are stopped instead of read
                // preempted until a later drain covers them.
                self.uncovered = !matches!(p.cover(self.threads.keys().copied()), Ok(true));
            }
        }
        count
    }

    fn drain_ring(&mut self, r: usize) -> usize {
        let (head, mut tail, size) = {
            let cpu = &self.rings[r];
            // Acquire: the records the kernel wrote before publishing `data_head` are visible.
            let head = cpu.ring.control(PAGE_DATA_HEAD).load(Ordering::Acquire);
            (head, cpu.tail, cpu.ring.data_size() as u64)
        };
        let mut count = 0;
        // A ring without room for another record has dropped the records since (the kernel
        // says how many only at its next write, once we have made room: counted again then).
        let full = head - tail + LOST_BYTES > size;
        while tail < head {
            let ring = &self.rings[r].ring;
            let word = |at: u64| ring.word(ring.offset_of(tail + at));
            let header = word(0).load(Ordering::Relaxed);
            let kind = (header & 0xffff_ffff) as u32;
            let misc = (header >> 32) & 0xffff;
            let len = header >> 48;
            if len < 8 || !len.is_multiple_of(8) || tail + len > head {
                // Not what the kernel writes: the ring is not what we think. Skip all of it and
                // count it as a loss (of at least one record) rather than decode garbage.
                tail = head;
                let now = perf_clock_ns();
                self.note_loss(1, now);
                break;
            }
            count += 1;
            if kind == PERF_RECORD_SWITCH_CPU_WIDE && len >= SWITCH_BYTES {
                let ids = word(16).load(Ordering::Relaxed);
                let time = word(24).load(Ordering::Relaxed);
                let (pid, tid) = (ids as u32, (ids >> 32) as u32);
                // The preemption sample of a switch out comes right before its record.
                let pending = self.rings[r].pending.take();
                if self.pids.contains(&pid) {
                    let last = LastSwitch::from_misc(misc);
                    let recorded = self.records_registers_at(last);
                    let regs = pending
                        .filter(|&(of, at, _)| of == tid && at <= time && recorded)
                        .map(|(_, _, regs)| regs);
                    self.note_switch(pid, tid, time, last, regs);
                }
            } else if kind == PERF_RECORD_SAMPLE && len >= preemptions::SAMPLE_BYTES {
                let sample = preemptions::decode(|at| word(at).load(Ordering::Relaxed));
                self.rings[r].pending = sample;
            } else if kind == PERF_RECORD_LOST && len >= LOST_BYTES {
                let n = word(16).load(Ordering::Relaxed);
                let time = word(32).load(Ordering::Relaxed);
                // The switch record a pending sample went with may be among those lost.
                self.rings[r].pending = None;
                self.note_loss(n, time);
            }
            tail += len;
        }
        if full {
            let now = perf_clock_ns();
            self.note_loss(1, now);
        }
        let cpu = &mut self.rings[r];
        cpu.tail = tail;
        // Release: our reads of the records happen before the kernel may overwrite them.
        cpu.ring
            .control(PAGE_DATA_TAIL)
            .store(tail, Ordering::Release);
        count
    }

    fn note_switch(
        &mut self,
        pid: u32,
        tid: u32,
        time: u64,
        last: LastSwitch,
        regs: Option<UserRegs>,
    ) {
        let lost_at = self.lost_at;
        let preemptions = &self.preemptions;
        let uncovered = &mut self.uncovered;
        let seen = self.threads.entry(tid).or_insert_with(|| {
            *uncovered |= preemptions.as_ref().is_some_and(|p| !p.covers(tid));
            Seen {
                pid,
                time: lost_at,
                last: None,
                switches: 0,
                regs: None,
            }
        });
        seen.switches += 1;
        if time >= seen.time {
            seen.time = time;
            seen.last = Some(last);
            seen.regs = regs;
        }
        self.preempted_outs += u64::from(self.records_registers_at(last));
        self.preemption_samples += u64::from(regs.is_some());
    }

    /// Whether a switch out such as `last` is one whose registers the tracepoint records:
    /// a preemption, or with [`CpuSwitches::record_sleeps`] a switch out to a wait too.
    fn records_registers_at(&self, last: LastSwitch) -> bool {
        last == LastSwitch::Preempted || (self.sleeps && last == LastSwitch::Blocked)
    }

    /// `n` records lost, noticed at `time`: any thread may have switched since its last.
    fn note_loss(&mut self, n: u64, time: u64) {
        self.lost = self.lost.saturating_add(n.max(1));
        self.lost_at = self.lost_at.max(time);
        for seen in self.threads.values_mut() {
            seen.time = seen.time.max(time);
            seen.last = None;
            seen.regs = None;
            seen.switches += 1;
        }
    }
}

/// `perf_event_attr` for a per-CPU dummy event recording context switches with their task
/// and time, as bytes.
fn attr() -> [u8; ATTR_SIZE] {
    let mut a = AttrBytes::new(PERF_TYPE_SOFTWARE, PERF_COUNT_SW_DUMMY);
    let mut put = |off: usize, bytes: &[u8]| a.put(off, bytes);
    // No samples (period 0): the side-band switch records, each with its sample id.
    put(24, &(PERF_SAMPLE_TID | PERF_SAMPLE_TIME).to_le_bytes());
    let flags = ATTR_EXCLUDE_KERNEL
        | ATTR_EXCLUDE_HV
        | ATTR_SAMPLE_ID_ALL
        | ATTR_USE_CLOCKID
        | ATTR_CONTEXT_SWITCH;
    put(40, &flags.to_le_bytes());
    put(92, &nix::libc::CLOCK_MONOTONIC.to_le_bytes());
    a.0
}

/// The online CPUs (`/sys/devices/system/cpu/online`: `0-3,5`), or 0 to the number of CPUs
/// this process may run on if that cannot be read.
fn online_cpus() -> Vec<u32> {
    let parsed = std::fs::read_to_string("/sys/devices/system/cpu/online")
        .ok()
        .and_then(|s| parse_cpu_list(s.trim()));
    parsed.unwrap_or_else(|| {
        let n = std::thread::available_parallelism().map_or(1, |n| n.get());
        (0..n as u32).collect()
    })
}

fn parse_cpu_list(s: &str) -> Option<Vec<u32>> {
    let mut cpus = Vec::new();
    for part in s.split(',') {
        match part.split_once('-') {
            Some((a, b)) => cpus.extend(a.parse::<u32>().ok()?..=b.parse::<u32>().ok()?),
            None => cpus.push(part.parse().ok()?),
        }
    }
    (!cpus.is_empty()).then_some(cpus)
}

#[cfg(test)]
#[path = "cpu_switches/tests.rs"]
mod tests;
