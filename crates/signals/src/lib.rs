//! Terminating signals: holding them off while a target is frozen, and turning them into a
//! "stop recording" request.
//!
//! Neither needs a signal handler (which would need `unsafe` and could only touch atomics):
//! both block the signals and let them be collected synchronously.
//!
//! [`DeferSignals`]: a frozen target must be resumed before strobe dies. Instead of handlers (which would have to
//! reach the ptrace state from signal context), the signals are blocked for the frozen window:
//! one that arrives stays pending, the `Freeze` guard detaches, then [`DeferSignals`] restores
//! the old mask and the pending signal takes its default action (strobe exits) with the target
//! already running again.
//!
//! A second stop signal exits at once (see [`StopSignals`]), skipping every destructor: the
//! directories registered with [`create_dir_removed_on_exit`] (the folded formats' spill
//! directories) are removed first, so that nothing is left behind.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::Thread;

/// The signals that end a recording: Ctrl-C, `kill`, and the terminal going away.
pub const STOP_SIGNALS: [Signal; 3] = [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP];

/// Turns SIGINT, SIGTERM and SIGHUP into messages, so that a recording can end cleanly and
/// still write its output.
///
/// [`StopSignals::install`] blocks the signals in the calling thread, and so in every thread
/// it starts afterwards (threads inherit the mask; call it before starting any), then starts
/// a thread that collects them with `sigwait`. The first signal is sent on
/// [`StopSignals::receiver`]; a second one means the user does not want to wait for the
/// output to be written, and exits at once with status 128 + signal number, after removing the
/// directories registered with [`create_dir_removed_on_exit`]. A target frozen by
/// `--blocking` at that moment is released by the kernel when strobe exits.
///
/// Child processes inherit the signal mask across `exec` (Rust's `Command` does not reset it),
/// so start any child *before* installing this, or it runs with these signals blocked and
/// cannot be interrupted or terminated.
#[derive(Debug)]
pub struct StopSignals {
    rx: Receiver<Signal>,
    wake: Arc<Mutex<Option<Thread>>>,
}

impl StopSignals {
    /// See the type documentation.
    pub fn install() -> Result<StopSignals, nix::Error> {
        let mut set = SigSet::empty();
        for sig in STOP_SIGNALS {
            set.add(sig);
        }
        set.thread_block()?;
        let (tx, rx) = mpsc::channel();
        let wake: Arc<Mutex<Option<Thread>>> = Arc::default();
        let waker = Arc::clone(&wake);
        std::thread::Builder::new()
            .name("strobe-signals".into())
            .spawn(move || {
                let mut seen = 0;
                // `wait` only fails for an invalid set; then signals stay blocked, pending.
                while let Ok(sig) = set.wait() {
                    seen += 1;
                    if seen > 1 {
                        exit_now(128 + sig as i32);
                    }
                    // The receiver may be gone while strobe finishes; nothing to tell then.
                    let _ = tx.send(sig);
                    if let Some(t) = waker
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .as_ref()
                    {
                        t.unpark();
                    }
                }
            })
            .map_err(|_| nix::Error::EAGAIN)?;
        Ok(StopSignals { rx, wake })
    }

    /// After a signal is sent to [`StopSignals::receiver`], the calling thread is unparked, so
    /// that it can wait with `std::thread::park_timeout` for a signal or other news at once.
    pub fn unpark_this_thread_on_signal(&self) {
        *self.wake.lock().unwrap_or_else(PoisonError::into_inner) = Some(std::thread::current());
    }

    /// Where the first signal arrives.
    pub fn receiver(&self) -> &Receiver<Signal> {
        &self.rx
    }
}

/// Directories to remove before exiting at a second stop signal.
static REMOVE_ON_EXIT: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// Creates the directory `path` and registers it to be removed, with everything in it, should
/// strobe exit at a second stop signal; [`remove_registered_dir`] removes it and the
/// registration. The directory is created under the registry's lock, which an exit holds to the
/// end, so it is either removed by the exit or never created.
pub fn create_dir_removed_on_exit(path: &Path) -> std::io::Result<()> {
    let mut dirs = REMOVE_ON_EXIT
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    std::fs::create_dir(path)?;
    dirs.push(path.to_owned());
    Ok(())
}

/// Removes a directory made by [`create_dir_removed_on_exit`], with everything in it, and then
/// its registration (so that an exit in between removes what is left of it).
pub fn remove_registered_dir(path: &Path) -> std::io::Result<()> {
    let removed = std::fs::remove_dir_all(path);
    REMOVE_ON_EXIT
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .retain(|d| d != path);
    removed
}

/// Removes the registered directories and exits with `code`, holding the registry's lock so
/// that no directory is registered meanwhile. A file being created in one of them at that
/// very moment can keep it from being removed.
fn exit_now(code: i32) -> ! {
    let dirs = REMOVE_ON_EXIT
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    for d in dirs.iter() {
        // Nothing more can be done about a failure: strobe is exiting.
        let _ = std::fs::remove_dir_all(d);
    }
    std::process::exit(code)
}

/// Guard: the terminating signals are blocked on this thread until it drops.
///
/// Declare it *before* the freeze guard so that it drops *after* it.
#[derive(Debug)]
pub struct DeferSignals {
    previous: Option<SigSet>,
}

impl DeferSignals {
    /// Block SIGINT, SIGTERM, SIGHUP and SIGQUIT on the calling thread.
    ///
    /// strobe reads the target from a single thread, so the thread mask is the process mask that
    /// matters. Failure to block (which `pthread_sigmask` only reports for invalid arguments)
    /// leaves signals unblocked and is reported as an error.
    pub fn new() -> Result<DeferSignals, nix::Error> {
        let mut set = SigSet::empty();
        for sig in [
            Signal::SIGINT,
            Signal::SIGTERM,
            Signal::SIGHUP,
            Signal::SIGQUIT,
        ] {
            set.add(sig);
        }
        let previous = set.thread_swap_mask(SigmaskHow::SIG_BLOCK)?;
        Ok(DeferSignals {
            previous: Some(previous),
        })
    }
}

impl Drop for DeferSignals {
    fn drop(&mut self) {
        if let Some(previous) = self.previous.take() {
            // Nothing useful can be done if restoring fails; the process is about to continue
            // with the signals blocked, which is safe (just less responsive).
            let _ = previous.thread_set_mask();
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn registered_directories_are_created_and_removed_with_their_registration() {
        let dir = std::env::temp_dir().join(format!("strobe-signals-{}", std::process::id()));
        let registered = || REMOVE_ON_EXIT.lock().unwrap().contains(&dir);
        create_dir_removed_on_exit(&dir).unwrap();
        assert!(dir.is_dir() && registered());
        std::fs::write(dir.join("run-1"), b"x").unwrap();
        // An existing directory is an error, and not registered twice.
        assert!(create_dir_removed_on_exit(&dir).is_err());
        remove_registered_dir(&dir).unwrap();
        assert!(!dir.exists() && !registered());
    }

    #[test]
    fn blocks_then_restores() {
        let before = SigSet::thread_get_mask().unwrap();
        assert!(!before.contains(Signal::SIGTERM));
        {
            let _guard = DeferSignals::new().unwrap();
            let during = SigSet::thread_get_mask().unwrap();
            assert!(during.contains(Signal::SIGTERM));
            assert!(during.contains(Signal::SIGINT));
        }
        let after = SigSet::thread_get_mask().unwrap();
        assert!(!after.contains(Signal::SIGTERM));
    }
}
