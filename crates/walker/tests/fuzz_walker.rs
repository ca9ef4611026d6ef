//! Hostile memory: the reader is run over images of real layouts (every table in
//! `strobe_python_abi::ALL`) with random corruption — cycles, wild and self pointers, pointers
//! near `u64::MAX`, huge and negative lengths, invalid text, truncated regions — and must end
//! every call with a value or a typed error: no panic, no endless loop, no giant read.
//!
//! How: for each layout one valid image is built (`support::build`; the unmutated image must
//! read back exactly, which [`baseline_images_read_back_exactly`] checks), then each case
//! applies 1–4 mutations to the fields the builder recorded (or to random bytes), runs
//! `layout::resolve` (3.13+: the layout then comes from the mutated `_Py_DebugOffsets`, as in
//! production), `Walker::walk` (a fresh walker on even cases; on odd cases one long-lived
//! walker per batch, whose caches see the image change under it like a live target's),
//! `threadnames::thread_names`, `strings::read_string`, the `dump --locals` readers
//! (`locals::thread_frames` and `LocalsReader::frame_locals` on the thread whose leaf frame
//! holds locals of every kind, `ValueReader::repr` on one value or object), and undoes the
//! mutations.
//!
//! Bounds checked on every call:
//! - reads: at most [`READ_BUDGET`] per call ([`VALUE_READ_BUDGET`] for the locals readers;
//!   the memory refuses further reads and the case fails): this is how a walk that does not
//!   end is caught without hanging the test;
//! - locals and reprs: at most `MAX_SLOTS` locals per frame, reprs within `MAX_REPR` (plus
//!   the last item) and type names within their bound;
//! - read size: no single read above [`MAX_READ`] (16 MiB);
//! - wall clock: a watchdog aborts the run, naming the case, if a worker makes no progress for
//!   [`STALL`] (a loop that does not read memory).
//!
//! Cases: `STROBE_FUZZ_CASES` (total over all layouts, default [`DEFAULT_CASES`] = 750,000,
//! 70 s in a debug build on this 2-core machine with the locals readers included, 200 s when
//! the machine is shared), `STROBE_FUZZ_SEED` (default fixed, so CI
//! runs are reproducible), `STROBE_FUZZ_ONLY` (substring of a layout name such as `3.14t`).
//! A failure prints the layout, case number and the mutations applied; rerun with the same
//! seed and `STROBE_FUZZ_ONLY` to reproduce it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Mutex};
use std::time::{Duration, Instant};

use strobe_memory::MemError;
use strobe_python_abi::{debug_offsets_for, Layout, ALL};
use strobe_walker::layout::resolve;
use strobe_walker::locals::{thread_frames, FrameRef, LocalsReader, MAX_SLOTS};
use strobe_walker::strings::{read_string, MAX_STRING_CHARS};
use strobe_walker::threadnames::thread_names;
use strobe_walker::value::{Value, ValueReader, MAX_REPR, MAX_TEXT};
use strobe_walker::walk::MAX_DEPTH;
use strobe_walker::{ThreadStack, WalkError, Walker};

use strobe_testkit::Rng;
use support::build::{build, Built, ExpectedThread};
use support::{FuzzMemory, MAX_READ};

/// Total cases over all layouts when `STROBE_FUZZ_CASES` is not set.
const DEFAULT_CASES: u64 = 750_000;

/// Most reads one call may make on a fuzzed image. Unmutated, a walk needs about 90 reads and
/// `thread_names` about 130; over 1,000,000 fuzzed cases the most seen were 112 and 134.
/// Corruption may lengthen a call (a grown dict count, a frame chain through other objects),
/// but on these images of ~150 regions every list ends or repeats long before this bound; a
/// call that reaches it is treated as a loop that does not end.
const READ_BUDGET: u64 = 2_000;

/// Most reads one call of the value or locals readers may make on a fuzzed image. Their own
/// bounds (`MAX_VALUE_READS` per value, `MAX_SLOTS` per frame) keep a call far below this;
/// unmutated, reading the leaf frame's locals needs about 120.
const VALUE_READ_BUDGET: u64 = 100_000;

/// A worker that makes no progress for this long is stuck in a loop that does not read.
const STALL: Duration = Duration::from_secs(30);

/// Cases per unit of work (one image build, one long-lived walker).
const BATCH: u64 = 2_000;

fn layout_name(l: &Layout) -> String {
    let mut s = format!("{}.{}", l.version.major, l.version.minor);
    if l.flavour.free_threaded {
        s.push('t');
    }
    if l.flavour.debug {
        s.push('d');
    }
    s
}

fn positions(l: &Layout) -> Option<&'static strobe_python_abi::DebugOffsetsTable> {
    debug_offsets_for(l.version.major, l.version.minor, l.flavour)
}

fn built(l: &Layout) -> Built {
    build(l, positions(l))
}

fn frames_of(t: &ThreadStack) -> Vec<(String, String, Option<i32>)> {
    t.frames
        .iter()
        .map(|f| (f.function.to_string(), f.filename.to_string(), f.line))
        .collect()
}

fn as_expected(stacks: &[ThreadStack]) -> Vec<ExpectedThread> {
    stacks
        .iter()
        .map(|t| ExpectedThread {
            interp_id: t.interp_id,
            thread_id: t.thread_id,
            native_id: t.native_id,
            holds_gil: t.holds_gil,
            gc: t.gc,
            exception: t
                .exception
                .as_ref()
                .map(|e| (e.type_name.to_string(), e.raised)),
            frames: frames_of(t),
        })
        .collect()
}

/// The layout a case walks with: 3.13+ resolve it from the (possibly corrupted) image, as
/// production does; older versions take the generated table (no memory is read).
fn resolve_layout(mem: &FuzzMemory, b: &Built) -> Result<Layout, WalkError> {
    let l = &b.layout;
    resolve(mem, l.version, l.flavour.debug, b.runtime).map(|r| r.layout)
}

// ---------------------------------------------------------------------------------------------
// The unmutated images are valid: without this the fuzzer would mostly test early exits.

#[test]
fn baseline_images_read_back_exactly() {
    assert!(ALL.len() >= 17, "python-abi has only {} layouts", ALL.len());
    for l in ALL {
        let name = layout_name(l);
        let b = built(l);
        let mem = FuzzMemory::new(b.regions.clone());
        mem.reset_reads(READ_BUDGET);
        let resolved = resolve(&mem, l.version, l.flavour.debug, b.runtime)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(&resolved.layout, l, "{name}: resolved layout");
        assert_eq!(
            resolved.from_debug_offsets,
            l.version.minor >= 13,
            "{name}: 3.13+ images carry _Py_DebugOffsets"
        );

        mem.reset_reads(READ_BUDGET);
        let mut w = Walker::new(&mem, resolved.layout, b.roots);
        let stacks = w.walk().unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(as_expected(&stacks), b.threads, "{name}: walk");
        let first = mem.reads();
        // A second sample hits the code cache.
        mem.reset_reads(READ_BUDGET);
        assert_eq!(as_expected(&w.walk().unwrap()), b.threads, "{name}");
        assert!(mem.reads() < first, "{name}: cached walk reads less");

        mem.reset_reads(READ_BUDGET);
        let names = thread_names(&mem, l, b.interp).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(names, b.names, "{name}: thread names");
        assert!(mem.reads() < READ_BUDGET / 10, "{name}: {}", mem.reads());

        for (addr, text) in &b.slots.strings {
            assert_eq!(&read_string(&mem, l, *addr).unwrap(), text, "{name}");
        }

        // Values and the leaf frame's locals (`dump --locals`).
        mem.reset_reads(VALUE_READ_BUDGET);
        let mut values = ValueReader::new(&mem, l);
        for (addr, want) in &b.values {
            let v = values.repr(*addr);
            assert_eq!(&v.repr, want, "{name}: value at {addr:#x}");
            assert!(!v.truncated, "{name}: {want}");
        }
        let frames =
            thread_frames(&mem, l, b.leaf_tstate).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(frames.len(), 3, "{name}: {frames:?}");
        assert_eq!(
            frames[0],
            FrameRef {
                addr: b.leaf_frame,
                code: b.leaf_code
            },
            "{name}"
        );
        let locals = LocalsReader::new(&mem, l)
            .frame_locals(frames[0])
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let got: Vec<(String, &'static str, Option<String>)> = locals
            .into_iter()
            .map(|l| (l.name, l.kind.as_str(), l.value.map(|v| v.repr)))
            .collect();
        assert_eq!(got, b.leaf_locals, "{name}: leaf locals");
    }
}

// ---------------------------------------------------------------------------------------------
// Mutations.

/// One corruption, kept to print a failing case (the fields are only read by `Debug`).
#[allow(dead_code)]
#[derive(Debug, Clone)]
enum Mutation {
    /// A pointer field set to another value.
    Ptr { slot: u64, value: u64 },
    /// A length/count/size field (of `width` bytes) set to another value.
    Len { at: u64, width: u8, value: u64 },
    /// Bytes of a data area, or anywhere, overwritten.
    Bytes { at: u64, bytes: Vec<u8> },
    /// A `_Py_DebugOffsets` member (3.13+) set to another value.
    Debug { at: u64, value: u64 },
    /// A region cut short.
    Truncate { base: u64, len: usize },
}

/// Interesting integers for lengths and counts.
fn len_value(rng: &mut Rng, orig: u64) -> u64 {
    match rng.below(18) {
        0 => u64::MAX,
        1 => i64::MAX as u64,
        2 => i64::MIN as u64,
        3 => 1 << 40,
        4 => 1 << 32,
        5 => 1 << 31,
        6 => u64::from(u32::MAX),
        7 => 0,
        8 => orig.wrapping_add(1),
        9 => orig.wrapping_sub(1),
        10 => orig.wrapping_mul(2),
        11 => orig << rng.below(24),
        12 => rng.next_u64(),
        13 => rng.below(1 << 16),
        14 => (-(rng.below(1000) as i64)) as u64,
        15 => 1 << rng.below(64),
        16 => 0x11_0000,
        _ => rng.below(64),
    }
}

struct Mutator<'a> {
    b: &'a Built,
    /// The original value of every pointer slot, for type confusion.
    ptr_values: Vec<u64>,
}

impl<'a> Mutator<'a> {
    fn new(b: &'a Built, mem: &FuzzMemory) -> Mutator<'a> {
        let ptr_values = b
            .slots
            .ptrs
            .iter()
            .map(|&(s, _)| mem.peek_u64(s).unwrap())
            .collect();
        Mutator { b, ptr_values }
    }

    fn ptr_value(&self, rng: &mut Rng, mem: &FuzzMemory, slot: u64, owner: u64) -> u64 {
        let s = &self.b.slots;
        let orig = mem.peek_u64(slot).unwrap_or(0);
        match rng.below(12) {
            // Another structure: frames and lists pointing back make cycles.
            0 | 1 => *rng.pick(&s.objects),
            2 => rng.pick(&s.objects).wrapping_add(rng.below(512)),
            3 => owner,
            4 => slot,
            5 => 0,
            6 => rng.next_u64(),
            7 => u64::MAX - rng.below(64),
            8 => rng.below(4096),
            9 => {
                let (base, len) = mem.region(rng.index(mem.region_count()));
                (base + len as u64).wrapping_sub(rng.below(9))
            }
            10 => *rng.pick(&self.ptr_values),
            _ => orig ^ (1 + rng.below(3)),
        }
    }

    fn one(&self, rng: &mut Rng, mem: &FuzzMemory) -> Mutation {
        let s = &self.b.slots;
        let kind = rng.below(100);
        match kind {
            0..=34 => {
                let &(slot, owner) = rng.pick(&s.ptrs);
                let value = self.ptr_value(rng, mem, slot, owner);
                mem.poke_u64(slot, value);
                Mutation::Ptr { slot, value }
            }
            35..=54 => {
                let &(at, width) = rng.pick(&s.lens);
                let orig = mem.peek_u64(at).unwrap_or(0) & width_mask(width);
                let value = len_value(rng, orig);
                mem.poke(at, &value.to_le_bytes()[..width as usize]);
                Mutation::Len { at, width, value }
            }
            55..=66 => {
                let &(at, len) = rng.pick(&s.data);
                let at = at + rng.below(len.max(1) as u64);
                let bytes: Vec<u8> = match rng.below(6) {
                    0 => vec![rng.next_u64() as u8],
                    1 => vec![0x80 | rng.next_u64() as u8],
                    // Lone surrogate / beyond U+10FFFF / all ones.
                    2 => 0xd800u16
                        .wrapping_add(rng.below(0x800) as u16)
                        .to_le_bytes()
                        .to_vec(),
                    3 => (0x11_0000u32 + rng.below(1 << 20) as u32)
                        .to_le_bytes()
                        .to_vec(),
                    4 => vec![0xff; 4],
                    _ => vec![0; 1 + rng.index(4)],
                };
                mem.poke(at, &bytes);
                Mutation::Bytes { at, bytes }
            }
            67..=76 if !s.debug_words.is_empty() => {
                let at = *rng.pick(&s.debug_words);
                let orig = mem.peek_u64(at).unwrap_or(0);
                let value = match rng.below(7) {
                    0 => orig.wrapping_add(rng.below(64)),
                    1 => orig.wrapping_sub(rng.below(64)),
                    2 => rng.below(1024),
                    3 => rng.below(1 << 17),
                    4 => orig ^ (1 << rng.below(64)),
                    5 => 0,
                    _ => len_value(rng, orig),
                };
                mem.poke_u64(at, value);
                Mutation::Debug { at, value }
            }
            67..=84 => {
                // Anywhere: a bit flip or an aligned word.
                let (base, len) = mem.region(rng.index(mem.region_count()));
                if len == 0 {
                    return Mutation::Truncate { base, len };
                }
                let off = rng.below(len as u64);
                if rng.chance(50) {
                    let old = mem.peek_u64(base + off).unwrap_or(0) as u8;
                    let bytes = vec![old ^ (1 << rng.below(8))];
                    mem.poke(base + off, &bytes);
                    Mutation::Bytes {
                        at: base + off,
                        bytes,
                    }
                } else {
                    let at = base + (off & !7);
                    let value = if rng.chance(50) {
                        *rng.pick(&s.objects)
                    } else {
                        len_value(rng, 0)
                    };
                    mem.poke_u64(at, value);
                    Mutation::Bytes {
                        at,
                        bytes: value.to_le_bytes().to_vec(),
                    }
                }
            }
            _ => {
                let i = rng.index(mem.region_count());
                let (base, len) = mem.region(i);
                let cut = rng.below(len as u64 + 1) as usize;
                mem.truncate(i, cut);
                Mutation::Truncate { base, len: cut }
            }
        }
    }
}

fn width_mask(width: u8) -> u64 {
    if width >= 8 {
        u64::MAX
    } else {
        (1u64 << (8 * width)) - 1
    }
}

// ---------------------------------------------------------------------------------------------
// Running cases.

/// Per-layout counters for the summary.
#[derive(Debug, Default, Clone)]
struct Stats {
    cases: u64,
    resolved: u64,
    walk_ok: u64,
    walk_frames: u64,
    names_ok: u64,
    string_ok: u64,
    locals_ok: u64,
    errors: BTreeMap<(&'static str, &'static str), u64>,
    max_reads: BTreeMap<&'static str, u64>,
}

impl Stats {
    fn merge(&mut self, o: &Stats) {
        self.cases += o.cases;
        self.resolved += o.resolved;
        self.walk_ok += o.walk_ok;
        self.walk_frames += o.walk_frames;
        self.names_ok += o.names_ok;
        self.string_ok += o.string_ok;
        self.locals_ok += o.locals_ok;
        for (k, v) in &o.errors {
            *self.errors.entry(*k).or_default() += v;
        }
        for (k, v) in &o.max_reads {
            let e = self.max_reads.entry(k).or_default();
            *e = (*e).max(*v);
        }
    }

    fn error(&mut self, op: &'static str, e: &WalkError) {
        let kind = match e {
            WalkError::Mem(MemError::Fault { .. }) => "fault",
            WalkError::Mem(MemError::TooLarge { .. }) => "read refused as too large",
            WalkError::Mem(_) => "other memory error",
            WalkError::Corrupt { what, .. } => what,
            WalkError::Unbounded { what, .. } => what,
            WalkError::Unsupported(_) => "unsupported",
        };
        let op = match e {
            WalkError::Corrupt { .. } => match op {
                "walk" => "walk corrupt",
                "thread_names" => "thread_names corrupt",
                "read_string" => "read_string corrupt",
                _ => op,
            },
            WalkError::Unbounded { .. } => match op {
                "walk" => "walk unbounded",
                _ => op,
            },
            _ => op,
        };
        *self.errors.entry((op, kind)).or_default() += 1;
    }
}

/// Check the bounds of one call; `Err` describes the violation.
fn bounded(mem: &FuzzMemory, op: &'static str, stats: &mut Stats) -> Result<(), String> {
    let e = stats.max_reads.entry(op).or_default();
    *e = (*e).max(mem.reads());
    if mem.over_budget() {
        return Err(format!("{op} needed more than {READ_BUDGET} reads"));
    }
    let (len, addr) = mem.largest_read();
    if len > MAX_READ {
        return Err(format!("{op} asked for a {len}-byte read at {addr:#x}"));
    }
    Ok(())
}

fn check_stacks(stacks: &[ThreadStack]) -> Result<u64, String> {
    let mut frames = 0;
    for t in stacks {
        if t.frames.len() > MAX_DEPTH {
            return Err(format!("{} frames", t.frames.len()));
        }
        for f in &t.frames {
            if f.function.chars().count() > MAX_STRING_CHARS
                || f.filename.chars().count() > MAX_STRING_CHARS
            {
                return Err("a frame name longer than MAX_STRING_CHARS".into());
            }
        }
        frames += t.frames.len() as u64;
    }
    Ok(frames)
}

/// One case on an already-mutated image.
fn run_case(
    mem: &FuzzMemory,
    b: &Built,
    persistent: Option<&mut Walker<&FuzzMemory>>,
    rng: &mut Rng,
    stats: &mut Stats,
) -> Result<(), String> {
    stats.cases += 1;
    mem.reset_reads(READ_BUDGET);
    let resolved = resolve_layout(mem, b);
    bounded(mem, "resolve", stats)?;
    let layout = match resolved {
        Ok(l) => {
            stats.resolved += 1;
            l
        }
        Err(e) => {
            stats.error("resolve", &e);
            // Production stops here; walking with the generated table still exercises the
            // walker on this image.
            b.layout
        }
    };

    mem.reset_reads(READ_BUDGET);
    let walked = match persistent {
        Some(w) => w.walk(),
        None => Walker::new(mem, layout, b.roots).walk(),
    };
    bounded(mem, "walk", stats)?;
    match walked {
        Ok(stacks) => {
            stats.walk_ok += 1;
            stats.walk_frames += check_stacks(&stacks)?;
        }
        Err(e) => stats.error("walk", &e),
    }

    mem.reset_reads(READ_BUDGET);
    let names = thread_names(mem, &layout, b.interp);
    bounded(mem, "thread_names", stats)?;
    match names {
        Ok(names) => {
            stats.names_ok += 1;
            if names.values().any(|n| n.chars().count() > MAX_STRING_CHARS) {
                return Err("a thread name longer than MAX_STRING_CHARS".into());
            }
        }
        Err(e) => stats.error("thread_names", &e),
    }

    let addr = if rng.chance(80) {
        rng.pick(&b.slots.strings).0
    } else {
        *rng.pick(&b.slots.objects)
    };
    mem.reset_reads(READ_BUDGET);
    let text = read_string(mem, &layout, addr);
    bounded(mem, "read_string", stats)?;
    match text {
        Ok(t) if t.chars().count() > MAX_STRING_CHARS => {
            return Err("a string longer than MAX_STRING_CHARS".into())
        }
        Ok(_) => stats.string_ok += 1,
        Err(e) => stats.error("read_string", &e),
    }

    // `dump --locals`: the leaf thread's frames and their locals, and one value.
    mem.reset_reads(VALUE_READ_BUDGET);
    let frames = thread_frames(mem, &layout, b.leaf_tstate);
    bounded(mem, "thread_frames", stats)?;
    match frames {
        Ok(frames) => {
            if frames.len() > MAX_DEPTH {
                return Err(format!("{} frames for locals", frames.len()));
            }
            let mut reader = LocalsReader::new(mem, &layout);
            for &f in frames.iter().take(4) {
                mem.reset_reads(VALUE_READ_BUDGET);
                let locals = reader.frame_locals(f);
                bounded(mem, "frame_locals", stats)?;
                match locals {
                    Ok(locals) => {
                        stats.locals_ok += 1;
                        if locals.len() > MAX_SLOTS {
                            return Err(format!("{} locals in a frame", locals.len()));
                        }
                        for l in &locals {
                            check_value(l.value.as_ref())?;
                        }
                    }
                    Err(e) => stats.error("frame_locals", &e),
                }
            }
        }
        Err(e) => stats.error("thread_frames", &e),
    }
    let addr = if rng.chance(70) {
        rng.pick(&b.values).0
    } else {
        *rng.pick(&b.slots.objects)
    };
    mem.reset_reads(VALUE_READ_BUDGET);
    let value = ValueReader::new(mem, &layout).repr(addr);
    bounded(mem, "repr", stats)?;
    check_value(Some(&value))?;
    Ok(())
}

/// A repr stays within its bounds: `MAX_REPR` bytes, plus the last item written before the
/// bound was noticed (at most a text preview of `MAX_TEXT` characters, escaped) and the
/// length suffix.
fn check_value(v: Option<&Value>) -> Result<(), String> {
    let Some(v) = v else { return Ok(()) };
    if v.repr.len() > MAX_REPR + 12 * MAX_TEXT + 64 {
        return Err(format!("a repr of {} bytes", v.repr.len()));
    }
    if v.type_name.as_ref().is_some_and(|t| t.len() > 4 * 200) {
        return Err("a type name longer than its bound".into());
    }
    Ok(())
}

thread_local! {
    /// Where the last panic on this thread happened (set by the hook [`fuzz_hostile_images`]
    /// installs, which keeps thousands of expected-to-be-reported panics off stderr).
    static PANIC_AT: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
}

/// What a worker is doing, for the watchdog.
struct Progress {
    heartbeat: AtomicU64,
    layout: AtomicUsize,
    case: AtomicU64,
}

struct Unit {
    layout: usize,
    start: u64,
    end: u64,
}

fn env_u64(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a number")),
        Err(_) => default,
    }
}

/// Run the cases `unit` describes; failures are appended to `failures`.
fn run_unit(unit: &Unit, seed: u64, progress: &Progress, failures: &Mutex<Vec<String>>) -> Stats {
    let l = &ALL[unit.layout];
    let b = built(l);
    let mem = FuzzMemory::new(b.regions.clone());
    let mutator = Mutator::new(&b, &mem);
    let mut stats = Stats::default();
    let mut walker = Walker::new(&mem, b.layout, b.roots);
    let mut muts = Vec::new();
    progress.layout.store(unit.layout, Ordering::Relaxed);
    for case in unit.start..unit.end {
        progress.case.store(case, Ordering::Relaxed);
        progress.heartbeat.fetch_add(1, Ordering::Relaxed);
        let mut rng = Rng::new(seed ^ ((unit.layout as u64) << 48) ^ case);
        muts.clear();
        for _ in 0..1 + rng.below(4) {
            muts.push(mutator.one(&mut rng, &mem));
        }
        let persistent = (case % 2 == 1).then_some(&mut walker);
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            run_case(&mem, &b, persistent, &mut rng, &mut stats)
        }));
        let failure = match outcome {
            Ok(Ok(())) => None,
            Ok(Err(bound)) => Some(bound),
            Err(panic) => Some(format!(
                "panic at {}: {}",
                PANIC_AT.with(|p| p.borrow().clone()),
                panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default()
            )),
        };
        if let Some(f) = failure {
            let mut all = failures.lock().unwrap();
            all.push(format!(
                "{} case {case} (seed {seed:#x}): {f}\n    mutations: {muts:?}",
                layout_name(l)
            ));
            if all.len() > 20 {
                return stats;
            }
            // A walker that panicked may be in any state.
            walker = Walker::new(&mem, b.layout, b.roots);
        }
        mem.restore();
    }
    stats
}

#[test]
fn fuzz_hostile_images() {
    let total = env_u64("STROBE_FUZZ_CASES", DEFAULT_CASES);
    let seed = env_u64("STROBE_FUZZ_SEED", 0x5742_0be5_eed5);
    let only = std::env::var("STROBE_FUZZ_ONLY").ok();
    let layouts: Vec<usize> = (0..ALL.len())
        .filter(|&i| only.as_deref().is_none_or(|o| layout_name(&ALL[i]) == o))
        .collect();
    assert!(
        !layouts.is_empty(),
        "STROBE_FUZZ_ONLY={only:?} matches no layout"
    );
    let per_layout = total.div_ceil(layouts.len() as u64);
    let mut units = Vec::new();
    for &layout in &layouts {
        let mut start = 0;
        while start < per_layout {
            let end = (start + BATCH).min(per_layout);
            units.push(Unit { layout, start, end });
            start = end;
        }
    }
    let workers = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .min(units.len());
    let next = AtomicUsize::new(0);
    let failures = Mutex::new(Vec::new());
    let progress: Vec<Progress> = (0..workers)
        .map(|_| Progress {
            heartbeat: AtomicU64::new(0),
            layout: AtomicUsize::new(0),
            case: AtomicU64::new(0),
        })
        .collect();
    let done = AtomicBool::new(false);
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|info| {
        let at = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        PANIC_AT.with(|p| *p.borrow_mut() = at);
    }));
    let started = Instant::now();
    let stats: Vec<(usize, Stats)> = std::thread::scope(|scope| {
        let (tx, rx) = mpsc::channel::<()>();
        let (done, progress) = (&done, &progress);
        let watchdog = scope.spawn(move || {
            let mut last: Vec<(u64, Instant)> =
                progress.iter().map(|_| (0, Instant::now())).collect();
            while !done.load(Ordering::Relaxed) {
                // Wakes up every second, or at once when the workers are done.
                if rx.recv_timeout(Duration::from_secs(1)).is_ok() {
                    break;
                }
                for (p, (beat, at)) in progress.iter().zip(last.iter_mut()) {
                    let now = p.heartbeat.load(Ordering::Relaxed);
                    if now != *beat {
                        *beat = now;
                        *at = Instant::now();
                    } else if at.elapsed() > STALL {
                        eprintln!(
                            "fuzz_hostile_images: {} case {} (seed {seed:#x}) made no progress \
                             for {STALL:?}: a loop that does not read memory; aborting",
                            layout_name(&ALL[p.layout.load(Ordering::Relaxed)]),
                            p.case.load(Ordering::Relaxed)
                        );
                        std::process::abort();
                    }
                }
            }
        });
        let handles: Vec<_> = progress
            .iter()
            .map(|p| {
                let (next, units, failures) = (&next, &units, &failures);
                scope.spawn(move || {
                    let mut out = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(unit) = units.get(i) else { break };
                        if failures.lock().unwrap().len() > 20 {
                            break;
                        }
                        out.push((unit.layout, run_unit(unit, seed, p, failures)));
                    }
                    out
                })
            })
            .collect();
        let mut all = Vec::new();
        for h in handles {
            all.extend(h.join().unwrap());
        }
        done.store(true, Ordering::Relaxed);
        let _ = tx.send(());
        watchdog.join().unwrap();
        all
    });
    let elapsed = started.elapsed();
    std::panic::set_hook(default_hook);

    let mut per: BTreeMap<usize, Stats> = BTreeMap::new();
    for (layout, s) in &stats {
        per.entry(*layout).or_default().merge(s);
    }
    let mut sum = Stats::default();
    eprintln!("layout   cases  resolved  walk_ok  names_ok  string_ok  frames  locals_ok");
    for (layout, s) in &per {
        eprintln!(
            "{:<6} {:>7} {:>9} {:>8} {:>9} {:>10} {:>7} {:>10}",
            layout_name(&ALL[*layout]),
            s.cases,
            s.resolved,
            s.walk_ok,
            s.names_ok,
            s.string_ok,
            s.walk_frames,
            s.locals_ok
        );
        sum.merge(s);
    }
    eprintln!(
        "{} cases over {} layouts in {:.1?} ({:.0} cases/s, {workers} workers); most reads per \
         call: {:?}",
        sum.cases,
        per.len(),
        elapsed,
        sum.cases as f64 / elapsed.as_secs_f64(),
        sum.max_reads
    );
    for ((op, kind), v) in &sum.errors {
        eprintln!("  {v:>8}  {op}: {kind}");
    }
    let failures = failures.into_inner().unwrap();
    assert!(
        failures.is_empty(),
        "{} failing case(s):\n{}",
        failures.len(),
        failures.join("\n")
    );
    // The image must keep the walker busy: most cases end in a full walk, not at the first
    // read.
    assert!(sum.cases >= total.min(per_layout * per.len() as u64));
    assert!(
        sum.walk_ok * 5 >= sum.cases,
        "only {} of {} walks succeeded: the mutations are too destructive to reach deep code",
        sum.walk_ok,
        sum.cases
    );
}
