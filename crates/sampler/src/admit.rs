//! Which threads a round samples, and how: the filters (`--tids`, `--threads`, `--gil`), each
//! thread's idle state (see the [`crate::round`] module documentation) and its flags. A round
//! decides this for all its threads before it records any, so that `--native` can capture
//! the kept threads together.

use strobe_aggregate::{Sample, SampleFlags, SamplerSide};
use strobe_walker::{RawSample, RawThread};

use crate::config::SamplerConfig;
use crate::failure::RoundError;
use crate::memo::thread_of;
use crate::round::When;
use crate::threads::KernelThreads;
use crate::view::ProcessView;

/// A thread a round samples, and how (see [`admit`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Kept {
    /// Its index in the round's read.
    pub(crate) index: usize,
    /// Its kernel id as seen from strobe, and in its own namespace.
    pub(crate) host: Option<u32>,
    pub(crate) inner: Option<u32>,
    /// The round found it idle.
    pub(crate) idle: bool,
    /// The round's first native stops stopped it (see "Stop first, read after" in `round`).
    pub(crate) stopped_first: bool,
    pub(crate) flags: SampleFlags,
}

/// What [`admit`] decided for a thread.
pub(crate) enum Admit {
    /// Not sampled (filtered out, no frames, idle and idle samples are dropped).
    Skip,
    /// Recorded already, idle and without frames (under a live idle switch).
    Bare,
    /// Sampled.
    Keep(Kept),
}

/// Whether thread `raw.threads[index]` is sampled this round: the filters (`--tids`,
/// `--threads`, `--gil`), its idle state and its flags.
pub(crate) fn admit(
    st: &mut ProcessView,
    cfg: &SamplerConfig,
    side: &mut SamplerSide,
    raw: &RawSample,
    index: usize,
    when: When,
) -> Result<Admit, RoundError> {
    let When {
        now_ns, weight_ns, ..
    } = when;
    let include_idle = cfg.include_idle_now();
    let t = &raw.threads[index];
    let host = st.host_tid(t);
    let Some(memo) = st.memos.get_mut(&t.tstate_addr) else {
        return Ok(Admit::Skip);
    };
    // Stopped before the round's read because the kernel said it ran (see "Stop first, read
    // after" in `round`): running at the stop, whatever the stop did to its state since.
    let stopped_first = memo.stopped_in == st.rounds_started && memo.host == host;
    memo.host = host;
    let inner = t.native_id.or_else(|| host.map(|h| st.kernel.inner_of(h)));
    if !cfg.wants_tid(host, || inner) {
        return Ok(Admit::Skip);
    }
    if memo.names_gen != st.names.generation() {
        memo.name = st.names.get(t.interp_addr, t.thread_id).cloned();
        memo.names_gen = st.names.generation();
    }
    if !cfg.wants_name(memo.name.as_deref()) {
        return Ok(Admit::Skip);
    }
    // A free-threaded build has no GIL: every thread runs as if it held one.
    let holds_gil = t.holds_gil || st.free_threaded;
    if cfg.gil_only && !holds_gil {
        return Ok(Admit::Skip);
    }
    if !t.walked {
        // Idle before the read (see `skips_idle_frames`), and without the GIL. Under a
        // live switch (top) the thread is still counted, idle and with no frames, so that
        // the view's idle share and thread list stay whole while idle stacks are hidden.
        if cfg.idle_switch.is_some() {
            let bare: &[_] = match &st.root_frame {
                Some(root) => std::slice::from_ref(root),
                None => &[],
            };
            let stack = side
                .interner()
                .intern_stack(bare)
                .map_err(|e| RoundError::Fatal(e.into()))?;
            let os_tid = host.or(inner).map_or(t.thread_id, u64::from);
            let thread = thread_of(memo, side, os_tid, t.interp_id)?;
            side.push(Sample {
                stack,
                thread,
                flags: SampleFlags::empty().with(SampleFlags::IDLE),
                timestamp_ns: now_ns,
                weight_ns,
            });
            return Ok(Admit::Bare);
        }
        return Ok(Admit::Skip);
    }
    memo.frameless = raw.frames_of(t).is_empty();
    if memo.frameless {
        return Ok(Admit::Skip);
    }
    // Under `--blocking`, the state read before the freeze; a thread not known then
    // (new since the last scan of the task list) is read now, after the release. Stopped
    // before the read (`--native`), running.
    let pre_state = match host {
        Some(h) if cfg.blocking => st.kernel.state_before(h).map(Some),
        Some(_) if stopped_first => Some(Some('R')),
        _ => None,
    };
    let idle = is_idle(&mut st.kernel, t, st.free_threaded, host, pre_state);
    if let (true, Some(h)) = (cfg.blocking, host) {
        st.kernel.decided_at_freeze(h, idle);
    }
    if let (false, Some(h)) = (idle, host) {
        st.running.push(h);
    }
    if idle && !include_idle {
        return Ok(Admit::Skip);
    }
    let mut flags = SampleFlags::empty();
    if idle {
        flags = flags.with(SampleFlags::IDLE);
    }
    if holds_gil {
        flags = flags.with(SampleFlags::HOLDS_GIL);
    }
    if t.exception.is_some() {
        flags = flags.with(SampleFlags::EXCEPTION);
    }
    Ok(Admit::Keep(Kept {
        index,
        host,
        inner,
        idle,
        stopped_first,
        flags,
    }))
}

/// Whether thread `t` is idle (see the module documentation). `pre_state` is its state read
/// before a `--blocking` freeze, if it was; otherwise it is read now, unless the thread holds
/// the GIL. An unknown state (no kernel id, or the thread just exited) counts as running:
/// better shown than hidden.
fn is_idle(
    kernel: &mut KernelThreads,
    t: &RawThread,
    free_threaded: bool,
    host: Option<u32>,
    pre_state: Option<Option<char>>,
) -> bool {
    if t.holds_gil && !free_threaded {
        return false;
    }
    let state = match pre_state {
        Some(state) => state,
        None => host.and_then(|h| kernel.state_in_round(h)),
    };
    state.is_some_and(|s| s != 'R')
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn thread(holds_gil: bool) -> RawThread {
        RawThread {
            interp_addr: 0x1000,
            tstate_addr: 0x2000,
            thread_id: 77,
            holds_gil,
            walked: true,
            ..RawThread::default()
        }
    }

    struct Sleeper {
        tid: u32,
        wake: Option<std::sync::mpsc::Sender<()>>,
        thread: Option<std::thread::JoinHandle<()>>,
    }

    impl Sleeper {
        fn start() -> Sleeper {
            let (tid_tx, tid_rx) = std::sync::mpsc::channel();
            let (wake, wait) = std::sync::mpsc::channel::<()>();
            let thread = std::thread::spawn(move || {
                tid_tx.send(nix::unistd::gettid().as_raw() as u32).unwrap();
                let _ = wait.recv();
            });
            Sleeper {
                tid: tid_rx.recv().unwrap(),
                wake: Some(wake),
                thread: Some(thread),
            }
        }
    }

    impl Drop for Sleeper {
        fn drop(&mut self) {
            drop(self.wake.take());
            if let Some(t) = self.thread.take() {
                let _ = t.join();
            }
        }
    }

    #[test]
    fn a_gil_holder_is_running_without_a_proc_read() {
        let mut kernel = KernelThreads::new(
            std::process::id() as i32,
            crate::threads::SharedSwitches::new(),
        );
        // Whatever state the thread is in (it may still be on its way to sleep), holding the
        // GIL decides, and nothing is read.
        let sleeper = Sleeper::start();
        assert!(!is_idle(
            &mut kernel,
            &thread(true),
            false,
            Some(sleeper.tid),
            None
        ));
        assert_eq!(kernel.reads(), 0);
        // Without the GIL (or on a free-threaded build) the state is read. The running
        // thread is this one.
        let me = nix::unistd::gettid().as_raw() as u32;
        kernel.start_round();
        assert!(!is_idle(&mut kernel, &thread(false), false, Some(me), None));
        kernel.start_round();
        assert!(!is_idle(&mut kernel, &thread(true), true, Some(me), None));
        assert_eq!(kernel.reads(), 2);
        // Asked again in the same round: the round's answer, not another lookup.
        assert!(!is_idle(&mut kernel, &thread(false), false, Some(me), None));
        assert_eq!(kernel.reads(), 2);
        // A state read before a freeze is used as it is.
        assert!(is_idle(
            &mut kernel,
            &thread(false),
            false,
            Some(me),
            Some(Some('S'))
        ));
        assert!(!is_idle(
            &mut kernel,
            &thread(false),
            false,
            None,
            Some(None)
        ));
        // No kernel id: counts as running.
        assert!(!is_idle(&mut kernel, &thread(false), false, None, None));
        assert_eq!(kernel.reads(), 2);
    }
}
