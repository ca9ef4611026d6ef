//! `--subprocesses`: finding the target's descendants and attaching to the Python ones.
//!
//! A scout thread lists the root process's descendants (children, their children, ...) every
//! [`SCAN_EVERY`] from `/proc/PID/task/TID/children`, and attaches to each one it has not
//! attached to yet. Attaching reads the process's memory map and its interpreter's ELF
//! symbols, milliseconds of work that would make the sampler late if it did it; the scout
//! hands each attached [`Target`] to the sampler thread through a channel, which the sampler
//! drains once per round (one `try_recv` when nothing is new).
//!
//! A process that cannot be attached (not Python, like a shell between Python processes, or a
//! Python still starting up) is tried again on every scan for its first
//! [`EAGER_FOR`], then every [`PATIENT_EVERY`]. A process is known by its PID and start
//! time, so a PID reused by a new process is tried afresh. When the sampler drops a process
//! (it exited, or replaced its program with `exec`), it tells the scout, which then treats the
//! PID as new: a `fork` + `exec` child is attached again once it runs its new program.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use strobe_remote::procfs;
use strobe_walker::RawSample;

use strobe_locate::LocateError;

use strobe_target::{AttachError, Target};

use crate::lifecycle::read_auxv;

/// How often the descendants are listed (a few `/proc` reads per process: ~0.3% of a core
/// for a root with a handful of threads and workers; a pool's short-lived workers are found
/// before they are done).
pub(crate) const SCAN_EVERY: Duration = Duration::from_millis(20);
/// How often while the root process itself is still to be attached (during its first
/// [`EAGER_FOR`]).
const ROOT_SCAN_EVERY: Duration = Duration::from_millis(5);
/// How long after it is first seen a process is tried on every scan, before falling back to
/// [`PATIENT_EVERY`] (a Python process is attachable once its interpreter is initialised).
const EAGER_FOR: Duration = Duration::from_secs(2);
/// After that, how often a process that could not be attached is tried again.
const PATIENT_EVERY: Duration = Duration::from_secs(1);
/// Descendants followed at most (a fork bomb must not make the scout's work unbounded).
const MAX_DESCENDANTS: usize = 4096;
/// Longest command line kept for a process's root frame.
pub(crate) const LABEL_CHARS: usize = 100;

/// What the scout found.
pub(crate) enum Scouted {
    /// A newly attached process.
    Attached(Box<Found>),
    /// A process that looks like Python but could not be attached for [`EAGER_FOR`]
    /// (permission denied, a version strobe does not know, ...): said once per process.
    Failed {
        pid: i32,
        command: String,
        error: String,
    },
}

/// A newly attached process.
pub(crate) struct Found {
    pub(crate) pid: i32,
    pub(crate) target: Target,
    /// Its command line, as the label of its root frame.
    pub(crate) command: String,
    /// Its auxiliary vector read before attaching (see `lifecycle::read_auxv`): a later
    /// `exec` changes it, even one that happened while attaching.
    pub(crate) auxv: Option<Vec<u8>>,
}

/// The scout thread (see the module documentation). Dropping it stops the thread.
pub(crate) struct Scout {
    found: Receiver<Scouted>,
    forget: Sender<i32>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Scout {
    /// Start scouting the descendants of `root`, and `root` itself when `with_root` (it is not
    /// sampled yet).
    pub(crate) fn start(root: i32, with_root: bool) -> std::io::Result<Scout> {
        let (found_tx, found) = mpsc::channel();
        let (forget, forget_rx) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = Arc::clone(&stop);
            std::thread::Builder::new()
                .name("strobe-scout".into())
                .spawn(move || scout(root, with_root, &found_tx, &forget_rx, &stop))?
        };
        Ok(Scout {
            found,
            forget,
            stop,
            thread: Some(thread),
        })
    }

    /// The next thing found since the last call, if any.
    pub(crate) fn next_found(&self) -> Option<Scouted> {
        self.found.try_recv().ok()
    }

    /// The sampler no longer samples `pid`: if it is still a descendant (it replaced its
    /// program), attach to it again.
    pub(crate) fn forget(&self, pid: i32) {
        let _ = self.forget.send(pid);
    }
}

impl Drop for Scout {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            let _ = t.join();
        }
    }
}

/// What the scout knows of one descendant.
struct Known {
    start_time: Option<u64>,
    attached: bool,
    /// A failure to attach was reported.
    reported: bool,
    first_seen: Instant,
    next_try: Instant,
}

impl Known {
    fn new(start_time: Option<u64>, now: Instant) -> Known {
        Known {
            start_time,
            attached: false,
            reported: false,
            first_seen: now,
            next_try: now,
        }
    }
}

fn scout(
    root: i32,
    with_root: bool,
    found: &Sender<Scouted>,
    forget: &Receiver<i32>,
    stop: &AtomicBool,
) {
    let mut known: HashMap<i32, Known> = HashMap::new();
    // Whether the root is still to be attached (then scans are more frequent, as they were
    // when the command was attached directly: a short script must not be missed).
    let mut root_pending = with_root;
    while !stop.load(Ordering::SeqCst) {
        while let Ok(pid) = forget.try_recv() {
            known.remove(&pid);
        }
        let mut family = descendants(root);
        if root_pending {
            family.insert(0, root);
        }
        let members: HashSet<i32> = family.iter().copied().collect();
        known.retain(|pid, _| members.contains(pid));
        for pid in family {
            if stop.load(Ordering::SeqCst) {
                return;
            }
            let Ok(st) = procfs::stat(pid) else { continue };
            if matches!(st.state, 'Z' | 'X' | 'x') {
                continue;
            }
            let now = Instant::now();
            let k = known
                .entry(pid)
                .or_insert_with(|| Known::new(st.start_time, now));
            if k.start_time != st.start_time {
                // The PID now belongs to another process.
                *k = Known::new(st.start_time, now);
            }
            if k.attached || now < k.next_try {
                continue;
            }
            let auxv = read_auxv(pid);
            match Target::attach(pid) {
                Ok(mut target) => {
                    k.attached = true;
                    root_pending &= pid != root;
                    // One walk here decodes the code objects of the process's current
                    // stacks, which the sampler's first round would otherwise do on its
                    // clock (making that sample late). Its result is not used.
                    let _ = target.walker_mut().sample_into(&mut RawSample::new());
                    let f = Found {
                        pid,
                        target,
                        command: command_of(pid, st.comm),
                        auxv,
                    };
                    if found.send(Scouted::Attached(Box::new(f))).is_err() {
                        // The sampler has ended.
                        return;
                    }
                }
                Err(e) => {
                    if now.duration_since(k.first_seen) >= EAGER_FOR {
                        k.next_try = now + PATIENT_EVERY;
                        if !k.reported && looks_like_python(&e) {
                            k.reported = true;
                            let failed = Scouted::Failed {
                                pid,
                                command: command_of(pid, st.comm),
                                error: e.to_string(),
                            };
                            if found.send(failed).is_err() {
                                return;
                            }
                        }
                    }
                }
            }
        }
        let eager = root_pending
            && known
                .get(&root)
                .is_some_and(|k| k.first_seen.elapsed() < EAGER_FOR);
        std::thread::park_timeout(if eager { ROOT_SCAN_EVERY } else { SCAN_EVERY });
    }
}

/// The command line of `pid` for its root frame, else its `comm`.
fn command_of(pid: i32, comm: String) -> String {
    procfs::command_line(pid, LABEL_CHARS)
        .ok()
        .filter(|c| !c.is_empty())
        .unwrap_or(comm)
}

/// Whether a failure to attach is worth telling the user: the process looks like Python (or
/// could not be looked at), as opposed to being something else (a shell) or gone. A program
/// named like Python in which no interpreter was found (a stripped build) counts as Python.
fn looks_like_python(e: &AttachError) -> bool {
    if let AttachError::Locate(LocateError::NotPython { name, .. }) = e {
        return name.contains("python");
    }
    !matches!(
        e,
        AttachError::Exited { .. }
            | AttachError::Locate(
                LocateError::Exited { .. }
                    | LocateError::Zombie { .. }
                    | LocateError::NoSuchProcess { .. }
                    | LocateError::KernelThread { .. }
            )
    )
}

/// `root`'s descendants (not `root` itself), breadth first, at most [`MAX_DESCENDANTS`].
/// Processes that exit while being listed are left out.
pub(crate) fn descendants(root: i32) -> Vec<i32> {
    let mut out: Vec<i32> = Vec::new();
    let mut seen: HashSet<i32> = HashSet::new();
    let mut next = 0;
    let mut parent = root;
    loop {
        for c in procfs::children(parent).unwrap_or_default() {
            if out.len() >= MAX_DESCENDANTS {
                return out;
            }
            // A PID cannot be its own ancestor, but a PID reused while we list could look so.
            if c != root && seen.insert(c) {
                out.push(c);
            }
        }
        let Some(&p) = out.get(next) else {
            return out;
        };
        parent = p;
        next += 1;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};

    #[test]
    fn descendants_include_grandchildren() {
        // sh starts a second sh that starts sleep; the inner one says both PIDs once both
        // exist (`$$` is the inner shell, `$!` its sleep).
        let mut outer = Command::new("sh")
            .args(["-c", "sh -c 'sleep 30 & echo $$ $!; wait' & wait"])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(outer.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let pids: Vec<i32> = line
            .split_whitespace()
            .map(|p| p.parse().unwrap())
            .collect();
        let (inner, sleep) = (pids[0], pids[1]);
        let found = descendants(outer.id() as i32);
        assert_eq!(found, vec![inner, sleep]);
        assert_eq!(descendants(sleep), Vec::<i32>::new());
        let _ =
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(sleep), nix::sys::signal::SIGKILL);
        outer.wait().unwrap();
    }
}
