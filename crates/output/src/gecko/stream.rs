//! The Firefox Profiler's format from a stream of samples in memory bounded by distinct frames
//! and threads. Per thread, functions and frames are kept ([`FuncFrames`]); the stack table
//! and the samples grow with distinct stacks and samples, so their five lists are appended to
//! spools (`crate::spill::Spools`: in memory up to the spill budget, then files) as they grow.
//! A stack table entry is found again through a cache of (prefix, frame) → index that is
//! emptied when it holds too many entries (for all threads together): an entry made again is a
//! duplicate, which the format allows (it is another node of the same call tree). A thread's
//! samples must come in time order, as the sampler takes them.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::{self, BufWriter, Write};
use std::path::Path;

use strobe_aggregate::{Frame, Metadata, ProfileOptions, Sample, Tables, ThreadId};

use super::{
    main_tid, millis, push_end, push_meta, track_name, write_thread, Category, FuncFrames, List,
    Strings, ThreadHead,
};
use crate::spill::Spools;
use crate::stream::{FrameMap, Recorder};

/// Bytes of the spill budget per cached stack table entry: an entry costs ~40 bytes in the
/// map, whose table doubles as it grows (1 MiB: 4,096 entries).
const CACHE_ENTRY_BYTES: usize = 256;
/// The fewest entries the cache may hold whatever the budget.
const MIN_CACHE: usize = 16;
/// The number of [`List`]s, each a spool per thread.
const LISTS: usize = 5;

struct Thread {
    name: String,
    tid: u64,
    /// Where it goes among the others: as a `Profile` orders threads.
    order: (u64, i64, Option<String>),
    ff: FuncFrames,
    cache: HashMap<(Option<usize>, usize), usize>,
    samples: usize,
    stacks: usize,
}

/// Records a Firefox Profiler profile sample by sample (see the module documentation); the
/// output means what [`super::Gecko`] writes of the profile built from the same samples.
pub(crate) struct GeckoRecorder {
    options: ProfileOptions,
    frames: FrameMap,
    /// Each numbered frame as the options show it (its ids are the stream's tables').
    shown: Vec<Frame>,
    strings: Strings,
    threads: Vec<Thread>,
    thread_of: HashMap<ThreadId, usize>,
    /// Entries in all threads' caches, and the most there may be.
    cached: usize,
    cache_limit: usize,
    spools: Spools,
    numbers: Vec<u32>,
    text: String,
}

impl GeckoRecorder {
    /// A recorder with `options`, spilling to a directory it creates in `dir` past `budget`
    /// bytes of stacks and samples (the stack cache is held to the same budget).
    pub(crate) fn new(options: ProfileOptions, dir: &Path, budget: usize) -> GeckoRecorder {
        GeckoRecorder {
            options,
            frames: FrameMap::new(options),
            shown: Vec::new(),
            strings: Strings::default(),
            threads: Vec::new(),
            thread_of: HashMap::new(),
            cached: 0,
            cache_limit: (budget / CACHE_ENTRY_BYTES).max(MIN_CACHE),
            spools: Spools::new(dir, budget),
            numbers: Vec::new(),
            text: String::new(),
        }
    }

    /// Appends `text` (one element, comma first unless `first`) to list `which` of thread `i`.
    fn append(&mut self, i: usize, which: List, first: bool) -> io::Result<()> {
        let comma: &[u8] = if first { b"" } else { b"," };
        let spool = LISTS * i + which as usize;
        self.spools.append(spool, comma)?;
        self.spools.append(spool, self.text.as_bytes())
    }

    /// The thread's index for `id` of `tables`.
    fn thread(&mut self, tables: &Tables, id: ThreadId) -> usize {
        if let Some(&i) = self.thread_of.get(&id) {
            return i;
        }
        let info = tables.thread(id);
        self.threads.push(Thread {
            name: track_name(tables, id),
            tid: info.map_or(u64::from(id.0), |th| th.os_tid),
            order: info.map_or((0, 0, None), |th| {
                (
                    th.os_tid,
                    th.interpreter_id,
                    th.name.map(|n| tables.str(n).to_owned()),
                )
            }),
            ff: FuncFrames::default(),
            cache: HashMap::new(),
            samples: 0,
            stacks: 0,
        });
        self.thread_of.insert(id, self.threads.len() - 1);
        self.threads.len() - 1
    }
}

impl Recorder for GeckoRecorder {
    fn add(&mut self, tables: &Tables, s: &Sample) -> io::Result<()> {
        if !self.options.filter.accepts(s.flags) {
            return Ok(());
        }
        let shown = &mut self.shown;
        self.frames
            .stack(tables, s.stack, &mut self.numbers, |_, f| {
                shown.push(*f);
                Ok::<(), io::Error>(())
            })?;
        if self.numbers.is_empty() {
            return Ok(());
        }
        let i = self.thread(tables, s.thread);
        let mut prefix: Option<usize> = None;
        for depth in 0..self.numbers.len() {
            let n = self.numbers[depth];
            let f = self.shown[n as usize];
            let category = Category::of(depth + 1 == self.numbers.len(), s.flags, f.kind);
            let th = &mut self.threads[i];
            let frame = th
                .ff
                .frame(&mut self.strings, tables, n, Some(&f), category);
            if let Some(&stack) = th.cache.get(&(prefix, frame)) {
                prefix = Some(stack);
                continue;
            }
            if self.cached >= self.cache_limit {
                for t in &mut self.threads {
                    t.cache = HashMap::new();
                }
                self.cached = 0;
            }
            let th = &mut self.threads[i];
            let stack = th.stacks;
            th.stacks += 1;
            th.cache.insert((prefix, frame), stack);
            self.cached += 1;
            self.text.clear();
            let _ = write!(self.text, "{frame}");
            self.append(i, List::StackFrame, stack == 0)?;
            self.text.clear();
            match prefix {
                Some(p) => {
                    let _ = write!(self.text, "{p}");
                }
                None => self.text.push_str("null"),
            }
            self.append(i, List::StackPrefix, stack == 0)?;
            prefix = Some(stack);
        }
        let Some(stack) = prefix else {
            return Ok(());
        };
        let first = self.threads[i].samples == 0;
        self.threads[i].samples += 1;
        self.text.clear();
        let _ = write!(self.text, "{stack}");
        self.append(i, List::SampleStack, first)?;
        self.text.clear();
        self.text.push_str(&millis(s.timestamp_ns));
        self.append(i, List::SampleTime, first)?;
        self.text.clear();
        self.text.push('1');
        self.append(i, List::SampleWeight, first)
    }

    fn write(&mut self, meta: &Metadata, out: &mut dyn Write) -> io::Result<()> {
        let mut w = BufWriter::with_capacity(64 << 10, out);
        let mut s = String::new();
        // A profile with no samples has no timeline: Gecko lays out its (no) stacks instead.
        push_meta(&mut s, meta, self.threads.is_empty());
        w.write_all(s.as_bytes())?;
        let mut order: Vec<usize> = (0..self.threads.len()).collect();
        order.sort_by(|a, b| self.threads[*a].order.cmp(&self.threads[*b].order));
        let main = main_tid(
            meta.pid.unwrap_or(0),
            order.iter().map(|&i| self.threads[i].tid),
        );
        for (k, &i) in order.iter().enumerate() {
            if k > 0 {
                w.write_all(b",")?;
            }
            let th = &self.threads[i];
            let head = ThreadHead {
                name: &th.name,
                tid: th.tid,
                is_main: Some(th.tid) == main,
                samples: th.samples,
                stacks: th.stacks,
            };
            let spools = &mut self.spools;
            write_thread(&mut w, meta, &head, &th.ff, &mut |which, out| {
                spools.copy_to(LISTS * i + which as usize, out)
            })?;
        }
        s.clear();
        push_end(&mut s, &self.strings);
        w.write_all(s.as_bytes())?;
        w.flush()
    }

    fn spill_note(&self) -> Option<String> {
        self.spools.spill_note()
    }
}
