//! The CPUs a test may run on, and pinning threads to one of them: tests that need threads to
//! share a CPU (one preempted whenever another runs) put them on the last CPU this process may
//! use ([`last_cpu`]).

use nix::sched::{sched_getaffinity, sched_setaffinity, CpuSet};
use nix::unistd::Pid;

/// The CPUs the calling thread may run on (`sched_getaffinity`), in ascending order.
pub fn allowed_cpus() -> Vec<usize> {
    let allowed = sched_getaffinity(Pid::from_raw(0))
        .unwrap_or_else(|e| panic!("cannot read this thread's CPU affinity: {e}"));
    (0..CpuSet::count())
        .filter(|&c| allowed.is_set(c).unwrap_or(false))
        .collect()
}

/// The last CPU the calling thread may run on: the one the tests pin their targets to.
pub fn last_cpu() -> usize {
    let allowed = allowed_cpus();
    *allowed
        .last()
        .unwrap_or_else(|| panic!("this thread may run on no CPU"))
}

/// Pin thread `tid` (0: the calling thread) to CPU `cpu` alone. Threads it starts and
/// processes it forks from then on inherit that.
pub fn pin(tid: i32, cpu: usize) {
    let mut one = CpuSet::new();
    one.set(cpu)
        .unwrap_or_else(|e| panic!("CPU {cpu} is out of range: {e}"));
    sched_setaffinity(Pid::from_raw(tid), &one)
        .unwrap_or_else(|e| panic!("cannot pin thread {tid} to CPU {cpu}: {e}"));
}
