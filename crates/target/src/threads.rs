//! Threads as the kernel sees them: scheduler states, ids across PID namespaces, and kernel
//! ids found from glibc's thread descriptors where the interpreter does not record them
//! (≤3.10); and `threading`'s thread names.

use std::collections::{HashMap, HashSet};

use strobe_corefile::Core;
use strobe_remote::{procfs, RemoteError};
use strobe_walker::WalkError;

use crate::error::{exited_or, AttachError};
use crate::Target;

impl Target {
    /// `threading` thread names (ident → name) of the interpreter at `interp`.
    pub fn thread_names(&self, interp: u64) -> Result<HashMap<u64, String>, WalkError> {
        strobe_walker::threadnames::thread_names(self.walker.memory(), self.walker.layout(), interp)
    }

    /// Kernel thread ids (ours) of threads given by ident, for interpreters that do not record
    /// them (≤3.10), from glibc's thread descriptors (`strobe_walker::pthreads`).
    pub fn native_tids(&self, idents: &[u64]) -> Result<HashMap<u64, u32>, AttachError> {
        let pid = self.pid();
        if let Some(core) = &self.core {
            // The core's thread ids are the process's own; there is no other view of them.
            let live: HashSet<u32> = core.threads().iter().map(|t| t.tid).collect();
            return strobe_walker::pthreads::tids_from_descriptors(
                self.walker.memory(),
                idents,
                &live,
                core.pid(),
            )
            .map_err(RemoteError::Mem)?
            .ok_or(AttachError::PthreadCalibration {
                pid,
                threads: idents.len(),
            });
        }
        // The descriptors hold ids in the target's PID namespace; translate them to ours.
        let host_to_ns = procfs::namespaced_tids(pid)?;
        let main_ns = host_to_ns.get(&(pid as u32)).copied().unwrap_or(pid as u32);
        let ns_to_host: HashMap<u32, u32> = host_to_ns.into_iter().map(|(h, n)| (n, h)).collect();
        let live: HashSet<u32> = ns_to_host.keys().copied().collect();
        let found = strobe_walker::pthreads::tids_from_descriptors(
            self.walker.memory(),
            idents,
            &live,
            main_ns,
        )
        .map_err(RemoteError::Mem)?
        .ok_or(AttachError::PthreadCalibration {
            pid,
            threads: idents.len(),
        })?;
        Ok(found
            .into_iter()
            .filter_map(|(ident, ns)| Some((ident, *ns_to_host.get(&ns)?)))
            .collect())
    }
}

/// The kernel's view of the target's threads.
#[derive(Debug, Default)]
pub(crate) struct KernelThreads {
    /// Scheduler state letter by thread id (ours).
    pub(crate) states: HashMap<u32, char>,
    /// Our thread id → the target's (they differ when the target is in a PID namespace).
    host_to_inner: HashMap<u32, u32>,
}

impl KernelThreads {
    pub(crate) fn read(pid: i32) -> Result<KernelThreads, AttachError> {
        // One listing of the threads and one `status` file each (without NSpid, kernels
        // before 4.1, both views of the ids are the same).
        let (states, host_to_inner) =
            procfs::thread_states_and_tids(pid).map_err(|e| exited_or(pid, e.into()))?;
        Ok(KernelThreads {
            states,
            host_to_inner,
        })
    }

    /// A core's threads: no scheduler states, every id the same both ways.
    pub(crate) fn of_core(core: &Core) -> KernelThreads {
        KernelThreads {
            states: HashMap::new(),
            host_to_inner: core.threads().iter().map(|t| (t.tid, t.tid)).collect(),
        }
    }

    pub(crate) fn inner_of(&self, host: u32) -> u32 {
        self.host_to_inner.get(&host).copied().unwrap_or(host)
    }

    /// Our id of the thread the target calls `inner`, only if it is known for sure: found in
    /// the task list, or the target shares our PID namespace (every id the same both ways).
    pub(crate) fn host_of_known(&self, inner: u32) -> Option<u32> {
        self.host_to_inner
            .iter()
            .find(|(_, &i)| i == inner)
            .map(|(&h, _)| h)
            .or_else(|| {
                self.host_to_inner
                    .iter()
                    .all(|(h, i)| h == i)
                    .then_some(inner)
            })
    }

    pub(crate) fn host_of(&self, inner: u32) -> Option<u32> {
        self.host_to_inner
            .iter()
            .find(|(_, &i)| i == inner)
            .map(|(&h, _)| h)
            .or(Some(inner))
    }
}
