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
//! A second stop signal exits at once (see [`StopSignals`]), skipping every destructor, and so
//! does the first one for a command that exits when interrupted ([`exit_at_stop_signal`]): the
//! paths registered with [`create_removed_on_exit`] (the streamed formats' spill directories,
//! an output's temporary file) are removed first, so that nothing is left behind.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
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
/// paths registered with [`create_removed_on_exit`]. A target frozen by
/// `--blocking` at that moment is released by the kernel when strobe exits.
///
/// Child processes inherit the signal mask across `exec` (Rust's `Command` does not reset it),
/// so start any child *before* installing this, or it runs with these signals blocked and
/// cannot be interrupted or terminated.
#[derive(Debug)]
pub struct StopSignals {
    rx: Receiver<Signal>,
    wake: Arc<Mutex<Option<Wake>>>,
}

/// Who is told that a signal was sent to the receiver.
enum Wake {
    /// A thread waiting in `park_timeout`.
    Unpark(Thread),
    /// A call (e.g. ringing a bell a `poll` waits on).
    Call(Box<dyn Fn() + Send>),
}

impl std::fmt::Debug for Wake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Wake::Unpark(t) => f.debug_tuple("Unpark").field(t).finish(),
            Wake::Call(_) => f.write_str("Call"),
        }
    }
}

impl StopSignals {
    /// See the type documentation.
    pub fn install() -> Result<StopSignals, nix::Error> {
        let (tx, rx) = mpsc::channel();
        let wake: Arc<Mutex<Option<Wake>>> = Arc::default();
        let waker = Arc::clone(&wake);
        let mut seen = 0;
        wait_for_stop_signals(move |sig| {
            seen += 1;
            if seen > 1 {
                exit_now(128 + sig as i32);
            }
            // The receiver may be gone while strobe finishes; nothing to tell then.
            let _ = tx.send(sig);
            match waker
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .as_ref()
            {
                Some(Wake::Unpark(t)) => t.unpark(),
                Some(Wake::Call(f)) => f(),
                None => {}
            }
        })?;
        Ok(StopSignals { rx, wake })
    }

    /// After a signal is sent to [`StopSignals::receiver`], the calling thread is unparked, so
    /// that it can wait with `std::thread::park_timeout` for a signal or other news at once.
    pub fn unpark_this_thread_on_signal(&self) {
        self.wake_with(Wake::Unpark(std::thread::current()));
    }

    /// After a signal is sent to [`StopSignals::receiver`], `f` is called (on the thread that
    /// collects the signals), e.g. to wake a thread waiting in `poll`. Replaces
    /// [`StopSignals::unpark_this_thread_on_signal`] and an earlier call.
    pub fn call_on_signal(&self, f: impl Fn() + Send + 'static) {
        self.wake_with(Wake::Call(Box::new(f)));
    }

    fn wake_with(&self, wake: Wake) {
        *self.wake.lock().unwrap_or_else(PoisonError::into_inner) = Some(wake);
    }

    /// Where the first signal arrives.
    pub fn receiver(&self) -> &Receiver<Signal> {
        &self.rx
    }
}

/// For a command with nothing worth finishing once interrupted (`convert`): the first SIGINT,
/// SIGTERM or SIGHUP calls `note` (to say so in a line) and exits at once with status
/// 128 + signal number, as [`StopSignals`]' second signal does, after removing every path
/// registered with [`create_removed_on_exit`]. Blocks the signals in the calling thread (call
/// it before starting any thread) and collects them in a thread of its own, so the exit comes
/// whatever the calling thread is doing, even waiting in a `read`.
pub fn exit_at_stop_signal(note: impl FnOnce(Signal) + Send + 'static) -> Result<(), nix::Error> {
    let mut note = Some(note);
    wait_for_stop_signals(move |sig| {
        if let Some(note) = note.take() {
            note(sig);
        }
        exit_now(128 + sig as i32);
    })
}

/// Blocks [`STOP_SIGNALS`] in the calling thread and starts a thread that hands each one to
/// `on_signal`.
fn wait_for_stop_signals(
    mut on_signal: impl FnMut(Signal) + Send + 'static,
) -> Result<(), nix::Error> {
    let mut set = SigSet::empty();
    for sig in STOP_SIGNALS {
        set.add(sig);
    }
    set.thread_block()?;
    std::thread::Builder::new()
        .name("strobe-signals".into())
        .spawn(move || {
            // `wait` only fails for an invalid set; then signals stay blocked, pending.
            while let Ok(sig) = set.wait() {
                on_signal(sig);
            }
        })
        .map_err(|_| nix::Error::EAGAIN)?;
    Ok(())
}

/// Paths (spill directories, temporary output files) to remove before exiting at a stop
/// signal that exits at once. Its lock is held by such an exit to the end, and by whatever
/// creates or renames a registered path or creates a file in a registered directory, so that
/// each of those either happens before the exit's removal or never.
static REMOVE_ON_EXIT: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

fn registry() -> MutexGuard<'static, Vec<PathBuf>> {
    REMOVE_ON_EXIT
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
}

/// Creates `path` with `create` and registers it to be removed (a directory with everything
/// in it) should strobe exit at a stop signal; [`remove_registered`] removes it and the
/// registration, [`rename_registered`] renames it and drops the registration. `create` runs
/// under the registry's lock, which an exit holds to the end, so the path is either removed by
/// the exit or never created.
pub fn create_removed_on_exit<T>(
    path: &Path,
    create: impl FnOnce(&Path) -> std::io::Result<T>,
) -> std::io::Result<T> {
    let mut paths = registry();
    let made = create(path)?;
    paths.push(path.to_owned());
    Ok(made)
}

/// Creates the directory `path` registered as [`create_removed_on_exit`] does.
pub fn create_dir_removed_on_exit(path: &Path) -> std::io::Result<()> {
    create_removed_on_exit(path, |p| std::fs::create_dir(p))
}

/// Runs `create` (which makes a file in a registered directory) under the registry's lock, so
/// that an exit removing the directory cannot list it before the new file exists and then fail
/// to remove the directory because of it.
pub fn create_in_registered_dir<T>(
    create: impl FnOnce() -> std::io::Result<T>,
) -> std::io::Result<T> {
    let _paths = registry();
    create()
}

/// Renames the registered path `from` to `to` and drops its registration, both under the
/// registry's lock: an exit comes before the rename (and removes `from`) or after it.
pub fn rename_registered(from: &Path, to: &Path) -> std::io::Result<()> {
    let mut paths = registry();
    std::fs::rename(from, to)?;
    paths.retain(|p| p != from);
    Ok(())
}

/// Removes a path made by [`create_removed_on_exit`] (a directory with everything in it), and
/// then its registration (so that an exit in between removes what is left of it).
pub fn remove_registered(path: &Path) -> std::io::Result<()> {
    let removed = remove_path(path);
    registry().retain(|p| p != path);
    removed
}

/// Removes `path`: a directory with everything in it, anything else as a file.
fn remove_path(path: &Path) -> std::io::Result<()> {
    if std::fs::symlink_metadata(path)?.is_dir() {
        std::fs::remove_dir_all(path)
    } else {
        std::fs::remove_file(path)
    }
}

/// Removes the registered paths and exits with `code`, holding the registry's lock so that no
/// path is registered, renamed or created in a registered directory meanwhile.
fn exit_now(code: i32) -> ! {
    let paths = registry();
    for p in paths.iter() {
        // Nothing more can be done about a failure: strobe is exiting.
        let _ = remove_path(p);
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
        remove_registered(&dir).unwrap();
        assert!(!dir.exists() && !registered());
    }

    #[test]
    fn registered_files_are_removed_or_renamed_with_their_registration() {
        let base = std::env::temp_dir().join(format!("strobe-signals-f-{}", std::process::id()));
        let registered = |p: &Path| REMOVE_ON_EXIT.lock().unwrap().iter().any(|d| d == p);
        let (tmp, out) = (base.with_extension("tmp"), base.with_extension("out"));
        create_removed_on_exit(&tmp, |p| std::fs::File::create_new(p)).unwrap();
        assert!(tmp.is_file() && registered(&tmp));
        rename_registered(&tmp, &out).unwrap();
        assert!(!tmp.exists() && out.is_file() && !registered(&tmp));
        create_removed_on_exit(&tmp, |p| std::fs::File::create_new(p)).unwrap();
        remove_registered(&tmp).unwrap();
        assert!(!tmp.exists() && !registered(&tmp));
        std::fs::remove_file(&out).unwrap();
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
