//! Who a thread is: its `threading` name, and its kernel id where the interpreter does not
//! record it (≤3.10, looked up from its `pthread_t`). Both are looked up rarely and cached.
//!
//! Names are re-read when a thread appears (at most every [`NAMES_NEW_EVERY`]) and at least
//! every [`NAMES_EVERY`], so that renames show up. Each lookup starts a new *generation*: a
//! thread's memo takes its name from the cache again only when the generation changed. A
//! lookup costs one batched read when nothing changed: each interpreter's
//! [`ThreadNameCache`] reads again what the last lookup read and walks only what changed.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use strobe_aggregate::FxBuild;
use strobe_walker::threadnames::ThreadNameCache;
use strobe_walker::RawThread;

use strobe_target::Target;

use crate::threads::KernelThreads;

/// Least time between two looks at `threading`'s thread names (they are re-read when a thread
/// appears, and at least this often so that renames show up).
const NAMES_EVERY: Duration = Duration::from_secs(1);
/// Least time between two name lookups caused by new threads.
const NAMES_NEW_EVERY: Duration = Duration::from_millis(50);
/// Least time between two lookups of unknown threads' kernel ids (≤3.10 interpreters), and
/// between two checks that the threads already looked up still live.
const PTHREAD_LOOKUP_EVERY: Duration = Duration::from_millis(100);

/// The `threading` names of one process's threads (see the module documentation).
#[derive(Debug)]
pub(crate) struct ThreadNames {
    /// (interpreter, thread ident) → `threading` name.
    names: HashMap<(u64, u64), Arc<str>, FxBuild>,
    /// Bumped whenever `names` is looked up again (memos then look their name up again).
    generation: u64,
    /// A thread appeared since the last lookup.
    pending: bool,
    /// When names were last looked up (ns since the start).
    at: Option<u64>,
    /// Per interpreter, what the last lookup read: a lookup reads it again in one batch and
    /// walks only what changed.
    caches: HashMap<u64, ThreadNameCache, FxBuild>,
}

impl ThreadNames {
    pub(crate) fn new() -> ThreadNames {
        ThreadNames {
            names: HashMap::default(),
            generation: 1,
            pending: false,
            at: None,
            caches: HashMap::default(),
        }
    }

    /// A thread appeared: look names up again soon.
    pub(crate) fn thread_appeared(&mut self) {
        self.pending = true;
    }

    /// The number of the last lookup.
    pub(crate) fn generation(&self) -> u64 {
        self.generation
    }

    /// The name of thread `ident` of interpreter `interp`, as of the last lookup.
    pub(crate) fn get(&self, interp: u64, ident: u64) -> Option<&Arc<str>> {
        self.names.get(&(interp, ident))
    }

    /// Re-read the names of the threads in `stacks` if a thread appeared (at most every
    /// [`NAMES_NEW_EVERY`]), or every [`NAMES_EVERY`]. Returns the text of a failure that
    /// will not go away by itself (a transient one is retried at the next refresh).
    pub(crate) fn refresh(
        &mut self,
        target: &mut Target,
        stacks: &[RawThread],
        now_ns: u64,
    ) -> Option<String> {
        let since = self.at.map(|at| now_ns.saturating_sub(at));
        let due = since.is_none_or(|d| d >= NAMES_EVERY.as_nanos() as u64);
        // A new thread that `threading` does not know (e.g. started by C code) must not cause
        // a lookup every round.
        let recent = since.is_some_and(|d| d < NAMES_NEW_EVERY.as_nanos() as u64);
        if !(due || (self.pending && !recent)) {
            return None;
        }
        self.at = Some(now_ns);
        self.pending = false;
        self.generation += 1;
        let mut lasting = None;
        let mut interps: Vec<u64> = stacks.iter().map(|t| t.interp_addr).collect();
        interps.sort_unstable();
        interps.dedup();
        self.caches.retain(|i, _| interps.binary_search(i).is_ok());
        let walker = target.walker_mut();
        for &interp in &interps {
            let cache = self.caches.entry(interp).or_default();
            match cache.lookup(walker.memory(), walker.layout(), interp) {
                Ok(found) => {
                    for (ident, name) in found {
                        let key = (interp, ident);
                        if self.names.get(&key).is_none_or(|n| **n != *name) {
                            self.names.insert(key, name.into());
                        }
                    }
                }
                Err(e) if e.is_transient() => {}
                Err(e) => {
                    lasting.get_or_insert_with(|| e.to_string());
                }
            }
        }
        let live: HashSet<(u64, u64), FxBuild> = stacks
            .iter()
            .map(|t| (t.interp_addr, t.thread_id))
            .collect();
        self.names.retain(|k, _| live.contains(k));
        lasting
    }
}

/// Kernel ids of threads whose interpreter does not record them (≤3.10), by `pthread_t`.
#[derive(Debug, Default)]
pub(crate) struct PthreadTids {
    /// Thread ident → our kernel thread id.
    tids: HashMap<u64, u32, FxBuild>,
    /// When they were last looked up or checked (ns since the start).
    at: Option<u64>,
}

impl PthreadTids {
    /// Our kernel id of the thread whose ident is `ident`, if looked up.
    pub(crate) fn get(&self, ident: u64) -> Option<u32> {
        self.tids.get(&ident).copied()
    }

    /// Look up the threads of `stacks` not known yet, and drop those whose task is gone, at
    /// most every [`PTHREAD_LOOKUP_EVERY`]. Returns the text of a failed lookup.
    pub(crate) fn refresh(
        &mut self,
        kernel: &mut KernelThreads,
        target: &Target,
        stacks: &[RawThread],
        now_ns: u64,
    ) -> Option<String> {
        let every = PTHREAD_LOOKUP_EVERY.as_nanos() as u64;
        if self.at.is_some_and(|at| now_ns.saturating_sub(at) < every) {
            return None;
        }
        // A cached id whose task is gone belonged to a thread that exited; its ident may have
        // been reused by a new thread. Checked as often as new threads are looked up.
        if !self.tids.is_empty() {
            self.at = Some(now_ns);
            self.tids.retain(|_, host| kernel.alive(*host));
        }
        let unknown = pthreads_to_look_up(stacks, &self.tids);
        if unknown.is_empty() {
            return None;
        }
        self.at = Some(now_ns);
        match target.native_tids(&unknown) {
            Ok(found) => {
                self.tids.extend(found);
                None
            }
            Err(e) => Some(e.to_string()),
        }
    }
}

/// The idents (`pthread_t`) of threads whose kernel id is neither recorded by the interpreter
/// nor cached. A thread state whose ident is still 0 belongs to a thread being started (the
/// new thread has not run yet, 3.11+ records its kernel id as soon as it does): there is no
/// `pthread_t` to read.
fn pthreads_to_look_up(stacks: &[RawThread], cached: &HashMap<u64, u32, FxBuild>) -> Vec<u64> {
    stacks
        .iter()
        .filter(|t| t.native_id.is_none() && t.thread_id != 0)
        .filter(|t| !cached.contains_key(&t.thread_id))
        .map(|t| t.thread_id)
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn thread(ident: u64, native_id: Option<u32>) -> RawThread {
        RawThread {
            interp_addr: 0x1000,
            tstate_addr: 0x2000,
            thread_id: ident,
            native_id,
            walked: true,
            ..RawThread::default()
        }
    }

    #[test]
    fn threads_not_started_yet_are_not_looked_up_by_pthread() {
        let starting = thread(0, None);
        let cached_thread = thread(0x7f00_0000_1000, None);
        let recorded = thread(0x7f00_0000_2000, Some(4242));
        let unknown = thread(0x7f00_0000_3000, None);
        let mut cached = HashMap::default();
        cached.insert(0x7f00_0000_1000, 77);
        let stacks = [starting, cached_thread, recorded, unknown];
        assert_eq!(
            pthreads_to_look_up(&stacks, &cached),
            vec![0x7f00_0000_3000]
        );
    }
}
