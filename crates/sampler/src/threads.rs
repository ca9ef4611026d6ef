//! The kernel's view of the target's threads, kept cheap enough to read every sample.
//!
//! Whether a thread is idle comes from its scheduler state in `/proc/PID/task/TID/stat`. Opening
//! that file for every thread on every sample would cost more than the stack walk, so the files
//! stay open and each sample is one `pread` per thread. The task list (and the map between our
//! thread ids and the target's, which differ inside a PID namespace) is re-read only when a
//! walk names a thread we do not know, at most every [`RESCAN_EVERY`].

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::time::{Duration, Instant};

use strobe_remote::procfs::{self, ProcStat};
use strobe_remote::RemoteError;

/// Least time between two scans of `/proc/PID/task`.
const RESCAN_EVERY: Duration = Duration::from_millis(50);

#[derive(Debug)]
struct Task {
    stat: File,
    state: Option<char>,
}

/// See the module documentation.
#[derive(Debug)]
pub(crate) struct KernelThreads {
    pid: i32,
    /// By our (host) thread id.
    tasks: HashMap<u32, Task>,
    /// The target's thread id → ours.
    inner_to_host: HashMap<u32, u32>,
    last_scan: Option<Instant>,
    buf: Vec<u8>,
}

impl KernelThreads {
    pub(crate) fn new(pid: i32) -> KernelThreads {
        KernelThreads {
            pid,
            tasks: HashMap::new(),
            inner_to_host: HashMap::new(),
            last_scan: None,
            buf: vec![0; 512],
        }
    }

    /// Re-list the threads (unless that was done less than [`RESCAN_EVERY`] ago).
    pub(crate) fn rescan(&mut self) -> Result<(), RemoteError> {
        if self.last_scan.is_some_and(|t| t.elapsed() < RESCAN_EVERY) {
            return Ok(());
        }
        self.last_scan = Some(Instant::now());
        let tids = procfs::tasks(self.pid)?;
        self.tasks.retain(|tid, _| tids.contains(tid));
        for tid in tids {
            if self.tasks.contains_key(&tid) {
                continue;
            }
            let path = procfs::proc_dir(self.pid).join(format!("task/{tid}/stat"));
            // A thread that exited between the listing and the open is simply not there.
            if let Ok(stat) = File::open(path) {
                self.tasks.insert(tid, Task { stat, state: None });
            }
        }
        // Without NSpid (kernels before 4.1) both views are the same.
        let host_to_inner = procfs::namespaced_tids(self.pid).unwrap_or_default();
        self.inner_to_host = self
            .tasks
            .keys()
            .map(|&h| (host_to_inner.get(&h).copied().unwrap_or(h), h))
            .collect();
        Ok(())
    }

    /// Read every known thread's state; threads that exited are forgotten.
    pub(crate) fn read_states(&mut self) {
        let buf = &mut self.buf;
        self.tasks
            .retain(|_, task| match task.stat.read_at(buf, 0) {
                Ok(n) => {
                    task.state = std::str::from_utf8(buf.get(..n).unwrap_or(&[]))
                        .ok()
                        .and_then(ProcStat::parse)
                        .map(|s| s.state);
                    true
                }
                Err(_) => false,
            });
    }

    /// Our id of the thread the target calls `inner`, if known.
    pub(crate) fn host_of(&self, inner: u32) -> Option<u32> {
        self.inner_to_host.get(&inner).copied()
    }

    /// The target's id of our thread `host`.
    pub(crate) fn inner_of(&self, host: u32) -> u32 {
        self.inner_to_host
            .iter()
            .find(|(_, &h)| h == host)
            .map_or(host, |(&i, _)| i)
    }

    /// The scheduler state letter last read for our thread `host`.
    pub(crate) fn state(&self, host: u32) -> Option<char> {
        self.tasks.get(&host).and_then(|t| t.state)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn reads_our_own_threads() {
        let pid = std::process::id() as i32;
        let mut k = KernelThreads::new(pid);
        k.rescan().unwrap();
        k.read_states();
        let me = pid as u32;
        assert_eq!(k.host_of(me), Some(me));
        // This thread is running while it reads its own state.
        let tid = nix::unistd::gettid().as_raw() as u32;
        assert_eq!(k.state(tid), Some('R'));
    }
}
