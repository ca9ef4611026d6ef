//! Writers fed sample by sample while recording, in memory bounded by the distinct frames (not
//! stacks, not samples): [`Recorder`]. What a format needs per sample or per stack is spilled
//! to files in a spill directory beside the output (`crate::spill::SpillDir`) past a budget,
//! and copied into the output at the end. The output means what the format's [`Format`] writer
//! makes of the [`Profile`] built from the same samples with the same options (tests compare
//! them).
//!
//! The tables samples come with may forget stacks (`strobe_aggregate::pipeline_streamed`) but
//! never strings, frames or threads, so writers keep per-frame and per-thread state by id and
//! read nothing per stack beyond the sample at hand.
//!
//! [`Format`]: crate::Format
//! [`Profile`]: strobe_aggregate::Profile

use std::collections::HashMap;
use std::io::{self, Write};
use std::path::Path;

use strobe_aggregate::{Frame, FrameId, Metadata, ProfileOptions, Sample, StackId, Tables};

use crate::{
    ChromeRecorder, FoldedRecorder, FormatKind, GeckoRecorder, PprofRecorder, SpeedscopeRecorder,
    Value,
};

/// A profile written from a stream of samples.
pub trait Recorder {
    /// Counts one sample, whose ids `tables` define.
    fn add(&mut self, tables: &Tables, s: &Sample) -> io::Result<()>;

    /// Writes the profile, with `meta`, after the last [`Recorder::add`].
    fn write(&mut self, meta: &Metadata, out: &mut dyn Write) -> io::Result<()>;

    /// What was spilled to disk so far, in a sentence, if anything was.
    fn spill_note(&self) -> Option<String>;
}

/// A recorder of `kind` with `options` for samples of process `pid`, its numbers counting
/// `value` where that decides them (see [`FormatKind::writer_of`]), spilling to a directory it
/// creates in `dir` past `budget` bytes; `None` for raw (streamed by `RawWriter`).
pub fn recorder(
    kind: FormatKind,
    options: ProfileOptions,
    value: Value,
    pid: Option<u32>,
    dir: &Path,
    budget: usize,
) -> Option<Box<dyn Recorder>> {
    match kind {
        FormatKind::Collapsed | FormatKind::Svg => Some(Box::new(
            FoldedRecorder::new(kind, options, dir, budget).with_value(value),
        )),
        FormatKind::Pprof => Some(Box::new(PprofRecorder::new(options, pid, dir, budget))),
        FormatKind::Speedscope => Some(Box::new(SpeedscopeRecorder::new(options, dir, budget))),
        FormatKind::Chrome => Some(Box::new(ChromeRecorder::new(options, pid, dir, budget))),
        FormatKind::Gecko => Some(Box::new(GeckoRecorder::new(options, dir, budget))),
        FormatKind::Raw => None,
    }
}

/// Not seen yet.
const UNSEEN: u32 = u32::MAX;
/// Left out by the options.
const HIDDEN: u32 = u32::MAX - 1;

/// The frames of a stream's tables as the options show them, numbered from 0 as first met:
/// frames the options hide have none, and frames that differ only in what the options leave
/// out (the line, under `--function`) share one. Only what the options keep of a frame
/// decides, as in `Profile::build`.
#[derive(Debug)]
pub(crate) struct FrameMap {
    options: ProfileOptions,
    /// By source frame index: [`UNSEEN`], [`HIDDEN`] or the number.
    ids: Vec<u32>,
    by_content: HashMap<Frame, u32>,
}

impl FrameMap {
    pub(crate) fn new(options: ProfileOptions) -> FrameMap {
        FrameMap {
            options,
            ids: Vec::new(),
            by_content: HashMap::new(),
        }
    }

    /// The number of frame `id` of `t`, or `None` if it is left out; `new` is called with the
    /// number and the frame as shown (its ids are `t`'s) the first time a number is given.
    pub(crate) fn map<E>(
        &mut self,
        t: &Tables,
        id: FrameId,
        new: &mut impl FnMut(u32, &Frame) -> Result<(), E>,
    ) -> Result<Option<u32>, E> {
        let i = id.index();
        match self.ids.get(i).copied() {
            Some(HIDDEN) => return Ok(None),
            Some(UNSEEN) | None => {}
            Some(n) => return Ok(Some(n)),
        }
        let Some(f) = t.frame(id) else {
            return Ok(None);
        };
        if self.ids.len() <= i {
            self.ids.resize(i + 1, UNSEEN);
        }
        if self.options.hides(f.kind) {
            self.ids[i] = HIDDEN;
            return Ok(None);
        }
        let shown = Frame {
            line: if self.options.by_function {
                None
            } else {
                f.line
            },
            ..*f
        };
        let n = match self.by_content.get(&shown) {
            Some(&n) => n,
            None => {
                let n = self.by_content.len() as u32;
                new(n, &shown)?;
                self.by_content.insert(shown, n);
                n
            }
        };
        self.ids[i] = n;
        Ok(Some(n))
    }

    /// The numbers of stack `stack` of `t`, outermost first, into `out` (cleared first);
    /// `new` as for [`FrameMap::map`].
    pub(crate) fn stack<E>(
        &mut self,
        t: &Tables,
        stack: StackId,
        out: &mut Vec<u32>,
        mut new: impl FnMut(u32, &Frame) -> Result<(), E>,
    ) -> Result<(), E> {
        out.clear();
        for fid in t.stack(stack) {
            if let Some(n) = self.map(t, *fid, &mut new)? {
                out.push(n);
            }
        }
        Ok(())
    }
}
