//! `strobe top`: a live terminal view of where a Python process spends its time.
//!
//! The parts, as terminal UIs are usually split:
//! * [`data`]: owns the aggregator's end of the sampling pipeline on its own thread and turns
//!   its counts into owned [`data::ViewData`] on request (the sampler never waits on it, and it
//!   never waits on the terminal);
//! * [`state`]: the user's choices (sort, filter, thread, grouping, pause, refresh) and the
//!   last data; pure logic, unit-tested without a terminal;
//! * [`keys`]: reads keys from the terminal, and notices when the terminal is gone;
//! * [`input`]: keys to [`state::Action`]s;
//! * [`view`]: draws a [`state::State`] with ratatui (tested on ratatui's `TestBackend`);
//! * [`terminal`]: the guard that restores the terminal on drop, on panic and on signals;
//! * [`wake`]: what wakes the event loop besides a key (a bell other threads ring, a resize).
//!
//! [`run`] ties them together in the event loop.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod data;
pub mod input;
pub mod keys;
pub mod state;
pub mod terminal;
#[cfg(test)]
mod test_rng;
pub mod view;
pub mod wake;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use strobe_aggregate::{AggregatorSide, SampleFilter};

use crate::data::CollectorGone;
use crate::keys::{Gone, Input, KeyReader};
use crate::state::{Effect, LiveStatus, State, TargetInfo};
pub use crate::terminal::{check_terminal, TerminalGuard};
use crate::wake::Resizes;
pub use crate::wake::{block_resize_signal, Ringer, ViewBell};

/// Why `top` could not run. Each message says what to do instead.
#[derive(Debug, thiserror::Error)]
pub enum TuiError {
    /// Standard output is not a terminal.
    #[error(
        "strobe top needs a terminal, but standard output is not one; run it in a terminal \
         (over SSH: ssh -t), or use 'strobe record' to write a profile to a file"
    )]
    NotATerminal,
    /// Setting up or drawing on the terminal failed (the OS error is part of the message, so
    /// it is not also the `source()`).
    #[error("terminal error: {0}")]
    Terminal(std::io::Error),
    /// The aggregator thread stopped.
    #[error(transparent)]
    Collector(#[from] CollectorGone),
}

/// How `top` ended.
#[derive(Debug)]
pub enum Ending {
    /// The user quit, or `quit_requested` said so; the terminal is restored.
    Quit,
    /// The terminal went away (hung up, end of input, or reading or writing it failed).
    /// Nothing more was written to it, and it was not restored.
    TerminalGone(Gone),
}

/// What the view shows, for the sampler to follow (see [`run`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shown {
    /// Idle threads are shown.
    pub idle: bool,
    /// Stacks are task-aware (`--async`).
    pub tasks: bool,
}

/// How `top` starts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TopOptions {
    /// Group by function (`l` toggles lines).
    pub by_function: bool,
    /// Idle / GIL filter to start with.
    pub filter: SampleFilter,
    /// Task-aware stacks to start with (`a` toggles).
    pub async_stacks: bool,
    /// Time between refreshes.
    pub refresh: Duration,
}

impl Default for TopOptions {
    fn default() -> Self {
        TopOptions {
            by_function: true,
            filter: SampleFilter::default(),
            refresh: Duration::from_secs(1),
            async_stacks: false,
        }
    }
}

/// Runs the live view until the user quits, `quit_requested` returns true or the terminal
/// goes away (see [`Ending`]).
///
/// The loop sleeps until a key, a resize (see [`block_resize_signal`]), the next refresh or a
/// ring of `bell`, and only then looks at anything else: whoever has news for it rings the
/// bell's [`Ringer`] (the caller, on a stop signal; the aggregator thread, when sampling ends).
/// `agg` is the aggregator end of the pipeline whose sampler end the sampler thread feeds;
/// `status` is asked at each wake-up for the sampler's errors and its end (the view then says
/// so and keeps the last data until the user quits), told whether sampling has ended (the
/// sampler's side of the pipeline is gone, so its thread is ending: join it);
/// `quit_requested` is asked at each wake-up, e.g. for a SIGTERM collected by the caller.
/// `shown` is told whether idle threads are shown and whether stacks are task-aware, at the
/// start and whenever the view refetches (the `i`, `m` and `a` keys), so that the sampler reads
/// idle threads' stacks only while they are shown, and builds the stacks the view wants.
pub fn run(
    agg: AggregatorSide,
    info: TargetInfo,
    options: TopOptions,
    bell: ViewBell,
    mut status: impl FnMut(bool) -> LiveStatus,
    mut quit_requested: impl FnMut() -> bool,
    mut shown: impl FnMut(Shown),
) -> Result<Ending, TuiError> {
    check_terminal()?;
    let mut reader = KeyReader::open().map_err(TuiError::Terminal)?;
    let resizes = Resizes::open();
    let sampling_over = Arc::new(AtomicBool::new(false));
    let collector = {
        let over = Arc::clone(&sampling_over);
        let ringer = bell.ringer();
        data::spawn(agg, move || {
            over.store(true, Ordering::SeqCst);
            ringer.ring();
        })
        .map_err(TuiError::Terminal)?
    };
    let mut guard = TerminalGuard::enter()?;
    let mut state = State::new(info, options.by_function, options.filter, options.refresh);
    state.async_stacks = options.async_stacks;
    shown(state.shown());
    let mut scratch = view::Scratch::default();
    state.status = status(false);
    state.set_data(collector.view(false, state.query())?);
    let mut next_tick = Instant::now() + state.refresh;
    // After the sampler ends, one last interval is closed and then the data stays.
    let mut final_interval_taken = false;
    let mut dirty = true;
    let mut size = guard.size().ok();
    loop {
        if dirty {
            if let Err(e) = guard
                .terminal
                .draw(|f| view::render(f, &state, &mut scratch))
            {
                if terminal::is_gone(&e) {
                    guard.abandon();
                    return Ok(Ending::TerminalGone(Gone::WriteError(e)));
                }
                return Err(TuiError::Terminal(e));
            }
            dirty = false;
            // Debug builds only: lets the integration tests prove that a panic in the view
            // still restores the terminal (tests/integration/top.rs).
            #[cfg(debug_assertions)]
            if std::env::var_os("STROBE_TEST_PANIC_IN_TOP").is_some() {
                panic!("test panic requested by STROBE_TEST_PANIC_IN_TOP");
            }
        }
        // Rings up to here are looked at below; a later one wakes the wait.
        bell.clear();
        if quit_requested() {
            // A SIGHUP comes with a terminal that hangs up: leave that one alone too.
            if let Ok(Input::Gone(gone)) = reader.wait(Duration::ZERO, &[]) {
                guard.abandon();
                return Ok(Ending::TerminalGone(gone));
            }
            return Ok(Ending::Quit);
        }
        let st = status(sampling_over.load(Ordering::SeqCst));
        if st != state.status {
            // The achieved rate moves all the time: it is shown at the next refresh, not
            // redrawn at every wake-up. Errors and the end of sampling are shown at once.
            let urgent = st.errors != state.status.errors || st.ended != state.status.ended;
            state.status = st;
            if urgent {
                dirty = true;
                continue;
            }
        }
        let wait = next_tick.saturating_duration_since(Instant::now());
        let mut also = vec![bell.fd()];
        also.extend(resizes.fd());
        let keys = match reader.wait(wait, &also).map_err(TuiError::Terminal)? {
            Input::Keys(keys) => keys,
            Input::Gone(gone) => {
                guard.abandon();
                return Ok(Ending::TerminalGone(gone));
            }
        };
        for key in keys {
            let Some(action) = input::action(&state.mode, key) else {
                continue;
            };
            match state.apply(action) {
                Effect::Quit => return Ok(Ending::Quit),
                Effect::Redraw => {}
                Effect::Refetch => {
                    shown(state.shown());
                    state.set_data(collector.view(false, state.query())?);
                }
                Effect::Reset => {
                    shown(state.shown());
                    collector.reset()?;
                    state.set_data(collector.view(false, state.query())?);
                }
            }
            // A changed refresh interval takes effect now.
            next_tick = next_tick.min(Instant::now() + state.refresh);
            dirty = true;
        }
        let now = Instant::now();
        let tick = now >= next_tick;
        // The terminal's size: read when it signals a resize, and at each refresh (in case the
        // signal could not be caught).
        if resizes.take() || tick {
            if let Ok(now_size) = guard.size() {
                if Some(now_size) != size {
                    size = Some(now_size);
                    guard.resize(now_size).map_err(TuiError::Terminal)?;
                    dirty = true;
                }
            }
        }
        if tick {
            next_tick = now + state.refresh;
            let ended = state.status.ended.is_some();
            if !state.paused && !final_interval_taken {
                state.set_data(collector.view(true, state.query())?);
                dirty = true;
                final_interval_taken = ended;
            }
        }
    }
}
