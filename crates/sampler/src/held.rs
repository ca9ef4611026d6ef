//! Held stacks under `--native`: a thread's merged stack kept from the capture that took it,
//! standing for the thread in later rounds while the kernel's switch records say it has not
//! run since (see "Held stacks" in `native` and "Not stopped again" in `stops`).
//!
//! Two captures can be held, each with where the thread's switch records were at a moment when
//! its state was the captured one ([`Mark`]):
//! - a stop of [`crate::stops::stop_first`], marked while the stops held the thread (a mark
//!   taken before the stop would always read as moved: the stop itself switches the thread
//!   out, and in, if it was waiting for a CPU, to enter the stop);
//! - a read of a sleeping thread without a stop (`NativeStack::asleep`, wall mode and `top`'s
//!   idle threads), marked just before the capture: the capture proves the thread did not
//!   run through it, and a sleeper's state is the same from the mark to the capture unless
//!   it ran, which moves its records;
//! - a stop after the round's read (wall mode's running threads, threads woken since the
//!   look), marked with the time the target noted while its stops held the thread
//!   (`NativeStack::stopped_at_ns`): with per-CPU switch records only, whose records carry
//!   their time ([`crate::threads::KernelThreads::mark_at`]).
//!
//! A held stack is its thread's sample in a round that finds its records not moved: in a
//! stop-first round, decided before the stops ([`Holds::unmoved_before_stops`]), so the thread
//! is not stopped; in other rounds, when the round's capture is set up. It is checked against
//! the thread's frames in the round's read where the thread did not run through that read.
//! A held stack not used in a round is dropped.

use std::collections::HashMap;

use strobe_aggregate::{FxBuild, StackId};
use strobe_walker::RawFrame;

use crate::threads::Mark;

/// One held stack.
#[derive(Debug)]
struct Held {
    tid: i32,
    /// Where the thread's switch records were when its state was the captured one.
    mark: Mark,
    stack: StackId,
    /// The Python frames it was merged with.
    python: Vec<RawFrame>,
    /// The latest round that used it (or held it).
    used_in: u64,
    /// In that round, not moved by the end of the round's read: its frames there must be
    /// `python`.
    checked: bool,
}

/// See the module documentation.
#[derive(Debug, Default)]
pub(crate) struct Holds {
    /// By thread state.
    held: HashMap<u64, Held, FxBuild>,
    /// Where the switch records of the threads a stop-first round stops were while the stops
    /// held them, by thread id; after the stops, only of those stopped awake, sorted.
    pub(crate) in_stops: Vec<(i32, Mark)>,
    /// Where the switch records of the threads a capture may read asleep were just before it,
    /// by thread id, sorted.
    pub(crate) before: Vec<(i32, Mark)>,
    /// Held stacks whose frames differed, until taken for the stats.
    refused: u64,
}

impl Holds {
    /// Stop-first round `round`, before its stops: whether the thread state at `tstate`
    /// (thread `tid`) has a held stack and has not run since (`moved` says whether its switch
    /// records moved since a mark); if so it is not stopped, and its held stack stands for it.
    pub(crate) fn unmoved_before_stops(
        &mut self,
        round: u64,
        tstate: u64,
        tid: i32,
        moved: impl FnOnce(Mark) -> bool,
    ) -> bool {
        match self.held.get_mut(&tstate) {
            Some(h) if h.tid == tid && !moved(h.mark) => {
                h.used_in = round;
                h.checked = true;
                true
            }
            _ => false,
        }
    }

    /// After round `round`'s read: a thread whose held stack stands for it that has moved
    /// since (`moved(tid, mark)`) may have run during the read, so its frames there are not
    /// compared with the held ones; its held stack stands for it as of the round's start.
    pub(crate) fn uncheck_moved(&mut self, round: u64, moved: impl Fn(i32, Mark) -> bool) {
        for h in self.held.values_mut() {
            if h.used_in == round && moved(h.tid, h.mark) {
                h.checked = false;
            }
        }
    }

    /// The held stack that stands for the thread state at `tstate` (thread `tid`) in round
    /// `round`, whose read found the frames `frames`: one found unmoved before the stops of a
    /// stop-first round (`first`), or in another round one whose records have not moved
    /// (`moved`) through the round's read, which is over. A held stack whose checked frames
    /// differ is dropped and counted.
    pub(crate) fn stands_for(
        &mut self,
        (round, first): (u64, bool),
        (tstate, tid): (u64, Option<i32>),
        frames: &[RawFrame],
        moved: impl FnOnce(Mark) -> bool,
    ) -> Option<StackId> {
        let h = self.held.get_mut(&tstate)?;
        let now = if first {
            h.used_in == round
        } else {
            Some(h.tid) == tid && !moved(h.mark)
        };
        if !now {
            return None;
        }
        if !first {
            h.used_in = round;
            h.checked = true;
        }
        if !h.checked || frames == h.python.as_slice() {
            return Some(h.stack);
        }
        self.held.remove(&tstate);
        self.refused += 1;
        None
    }

    /// Where thread `tid`'s records were when a capture of this round took its state, if the
    /// capture may be held: stopped first and awake, or read asleep (`asleep`).
    pub(crate) fn mark_of(&self, tid: i32, asleep: bool) -> Option<Mark> {
        let marks = if asleep { &self.before } else { &self.in_stops };
        let at = marks.binary_search_by_key(&tid, |&(t, _)| t).ok()?;
        Some(marks[at].1)
    }

    /// Hold, in round `round`, the merged stack `stack` of the thread state at `tstate`
    /// (thread `tid`), merged with the frames `python`, taken when its records were at `mark`.
    pub(crate) fn hold(
        &mut self,
        round: u64,
        (tstate, tid): (u64, i32),
        mark: Mark,
        stack: StackId,
        python: &[RawFrame],
    ) {
        let h = self.held.entry(tstate).or_insert_with(|| Held {
            tid,
            mark,
            stack,
            python: Vec::new(),
            used_in: round,
            checked: false,
        });
        h.tid = tid;
        h.mark = mark;
        h.stack = stack;
        h.used_in = round;
        h.checked = false;
        h.python.clear();
        h.python.extend_from_slice(python);
    }

    /// Round `round` is over: the held stacks it neither used nor held are dropped.
    pub(crate) fn end_round(&mut self, round: u64) {
        self.held.retain(|_, h| h.used_in == round);
    }

    /// Held stacks whose frames differed since the last call.
    pub(crate) fn take_refused(&mut self) -> u64 {
        std::mem::take(&mut self.refused)
    }
}
