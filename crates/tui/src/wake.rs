//! What wakes the event loop besides a key: a bell that other threads ring, and the terminal's
//! resize signal. The loop sleeps in one `poll(2)` on the terminal and these until the next
//! refresh (see [`crate::run`]): at ordinary sampling rates a wake-up costs more CPU than a
//! sample, so it wakes only when something it shows may have changed.
//!
//! * [`ViewBell`]: one end of a socket pair in the loop's poll set; its [`Ringer`] (any thread)
//!   writes a byte to the other end, once until the loop has looked. The collector thread rings
//!   it when sampling ends, and `strobe top` when a stop signal arrives.
//! * `Resizes`: a `signalfd` for `SIGWINCH`, which must be blocked in every thread for it to
//!   see the signal ([`block_resize_signal`], called before any thread starts). Without it the
//!   size is still read at each refresh.

use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};

/// The loop's end of the bell. See the module documentation.
#[derive(Debug)]
pub struct ViewBell {
    rx: UnixStream,
    ringer: Ringer,
}

/// Rings a [`ViewBell`] from any thread.
#[derive(Debug, Clone)]
pub struct Ringer {
    tx: Arc<UnixStream>,
    /// Rung since the loop last looked: further rings write nothing.
    rung: Arc<AtomicBool>,
}

impl ViewBell {
    /// A bell nobody has rung yet.
    pub fn new() -> io::Result<ViewBell> {
        let (tx, rx) = UnixStream::pair()?;
        tx.set_nonblocking(true)?;
        rx.set_nonblocking(true)?;
        Ok(ViewBell {
            rx,
            ringer: Ringer {
                tx: Arc::new(tx),
                rung: Arc::default(),
            },
        })
    }

    /// A handle that rings this bell.
    pub fn ringer(&self) -> Ringer {
        self.ringer.clone()
    }

    /// What `poll` waits on.
    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.rx.as_fd()
    }

    /// Takes the rings so far: whatever they were for must be looked at after this call (a ring
    /// from then on wakes the loop again).
    pub(crate) fn clear(&self) {
        self.ringer.rung.store(false, Ordering::SeqCst);
        let mut buf = [0u8; 16];
        // Non-blocking: ends at `WouldBlock` once the bytes written so far are read.
        while matches!((&self.rx).read(&mut buf), Ok(n) if n > 0) {}
    }
}

impl Ringer {
    /// Wakes the loop, unless it was rung since it last looked.
    pub fn ring(&self) {
        if !self.rung.swap(true, Ordering::SeqCst) {
            // Only fails if the loop is gone (nothing to wake) or the socket is full (it is
            // awake already).
            let _ = (&*self.tx).write(&[1]);
        }
    }
}

fn resize_signal() -> SigSet {
    let mut set = SigSet::empty();
    set.add(Signal::SIGWINCH);
    set
}

/// Blocks `SIGWINCH` in the calling thread, and so in the threads it starts afterwards, so that
/// [`crate::run`] notices a resize at once instead of at the next refresh. Call it before
/// starting any thread (the signal goes to a thread that does not block it, which ignores it).
pub fn block_resize_signal() -> nix::Result<()> {
    resize_signal().thread_block()
}

/// The terminal's resize signal as a file descriptor, when it could be made one.
#[derive(Debug)]
pub(crate) struct Resizes(Option<SignalFd>);

impl Resizes {
    /// Blocks `SIGWINCH` in this thread (the collector thread, started later, inherits that) and
    /// opens a `signalfd` for it.
    pub(crate) fn open() -> Resizes {
        if block_resize_signal().is_err() {
            return Resizes(None);
        }
        Resizes(
            SignalFd::with_flags(
                &resize_signal(),
                SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC,
            )
            .ok(),
        )
    }

    /// What `poll` waits on, if anything.
    pub(crate) fn fd(&self) -> Option<BorrowedFd<'_>> {
        self.0.as_ref().map(AsFd::as_fd)
    }

    /// Whether the terminal was resized since the last call.
    pub(crate) fn take(&self) -> bool {
        let mut resized = false;
        if let Some(fd) = &self.0 {
            while let Ok(Some(_)) = fd.read_signal() {
                resized = true;
            }
        }
        resized
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

    fn readable(bell: &ViewBell) -> bool {
        let mut fds = [PollFd::new(bell.fd(), PollFlags::POLLIN)];
        poll(&mut fds, PollTimeout::ZERO).unwrap() == 1
    }

    #[test]
    fn a_ring_wakes_the_poll_once_until_cleared() {
        let bell = ViewBell::new().unwrap();
        assert!(!readable(&bell));
        let ringer = bell.ringer();
        let from_another_thread = ringer.clone();
        std::thread::spawn(move || from_another_thread.ring())
            .join()
            .unwrap();
        ringer.ring();
        assert!(readable(&bell));
        bell.clear();
        assert!(!readable(&bell), "both rings were one byte, read by clear");
        ringer.ring();
        assert!(readable(&bell), "a ring after clear wakes it again");
    }
}
