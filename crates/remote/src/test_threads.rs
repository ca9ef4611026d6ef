//! Tests' view of a thread of theirs through `/proc`: its state, and when it is provably asleep
//! off its CPU (what the switch records' tests wait for before they read the records).

#![allow(clippy::unwrap_used)]

use crate::procfs::ProcStat;

/// The state letter `/proc` gives thread `tid` of process `pid`.
pub(crate) fn state(pid: u32, tid: u32) -> char {
    let line = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/stat")).unwrap();
    ProcStat::parse(&line).unwrap().state
}

/// Whether thread `tid` of process `pid` is asleep and off its CPU. `/proc` says S from the
/// moment the thread sets its state, a little before it switches out; its `syscall` file
/// answers only once the switch is done (the kernel waits for the thread to be off its CPU),
/// and the switch's record is written before that.
pub(crate) fn asleep_off_cpu(pid: u32, tid: u32) -> bool {
    state(pid, tid) == 'S'
        && std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/syscall"))
            .is_ok_and(|s| !s.starts_with("running"))
}

/// Wait until thread `tid` of process `pid` is asleep off its CPU ([`asleep_off_cpu`]).
pub(crate) fn wait_asleep(pid: u32, tid: u32) {
    while !asleep_off_cpu(pid, tid) {
        std::thread::yield_now();
    }
}
