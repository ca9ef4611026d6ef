//! What the view shows, computed from the aggregator's counts.
//!
//! [`Collector`] owns the aggregator's end of the sampling pipeline (a
//! [`pipeline_live`](strobe_aggregate::pipeline_live), whose tables forget stacks). It folds
//! every drained sample, while its stack is still held, into a
//! [`FrameFold`](strobe_aggregate::FrameFold) of the interval in progress (own/total per thread,
//! flags and function or line: memory grows with distinct frames, not stacks) and into the
//! heaviest stacks kept for the call tree ([`KeptStacks`]). [`Collector::advance`] closes the
//! interval and adds it to the fold since the start (or the last reset), and
//! [`Collector::view`] turns the folds into owned [`ViewData`] (the same counts
//! [`Counts::breakdown`](strobe_aggregate::Counts::breakdown) would give for the same samples),
//! so the view can be regrouped or refiltered at any moment without losing the interval it
//! shows. The table's rows of the last query are kept between refreshes and brought up to date
//! with the interval just closed (`table`), so a refresh touches the functions sampled lately,
//! not every function seen since the start.
//! Nothing here touches a terminal; [`spawn`] runs a collector on its own thread so that a slow
//! terminal never delays draining the sampler's queue.
//!
//! The parts: this module holds the view's data model; [`collector`] folds samples into counts
//! and computes views from them; `table` keeps the rows of the last query between refreshes;
//! [`kept`] keeps the heaviest whole stacks within a budget, from
//! which [`tree`] builds the call tree of one function; [`thread`] runs a collector on its own
//! thread and serves views to the event loop.

use std::sync::Arc;
use std::time::Duration;

use strobe_aggregate::{Count, FrameKind, SampleFilter};

pub mod collector;
pub mod kept;
mod table;
pub mod thread;
pub mod tree;

pub use collector::Collector;
pub use kept::{KeptStacks, KEPT_STACK_BYTES};
pub use thread::{spawn, CollectorGone, CollectorHandle};

/// One function (or function and line), the key of a table row. The names are shared: the
/// collector copies each once for the whole run, and every view showing it holds the same.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FrameSel {
    /// Function name.
    pub function: Arc<str>,
    /// File name (for native frames, the source file from DWARF, or empty).
    pub filename: Arc<str>,
    /// Line, `None` when grouping by function.
    pub line: Option<i32>,
    /// What the frame is.
    pub kind: FrameKind,
    /// Native frames: the shared object's path.
    pub module: Option<Arc<str>>,
}

impl FrameSel {
    /// A Python function (or line).
    pub fn python(function: &str, filename: &str, line: Option<i32>) -> FrameSel {
        FrameSel {
            function: function.into(),
            filename: filename.into(),
            line,
            kind: FrameKind::Python,
            module: None,
        }
    }

    /// Python: `function (file:line)` with the file shortened to its last component. Native:
    /// `function (shared object)`, then `[file:line]` where DWARF gave one. Kernel: `[syscall]`.
    pub fn label(&self) -> String {
        let file = short_file(&self.filename);
        match self.kind {
            FrameKind::Python => match self.line {
                Some(l) => format!("{} ({file}:{l})", self.function),
                None => format!("{} ({file})", self.function),
            },
            FrameKind::Native => {
                let mut s = self.function.to_string();
                if let Some(m) = &self.module {
                    s.push_str(&format!(" ({})", short_file(m)));
                }
                if !file.is_empty() {
                    match self.line {
                        Some(l) => s.push_str(&format!(" [{file}:{l}]")),
                        None => s.push_str(&format!(" [{file}]")),
                    }
                }
                s
            }
            FrameKind::Kernel | FrameKind::Interpreter | FrameKind::Exception | FrameKind::Task => {
                self.function.to_string()
            }
        }
    }
}

/// The file name without its directories (`/srv/app/models.py` → `models.py`).
pub fn short_file(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// What to compute: the grouping and filters the user chose.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Query {
    /// Group by function (otherwise by function and line).
    pub by_function: bool,
    /// Only this native thread id.
    pub os_tid: Option<u64>,
    /// Idle / GIL filter.
    pub filter: SampleFilter,
    /// Also compute the call tree of this frame.
    pub focus: Option<FrameSel>,
}

/// One table row: own and total counts for the last interval and since the start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// Which function or line.
    pub key: FrameSel,
    /// Innermost-frame count in the last interval.
    pub interval_own: Count,
    /// Anywhere-on-the-stack count in the last interval.
    pub interval_total: Count,
    /// Innermost-frame count since the start (or reset).
    pub cumulative_own: Count,
    /// Anywhere-on-the-stack count since the start (or reset).
    pub cumulative_total: Count,
}

/// A thread the target ran, for the thread chooser.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThreadRow {
    /// Native thread id.
    pub os_tid: u64,
    /// Python thread name, if known.
    pub name: Option<String>,
    /// Samples since the start (or reset), idle included.
    pub samples: u64,
    /// Of those, idle samples.
    pub idle_samples: u64,
}

/// One line of a call tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeLine {
    /// Nesting depth (0 = the focused frame).
    pub depth: usize,
    /// `function (file:line)`.
    pub label: String,
    /// Time spent on paths through this node.
    pub count: Count,
}

/// The call paths through one frame: who calls it and what it calls, since the start (or
/// reset), under the current filters.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CallTree {
    /// The focused frame.
    pub focus: Option<FrameSel>,
    /// Samples with the focused frame on the stack (exact: the function table's count).
    pub total: Count,
    /// Of those, the samples whose stacks were not kept ([`KeptStacks`]): the paths shown
    /// account for `total` less this, which is a line of its own under the focus.
    pub unkept: Count,
    /// All samples under the filter.
    pub grand_total: Count,
    /// Inverted tree: the focused frame, then its callers, then theirs.
    pub callers: Vec<TreeLine>,
    /// The focused frame, then its callees, then theirs.
    pub callees: Vec<TreeLine>,
}

/// Everything one screen shows, owned (no ids), so the UI thread needs no tables.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ViewData {
    /// Rows in no particular order (the view sorts).
    pub rows: Vec<Row>,
    /// All samples matching the query in the last interval.
    pub interval_total: Count,
    /// All samples matching the query since the start (or reset).
    pub cumulative_total: Count,
    /// Wall time the last interval covered.
    pub interval_wall: Duration,
    /// Wall time since the start (or reset).
    pub cumulative_wall: Duration,
    /// Sampling rounds per second achieved in the last interval (the busiest thread's samples
    /// per second).
    pub rate_hz: f64,
    /// Samples received since strobe started, whatever the filter (not cleared by a reset).
    pub samples_received: u64,
    /// Samples the sampler dropped because the queue was full.
    pub dropped: u64,
    /// Threads seen since the start (or reset), by native id.
    pub threads: Vec<ThreadRow>,
    /// Threads sampled in the last interval (within the thread selection).
    pub active_threads: usize,
    /// Share of the last interval's samples (thread selection applied, idle/GIL filter not)
    /// that held the GIL; `None` without samples.
    pub gil_share: Option<f64>,
    /// Share of those samples that were idle.
    pub idle_share: Option<f64>,
    /// Share of those samples taken while the thread ran the cyclic garbage collector (a
    /// `<GC>` frame on top).
    pub gc_share: Option<f64>,
    /// Share of those samples taken while the thread raised or handled an exception.
    pub exception_share: Option<f64>,
    /// The call tree, when the query had a focus.
    pub tree: Option<CallTree>,
    /// The sampler is gone and everything it sent was counted.
    pub finished: bool,
    /// A failure of the aggregator (table capacity), for the status line.
    pub error: Option<String>,
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_live;
#[cfg(test)]
mod tests_table;
