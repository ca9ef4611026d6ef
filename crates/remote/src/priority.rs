//! The calling thread's scheduling priority (nice value).
//!
//! `nix` has no wrapper for `setpriority(2)`, so this crate, the one that makes system calls,
//! provides it. On Linux the nice value belongs to a thread, not to the whole process:
//! `PRIO_PROCESS` with a thread id changes that thread alone.

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
}
