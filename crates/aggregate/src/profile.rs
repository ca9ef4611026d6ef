//! The aggregated profile every output format reads.

use std::cmp::Ordering;

use crate::counts::{Count, CountKey, Counts, Sample, SampleFilter, SampleFlags};
use crate::intern::{CapacityError, Frame, FrameKind, Interner, StackId, Tables, ThreadId};

/// What was recorded, from what, and how well.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Metadata {
    /// The profiled command line or `pid N`.
    pub target: String,
    /// The target's process id, if known.
    pub pid: Option<u32>,
    /// The target's Python version (`3.12.1`), if known.
    pub python_version: Option<String>,
    /// The strobe version that recorded it.
    pub strobe_version: String,
    /// `--rate` as requested, in Hz.
    pub rate_requested_hz: f64,
    /// Wall-clock start, ns since the Unix epoch (0 if unknown).
    pub start_unix_ns: u64,
    /// How long the recording ran, in ns.
    pub duration_ns: u64,
    /// Samples that could not be taken (read errors, torn stacks).
    pub errors: u64,
    /// Samples taken but dropped because the aggregator fell behind.
    pub dropped: u64,
}

/// How samples are grouped and filtered for output (the `record`/`convert` flags).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ProfileOptions {
    /// `--idle` / `--gil`.
    pub filter: SampleFilter,
    /// `--threads`: formats that merge stacks give each thread its own root frame.
    pub per_thread: bool,
    /// `--function`: frames are functions, not lines.
    pub by_function: bool,
    /// `--no-gc`: `<GC>` frames ([`FrameKind::Interpreter`]) are left out; their samples count
    /// for the frame below.
    pub hide_gc: bool,
    /// `<raise T>` frames ([`FrameKind::Exception`]) are left out; their samples count for the
    /// frame below. Every mode but `--mode exception` leaves them out.
    pub hide_exceptions: bool,
}

impl ProfileOptions {
    /// Options that keep every sample and every line (what a raw recording holds).
    pub const EVERYTHING: ProfileOptions = ProfileOptions {
        filter: SampleFilter::ALL,
        per_thread: false,
        by_function: false,
        hide_gc: false,
        hide_exceptions: false,
    };

    /// Whether frames of `kind` are left out.
    pub fn hides(&self, kind: FrameKind) -> bool {
        match kind {
            FrameKind::Interpreter => self.hide_gc,
            FrameKind::Exception => self.hide_exceptions,
            FrameKind::Python | FrameKind::Native | FrameKind::Kernel | FrameKind::Task => false,
        }
    }
}

/// The count for one (thread, stack, flags).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StackCount {
    /// Thread.
    pub thread: ThreadId,
    /// Stack, outermost first.
    pub stack: StackId,
    /// Flags shared by these samples.
    pub flags: SampleFlags,
    /// How many / how long.
    pub count: Count,
}

/// An aggregated profile: owned tables, counts per stack, and optionally the timeline.
///
/// Built by [`Profile::build`]; ids are assigned in a deterministic order (threads and stacks
/// sorted by content), so the same samples always produce byte-identical output.
#[derive(Debug, Clone, Default)]
pub struct Profile {
    /// Metadata.
    pub meta: Metadata,
    /// Strings, frames, threads, stacks.
    pub tables: Tables,
    /// Counts, sorted by (thread, stack, flags); stacks are non-empty.
    pub stacks: Vec<StackCount>,
    /// Time-ordered samples (empty when the timeline was not kept).
    pub timeline: Vec<Sample>,
    /// The options the profile was built with.
    pub options: ProfileOptions,
}

impl Profile {
    /// Builds a profile from source tables and counts, applying `options`: samples the filter
    /// rejects are dropped, frames are merged per function when asked, and the tables are
    /// re-interned so that only what is referenced remains. Empty stacks are dropped.
    pub fn build(
        meta: Metadata,
        src: &Tables,
        counts: impl IntoIterator<Item = (CountKey, Count)>,
        timeline: &[Sample],
        options: ProfileOptions,
    ) -> Result<Profile, CapacityError> {
        let mut entries: Vec<(CountKey, Count)> = counts
            .into_iter()
            .filter(|(k, c)| options.filter.accepts(k.flags) && !c.is_zero())
            .collect();
        // Sort by content so new ids do not depend on hash-map iteration order.
        entries.sort_by(|(a, _), (b, _)| {
            cmp_thread(src, a.thread, b.thread)
                .then_with(|| cmp_stack(src, a.stack, b.stack))
                .then(a.flags.cmp(&b.flags))
        });

        let mut out = Interner::new();
        let mut stack_map: Vec<Option<Option<StackId>>> = vec![None; src.num_stacks()];
        let mut thread_map: Vec<Option<ThreadId>> = vec![None; src.num_threads()];
        let mut frames_buf = Vec::new();
        let mut map_key = |k: &CountKey,
                           out: &mut Interner|
         -> Result<Option<(ThreadId, StackId)>, CapacityError> {
            let stack = match stack_map.get(k.stack.index()).copied().flatten() {
                Some(s) => s,
                None => {
                    frames_buf.clear();
                    for fid in src.stack(k.stack) {
                        let Some(f) = src.frame(*fid) else { continue };
                        if options.hides(f.kind) {
                            continue;
                        }
                        let function = out.intern_str(src.str(f.function))?;
                        let filename = out.intern_str(src.str(f.filename))?;
                        let line = if options.by_function { None } else { f.line };
                        let module = match f.module {
                            Some(m) => Some(out.intern_str(src.str(m))?),
                            None => None,
                        };
                        frames_buf.push(out.intern_frame_ids(Frame {
                            function,
                            filename,
                            line,
                            kind: f.kind,
                            module,
                            first_line: f.first_line,
                        })?);
                    }
                    let s = if frames_buf.is_empty() {
                        None
                    } else {
                        Some(out.intern_stack(&frames_buf)?)
                    };
                    if let Some(slot) = stack_map.get_mut(k.stack.index()) {
                        *slot = Some(s);
                    }
                    s
                }
            };
            let Some(stack) = stack else { return Ok(None) };
            let thread = match thread_map.get(k.thread.index()).copied().flatten() {
                Some(t) => t,
                None => {
                    let Some(info) = src.thread(k.thread) else {
                        return Ok(None);
                    };
                    let mut info = *info;
                    info.name = match info.name {
                        Some(n) => Some(out.intern_str(src.str(n))?),
                        None => None,
                    };
                    let t = out.intern_thread_info(info)?;
                    if let Some(slot) = thread_map.get_mut(k.thread.index()) {
                        *slot = Some(t);
                    }
                    t
                }
            };
            Ok(Some((thread, stack)))
        };

        let mut stacks: Vec<StackCount> = Vec::with_capacity(entries.len());
        for (k, c) in &entries {
            if let Some((thread, stack)) = map_key(k, &mut out)? {
                stacks.push(StackCount {
                    thread,
                    stack,
                    flags: k.flags,
                    count: *c,
                });
            }
        }
        let mut new_timeline = Vec::new();
        for s in timeline {
            if !options.filter.accepts(s.flags) {
                continue;
            }
            if let Some((thread, stack)) = map_key(&s.key(), &mut out)? {
                new_timeline.push(Sample {
                    thread,
                    stack,
                    ..*s
                });
            }
        }
        // by_function can make different source stacks equal: merge them.
        stacks.sort_by_key(|s| (s.thread, s.stack, s.flags));
        let mut merged: Vec<StackCount> = Vec::with_capacity(stacks.len());
        for s in stacks {
            match merged.last_mut() {
                Some(last)
                    if (last.thread, last.stack, last.flags) == (s.thread, s.stack, s.flags) =>
                {
                    last.count.add(s.count);
                }
                _ => merged.push(s),
            }
        }
        Ok(Profile {
            meta,
            tables: out.into_tables(),
            stacks: merged,
            timeline: new_timeline,
            options,
        })
    }

    /// Builds a profile from live counts.
    pub fn from_counts(
        meta: Metadata,
        tables: &Tables,
        counts: &Counts,
        options: ProfileOptions,
    ) -> Result<Profile, CapacityError> {
        Profile::build(meta, tables, counts.iter(), counts.timeline(), options)
    }

    /// This profile regrouped / refiltered (e.g. a raw recording converted with `--function`).
    /// Filters only narrow: samples already filtered out cannot come back.
    pub fn with_options(&self, options: ProfileOptions) -> Result<Profile, CapacityError> {
        let counts = self.stacks.iter().map(|s| {
            (
                CountKey {
                    thread: s.thread,
                    stack: s.stack,
                    flags: s.flags,
                },
                s.count,
            )
        });
        Profile::build(
            self.meta.clone(),
            &self.tables,
            counts,
            &self.timeline,
            options,
        )
    }

    /// Everything counted.
    pub fn total(&self) -> Count {
        let mut c = Count::default();
        for s in &self.stacks {
            c.add(s.count);
        }
        c
    }

    /// Samples per second actually achieved (0 when the duration is unknown).
    pub fn rate_achieved_hz(&self) -> f64 {
        if self.meta.duration_ns == 0 {
            return 0.0;
        }
        // Per thread samples would overstate the rate with several threads: count sampling
        // rounds, approximated by the busiest thread.
        let mut per_thread: Vec<u64> = vec![0; self.tables.num_threads()];
        for s in &self.stacks {
            if let Some(n) = per_thread.get_mut(s.thread.index()) {
                *n += s.count.samples;
            }
        }
        let rounds = per_thread.into_iter().max().unwrap_or(0);
        rounds as f64 * 1e9 / self.meta.duration_ns as f64
    }

    /// A human-readable label for a thread: `"thread 1234 (MainThread)"`.
    pub fn thread_label(&self, id: ThreadId) -> String {
        thread_label_in(&self.tables, id)
    }
}

/// [`Profile::thread_label`] of thread `id` of tables `t`.
pub fn thread_label_in(tables: &Tables, id: ThreadId) -> String {
    match tables.thread(id) {
        Some(t) => {
            let mut s = format!("thread {}", t.os_tid);
            if let Some(n) = t.name {
                s.push_str(&format!(" ({})", tables.str(n)));
            }
            if t.interpreter_id != 0 {
                s.push_str(&format!(" [interpreter {}]", t.interpreter_id));
            }
            s
        }
        None => format!("thread #{}", id.0),
    }
}

fn cmp_thread(t: &Tables, a: ThreadId, b: ThreadId) -> Ordering {
    if a == b {
        return Ordering::Equal;
    }
    match (t.thread(a), t.thread(b)) {
        (Some(x), Some(y)) => x
            .os_tid
            .cmp(&y.os_tid)
            .then(x.interpreter_id.cmp(&y.interpreter_id))
            .then_with(|| x.name.map(|n| t.str(n)).cmp(&y.name.map(|n| t.str(n)))),
        _ => a.cmp(&b),
    }
}

fn cmp_stack(t: &Tables, a: StackId, b: StackId) -> Ordering {
    if a == b {
        return Ordering::Equal;
    }
    let (x, y) = (t.stack(a), t.stack(b));
    for (fa, fb) in x.iter().zip(y) {
        let o = match (t.frame(*fa), t.frame(*fb)) {
            (Some(p), Some(q)) => t
                .str(p.function)
                .cmp(t.str(q.function))
                .then_with(|| t.str(p.filename).cmp(t.str(q.filename)))
                .then(p.line.cmp(&q.line)),
            _ => fa.cmp(fb),
        };
        if o != Ordering::Equal {
            return o;
        }
    }
    x.len().cmp(&y.len())
}
