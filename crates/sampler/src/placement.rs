//! Keeping the sampler thread off the CPUs the target runs on.
//!
//! On a host whose CPUs are all busy, every time the sampler wakes up for a sample it
//! preempts whatever runs on its CPU. When that is the target, the target loses more than the
//! few microseconds of the sample: its caches and branch predictors are cold when it resumes.
//! Measured on a 2-vCPU VM with both CPUs busy, waking up 10,000 times a second *without
//! reading anything* cost the target ~10% of its speed when the sampler shared its CPU, and
//! nothing measurable when it did not (docs/PERFORMANCE.md, "Target slowdown").
//!
//! So every [`PLACE_EVERY_NS`] the sampler reads which CPUs the target's running threads last
//! ran on (one `pread` of a `stat` file it keeps open, per thread, for at most
//! [`MAX_PLACED`] threads) and restricts itself to the CPUs it was allowed at the start minus
//! those. When that leaves none (the target runs everywhere strobe may run), it keeps all of
//! them. Failing to set the affinity (a restricted container) changes nothing but this.
//!
//! Under `--native`, while one of the target's threads runs, it is the other way round
//! ([`Aim::Join`]): the sampler moves onto that thread's CPU. A native sample stops the thread it reads (ptrace), so
//! the target does not run while the sampler works on its CPU anyway, and every step of a stop
//! made from another CPU is a wake-up across CPUs: the interrupt kicks the target's CPU, the
//! target's stop wakes the sampler's (idle) CPU, the release wakes the target's CPU, now idle,
//! again. On a virtual machine each of those is an exit to the hypervisor. Measured on the
//! 2-vCPU test VM (docs/PERFORMANCE.md, "Issue 12: the sampler on the stopped thread's CPU";
//! `cargo bench -p strobe-native --bench capture`, on a machine loaded by other work): a
//! capture of a spinning thread cost 15 µs of CPU from its own CPU and 25–27 µs from the
//! other, and held the thread 27 µs against 106–129 µs. With several running threads the
//! sampler keeps off their CPUs as without native stacks (see [`join`]).

use nix::sched::{sched_getaffinity, sched_setaffinity, CpuSet};
use nix::unistd::Pid;

/// How often the target's CPUs are looked at (ns).
pub(crate) const PLACE_EVERY_NS: u64 = 100_000_000;
/// Running target threads whose CPU is looked at, at most.
pub(crate) const MAX_PLACED: usize = 8;

/// Whether the sampler keeps off the target's CPUs or joins them (see the module
/// documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Aim {
    /// Off the CPUs the target's running threads are on, where that leaves one.
    Avoid,
    /// Onto the CPU of the target's running thread, when one runs (`--native`).
    Join,
}

/// See the module documentation.
#[derive(Debug)]
pub(crate) struct Placement {
    aim: Aim,
    /// The CPUs this thread could run on at the start, ascending.
    allowed: Vec<usize>,
    /// The CPUs it is restricted to now (`None`: all of `allowed`).
    current: Option<Vec<usize>>,
    next_ns: u64,
    busy: Vec<usize>,
}

impl Placement {
    /// For the calling thread, as its affinity is now.
    pub(crate) fn new(aim: Aim) -> Placement {
        let allowed = sched_getaffinity(Pid::from_raw(0))
            .map(|set| {
                (0..CpuSet::count())
                    .filter(|&c| set.is_set(c).unwrap_or(false))
                    .collect()
            })
            .unwrap_or_default();
        Placement {
            aim,
            allowed,
            current: None,
            next_ns: 0,
            busy: Vec::new(),
        }
    }

    /// Whether it is time to look at the target's CPUs again.
    pub(crate) fn due(&self, now_ns: u64) -> bool {
        now_ns >= self.next_ns
    }

    /// The target's running threads were last on `cpus`: move off them if that leaves
    /// somewhere to run, or onto the one CPU of a single running thread ([`Aim`]).
    pub(crate) fn update(&mut self, now_ns: u64, cpus: impl IntoIterator<Item = u32>) {
        self.next_ns = now_ns.saturating_add(PLACE_EVERY_NS);
        self.busy.clear();
        self.busy.extend(cpus.into_iter().map(|c| c as usize));
        let want = match self.aim {
            Aim::Avoid => avoid(&self.allowed, &self.busy),
            Aim::Join => join(&self.allowed, &self.busy),
        };
        if want == self.current {
            return;
        }
        let mut set = CpuSet::new();
        for &c in want.as_deref().unwrap_or(&self.allowed) {
            // A CPU number beyond the set's size cannot be in `allowed`.
            let _ = set.set(c);
        }
        if sched_setaffinity(Pid::from_raw(0), &set).is_ok() {
            self.current = want;
        }
    }

    /// The CPUs the sampler is restricted to now, if it is.
    pub(crate) fn current(&self) -> Option<&[usize]> {
        self.current.as_deref()
    }
}

/// `allowed` without `busy`, if that leaves any CPU and differs from `allowed`; else `None`
/// (run anywhere allowed).
pub(crate) fn avoid(allowed: &[usize], busy: &[usize]) -> Option<Vec<usize>> {
    let rest: Vec<usize> = allowed
        .iter()
        .copied()
        .filter(|c| !busy.contains(c))
        .collect();
    (!rest.is_empty() && rest.len() < allowed.len()).then_some(rest)
}

/// The CPU of the one running thread `busy` holds, if strobe may run there and that restricts
/// `allowed`; several running threads: [`avoid`] their CPUs (pinned to one busy CPU, the sampler
/// stops only some of them from there and waits behind the others for that CPU: measured with
/// 50 threads on 2 vCPUs, fewer samples at more CPU each than off them).
pub(crate) fn join(allowed: &[usize], busy: &[usize]) -> Option<Vec<usize>> {
    match busy {
        &[one] => (allowed.len() > 1 && allowed.contains(&one)).then(|| vec![one]),
        _ => avoid(allowed, busy),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use strobe_testkit::cpus::allowed_cpus;

    #[test]
    fn avoids_busy_cpus_while_some_are_left() {
        assert_eq!(avoid(&[0, 1, 2, 3], &[1]), Some(vec![0, 2, 3]));
        assert_eq!(avoid(&[0, 1, 2, 3], &[1, 1, 3]), Some(vec![0, 2]));
        // Busy CPUs strobe may not run on anyway change nothing.
        assert_eq!(avoid(&[2, 3], &[0, 1]), None);
        // Everywhere busy, or nothing busy: anywhere allowed.
        assert_eq!(avoid(&[0, 1], &[0, 1]), None);
        assert_eq!(avoid(&[0], &[0]), None);
        assert_eq!(avoid(&[0, 1], &[]), None);
    }

    #[test]
    fn joins_the_cpu_of_the_one_running_thread() {
        assert_eq!(join(&[0, 1, 2, 3], &[2]), Some(vec![2]));
        // Several running threads: off their CPUs, as without native stacks.
        assert_eq!(join(&[0, 1, 2, 3], &[3, 3]), Some(vec![0, 1, 2]));
        assert_eq!(join(&[0, 1, 2, 3], &[3, 1, 3]), Some(vec![0, 2]));
        assert_eq!(join(&[0, 1], &[0, 1]), None);
        // A CPU strobe may not run on.
        assert_eq!(join(&[2, 3], &[0]), None);
        // Nothing running, or one CPU allowed: anywhere allowed.
        assert_eq!(join(&[0, 1], &[]), None);
        assert_eq!(join(&[0], &[0]), None);
    }

    #[test]
    fn the_thread_moves_off_the_busy_cpu_and_back() {
        // On its own thread: the affinity set is the calling thread's.
        std::thread::spawn(|| {
            let mut p = Placement::new(Aim::Avoid);
            let allowed = p.allowed.clone();
            assert!(!allowed.is_empty());
            assert!(p.due(0));
            p.update(0, [allowed[0] as u32]);
            assert!(!p.due(PLACE_EVERY_NS - 1) && p.due(PLACE_EVERY_NS));
            if allowed.len() >= 2 {
                assert_eq!(p.current(), Some(&allowed[1..]));
                assert_eq!(allowed_cpus(), allowed[1..]);
            } else {
                assert_eq!(p.current(), None);
            }
            // The target moved elsewhere, beyond what strobe may use: back to all.
            p.update(PLACE_EVERY_NS, [u32::MAX]);
            assert_eq!(p.current(), None);
            assert_eq!(allowed_cpus(), allowed);
        })
        .join()
        .unwrap();
    }
}
