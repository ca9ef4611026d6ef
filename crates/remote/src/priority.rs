//! The calling thread's scheduling priority: its nice value, and its scheduling policy
//! (time-shared, or real-time first-in first-out).
//!
//! `nix` has no wrapper for `setpriority(2)` or `sched_setscheduler(2)`, so this crate, the one
//! that makes system calls, provides them. On Linux both belong to a thread, not to the whole
//! process: `PRIO_PROCESS` with a thread id, and `sched_setscheduler` with id 0, change the
//! calling thread alone.

use std::io;

/// Set the calling thread's nice value (-20, most favoured, to 19). Lowering it below the
/// current value needs `CAP_SYS_NICE` (root has it); the error then is `EPERM`/`EACCES`.
#[allow(unsafe_code)]
pub fn set_thread_nice(nice: i32) -> io::Result<()> {
    let tid = nix::unistd::gettid().as_raw();
    let who = nix::libc::id_t::try_from(tid)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "negative thread id"))?;
    // SAFETY: setpriority takes only integers (no pointers or buffers); any values are safe to
    // pass, and a bad one is reported through its return value and errno.
    let rc = unsafe { nix::libc::setpriority(nix::libc::PRIO_PROCESS, who, nice) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The lowest real-time priority: above every time-shared thread, below any real-time one.
const REALTIME_PRIORITY: i32 = 1;

/// Put the calling thread in the real-time first-in first-out class at its lowest priority
/// (`SCHED_FIFO` 1): a wake-up of it preempts any time-shared thread at once, where a nice
/// value only weighs its share. Threads it creates start time-shared (`SCHED_RESET_ON_FORK`).
/// Needs `CAP_SYS_NICE` (or an `RLIMIT_RTPRIO` of 1 or more); the error then is `EPERM`.
pub fn set_thread_realtime() -> io::Result<()> {
    set_policy(
        nix::libc::SCHED_FIFO | nix::libc::SCHED_RESET_ON_FORK,
        REALTIME_PRIORITY,
    )
}

/// Put the calling thread back in the time-shared class (`SCHED_OTHER`); its nice value is
/// what it was before.
pub fn set_thread_timeshared() -> io::Result<()> {
    set_policy(nix::libc::SCHED_OTHER | nix::libc::SCHED_RESET_ON_FORK, 0)
}

#[allow(unsafe_code)]
fn set_policy(policy: i32, priority: i32) -> io::Result<()> {
    let param = nix::libc::sched_param {
        sched_priority: priority,
    };
    // SAFETY: `param` is a live, initialised `sched_param` for the duration of the call, which
    // only reads it; id 0 is the calling thread. Bad values are reported through errno.
    let rc = unsafe { nix::libc::sched_setscheduler(0, policy, &param) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Whether thread `tid` (any thread of any process the caller may look at) is in a real-time
/// class (`SCHED_FIFO` or `SCHED_RR`), reset-on-fork or not.
#[allow(unsafe_code)]
pub fn thread_is_realtime(tid: i32) -> io::Result<bool> {
    // SAFETY: sched_getscheduler takes an integer id and returns an integer; nothing is
    // borrowed. An unknown id is reported through errno.
    let policy = unsafe { nix::libc::sched_getscheduler(tid) };
    if policy < 0 {
        return Err(io::Error::last_os_error());
    }
    let policy = policy & !nix::libc::SCHED_RESET_ON_FORK;
    Ok(policy == nix::libc::SCHED_FIFO || policy == nix::libc::SCHED_RR)
}

/// The calling thread's nice value, from `/proc/thread-self/stat`.
pub fn thread_nice() -> io::Result<i32> {
    let line = std::fs::read_to_string("/proc/thread-self/stat")?;
    crate::procfs::ProcStat::parse(&line)
        .and_then(|st| st.nice)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "unparsable stat line"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_thread_sets_its_own_nice_value_only() {
        let before = thread_nice().unwrap();
        std::thread::spawn(move || {
            // Raising it (being nicer) is always allowed.
            set_thread_nice(before + 3).unwrap();
            assert_eq!(thread_nice().unwrap(), before + 3);
        })
        .join()
        .unwrap();
        assert_eq!(thread_nice().unwrap(), before, "other threads keep theirs");
    }

    /// Root (or CAP_SYS_NICE), as strobe's tests run: the class changes for the calling
    /// thread alone, back and forth, and the nice value set before survives the round trip.
    #[test]
    fn a_thread_becomes_realtime_and_timeshared_again_alone() {
        let me = nix::unistd::gettid().as_raw();
        assert!(!thread_is_realtime(me).unwrap());
        std::thread::spawn(move || {
            let tid = nix::unistd::gettid().as_raw();
            set_thread_nice(-5).unwrap();
            set_thread_realtime().unwrap();
            assert!(thread_is_realtime(tid).unwrap());
            assert!(!thread_is_realtime(me).unwrap(), "only the calling thread");
            // A thread it creates starts time-shared (reset on fork).
            let child =
                std::thread::spawn(|| thread_is_realtime(nix::unistd::gettid().as_raw()).unwrap());
            assert!(!child.join().unwrap());
            set_thread_timeshared().unwrap();
            assert!(!thread_is_realtime(tid).unwrap());
            assert_eq!(thread_nice().unwrap(), -5);
        })
        .join()
        .unwrap();
    }
}
