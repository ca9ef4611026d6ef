//! Holding off SIGINT/SIGTERM/SIGHUP while a target is frozen.
//!
//! A frozen target must be resumed before strobe dies. Instead of handlers (which would have to
//! reach the ptrace state from signal context), the signals are blocked for the frozen window:
//! one that arrives stays pending, the `Freeze` guard detaches, then [`DeferSignals`] restores
//! the old mask and the pending signal takes its default action (strobe exits) with the target
//! already running again.

use nix::sys::signal::{SigSet, SigmaskHow, Signal};

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
