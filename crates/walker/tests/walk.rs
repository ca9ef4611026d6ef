//! The walker over synthetic address spaces laid out per a CPython layout: one image per frame
//! model, plus corrupt images that must end in typed errors (no panic, no hang).
//!
//! Layouts are python-abi's generated tables, so the images are laid out as the real headers
//! say; the builders below only ever use a layout's offsets.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::Rc;

use strobe_memory::{MemError, RemoteMemory};
use strobe_python_abi::{
    layout_for, Flavour, FrameModel, GcModel, GilModel, Layout, LineTable, RuntimeModel,
    StringModel,
};
use strobe_testkit::ImageMemory;
use strobe_walker::strings::read_string;
use strobe_walker::walk::{MAX_DEPTH, MAX_THREADS};
use strobe_walker::{RawSample, Roots, ThreadStack, WalkError, Walker};

#[path = "walk/identities.rs"]
mod identities;
#[path = "walk/subset.rs"]
mod subset;

// ---------------------------------------------------------------------------------------------
// Layouts

/// The generated table (python-abi/src/tables/, from the real headers) for a minor line.
fn layout(major: u8, minor: u8, free_threaded: bool) -> Layout {
    let flavour = Flavour {
        free_threaded,
        debug: false,
    };
    layout_for(major, minor, flavour)
        .copied()
        .unwrap_or_else(|| {
            panic!(
            "python-abi has no {major}.{minor} ({flavour:?}) table: run python-abi/gen/abigen.py \
             (headers come from .ci/provision.sh)"
        )
        })
}

/// 2.7: `interp_head` static, `_PyThreadState_Current`, `PyStringObject` names, `co_lnotab`.
fn l27() -> Layout {
    layout(2, 7, false)
}

/// 3.10: frame objects, `f_lasti` in code units, `co_linetable`.
fn l310() -> Layout {
    layout(3, 10, false)
}

/// 3.11: cframe + chunks, the GIL holder in `_PyRuntime.gilstate`, no CSTACK owner.
fn l311() -> Layout {
    layout(3, 11, false)
}

/// 3.12: cframe + chunks, per-interpreter GIL pointer, CSTACK-owned entry frames.
fn l312() -> Layout {
    layout(3, 12, false)
}

/// 3.13: `tstate->current_frame`, `f_executable` (may be None), CSTACK-owned entry frames.
fn l313() -> Layout {
    layout(3, 13, false)
}

/// 3.14 default build: tagged `f_executable`, INTERPRETER and CSTACK owners.
fn l314() -> Layout {
    layout(3, 14, false)
}

/// 3.14 free-threaded: 32-byte object header, a different `str` state bitfield, `tlbc_index`
/// in frames and `co_tlbc` in code objects.
fn l314t() -> Layout {
    layout(3, 14, true)
}

// ---------------------------------------------------------------------------------------------
// Image builders

/// An image plus the layout it follows and the type objects every image needs.
struct Image {
    mem: ImageMemory,
    l: Layout,
    code_type: u64,
    none: u64,
}

impl Image {
    fn new(l: Layout) -> Image {
        let mut mem = ImageMemory::new();
        let code_type = put_type(&mut mem, &l, "code");
        let none_type = put_type(&mut mem, &l, "NoneType");
        let none = mem.alloc(l.pyobject_size as usize);
        mem.write_u64(none + u64::from(l.pyobject_ob_type), none_type);
        Image {
            mem,
            l,
            code_type,
            none,
        }
    }

    fn off(v: Option<u32>) -> u64 {
        u64::from(v.expect("layout field used by this image"))
    }

    /// A `str` (a `PyStringObject` on 2.7) holding `s`.
    fn str(&mut self, s: &str) -> u64 {
        put_str(&mut self.mem, &self.l, s)
    }

    /// A code object named `name` in `file` whose instruction k (code unit k; byte 2k) is on
    /// line `firstlineno + k`, with `units` code units of bytecode.
    fn code(&mut self, name: &str, file: &str, firstlineno: i32, units: usize) -> u64 {
        let l = self.l;
        let table = line_per_unit_table(l.line_table, units);
        let name_s = self.str(name);
        let file_s = self.str(file);
        let table_b = put_bytes(&mut self.mem, &l, &table);
        let extra = l.code_code_adaptive.map_or(0, |_| units * 2);
        let size = (l.code_size as usize).max(l.code_code_adaptive.unwrap_or(0) as usize) + extra;
        let c = self.mem.alloc(size);
        write_code(
            &mut self.mem,
            &l,
            self.code_type,
            c,
            name_s,
            file_s,
            table_b,
            firstlineno,
            units,
        );
        c
    }

    /// Start of a code object's own bytecode (3.11+).
    fn adaptive(&self, code: u64) -> u64 {
        code + Self::off(self.l.code_code_adaptive)
    }

    /// A runtime (3.7+) or `interp_head` static (≤3.6) whose list holds `interps`.
    fn roots(&mut self, interps: &[u64]) -> Roots {
        let l = self.l;
        for w in interps.windows(2) {
            self.mem.write_u64(w[0] + u64::from(l.interp_next), w[1]);
        }
        let head = interps.first().copied().unwrap_or(0);
        match l.runtime_model {
            RuntimeModel::PyRuntime37 => {
                let fields = [
                    l.runtime_interpreters_head,
                    l.runtime_tstate_current,
                    l.gc_collecting.filter(|_| l.gc_model == GcModel::Runtime),
                ];
                let size = fields.iter().flatten().max().unwrap() + 8;
                let runtime = self.mem.alloc(size as usize);
                self.mem
                    .write_u64(runtime + Self::off(l.runtime_interpreters_head), head);
                Roots {
                    runtime: Some(runtime),
                    ..Roots::default()
                }
            }
            RuntimeModel::InterpHead => {
                let var = self.mem.alloc(8);
                self.mem.write_u64(var, head);
                let current = self.mem.alloc(8);
                Roots {
                    interp_head: Some(var),
                    tstate_current: Some(current),
                    ..Roots::default()
                }
            }
        }
    }

    fn interp(&mut self, id: i64) -> u64 {
        let l = self.l;
        let fields = [
            Some(l.interp_next),
            Some(l.interp_tstate_head),
            l.interp_id,
            l.interp_ceval_gil,
            // The collector's flag, read every sample (3.9+: in the interpreter).
            l.gc_collecting.filter(|_| l.gc_model == GcModel::Interp),
        ];
        let size = fields.iter().flatten().max().unwrap() + 8;
        let i = self.mem.alloc(size as usize);
        if let Some(off) = l.interp_id {
            self.mem.write_u64(i + u64::from(off), id as u64);
        }
        i
    }

    /// Thread states of `interp`, linked in the given order.
    fn threads(&mut self, interp: u64, specs: &[(u64, u32, u64)]) -> Vec<u64> {
        let l = self.l;
        let ts: Vec<u64> = specs
            .iter()
            .map(|_| self.mem.alloc(l.tstate_size as usize))
            .collect();
        for (i, (&t, &(ident, tid, innermost))) in ts.iter().zip(specs).enumerate() {
            let next = ts.get(i + 1).copied().unwrap_or(0);
            self.mem.write_u64(t + u64::from(l.tstate_next), next);
            if let Some(off) = l.tstate_prev {
                let prev = if i > 0 { ts[i - 1] } else { 0 };
                self.mem.write_u64(t + u64::from(off), prev);
            }
            self.mem.write_u64(t + u64::from(l.tstate_interp), interp);
            self.mem.write_u64(t + u64::from(l.tstate_thread_id), ident);
            if let Some(off) = l.tstate_native_thread_id {
                self.mem.write_u64(t + u64::from(off), u64::from(tid));
            }
            self.set_innermost(t, innermost);
        }
        self.mem.write_u64(
            interp + u64::from(l.interp_tstate_head),
            ts.first().copied().unwrap_or(0),
        );
        ts
    }

    fn set_innermost(&mut self, t: u64, frame: u64) {
        let l = self.l;
        match l.frame_model {
            FrameModel::FrameObject => self.mem.write_u64(t + Self::off(l.tstate_frame), frame),
            FrameModel::CFrame311 => {
                let cframe = self.mem.alloc(32);
                self.mem
                    .write_u64(cframe + Self::off(l.cframe_current_frame), frame);
                self.mem.write_u64(t + Self::off(l.tstate_cframe), cframe);
            }
            FrameModel::Direct313 => self
                .mem
                .write_u64(t + Self::off(l.tstate_current_frame), frame),
        }
    }

    /// ≤3.10 frame objects for `(code, instruction index)` pairs, outermost first; returns the
    /// innermost.
    fn frame_objects(&mut self, stack: &[(u64, i64)]) -> u64 {
        let l = self.l;
        let mut back = 0;
        for &(code, k) in stack {
            let f = self.mem.alloc(Self::off(l.frame_lasti) as usize + 8);
            self.mem.write_u64(f + Self::off(l.frame_back), back);
            self.mem.write_u64(f + Self::off(l.frame_code), code);
            // f_lasti: bytes ≤3.9, code units in 3.10.
            let lasti = match l.line_table {
                LineTable::Linetable310 => k,
                _ => 2 * k,
            };
            self.mem
                .write_i32(f + Self::off(l.frame_lasti), lasti as i32);
            back = f;
        }
        back
    }

    /// A data-stack chunk of `size` bytes with `previous` as its older chunk.
    fn chunk(&mut self, size: usize, previous: u64) -> u64 {
        let l = self.l;
        let c = self.mem.alloc(size);
        self.mem
            .write_u64(c + Self::off(l.chunk_previous), previous);
        self.mem.write_u64(c + Self::off(l.chunk_size), size as u64);
        c
    }

    /// Write a `_PyInterpreterFrame` at `at`.
    fn iframe(&mut self, at: u64, f: IFrame) {
        let l = self.l;
        self.mem
            .write_u64(at + Self::off(l.iframe_previous), f.previous);
        self.mem.write_u64(at + Self::off(l.iframe_code), f.code);
        self.mem
            .write_u64(at + Self::off(l.iframe_instr_ptr), f.instr_ptr);
        self.mem.write_u8(at + Self::off(l.iframe_owner), f.owner);
        if let Some(off) = l.iframe_tlbc_index {
            self.mem.write_i32(at + u64::from(off), f.tlbc_index);
        }
    }

    /// Frames for `(code, instruction index)` pairs, outermost first, laid out upwards in
    /// `chunk` from its data start, each followed by `locals` bytes of localsplus. Returns
    /// the frame addresses, outermost first.
    fn chunk_frames(
        &mut self,
        chunk: u64,
        previous: u64,
        stack: &[(u64, i64)],
        locals: u64,
    ) -> Vec<u64> {
        let l = self.l;
        let size = Self::off(l.iframe_size);
        let mut at = chunk + Self::off(l.chunk_data);
        let mut prev = previous;
        let mut out = Vec::new();
        for &(code, k) in stack {
            let instr_ptr = self.adaptive(code) + 2 * k as u64;
            self.iframe(
                at,
                IFrame {
                    previous: prev,
                    code,
                    instr_ptr,
                    owner: 0,
                    tlbc_index: 0,
                },
            );
            out.push(at);
            prev = at;
            at += size + locals;
        }
        out
    }

    /// Point thread state `tstate` at its data-stack chunk (3.11+).
    fn set_datastack_chunk(&mut self, tstate: u64, chunk: u64) {
        let off = Self::off(self.l.tstate_datastack_chunk);
        self.mem.write_u64(tstate + off, chunk);
    }

    /// The usual image: one interpreter (id 0) running `threads`, linked in order, and roots
    /// that lead to it. Returns the interpreter, its thread states and the roots.
    fn one_interpreter(&mut self, threads: &[Thread]) -> (u64, Vec<u64>, Roots) {
        let interp = self.interp(0);
        let specs: Vec<(u64, u32, u64)> = threads
            .iter()
            .map(|t| (t.ident, t.native_id, t.innermost))
            .collect();
        let ts = self.threads(interp, &specs);
        for (&t, thread) in ts.iter().zip(threads) {
            if let Some(chunk) = thread.chunk {
                self.set_datastack_chunk(t, chunk);
            }
        }
        let roots = self.roots(&[interp]);
        (interp, ts, roots)
    }

    /// `_PyInterpreterFrame`s for `(code, instr_ptr, owner)`, outermost first, laid out
    /// upwards from `chunk`'s data start, each followed by `locals` bytes, each the caller of
    /// the next. Returns the innermost.
    fn raw_chunk_frames(&mut self, chunk: u64, specs: &[(u64, u64, u8)], locals: u64) -> u64 {
        let l = self.l;
        let data = chunk + Self::off(l.chunk_data);
        let step = Self::off(l.iframe_size) + locals;
        let mut prev = 0;
        for (i, &(code, instr_ptr, owner)) in specs.iter().enumerate() {
            let at = data + i as u64 * step;
            self.iframe(
                at,
                IFrame {
                    previous: prev,
                    code,
                    instr_ptr,
                    owner,
                    tlbc_index: 0,
                },
            );
            prev = at;
        }
        prev
    }

    fn walker(self, roots: Roots) -> Walker<Counting> {
        Walker::new(Counting::new(self.mem), self.l, roots)
    }
}

/// One thread of [`Image::one_interpreter`].
#[derive(Clone, Copy)]
struct Thread {
    ident: u64,
    native_id: u32,
    innermost: u64,
    /// Its data-stack chunk (3.11+).
    chunk: Option<u64>,
}

impl Thread {
    fn new(ident: u64, native_id: u32, innermost: u64) -> Thread {
        Thread {
            ident,
            native_id,
            innermost,
            chunk: None,
        }
    }

    fn in_chunk(self, chunk: u64) -> Thread {
        Thread {
            chunk: Some(chunk),
            ..self
        }
    }
}

#[derive(Clone, Copy)]
struct IFrame {
    previous: u64,
    code: u64,
    instr_ptr: u64,
    owner: u8,
    tlbc_index: i32,
}

/// A `bytes` (`str` on 2.7) object.
fn put_bytes(mem: &mut ImageMemory, l: &Layout, data: &[u8]) -> u64 {
    let a = mem.alloc(l.bytes_ob_sval as usize + data.len() + 1);
    mem.write_u64(a + u64::from(l.pyvarobject_ob_size), data.len() as u64);
    mem.write(a + u64::from(l.bytes_ob_sval), data);
    a
}

/// Fill the code object at `c`.
#[allow(clippy::too_many_arguments)]
fn write_code(
    mem: &mut ImageMemory,
    l: &Layout,
    code_type: u64,
    c: u64,
    name: u64,
    file: u64,
    table: u64,
    first: i32,
    units: usize,
) {
    mem.write_u64(c + u64::from(l.pyobject_ob_type), code_type);
    if l.line_table == LineTable::Location311 {
        // 3.11+: Py_SIZE(code) is the bytecode length in code units.
        mem.write_u64(c + u64::from(l.pyvarobject_ob_size), units as u64);
    }
    mem.write_u64(c + u64::from(l.code_name), name);
    if let Some(q) = l.code_qualname {
        mem.write_u64(c + u64::from(q), name);
    }
    mem.write_u64(c + u64::from(l.code_filename), file);
    mem.write_i32(c + u64::from(l.code_firstlineno), first);
    let table_off = l.code_linetable.or(l.code_lnotab).unwrap();
    mem.write_u64(c + u64::from(table_off), table);
}

fn put_type(mem: &mut ImageMemory, l: &Layout, name: &str) -> u64 {
    let cname = mem.alloc(name.len() + 1);
    mem.write(cname, name.as_bytes());
    let ty = mem.alloc(512);
    // Include/cpython/object.h: tp_name follows PyObject_VAR_HEAD.
    mem.write_u64(ty + u64::from(l.pyvarobject_ob_size) + 8, cname);
    ty
}

fn put_str(mem: &mut ImageMemory, l: &Layout, s: &str) -> u64 {
    match l.string_model {
        StringModel::Bytes27 => {
            let a = mem.alloc(l.bytes_ob_sval as usize + s.len() + 1);
            mem.write_u64(a + u64::from(l.pyvarobject_ob_size), s.len() as u64);
            mem.write(a + u64::from(l.bytes_ob_sval), s.as_bytes());
            a
        }
        StringModel::Compact33 => {
            let cps: Vec<u32> = s.chars().map(u32::from).collect();
            put_ucs(mem, l, &cps)
        }
    }
}

/// A compact `str` of the given code points (PEP 393: narrowest kind that fits; lone
/// surrogates are allowed, as in Python).
fn put_ucs(mem: &mut ImageMemory, l: &Layout, cps: &[u32]) -> u64 {
    let max = cps.iter().copied().max().unwrap_or(0);
    let (kind, ascii) = match max {
        0..=0x7f => (1u32, true),
        0x80..=0xff => (1, false),
        0x100..=0xffff => (2, false),
        _ => (4, false),
    };
    let header = if ascii {
        l.unicode_ascii_size.unwrap()
    } else {
        l.unicode_compact_size.unwrap()
    } as usize;
    let a = mem.alloc(header + (cps.len() + 1) * kind as usize);
    mem.write_u64(a + u64::from(l.unicode_length.unwrap()), cps.len() as u64);
    let kind_mask = l.unicode_kind_mask.unwrap();
    let mut state = (kind << kind_mask.trailing_zeros()) & kind_mask;
    state |= l.unicode_compact_mask.unwrap();
    if ascii {
        state |= l.unicode_ascii_mask.unwrap();
    }
    mem.write_u32(a + u64::from(l.unicode_state.unwrap()), state);
    let data: Vec<u8> = cps
        .iter()
        .flat_map(|&c| match kind {
            1 => vec![c as u8],
            2 => (c as u16).to_le_bytes().to_vec(),
            _ => c.to_le_bytes().to_vec(),
        })
        .collect();
    mem.write(a + header as u64, &data);
    a
}

/// A line table in the layout's format mapping instruction k (code unit k, byte 2k) to
/// `firstlineno + k`, for `units` instructions.
fn line_per_unit_table(model: LineTable, units: usize) -> Vec<u8> {
    match model {
        // (byte increment, line increment) pairs: from byte 2k on, the line is first + k.
        LineTable::Lnotab27 | LineTable::Lnotab36 => (1..units).flat_map(|_| [2u8, 1u8]).collect(),
        // 3.10 (byte length of the range, line delta from the previous range).
        LineTable::Linetable310 => (0..units)
            .flat_map(|k| [2u8, if k == 0 { 0 } else { 1 }])
            .collect(),
        // 3.11 location entries, code 13 (no columns): 1 code unit, svarint line delta.
        LineTable::Location311 => (0..units)
            .flat_map(|k| [0x80 | (13 << 3), if k == 0 { 0 } else { 2 }])
            .collect(),
    }
}

/// Counts reads, to check the walker's read budget.
struct Counting {
    inner: ImageMemory,
    reads: Cell<usize>,
}

impl Counting {
    fn new(inner: ImageMemory) -> Counting {
        Counting {
            inner,
            reads: Cell::new(0),
        }
    }
}

impl RemoteMemory for Counting {
    fn read_into(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemError> {
        self.reads.set(self.reads.get() + 1);
        self.inner.read_into(addr, buf)
    }
}

/// The native id a thread written with `tid` reports under layout `l`.
fn img_native(l: &Layout, tid: u32) -> Option<u32> {
    l.tstate_native_thread_id.map(|_| tid)
}

/// `(function, file, line)` of each frame, innermost first.
fn names(t: &ThreadStack) -> Vec<(String, String, Option<i32>)> {
    t.frames
        .iter()
        .map(|f| (f.function.to_string(), f.filename.to_string(), f.line))
        .collect()
}

fn by_ident(stacks: &[ThreadStack]) -> BTreeMap<u64, &ThreadStack> {
    stacks.iter().map(|t| (t.thread_id, t)).collect()
}

// ---------------------------------------------------------------------------------------------
// Frame models

#[test]
fn frame_objects_310_lines_in_code_units() {
    let mut img = Image::new(l310());
    let main = img.code("<module>", "/app/main.py", 1, 8);
    let work = img.code("work", "/app/lib.py", 40, 8);
    let inner = img.frame_objects(&[(main, 3), (work, 5)]);
    let (_, ts, roots) = img.one_interpreter(&[Thread::new(0x7f00_0000_1000, 4242, inner)]);
    // _PyRuntime.gilstate.tstate_current is the GIL holder.
    img.mem.write_u64(
        roots.runtime.unwrap() + u64::from(img.l.runtime_tstate_current.unwrap()),
        ts[0],
    );
    let mut w = img.walker(roots);
    let stacks = w.walk().unwrap();
    assert_eq!(stacks.len(), 1);
    let t = &stacks[0];
    assert_eq!(
        names(t),
        vec![
            ("work".into(), "/app/lib.py".into(), Some(45)),
            ("<module>".into(), "/app/main.py".into(), Some(4)),
        ]
    );
    assert_eq!(t.thread_id, 0x7f00_0000_1000);
    // PyThreadState.native_thread_id exists from 3.11 on.
    let native = img_native(&l310(), 4242);
    assert_eq!(t.native_id, native);
    assert!(t.holds_gil);
    assert_eq!(t.interp_id, 0);
    assert_eq!(t.tstate_addr, ts[0]);
    assert!(!t.truncated);
}

#[test]
fn python27_interp_head_current_symbol_and_lnotab_bytes() {
    let mut img = Image::new(l27());
    let main = img.code("<module>", "/srv/app.py", 10, 8);
    let f = img.code("handler", "/srv/app.py", 20, 8);
    let inner_a = img.frame_objects(&[(main, 0), (f, 7)]);
    let inner_b = img.frame_objects(&[(main, 2)]);
    let (interp, ts, roots) = img.one_interpreter(&[
        Thread::new(0xa000, 0, inner_a),
        Thread::new(0xb000, 0, inner_b),
    ]);
    img.mem.write_u64(roots.tstate_current.unwrap(), ts[1]);
    let mut w = img.walker(roots);
    let stacks = w.walk().unwrap();
    let t = by_ident(&stacks);
    assert_eq!(
        names(t[&0xa000]),
        vec![
            ("handler".into(), "/srv/app.py".into(), Some(27)),
            ("<module>".into(), "/srv/app.py".into(), Some(10)),
        ]
    );
    assert_eq!(
        names(t[&0xb000]),
        vec![("<module>".into(), "/srv/app.py".into(), Some(12))]
    );
    assert!(!t[&0xa000].holds_gil);
    assert!(t[&0xb000].holds_gil);
    assert_eq!(t[&0xa000].native_id, None);
    assert_eq!(w.interpreters().unwrap(), vec![(interp, 0)]);
}

#[test]
fn cframe_311_chunk_is_one_read() {
    let mut img = Image::new(l311());
    let codes: Vec<u64> = (0..50)
        .map(|i| img.code(&format!("f{i}"), "/app/deep.py", 100 + i, 16))
        .collect();
    let stack: Vec<(u64, i64)> = codes.iter().map(|&c| (c, 7)).collect();
    let chunk = img.chunk(16 * 1024, 0);
    let frames = img.chunk_frames(chunk, 0, &stack, 40);
    let (_, _, roots) =
        img.one_interpreter(&[Thread::new(0x1111, 77, *frames.last().unwrap()).in_chunk(chunk)]);
    let mut w = img.walker(roots);
    let first = w.walk().unwrap();
    let t = &first[0];
    assert_eq!(t.frames.len(), 50);
    for (i, f) in t.frames.iter().enumerate() {
        let depth = 49 - i as i32;
        assert_eq!(&*f.function, format!("f{depth}"));
        assert_eq!(f.line, Some(100 + depth + 7));
        assert_eq!(f.code_addr, codes[depth as usize]);
    }
    assert!(!t.holds_gil, "tstate_current is NULL: nobody holds the GIL");
    // Second sample: code objects are cached; the chunk's frames come from one copy.
    let before = w.memory().reads.get();
    let second = w.walk().unwrap();
    let reads = w.memory().reads.get() - before;
    assert_eq!(second, first);
    // runtime head, interp next+id, tstate_current, thread state, cframe, chunk copy.
    assert!(reads <= 8, "a 50-frame sample took {reads} reads");
}

#[test]
fn frames_in_older_chunk_and_generator() {
    // 3.13 default: the innermost frame is a generator's (outside any chunk); its caller is in
    // the current chunk, whose bottom frame's caller is in the previous chunk.
    let mut img = Image::new(l313());
    let old_code = img.code("outer", "/a.py", 1, 4);
    let mid_code = img.code("middle", "/b.py", 10, 4);
    let gen_code = img.code("gen", "/c.py", 20, 4);
    let old = img.chunk(16 * 1024, 0);
    let old_frames = img.chunk_frames(old, 0, &[(old_code, 1)], 16);
    let cur = img.chunk(16 * 1024, old);
    let cur_frames = img.chunk_frames(cur, old_frames[0], &[(mid_code, 2)], 16);
    let gen_obj = img.mem.alloc(256);
    let gen_frame = gen_obj + 64;
    img.iframe(
        gen_frame,
        IFrame {
            previous: cur_frames[0],
            code: gen_code,
            instr_ptr: img.adaptive(gen_code) + 6,
            owner: 1, // FRAME_OWNED_BY_GENERATOR
            tlbc_index: 0,
        },
    );
    let (_, _, roots) = img.one_interpreter(&[Thread::new(0x2222, 9, gen_frame).in_chunk(cur)]);
    let mut w = img.walker(roots);
    let stacks = w.walk().unwrap();
    assert_eq!(
        names(&stacks[0]),
        vec![
            ("gen".into(), "/c.py".into(), Some(23)),
            ("middle".into(), "/b.py".into(), Some(12)),
            ("outer".into(), "/a.py".into(), Some(2)),
        ]
    );
}

#[test]
fn direct_313_skips_cstack_and_none_frames() {
    let mut img = Image::new(l313());
    let a = img.code("run", "/x.py", 5, 4);
    let b = img.code("Klass.method", "/x.py", 50, 4);
    let chunk = img.chunk(16 * 1024, 0);
    let none = img.none;
    // Outermost first: a CSTACK entry frame with a wild executable (must not be read), `run`,
    // an entry frame holding None with a THREAD owner (type check), then `Klass.method`.
    let specs = [
        (0xdead_0000_0000u64, 0u64, 3u8),
        (a, img.adaptive(a) + 2, 0),
        (none, 0, 0),
        (b, img.adaptive(b) + 4, 0),
    ];
    let prev = img.raw_chunk_frames(chunk, &specs, 32);
    let (_, _, roots) = img.one_interpreter(&[Thread::new(0x3333, 10, prev).in_chunk(chunk)]);
    let mut w = img.walker(roots);
    let stacks = w.walk().unwrap();
    assert_eq!(
        names(&stacks[0]),
        vec![
            ("Klass.method".into(), "/x.py".into(), Some(52)),
            ("run".into(), "/x.py".into(), Some(6)),
        ]
    );
}

#[test]
fn tagged_executable_314_and_interpreter_owned_frames() {
    let mut img = Image::new(l314());
    let l = img.l;
    assert_eq!(
        l.stackref_mask & 3,
        0,
        "3.14 default builds tag with two bits"
    );
    let a = img.code("main", "/m.py", 1, 4);
    let b = img.code("leaf", "/m.py", 30, 4);
    let chunk = img.chunk(16 * 1024, 0);
    let specs = [
        (a | 1, img.adaptive(a) + 6, 0u8), // deferred reference tag
        (0xbad0_0000 | 3, 0, l.owner_interpreter.unwrap()),
        (b | 3, img.adaptive(b), 0),
    ];
    let prev = img.raw_chunk_frames(chunk, &specs, 16);
    let (_, _, roots) = img.one_interpreter(&[Thread::new(0x4444, 11, prev).in_chunk(chunk)]);
    let stacks = img.walker(roots).walk().unwrap();
    assert_eq!(
        names(&stacks[0]),
        vec![
            ("leaf".into(), "/m.py".into(), Some(30)),
            ("main".into(), "/m.py".into(), Some(4)),
        ]
    );
    assert_eq!(stacks[0].frames[0].code_addr, b, "tag bits are masked");
}

#[test]
fn free_threaded_314t_thread_local_bytecode() {
    let mut img = Image::new(l314t());
    let l = img.l;
    assert_eq!(l.pyobject_ob_type, 24);
    let f = img.code("spin", "/ft/ünïcode.py", 100, 8);
    // co_tlbc: {size 2, entries[0] = co_code_adaptive, entries[1] = this thread's copy}.
    let copy = img.mem.alloc(16);
    let array = img.mem.alloc(24);
    img.mem.write_u64(array, 2);
    img.mem.write_u64(array + 8, img.adaptive(f));
    img.mem.write_u64(array + 16, copy);
    img.mem
        .write_u64(f + u64::from(l.code_tlbc.unwrap()), array);
    let chunk = img.chunk(16 * 1024, 0);
    let at = chunk + u64::from(l.chunk_data.unwrap());
    // Thread A runs instruction 5 of the thread-local copy 1; thread B instruction 2 of the
    // main copy.
    img.iframe(
        at,
        IFrame {
            previous: 0,
            code: f | 1,
            instr_ptr: copy + 10,
            owner: 0,
            tlbc_index: 1,
        },
    );
    let chunk_b = img.chunk(16 * 1024, 0);
    let at_b = chunk_b + u64::from(l.chunk_data.unwrap());
    img.iframe(
        at_b,
        IFrame {
            previous: 0,
            code: f,
            instr_ptr: img.adaptive(f) + 4,
            owner: 0,
            tlbc_index: 0,
        },
    );
    let (_, _, roots) = img.one_interpreter(&[
        Thread::new(0xa, 1, at).in_chunk(chunk),
        Thread::new(0xb, 2, at_b).in_chunk(chunk_b),
    ]);
    let mut w = img.walker(roots);
    for _ in 0..2 {
        let stacks = w.walk().unwrap();
        let t = by_ident(&stacks);
        assert_eq!(
            names(t[&0xa]),
            vec![("spin".into(), "/ft/ünïcode.py".into(), Some(105))]
        );
        assert_eq!(
            names(t[&0xb]),
            vec![("spin".into(), "/ft/ünïcode.py".into(), Some(102))]
        );
        assert!(stacks.iter().all(|t| !t.holds_gil), "no GIL state");
    }
}

#[test]
fn two_interpreters_several_threads_one_gil_holder() {
    let mut img = Image::new(l312());
    let l = img.l;
    let code = img.code("loop", "/w.py", 1, 4);
    let mut inner = Vec::new();
    for _ in 0..5 {
        let chunk = img.chunk(4096, 0);
        let f = img.chunk_frames(chunk, 0, &[(code, 1)], 0);
        inner.push((chunk, f[0]));
    }
    let main = img.interp(0);
    let sub = img.interp(1);
    let main_ts = img.threads(
        main,
        &[
            (0x10, 100, inner[0].1),
            (0x11, 101, inner[1].1),
            (0x12, 102, inner[2].1),
        ],
    );
    let sub_ts = img.threads(sub, &[(0x20, 200, inner[3].1), (0x21, 201, inner[4].1)]);
    for (&t, &(chunk, _)) in main_ts.iter().chain(&sub_ts).zip(&inner) {
        img.set_datastack_chunk(t, chunk);
    }
    // Main interpreter's GIL: locked, last holder thread 0x11. Sub-interpreter's own GIL:
    // unlocked, but with a stale last_holder that must not count.
    for (interp, locked, holder) in [(main, 1, main_ts[1]), (sub, 0, sub_ts[0])] {
        let gil = img.mem.alloc(256);
        img.mem
            .write_u64(interp + u64::from(l.interp_ceval_gil.unwrap()), gil);
        img.mem
            .write_i32(gil + u64::from(l.gil_locked.unwrap()), locked);
        img.mem
            .write_u64(gil + u64::from(l.gil_last_holder.unwrap()), holder);
    }
    let roots = img.roots(&[main, sub]);
    let mut w = img.walker(roots);
    assert_eq!(w.interpreters().unwrap(), vec![(main, 0), (sub, 1)]);
    let stacks = w.walk().unwrap();
    assert_eq!(stacks.len(), 5);
    let holders: Vec<u64> = stacks
        .iter()
        .filter(|t| t.holds_gil)
        .map(|t| t.thread_id)
        .collect();
    assert_eq!(holders, vec![0x11]);
    let t = by_ident(&stacks);
    assert_eq!(t[&0x21].interp_id, 1);
    assert_eq!(t[&0x21].interp_addr, sub);
    assert_eq!(t[&0x21].native_id, Some(201));
    assert_eq!(t[&0x12].interp_id, 0);
    assert!(stacks
        .iter()
        .all(|t| names(t) == vec![("loop".into(), "/w.py".into(), Some(2))]));
}

/// An image shared between the test (which rewrites it between samples) and a walker.
struct Shared(Rc<RefCell<ImageMemory>>);

impl RemoteMemory for Shared {
    fn read_into(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemError> {
        self.0.borrow().read_into(addr, buf)
    }
}

#[test]
fn recycled_code_address_is_decoded_again() {
    // 3.11+ code objects can be freed and their address reused: a position outside the cached
    // code's bytecode makes the walker decode the object afresh.
    let mut img = Image::new(l312());
    let l = img.l;
    let code_type = img.code_type;
    let code = img.code("old", "/old.py", 1, 4);
    let chunk = img.chunk(4096, 0);
    let frames = img.chunk_frames(chunk, 0, &[(code, 2)], 0);
    let (_, _, roots) = img.one_interpreter(&[Thread::new(0x1, 1, frames[0]).in_chunk(chunk)]);
    let adaptive = img.adaptive(code);
    let shared = Rc::new(RefCell::new(img.mem));
    let mut w = Walker::new(Shared(shared.clone()), l, roots);
    assert_eq!(
        names(&w.walk().unwrap()[0]),
        vec![("old".into(), "/old.py".into(), Some(3))]
    );
    {
        // Same address, now a longer code object; the frame runs its instruction 9.
        let mut mem = shared.borrow_mut();
        let name = put_str(&mut mem, &l, "new");
        let file = put_str(&mut mem, &l, "/new.py");
        let table = put_bytes(&mut mem, &l, &line_per_unit_table(l.line_table, 12));
        write_code(&mut mem, &l, code_type, code, name, file, table, 300, 12);
        mem.write_u64(
            frames[0] + u64::from(l.iframe_instr_ptr.unwrap()),
            adaptive + 18,
        );
    }
    assert_eq!(
        names(&w.walk().unwrap()[0]),
        vec![("new".into(), "/new.py".into(), Some(309))]
    );
}

// ---------------------------------------------------------------------------------------------
// Corrupt images: typed errors, no panic, no hang.

fn simple_310() -> (Image, u64, u64, Roots) {
    let mut img = Image::new(l310());
    let code = img.code("f", "/f.py", 1, 4);
    let inner = img.frame_objects(&[(code, 0), (code, 1)]);
    let (_, ts, roots) = img.one_interpreter(&[Thread::new(0x1, 1, inner), Thread::new(0x2, 2, 0)]);
    (img, inner, ts[0], roots)
}

#[test]
fn frame_cycle_is_unbounded_error() {
    let (mut img, inner, _, roots) = simple_310();
    let l = img.l;
    img.mem
        .write_u64(inner + u64::from(l.frame_back.unwrap()), inner);
    let err = img.walker(roots).walk().unwrap_err();
    assert!(
        matches!(err, WalkError::Unbounded { what: "frame", .. }),
        "{err:?}"
    );
    assert!(err.is_transient());
}

#[test]
fn thread_list_cycle_is_unbounded_error() {
    let (mut img, _, t0, roots) = simple_310();
    let l = img.l;
    let t1 = img.mem.read_u64(t0 + u64::from(l.tstate_next)).unwrap();
    img.mem.write_u64(t1 + u64::from(l.tstate_next), t0);
    let err = img.walker(roots).walk().unwrap_err();
    assert!(
        matches!(
            err,
            WalkError::Unbounded {
                what: "thread state",
                limit: MAX_THREADS
            }
        ),
        "{err:?}"
    );
}

#[test]
fn interpreter_list_cycle_is_unbounded_error() {
    let (mut img, _, _, roots) = simple_310();
    let l = img.l;
    let head = roots.runtime.unwrap() + u64::from(l.runtime_interpreters_head.unwrap());
    let interp = img.mem.read_u64(head).unwrap();
    img.mem.write_u64(interp + u64::from(l.interp_next), interp);
    let mut w = img.walker(roots);
    assert!(matches!(
        w.interpreters(),
        Err(WalkError::Unbounded {
            what: "interpreter",
            ..
        })
    ));
}

#[test]
fn huge_string_length_is_corrupt() {
    let (mut img, inner, _, roots) = simple_310();
    let l = img.l;
    let code = img
        .mem
        .read_u64(inner + u64::from(l.frame_code.unwrap()))
        .unwrap();
    let name = img.mem.read_u64(code + u64::from(l.code_name)).unwrap();
    img.mem
        .write_u64(name + u64::from(l.unicode_length.unwrap()), 1 << 40);
    let err = img.walker(roots).walk().unwrap_err();
    assert_eq!(
        err,
        WalkError::Corrupt {
            what: "string length",
            addr: name
        }
    );
}

#[test]
fn wild_frame_pointer_is_a_fault() {
    let (mut img, inner, _, roots) = simple_310();
    let l = img.l;
    img.mem
        .write_u64(inner + u64::from(l.frame_back.unwrap()), 0x6666_0000_0000);
    let err = img.walker(roots).walk().unwrap_err();
    assert!(
        matches!(
            err,
            WalkError::Mem(MemError::Fault {
                addr: 0x6666_0000_0000,
                ..
            })
        ),
        "{err:?}"
    );
    assert!(err.is_transient());
}

#[test]
fn thread_of_another_interpreter_is_corrupt() {
    let (mut img, _, t0, roots) = simple_310();
    let l = img.l;
    img.mem.write_u64(t0 + u64::from(l.tstate_interp), 0x1234);
    let err = img.walker(roots).walk().unwrap_err();
    assert!(
        matches!(err, WalkError::Corrupt { addr, .. } if addr == t0),
        "{err:?}"
    );
}

#[test]
fn chunk_frame_cycle_and_huge_chunk_size() {
    let mut img = Image::new(l312());
    let l = img.l;
    let code = img.code("f", "/f.py", 1, 4);
    let chunk = img.chunk(4096, 0);
    let frames = img.chunk_frames(chunk, 0, &[(code, 0), (code, 1)], 0);
    // The outer frame points back at the inner one; the chunk claims to be 1 TiB.
    img.mem
        .write_u64(frames[0] + u64::from(l.iframe_previous.unwrap()), frames[1]);
    img.mem
        .write_u64(chunk + u64::from(l.chunk_size.unwrap()), 1 << 40);
    let (_, _, roots) = img.one_interpreter(&[Thread::new(0x1, 1, frames[1]).in_chunk(chunk)]);
    let err = img.walker(roots).walk().unwrap_err();
    assert!(
        matches!(err, WalkError::Unbounded { what: "frame", .. }),
        "{err:?}"
    );
}

#[test]
fn deep_stack_is_truncated_not_failed() {
    let mut img = Image::new(l310());
    let l = img.l;
    let code = img.code("rec", "/r.py", 1, 4);
    let n = MAX_DEPTH + 5;
    let fsize = u64::from(l.frame_lasti.unwrap()) + 8;
    let base = img.mem.alloc(n * fsize as usize);
    for i in 0..n as u64 {
        let f = base + i * fsize;
        let back = if i == 0 { 0 } else { f - fsize };
        img.mem
            .write_u64(f + u64::from(l.frame_back.unwrap()), back);
        img.mem
            .write_u64(f + u64::from(l.frame_code.unwrap()), code);
    }
    let (_, _, roots) = img.one_interpreter(&[Thread::new(0x1, 1, base + (n as u64 - 1) * fsize)]);
    let stacks = img.walker(roots).walk().unwrap();
    assert_eq!(stacks[0].frames.len(), MAX_DEPTH);
    assert!(stacks[0].truncated);
}

#[test]
fn missing_runtime_root_is_unsupported_with_a_reason() {
    let (img, _, _, _) = simple_310();
    let err = img.walker(Roots::default()).walk().unwrap_err();
    match err {
        WalkError::Unsupported(msg) => assert!(msg.contains("_PyRuntime"), "{msg}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn garbage_image_never_panics() {
    // Every root pointing at pseudo-random bytes: the walk must end with an error or a result.
    for seed in 0..200u64 {
        for l in [l27(), l310(), l311(), l312(), l313(), l314(), l314t()] {
            let mut mem = ImageMemory::new();
            let base = mem.alloc(64 * 1024);
            let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
            let bytes: Vec<u8> = (0..64 * 1024)
                .map(|i| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    // Sprinkle pointers back into the region so lists are followed.
                    if i % 8 == 0 && x % 3 == 0 {
                        0
                    } else {
                        x as u8
                    }
                })
                .collect();
            mem.write(base, &bytes);
            for i in (0..64 * 1024 - 8).step_by(64) {
                if (i / 64) % 2 == 0 {
                    mem.write_u64(base + i as u64, base + ((i as u64 * 7919) % 60_000));
                }
            }
            let roots = Roots {
                runtime: Some(base),
                interp_head: Some(base + 8),
                tstate_current: Some(base + 16),
                gc_collecting: Some(base + 24),
            };
            let _ = Walker::new(&mem, l, roots).walk();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Strings

#[test]
fn lone_surrogates_become_replacement_characters() {
    let l = l312();
    let mut mem = ImageMemory::new();
    let ucs2 = put_ucs(&mut mem, &l, &[0x66, 0xdc80, 0x2603]);
    assert_eq!(read_string(&mem, &l, ucs2).unwrap(), "f\u{fffd}\u{2603}");
    let ucs4 = put_ucs(&mut mem, &l, &[0x1f600, 0xd800, 0x41]);
    assert_eq!(read_string(&mem, &l, ucs4).unwrap(), "\u{1f600}\u{fffd}A");
    // Beyond U+10FFFF is not text: garbage.
    let bad = put_ucs(&mut mem, &l, &[0x1f600, 0x41]);
    let data = bad + u64::from(l.unicode_compact_size.unwrap());
    mem.write_u32(data, 0x11_0000);
    assert!(matches!(
        read_string(&mem, &l, bad),
        Err(WalkError::Corrupt {
            what: "UCS-4 string",
            ..
        })
    ));
}

// ---------------------------------------------------------------------------------------------
// The hot path: `sample_into`, its speculative batch and what it remembers between samples.

/// Bytes to return instead of the memory's, by address.
type Patches = Vec<(u64, Vec<u8>)>;

/// An image the test edits between samples, with ranges it can make unreadable (a freed
/// chunk), counting batched reads and single reads separately.
#[derive(Clone, Default)]
struct Live {
    mem: Rc<RefCell<ImageMemory>>,
    holes: Rc<RefCell<Vec<(u64, u64)>>>,
    batches: Rc<Cell<usize>>,
    singles: Rc<Cell<usize>>,
    /// The ranges of the latest batched read.
    last_batch: Rc<RefCell<Vec<(u64, usize)>>>,
    /// Bytes the next `torn_for` batched reads return instead of the memory's, at these
    /// addresses: a copy torn by the target's writes.
    torn: Rc<RefCell<Patches>>,
    torn_for: Rc<Cell<usize>>,
}

impl Live {
    fn check(&self, addr: u64, len: usize) -> Result<(), MemError> {
        let end = addr + len as u64;
        if self
            .holes
            .borrow()
            .iter()
            .any(|&(a, e)| addr < e && end > a)
        {
            return Err(MemError::Fault { addr, len });
        }
        Ok(())
    }

    /// (batched reads, single reads) since the last call.
    fn take_counts(&self) -> (usize, usize) {
        (self.batches.replace(0), self.singles.replace(0))
    }
}

impl RemoteMemory for Live {
    fn read_into(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemError> {
        self.singles.set(self.singles.get() + 1);
        self.check(addr, buf.len())?;
        self.mem.borrow().read_into(addr, buf)
    }

    fn read_batch(&self, reqs: &[(u64, usize)], buf: &mut [u8]) -> Result<(), MemError> {
        self.batches.set(self.batches.get() + 1);
        *self.last_batch.borrow_mut() = reqs.to_vec();
        let mut off = 0;
        for &(addr, len) in reqs {
            self.check(addr, len)?;
            self.mem
                .borrow()
                .read_into(addr, &mut buf[off..off + len])?;
            for (at, bytes) in self
                .torn
                .borrow()
                .iter()
                .filter(|_| self.torn_for.get() > 0)
            {
                for (i, b) in bytes.iter().enumerate() {
                    let a = at + i as u64;
                    if a >= addr && a < addr + len as u64 {
                        buf[off + (a - addr) as usize] = *b;
                    }
                }
            }
            off += len;
        }
        self.torn_for.set(self.torn_for.get().saturating_sub(1));
        assert_eq!(off, buf.len(), "buffer sized to the requests");
        Ok(())
    }
}

/// A walker over `img`'s memory, which moves into the returned `Live`; edit it with [`edit`].
fn live_walker(img: &mut Image, roots: Roots) -> (Walker<Live>, Live) {
    let live = Live::default();
    *live.mem.borrow_mut() = std::mem::take(&mut img.mem);
    (Walker::new(live.clone(), img.l, roots), live)
}

/// Run `f` on the image builder while it holds the live memory.
fn edit<T>(img: &mut Image, live: &Live, f: impl FnOnce(&mut Image) -> T) -> T {
    std::mem::swap(&mut img.mem, &mut *live.mem.borrow_mut());
    let out = f(img);
    std::mem::swap(&mut img.mem, &mut *live.mem.borrow_mut());
    out
}

/// Code object `new` allocated where `freed` was: `new`'s bytes copied over `freed`'s.
fn recycle_code(img: &mut Image, new: u64, freed: u64) {
    let size = img.l.code_size as usize;
    let bytes = img.mem.read_vec(new, size, 1 << 20).unwrap();
    img.mem.write(freed, &bytes);
}

/// `(tstate, thread id, GIL, frames)` with names, from `sample_into` + `frame_info`.
/// Per thread: thread state, ident, GIL, and frames as (function, file, line, entry).
type Flat = Vec<(u64, u64, bool, Vec<(String, String, Option<i32>, bool)>)>;

fn flat_sample(w: &mut Walker<Live>, raw: &mut RawSample) -> Flat {
    w.sample_into(raw).unwrap();
    let mut out = Vec::new();
    for t in &raw.threads {
        let entries = raw.entries_of(t);
        assert_eq!(entries.len(), raw.frames_of(t).len());
        let frames = raw
            .frames_of(t)
            .iter()
            .zip(entries)
            .map(|(&f, &entry)| {
                let info = w.frame_info(f).unwrap();
                assert_eq!(info.line, f.line);
                assert_eq!(info.code_addr, f.code_addr);
                (
                    info.function.to_string(),
                    info.filename.to_string(),
                    f.line,
                    entry,
                )
            })
            .collect();
        out.push((t.tstate_addr, t.thread_id, t.holds_gil, frames));
    }
    out
}

/// A frame of a [`Flat`] without its entry flag.
fn no_entry(f: &(String, String, Option<i32>, bool)) -> (String, String, Option<i32>) {
    (f.0.clone(), f.1.clone(), f.2)
}

fn flat_walk(stacks: &[ThreadStack]) -> Flat {
    stacks
        .iter()
        .map(|t| {
            let frames = t
                .frames
                .iter()
                .map(|f| {
                    (
                        f.function.to_string(),
                        f.filename.to_string(),
                        f.line,
                        f.entry,
                    )
                })
                .collect();
            (t.tstate_addr, t.thread_id, t.holds_gil, frames)
        })
        .collect()
}

/// Sample with the long-lived walker `w` and check it against a walker that remembers nothing.
fn sample_matches_fresh(
    w: &mut Walker<Live>,
    live: &Live,
    l: Layout,
    roots: Roots,
    raw: &mut RawSample,
) -> Flat {
    let got = flat_sample(w, raw);
    let fresh = Walker::new(live.clone(), l, roots).walk().unwrap();
    assert_eq!(got, flat_walk(&fresh));
    got
}

/// Point thread state `t`'s innermost frame at `frame`, keeping its `_PyCFrame` (3.11–3.12).
fn set_current(img: &mut Image, t: u64, frame: u64) {
    let l = img.l;
    match l.frame_model {
        FrameModel::CFrame311 => {
            let cframe = img
                .mem
                .read_u64(t + u64::from(l.tstate_cframe.unwrap()))
                .unwrap();
            img.mem
                .write_u64(cframe + u64::from(l.cframe_current_frame.unwrap()), frame);
        }
        _ => img.set_innermost(t, frame),
    }
}

/// A thread running `depth` frames (f0 outermost, each on its own code object) in one chunk,
/// with `locals` bytes of localsplus per frame.
fn deep_chunk_image(l: Layout, depth: usize, locals: u64) -> (Image, Vec<u64>, u64, u64, Roots) {
    let mut img = Image::new(l);
    let codes: Vec<u64> = (0..depth)
        .map(|i| img.code(&format!("f{i}"), "/deep.py", 100 + i as i32, 16))
        .collect();
    let stack: Vec<(u64, i64)> = codes.iter().map(|&c| (c, 3)).collect();
    let chunk = img.chunk(16 * 1024, 0);
    let frames = img.chunk_frames(chunk, 0, &stack, locals);
    let interp = img.interp(0);
    let ts = img.threads(interp, &[(0x1000, 7, *frames.last().unwrap())]);
    img.set_datastack_chunk(ts[0], chunk);
    if let Some(gil_off) = l.interp_ceval_gil {
        let gil = img.mem.alloc(256);
        img.mem.write_u64(interp + u64::from(gil_off), gil);
        img.mem.write_i32(gil + u64::from(l.gil_locked.unwrap()), 1);
        img.mem
            .write_u64(gil + u64::from(l.gil_last_holder.unwrap()), ts[0]);
    }
    let roots = img.roots(&[interp]);
    (img, codes, chunk, ts[0], roots)
}

#[test]
fn steady_state_sample_is_one_batched_read() {
    for l in [l311(), l312(), l313(), l314()] {
        let (mut img, codes, _, _, roots) = deep_chunk_image(l, 50, 48);
        let (mut w, live) = live_walker(&mut img, roots);
        let mut raw = RawSample::new();
        let first = sample_matches_fresh(&mut w, &live, l, roots, &mut raw);
        assert_eq!(first[0].3.len(), 50);
        assert_eq!(first[0].2, l.interp_ceval_gil.is_some(), "GIL holder");
        live.take_counts();
        for _ in 0..3 {
            w.sample_into(&mut raw).unwrap();
            assert_eq!(
                live.take_counts(),
                (1, 0),
                "{:?}: one batched read per sample",
                l.version
            );
            assert_eq!(raw.threads.len(), 1);
            assert_eq!(raw.threads[0].unchanged, 50, "nothing moved");
            let f = raw.frames_of(&raw.threads[0]);
            assert_eq!(f.len(), 50);
            assert_eq!(f[0].code_addr, codes[49]);
            assert_eq!(f[0].line, Some(100 + 49 + 3));
            assert_eq!(f[49].lasti, 3);
        }
    }
}

#[test]
fn exception_items_of_generators_come_with_the_batch() {
    // Inside coroutines, `exc_info` points at the innermost coroutine's item and the chain
    // goes down through each coroutine's item to the thread's own. The items a sample visited
    // are copied by the next sample's one read, and what they hold then is what it reports.
    for l in [l311(), l312(), l313(), l314()] {
        let (mut img, _, _, t0, roots) = deep_chunk_image(l, 5, 16);
        let exc_off = u64::from(l.stackitem_exc.unwrap());
        let prev_off = u64::from(l.stackitem_previous.unwrap());
        let own = t0 + u64::from(l.tstate_exc_state.unwrap());
        let value_error = put_type(&mut img.mem, &l, "ValueError");
        let instance = img.mem.alloc(64);
        img.mem
            .write_u64(instance + u64::from(l.pyobject_ob_type), value_error);
        // The outer coroutine handles a ValueError; the inner one handles nothing.
        let outer = img.mem.alloc(64);
        img.mem.write_u64(outer + exc_off, instance);
        img.mem.write_u64(outer + prev_off, own);
        let inner = img.mem.alloc(64);
        img.mem.write_u64(inner + exc_off, img.none);
        img.mem.write_u64(inner + prev_off, outer);
        img.mem
            .write_u64(t0 + u64::from(l.tstate_exc_info.unwrap()), inner);
        let none = img.none;
        let (mut w, live) = live_walker(&mut img, roots);
        let mut raw = RawSample::new();
        let handled = |w: &Walker<Live>, raw: &RawSample| {
            raw.threads[0]
                .exception
                .map(|e| (w.exception_name(e.type_addr).unwrap().to_string(), e.raised))
        };
        w.sample_into(&mut raw).unwrap();
        assert_eq!(handled(&w, &raw), Some(("ValueError".into(), false)));
        let (_, singles) = live.take_counts();
        assert!(
            singles >= 2,
            "{:?}: the items are read the first time",
            l.version
        );
        w.sample_into(&mut raw).unwrap();
        assert_eq!(handled(&w, &raw), Some(("ValueError".into(), false)));
        assert_eq!(
            live.take_counts(),
            (1, 0),
            "{:?}: one batched read, with the items and the instance's type",
            l.version
        );
        // The outer coroutine's exception is cleared: the next sample sees it in its copy.
        edit(&mut img, &live, |img| {
            img.mem.write_u64(outer + exc_off, none)
        });
        w.sample_into(&mut raw).unwrap();
        assert_eq!(raw.threads[0].exception, None, "{:?}", l.version);
        assert_eq!(live.take_counts(), (1, 0), "{:?}", l.version);
        // A third coroutine resumed on top, handling the same ValueError: its item is read
        // once (and the instance's type, not copied by a sample that found no exception), then
        // both are copied.
        let third = edit(&mut img, &live, |img| {
            let third = img.mem.alloc(64);
            img.mem.write_u64(third + exc_off, instance);
            img.mem.write_u64(third + prev_off, inner);
            img.mem
                .write_u64(t0 + u64::from(l.tstate_exc_info.unwrap()), third);
            third
        });
        w.sample_into(&mut raw).unwrap();
        assert_eq!(handled(&w, &raw), Some(("ValueError".into(), false)));
        assert_eq!(live.take_counts(), (1, 2), "{:?}", l.version);
        w.sample_into(&mut raw).unwrap();
        assert_eq!(live.take_counts(), (1, 0), "{:?}", l.version);
        // Another instance, of another type, in the same item: its own type, not the copy's.
        edit(&mut img, &live, |img| {
            let type_error = put_type(&mut img.mem, &l, "TypeError");
            let other = img.mem.alloc(64);
            img.mem
                .write_u64(other + u64::from(l.pyobject_ob_type), type_error);
            img.mem.write_u64(third + exc_off, other);
        });
        w.sample_into(&mut raw).unwrap();
        assert_eq!(handled(&w, &raw), Some(("TypeError".into(), false)));
        live.take_counts();
        // Its memory goes away (the coroutine was freed): the sample is read again without
        // the copy, and the thread state's pointer decides.
        edit(&mut img, &live, |img| {
            img.mem
                .write_u64(t0 + u64::from(l.tstate_exc_info.unwrap()), own);
        });
        live.holes.borrow_mut().push((third, third + 64));
        w.sample_into(&mut raw).unwrap();
        assert_eq!(raw.threads[0].exception, None, "{:?}", l.version);
        w.sample_into(&mut raw).unwrap();
        assert_eq!(live.take_counts().1, 0, "{:?}", l.version);
    }
}

#[test]
fn unwanted_threads_are_not_walked_unless_they_hold_the_gil() {
    for l in [l311(), l312(), l313(), l314()] {
        let (mut img, codes, _, t0, roots) = deep_chunk_image(l, 50, 48);
        let (mut w, live) = live_walker(&mut img, roots);
        let mut raw = RawSample::new();
        let first = sample_matches_fresh(&mut w, &live, l, roots, &mut raw);
        let holds_gil = first[0].2;
        live.take_counts();
        let mut asked = Vec::new();
        w.sample_wanted_into(&mut raw, &mut |tstate| {
            asked.push(tstate);
            false
        })
        .unwrap();
        assert_eq!(asked, vec![t0], "{:?}", l.version);
        let (batches, singles) = live.take_counts();
        assert_eq!(batches, 1, "{:?}", l.version);
        let t = &raw.threads[0];
        assert_eq!((t.tstate_addr, t.holds_gil), (t0, holds_gil));
        if holds_gil {
            // The GIL holder runs Python: its frames are read whatever the caller said (not
            // copied in the batch, so read on their own).
            assert!(t.walked);
            assert!(singles > 0);
            assert_eq!(raw.frames_of(t).len(), 50);
            assert_eq!(t.unchanged, 50);
            continue;
        }
        assert!(!t.walked, "{:?}", l.version);
        assert_eq!(singles, 0, "{:?}: nothing but the batch", l.version);
        if let (Some(cframe_at), Some(current)) = (l.tstate_cframe, l.cframe_current_frame) {
            // 3.11-3.12: not even the C frame's word is read (one range less to pin).
            let cframe = live
                .mem
                .borrow()
                .read_u64(t0 + u64::from(cframe_at))
                .unwrap();
            let word = cframe + u64::from(current);
            let batch = live.last_batch.borrow();
            assert!(
                !batch.iter().any(|&(a, n)| a <= word && word < a + n as u64),
                "{:?}: {batch:x?}",
                l.version
            );
        }
        assert!(raw.frames_of(t).is_empty());
        assert_eq!(t.unchanged, 0);
        // Wanted again: the whole stack, as a fresh walk has it, walked afresh (nothing is
        // counted unchanged across the sample that skipped it), then steady again.
        let got = sample_matches_fresh(&mut w, &live, l, roots, &mut raw);
        assert_eq!(got[0].3.len(), 50);
        assert_eq!(raw.threads[0].unchanged, 0);
        assert_eq!(raw.frames_of(&raw.threads[0])[0].code_addr, codes[49]);
        w.sample_into(&mut raw).unwrap();
        assert_eq!(raw.threads[0].unchanged, 50);
    }
}

#[test]
fn a_code_address_reused_by_another_code_object_is_decoded_again_before_3_11() {
    for l in [l27(), l310()] {
        let mut img = Image::new(l);
        let outer = img.code("outer", "/app.py", 10, 8);
        let startup = img.code("startup", "/site.py", 100, 8);
        let main = img.code("main", "/app.py", 200, 8);
        let inner = img.frame_objects(&[(outer, 1), (startup, 2)]);
        let (_, threads, roots) = img.one_interpreter(&[Thread::new(0x77, 1, inner)]);
        let (mut w, live) = live_walker(&mut img, roots);
        let mut raw = RawSample::new();
        let got = sample_matches_fresh(&mut w, &live, l, roots, &mut raw);
        assert_eq!(got[0].3[0].0, "startup", "{:?}", l.version);
        // `startup` is freed and a new code object, `main`, is allocated at its address; a new
        // frame runs it.
        edit(&mut img, &live, |img| {
            recycle_code(img, main, startup);
            let frame = img.frame_objects(&[(outer, 1), (startup, 3)]);
            img.set_innermost(threads[0], frame);
        });
        let got = sample_matches_fresh(&mut w, &live, l, roots, &mut raw);
        assert_eq!(
            no_entry(&got[0].3[0]),
            ("main".into(), "/app.py".into(), Some(203)),
            "{:?}",
            l.version
        );
        // Steady again: the same frame at another instruction costs no identity read.
        live.take_counts();
        w.sample_into(&mut raw).unwrap();
        assert_eq!(live.take_counts(), (1, 0), "{:?}", l.version);
    }
}

/// 3.11+ catches a recycled code address by the frame's instruction falling past the cached
/// code's bytecode; a code object no longer than the freed one at its address passes that, so
/// a frame the previous sample did not have is checked as before 3.11.
#[test]
fn a_code_address_reused_by_a_code_object_as_long_is_decoded_again_on_3_12() {
    let l = l312();
    let mut img = Image::new(l);
    let outer = img.code("outer", "/app.py", 10, 8);
    let startup = img.code("startup", "/site.py", 100, 8);
    let main = img.code("main", "/app.py", 200, 8);
    let chunk = img.chunk(4096, 0);
    let frames = img.chunk_frames(chunk, 0, &[(outer, 1), (startup, 2)], 0);
    let (_, threads, roots) =
        img.one_interpreter(&[Thread::new(0x77, 1, frames[1]).in_chunk(chunk)]);
    let (mut w, live) = live_walker(&mut img, roots);
    let mut raw = RawSample::new();
    let got = sample_matches_fresh(&mut w, &live, l, roots, &mut raw);
    assert_eq!(got[0].3[0].0, "startup");
    // `startup` is freed and `main`, as long, is allocated at its address; a new frame (at
    // another place in the chunk) runs it.
    edit(&mut img, &live, |img| {
        recycle_code(img, main, startup);
        let moved = img.chunk_frames(chunk, 0, &[(outer, 1), (startup, 3)], 64);
        img.set_innermost(threads[0], moved[1]);
    });
    let got = sample_matches_fresh(&mut w, &live, l, roots, &mut raw);
    assert_eq!(
        no_entry(&got[0].3[0]),
        ("main".into(), "/app.py".into(), Some(203))
    );
}

/// The code objects of a sample's new frames are checked together, in one batched read
/// besides the sample's own (not one read each), and a recycled one among them is still caught.
#[test]
fn the_code_objects_of_new_frames_are_checked_in_one_batched_read() {
    let l = l312();
    let mut img = Image::new(l);
    let outer = img.code("outer", "/app.py", 10, 8);
    let a = img.code("a", "/app.py", 20, 8);
    let b = img.code("b", "/app.py", 30, 8);
    let startup = img.code("startup", "/site.py", 100, 8);
    let main = img.code("main", "/app.py", 200, 8);
    let chunk = img.chunk(4096, 0);
    let stack = |ip| [(outer, 1), (a, ip), (b, ip), (startup, ip)];
    let frames = img.chunk_frames(chunk, 0, &stack(2), 0);
    let (_, threads, roots) =
        img.one_interpreter(&[Thread::new(0x77, 1, frames[3]).in_chunk(chunk)]);
    let (mut w, live) = live_walker(&mut img, roots);
    let mut raw = RawSample::new();
    let got = sample_matches_fresh(&mut w, &live, l, roots, &mut raw);
    assert_eq!(got[0].3[0].0, "startup");
    // Every frame moves (a new call path: none is the previous sample's), and `startup` is
    // freed and `main`, as long, allocated at its address.
    edit(&mut img, &live, |img| {
        recycle_code(img, main, startup);
        let moved = img.chunk_frames(chunk, 0, &stack(3), 64);
        img.set_innermost(threads[0], moved[3]);
    });
    live.take_counts();
    let got = flat_sample(&mut w, &mut raw);
    assert_eq!(
        live.take_counts().0,
        2,
        "the sample's batch and the code objects'"
    );
    let names: Vec<&str> = got[0].3.iter().map(|f| &*f.0).collect();
    assert_eq!(names, ["main", "b", "a", "outer"]);
    assert_eq!(
        no_entry(&got[0].3[0]),
        ("main".into(), "/app.py".into(), Some(203))
    );
    let fresh = Walker::new(live.clone(), l, roots).walk().unwrap();
    assert_eq!(got, flat_walk(&fresh));
}

#[test]
fn steady_state_frame_objects_one_batched_read() {
    for l in [l27(), l310()] {
        let mut img = Image::new(l);
        let codes: Vec<u64> = (0..50)
            .map(|i| img.code(&format!("g{i}"), "/obj.py", 10 * i + 1, 8))
            .collect();
        let stack: Vec<(u64, i64)> = codes.iter().map(|&c| (c, 2)).collect();
        let inner = img.frame_objects(&stack);
        let (_, _, roots) = img.one_interpreter(&[Thread::new(0x77, 1, inner)]);
        let (mut w, live) = live_walker(&mut img, roots);
        let mut raw = RawSample::new();
        let first = sample_matches_fresh(&mut w, &live, l, roots, &mut raw);
        assert_eq!(first[0].3.len(), 50);
        assert_eq!(first[0].3[0].2, Some(10 * 49 + 1 + 2));
        live.take_counts();
        w.sample_into(&mut raw).unwrap();
        assert_eq!(live.take_counts(), (1, 0), "{:?}", l.version);
        assert_eq!(raw.threads[0].unchanged, 50);
    }
}

#[test]
fn unchanged_counts_outer_frames_and_lines_follow_the_instruction() {
    let l = l312();
    let (mut img, codes, _, t0, roots) = deep_chunk_image(l, 10, 0);
    let (mut w, live) = live_walker(&mut img, roots);
    let mut raw = RawSample::new();
    w.sample_into(&mut raw).unwrap();
    assert_eq!(raw.threads[0].unchanged, 0, "first sample of this thread");
    // The innermost frame (f9) moves to instruction 7: its line changes, the 9 outer frames
    // are reported unchanged.
    let inner_frame = edit(&mut img, &live, |img| {
        let cframe = img
            .mem
            .read_u64(t0 + u64::from(l.tstate_cframe.unwrap()))
            .unwrap();
        let f = img
            .mem
            .read_u64(cframe + u64::from(l.cframe_current_frame.unwrap()))
            .unwrap();
        let adaptive = img.adaptive(codes[9]);
        img.mem
            .write_u64(f + u64::from(l.iframe_instr_ptr.unwrap()), adaptive + 14);
        f
    });
    assert_ne!(inner_frame, 0);
    let got = sample_matches_fresh(&mut w, &live, l, roots, &mut raw);
    assert_eq!(
        no_entry(&got[0].3[0]),
        ("f9".into(), "/deep.py".into(), Some(109 + 7))
    );
    assert_eq!(raw.threads[0].unchanged, 9);
    assert_eq!(raw.frames_of(&raw.threads[0])[0].lasti, 7);
}

#[test]
fn stack_and_thread_changes_between_samples_match_a_fresh_walk() {
    for l in [l311(), l312(), l313(), l314()] {
        let (mut img, codes, chunk, t0, roots) = deep_chunk_image(l, 20, 48);
        let (mut w, live) = live_walker(&mut img, roots);
        let mut raw = RawSample::new();
        let steady = |w: &mut Walker<Live>, raw: &mut RawSample, what: &str| {
            live.take_counts();
            w.sample_into(raw).unwrap();
            assert_eq!(
                live.take_counts(),
                (1, 0),
                "{:?}: steady again after {what}",
                l.version
            );
        };
        sample_matches_fresh(&mut w, &live, l, roots, &mut raw);
        steady(&mut w, &mut raw, "the first sample");

        // 1. The stack grows far past the slack read after the innermost frame.
        let deeper: Vec<(u64, i64)> = (0..90).map(|i| (codes[i % 20], (i % 5) as i64)).collect();
        let frames = edit(&mut img, &live, |img| {
            let f = img.chunk_frames(chunk, 0, &deeper, 48);
            set_current(img, t0, *f.last().unwrap());
            f
        });
        let got = sample_matches_fresh(&mut w, &live, l, roots, &mut raw);
        assert_eq!(got[0].3.len(), 90);
        steady(&mut w, &mut raw, "growing");

        // 2. A new chunk is pushed: its frames continue from the old chunk's innermost.
        let upper = edit(&mut img, &live, |img| {
            let c = img.chunk(16 * 1024, chunk);
            let f = img.chunk_frames(
                c,
                *frames.last().unwrap(),
                &[(codes[1], 1), (codes[2], 2)],
                0,
            );
            img.set_datastack_chunk(t0, c);
            set_current(img, t0, *f.last().unwrap());
            c
        });
        let got = sample_matches_fresh(&mut w, &live, l, roots, &mut raw);
        assert_eq!(got[0].3.len(), 92);
        assert_eq!(got[0].3[0].0, "f2");
        steady(&mut w, &mut raw, "a new chunk");

        // 3. It is popped and freed: the speculative copy of it faults.
        edit(&mut img, &live, |img| {
            img.set_datastack_chunk(t0, chunk);
            set_current(img, t0, *frames.last().unwrap());
        });
        live.holes.borrow_mut().push((upper, upper + 16 * 1024));
        let got = sample_matches_fresh(&mut w, &live, l, roots, &mut raw);
        assert_eq!(got[0].3.len(), 90);
        steady(&mut w, &mut raw, "a freed chunk");

        // 4. A generator frame (outside any chunk) becomes the innermost.
        edit(&mut img, &live, |img| {
            let gen_frame = img.mem.alloc(256) + 64;
            let code = codes[5];
            let ip = img.adaptive(code) + 8;
            img.iframe(
                gen_frame,
                IFrame {
                    previous: *frames.last().unwrap(),
                    code,
                    instr_ptr: ip,
                    owner: 1,
                    tlbc_index: 0,
                },
            );
            set_current(img, t0, gen_frame);
        });
        let got = sample_matches_fresh(&mut w, &live, l, roots, &mut raw);
        assert_eq!(
            no_entry(&got[0].3[0]),
            ("f5".into(), "/deep.py".into(), Some(109))
        );
        steady(&mut w, &mut raw, "a generator frame");

        // 5. A thread starts (linked at the head, as CPython does) and one exits.
        let interp = img_first_interp(&live, l, roots);
        let t1 = edit(&mut img, &live, |img| {
            let c = img.chunk(4096, 0);
            let f = img.chunk_frames(c, 0, &[(codes[0], 0)], 0);
            let t1 = img.mem.alloc(l.tstate_size as usize);
            img.mem.write_u64(t1 + u64::from(l.tstate_next), t0);
            img.mem.write_u64(t1 + u64::from(l.tstate_interp), interp);
            img.mem
                .write_u64(t1 + u64::from(l.tstate_thread_id), 0x2000);
            img.set_datastack_chunk(t1, c);
            img.set_innermost(t1, f[0]);
            if let Some(off) = l.tstate_prev {
                img.mem.write_u64(t0 + u64::from(off), t1);
            }
            img.mem
                .write_u64(interp + u64::from(l.interp_tstate_head), t1);
            t1
        });
        let got = sample_matches_fresh(&mut w, &live, l, roots, &mut raw);
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].0, t1);
        steady(&mut w, &mut raw, "a new thread");
        edit(&mut img, &live, |img| {
            img.mem.write_u64(t1 + u64::from(l.tstate_next), 0);
        });
        live.holes
            .borrow_mut()
            .push((t0, t0 + u64::from(l.tstate_size)));
        let got = sample_matches_fresh(&mut w, &live, l, roots, &mut raw);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].0, t1);
        steady(&mut w, &mut raw, "a thread exit");
    }
}

fn img_first_interp(live: &Live, l: Layout, roots: Roots) -> u64 {
    live.mem
        .borrow()
        .read_u64(roots.runtime.unwrap() + u64::from(l.runtime_interpreters_head.unwrap()))
        .unwrap()
}

#[test]
fn cframe_change_is_followed_311() {
    // 3.11–3.12: a C call into Python makes the thread state point at another `_PyCFrame`.
    for l in [l311(), l312()] {
        let (mut img, _, _, t0, roots) = deep_chunk_image(l, 5, 0);
        let (mut w, live) = live_walker(&mut img, roots);
        let mut raw = RawSample::new();
        sample_matches_fresh(&mut w, &live, l, roots, &mut raw);
        edit(&mut img, &live, |img| {
            let cframe = img
                .mem
                .read_u64(t0 + u64::from(l.tstate_cframe.unwrap()))
                .unwrap();
            let current = img
                .mem
                .read_u64(cframe + u64::from(l.cframe_current_frame.unwrap()))
                .unwrap();
            let outer = img
                .mem
                .read_u64(current + u64::from(l.iframe_previous.unwrap()))
                .unwrap();
            // The old cframe keeps a stale frame; the new one is where the thread is now.
            img.set_innermost(t0, outer);
        });
        let got = sample_matches_fresh(&mut w, &live, l, roots, &mut raw);
        assert_eq!(got[0].3.len(), 4);
        live.take_counts();
        w.sample_into(&mut raw).unwrap();
        assert_eq!(live.take_counts(), (1, 0));
    }
}

#[test]
fn walk_and_sample_into_agree_on_errors() {
    // A frame cycle seen through the hot path is the same typed error as through walk().
    let (mut img, inner, _, roots) = simple_310();
    let l = img.l;
    img.mem
        .write_u64(inner + u64::from(l.frame_back.unwrap()), inner);
    let (mut w, _live) = live_walker(&mut img, roots);
    let mut raw = RawSample::new();
    let err = w.sample_into(&mut raw).unwrap_err();
    assert!(matches!(err, WalkError::Unbounded { what: "frame", .. }));
    assert!(raw.threads.is_empty() && raw.frames.is_empty());
}

/// Between full checks of the interpreter list, a sample reads only thread states (and GIL and
/// frames): a thread started at any point of that cycle must still be in the very next sample
/// (its `prev` link in the old head shows it), and one that exits must be gone from it.
#[test]
fn threads_coming_and_going_are_seen_at_the_next_sample() {
    for l in [layout(3, 6, false), l310(), l311(), l312(), l313(), l314()] {
        let mut img = Image::new(l);
        let code = img.code("main", "/m.py", 1, 8);
        let inner = match l.frame_model {
            FrameModel::FrameObject => img.frame_objects(&[(code, 2)]),
            _ => {
                let c = img.chunk(4096, 0);
                img.chunk_frames(c, 0, &[(code, 2)], 0)[0]
            }
        };
        let (interp, ts, roots) = img.one_interpreter(&[Thread::new(0x10, 1, inner)]);
        let t0 = ts[0];
        let (mut w, live) = live_walker(&mut img, roots);
        let mut raw = RawSample::new();
        let idents = |raw: &RawSample| raw.threads.iter().map(|t| t.thread_id).collect::<Vec<_>>();
        // 40 start/exit cycles of two samples each cover every phase of the full-check cycle.
        for round in 0..40u64 {
            let t1 = edit(&mut img, &live, |img| {
                let t1 = img.mem.alloc(l.tstate_size as usize);
                img.mem.write_u64(t1 + u64::from(l.tstate_next), t0);
                img.mem.write_u64(t1 + u64::from(l.tstate_interp), interp);
                img.mem
                    .write_u64(t1 + u64::from(l.tstate_thread_id), 0x100 + round);
                img.set_innermost(t1, inner);
                img.mem
                    .write_u64(t0 + u64::from(l.tstate_prev.unwrap()), t1);
                img.mem
                    .write_u64(interp + u64::from(l.interp_tstate_head), t1);
                t1
            });
            w.sample_into(&mut raw).unwrap();
            assert_eq!(
                idents(&raw),
                [0x100 + round, 0x10],
                "{:?} start {round}",
                l.version
            );
            edit(&mut img, &live, |img| {
                img.mem.write_u64(t0 + u64::from(l.tstate_prev.unwrap()), 0);
                img.mem
                    .write_u64(interp + u64::from(l.interp_tstate_head), t0);
                // What CPython frees may keep its old contents: the links must tell.
                let _ = t1;
            });
            w.sample_into(&mut raw).unwrap();
            assert_eq!(idents(&raw), [0x10], "{:?} exit {round}", l.version);
        }
    }
}

/// A new interpreter is linked in at the head of the runtime's list; between full checks the
/// sample does not read that list, so it appears within one full-check cycle, and from then on
/// in every sample.
#[test]
fn a_new_interpreter_appears_within_a_full_check_cycle() {
    for l in [l312(), l313()] {
        let (mut img, _, _, _, roots) = deep_chunk_image(l, 5, 16);
        let (mut w, live) = live_walker(&mut img, roots);
        let mut raw = RawSample::new();
        for _ in 0..5 {
            w.sample_into(&mut raw).unwrap();
        }
        let old = img_first_interp(&live, l, roots);
        edit(&mut img, &live, |img| {
            let code = img.code("sub", "/s.py", 1, 8);
            let c = img.chunk(4096, 0);
            let f = img.chunk_frames(c, 0, &[(code, 2)], 0)[0];
            let sub = img.interp(1);
            img.threads(sub, &[(0x99, 9, f)]);
            img.mem.write_u64(sub + u64::from(l.interp_next), old);
            img.mem.write_u64(
                roots.runtime.unwrap() + u64::from(l.runtime_interpreters_head.unwrap()),
                sub,
            );
        });
        let mut seen_after = None;
        for i in 0..64 {
            w.sample_into(&mut raw).unwrap();
            let has = raw.threads.iter().any(|t| t.thread_id == 0x99);
            match seen_after {
                None if has => seen_after = Some(i),
                Some(_) => assert!(has, "{:?}: the new interpreter vanished", l.version),
                None => {}
            }
        }
        let after = seen_after.expect("the new interpreter was never sampled");
        assert!(
            after <= 16,
            "{:?}: seen only after {after} samples",
            l.version
        );
    }
}

/// `RawThread::unchanged` counts against the last sample the caller received: a sample that
/// failed half-way (one thread walked, the next one broken) must not become the reference.
#[test]
fn unchanged_counts_against_the_last_delivered_sample() {
    let l = l310();
    let mut img = Image::new(l);
    let c: Vec<u64> = (0..3)
        .map(|i| img.code(&format!("g{i}"), "/u.py", 10 * i + 1, 8))
        .collect();
    let a = img.frame_objects(&[(c[0], 2), (c[1], 2)]);
    let other = img.frame_objects(&[(c[0], 2), (c[2], 3)]);
    let b = img.frame_objects(&[(c[2], 1)]);
    let (_, ts, roots) = img.one_interpreter(&[Thread::new(0x1, 1, a), Thread::new(0x2, 2, b)]);
    let (mut w, live) = live_walker(&mut img, roots);
    let mut raw = RawSample::new();
    w.sample_into(&mut raw).unwrap();
    w.sample_into(&mut raw).unwrap();
    assert_eq!(raw.threads[0].unchanged, 2);
    let back = u64::from(l.frame_back.unwrap());
    // Thread 1 moves to other frames, thread 2's chain becomes a cycle: the sample fails after
    // thread 1 was walked.
    edit(&mut img, &live, |img| {
        img.set_innermost(ts[0], other);
        img.mem.write_u64(b + back, b);
    });
    assert!(w.sample_into(&mut raw).is_err());
    edit(&mut img, &live, |img| {
        img.set_innermost(ts[0], a);
        img.mem.write_u64(b + back, 0);
    });
    w.sample_into(&mut raw).unwrap();
    assert_eq!(
        raw.threads[0].unchanged, 2,
        "same frames as the last delivered sample"
    );
}

/// A leaf frame that comes and goes (a function called in a loop) keeps its range in the
/// speculative copy for a while after it left, so that its return costs no second read.
#[test]
fn a_frame_that_comes_and_goes_stays_in_the_batched_read() {
    for l in [l27(), l310()] {
        let mut img = Image::new(l);
        let codes: Vec<u64> = (0..10)
            .map(|i| img.code(&format!("h{i}"), "/leaf.py", 10 * i + 1, 8))
            .collect();
        let stack: Vec<(u64, i64)> = codes[..9].iter().map(|&c| (c, 2)).collect();
        let inner = img.frame_objects(&stack);
        // The leaf's frame object, reused at the same address by every call (CPython keeps a
        // zombie frame per code object).
        let leaf = img.frame_objects(&[(codes[9], 1)]);
        img.mem
            .write_u64(leaf + u64::from(l.frame_back.unwrap()), inner);
        let (_, ts, roots) = img.one_interpreter(&[Thread::new(0x5, 1, inner)]);
        let t = ts[0];
        let (mut w, live) = live_walker(&mut img, roots);
        let mut raw = RawSample::new();
        for round in 0..24 {
            let now = if round % 2 == 0 { leaf } else { inner };
            edit(&mut img, &live, |img| img.set_innermost(t, now));
            live.take_counts();
            w.sample_into(&mut raw).unwrap();
            let counts = live.take_counts();
            assert_eq!(raw.frames.len(), if round % 2 == 0 { 10 } else { 9 });
            if round >= 2 {
                assert_eq!(counts, (1, 0), "{:?} round {round}: one read", l.version);
            }
        }
        // Gone for longer than it is kept: its range is dropped, and a return costs one read.
        for _ in 0..12 {
            w.sample_into(&mut raw).unwrap();
        }
        edit(&mut img, &live, |img| img.set_innermost(t, leaf));
        live.take_counts();
        w.sample_into(&mut raw).unwrap();
        assert_eq!(
            live.take_counts(),
            (1, 1),
            "{:?}: dropped after a while",
            l.version
        );
    }
}

/// Write `instr` (an instruction index) into the frame at `frame` of code `code`.
fn set_instr(img: &mut Image, frame: u64, code: u64, instr: u64) {
    let l = img.l;
    let ip = img.adaptive(code) + 2 * instr;
    img.mem
        .write_u64(frame + u64::from(l.iframe_instr_ptr.unwrap()), ip);
}

/// A sample whose outer frames are byte for byte what the previous sample's walk read is
/// proven, not walked; any change below the meeting point (an outer frame's instruction or
/// code, a frame's link) is still seen, because the proof compares every byte that walk read.
#[test]
fn outer_frames_are_proven_unchanged_and_changes_below_are_still_seen() {
    for l in [l311(), l312(), l313(), l314(), l314t()] {
        let depth = 30;
        let (mut img, codes, _, t0, roots) = deep_chunk_image(l, depth, 48);
        let (mut w, live) = live_walker(&mut img, roots);
        let mut raw = RawSample::new();
        // The first sample finds the chunk by reading it directly, the second in the batched
        // copy: from the third on, a walk has a walk of the same copy to compare with.
        sample_matches_fresh(&mut w, &live, l, roots, &mut raw);
        sample_matches_fresh(&mut w, &live, l, roots, &mut raw);
        assert_eq!(
            w.frames_proven(),
            0,
            "{:?}: nothing to prove from",
            l.version
        );
        assert_eq!(raw.frames_of(&raw.threads[0]).len(), depth);
        // Nothing changed: every frame is proven.
        sample_matches_fresh(&mut w, &live, l, roots, &mut raw);
        assert_eq!(w.frames_proven(), depth as u64, "{:?}", l.version);
        assert_eq!(raw.threads[0].unchanged, depth);
        // The chain, innermost first, as the image has it.
        let chain = edit(&mut img, &live, |img| chain_of(img, t0));
        assert_eq!(chain.len(), depth);
        // An outer frame (f10, 19 frames below the innermost) moves on, nothing above it does.
        edit(&mut img, &live, |img| {
            set_instr(img, chain[19], codes[10], 9)
        });
        let got = sample_matches_fresh(&mut w, &live, l, roots, &mut raw);
        assert_eq!(
            no_entry(&got[0].3[19]),
            ("f10".into(), "/deep.py".into(), Some(110 + 9))
        );
        assert_eq!(raw.threads[0].unchanged, 10, "{:?}: f0..f9", l.version);
        // The same frame now runs another code object.
        edit(&mut img, &live, |img| {
            img.mem
                .write_u64(chain[19] + u64::from(l.iframe_code.unwrap()), codes[3]);
            set_instr(img, chain[19], codes[3], 1);
        });
        let got = sample_matches_fresh(&mut w, &live, l, roots, &mut raw);
        assert_eq!(
            no_entry(&got[0].3[19]),
            ("f3".into(), "/deep.py".into(), Some(103 + 1))
        );
        // Only the innermost frame moves: the 29 below it are proven.
        let before = w.frames_proven();
        edit(&mut img, &live, |img| {
            set_instr(img, chain[0], codes[29], 5)
        });
        let got = sample_matches_fresh(&mut w, &live, l, roots, &mut raw);
        assert_eq!(got[0].3[0].2, Some(129 + 5));
        assert_eq!(raw.threads[0].unchanged, depth - 1);
        assert!(
            w.frames_proven() - before >= depth as u64 - 1,
            "{:?}: proven {}",
            l.version,
            w.frames_proven() - before
        );
        // A frame in the middle is unlinked (f14 calls f16 directly now).
        edit(&mut img, &live, |img| {
            img.mem
                .write_u64(chain[14] + u64::from(l.iframe_previous.unwrap()), chain[16])
        });
        let got = sample_matches_fresh(&mut w, &live, l, roots, &mut raw);
        assert_eq!(got[0].3.len(), depth - 1);
        assert!(!got[0].3.iter().any(|f| f.0 == "f14"));
    }
}

/// 3.12+: the bottom frame's caller is an entry frame on the C stack (outside the chunk), and
/// the stack spreads over two chunks. Both are part of what a proof compares: a change in the
/// older chunk or in the entry frame is seen although the newer chunk did not change.
#[test]
fn proofs_cover_older_chunks_and_entry_frames_on_the_c_stack() {
    for l in [l312(), l313(), l314()] {
        let mut img = Image::new(l);
        let codes: Vec<u64> = (0..12)
            .map(|i| img.code(&format!("g{i}"), "/two.py", 200 + 10 * i, 16))
            .collect();
        let cstack = img.mem.alloc(4096);
        let entry = cstack + 512;
        let bottom = img.code("bottom", "/two.py", 1, 8);
        let bottom_frame = img.mem.alloc(256);
        img.iframe(
            bottom_frame,
            IFrame {
                previous: 0,
                code: bottom,
                instr_ptr: img.adaptive(bottom) + 2,
                owner: 1,
                tlbc_index: 0,
            },
        );
        img.iframe(
            entry,
            IFrame {
                previous: 0,
                code: 0,
                instr_ptr: 0,
                owner: l.owner_cstack.unwrap(),
                tlbc_index: 0,
            },
        );
        let older = img.chunk(16 * 1024, 0);
        let lower: Vec<(u64, i64)> = codes[..6].iter().map(|&c| (c, 1)).collect();
        let upper: Vec<(u64, i64)> = codes[6..].iter().map(|&c| (c, 2)).collect();
        let a = img.chunk_frames(older, entry, &lower, 64);
        let newer = img.chunk(16 * 1024, older);
        let b = img.chunk_frames(newer, *a.last().unwrap(), &upper, 64);
        let (_, _, roots) =
            img.one_interpreter(&[Thread::new(0x4444, 3, *b.last().unwrap()).in_chunk(newer)]);
        let (mut w, live) = live_walker(&mut img, roots);
        let mut raw = RawSample::new();
        for _ in 0..3 {
            sample_matches_fresh(&mut w, &live, l, roots, &mut raw);
        }
        // All 12, or all but the innermost (found before the walk settles in a chunk copy).
        assert!(w.frames_proven() >= 11, "{:?}", l.version);
        // A frame in the older chunk moves on.
        edit(&mut img, &live, |img| set_instr(img, a[2], codes[2], 7));
        let got = sample_matches_fresh(&mut w, &live, l, roots, &mut raw);
        assert_eq!(got[0].3[9].2, Some(220 + 7), "{:?}", l.version);
        assert_eq!(raw.threads[0].unchanged, 2);
        // The entry frame now returns into a (generator) frame below it.
        edit(&mut img, &live, |img| {
            img.mem
                .write_u64(entry + u64::from(l.iframe_previous.unwrap()), bottom_frame)
        });
        let got = sample_matches_fresh(&mut w, &live, l, roots, &mut raw);
        assert_eq!(got[0].3.len(), 13, "{:?}", l.version);
        assert_eq!(got[0].3[12].0, "bottom");
        assert_eq!(raw.threads[0].unchanged, 0);
        // Once nothing changes, the frames are proven again, the generator frame outside the
        // chunks included (it was read outside the batch when it appeared, so the first walk
        // after that is the one a proof can compare with).
        let before = w.frames_proven();
        sample_matches_fresh(&mut w, &live, l, roots, &mut raw);
        assert_eq!(raw.threads[0].unchanged, 13);
        sample_matches_fresh(&mut w, &live, l, roots, &mut raw);
        assert!(w.frames_proven() - before >= 12, "{:?}", l.version);
        edit(&mut img, &live, |img| {
            set_instr(img, bottom_frame, bottom, 3)
        });
        let got = sample_matches_fresh(&mut w, &live, l, roots, &mut raw);
        assert_eq!(got[0].3[12].2, Some(1 + 3));
    }
}

/// A batch copied while the target moved its frames can hold a chain that cannot be (here a
/// frame linked to one above it: a cycle). The sample is read again (up to four reads in all),
/// not dropped: rounds that fail this way fall on code that moves its frames, and dropping
/// them would bias the profile against it.
#[test]
fn a_torn_copy_is_read_again_not_lost() {
    for l in [l311(), l312(), l313(), l314(), l314t()] {
        let depth = 10;
        let (mut img, _, _, t0, roots) = deep_chunk_image(l, depth, 48);
        let (mut w, live) = live_walker(&mut img, roots);
        let mut raw = RawSample::new();
        for _ in 0..3 {
            sample_matches_fresh(&mut w, &live, l, roots, &mut raw);
        }
        let chain = edit(&mut img, &live, |img| chain_of(img, t0));
        // In the next copy, f2 returns into f7 (innermost first: chain[7] is f2).
        let link = chain[7] + u64::from(l.iframe_previous.unwrap());
        *live.torn.borrow_mut() = vec![(link, chain[2].to_le_bytes().to_vec())];
        live.torn_for.set(1);
        live.take_counts();
        let got = flat_sample(&mut w, &mut raw);
        assert_eq!(live.take_counts(), (2, 0), "{:?}: read twice", l.version);
        let fresh = Walker::new(live.clone(), l, roots).walk().unwrap();
        assert_eq!(got, flat_walk(&fresh), "{:?}", l.version);
        assert_eq!(got[0].3.len(), depth);
        assert_eq!(w.torn_reads(), 1);
        // Torn three times in a row: read four times, whole.
        live.torn_for.set(3);
        live.take_counts();
        let got = flat_sample(&mut w, &mut raw);
        assert_eq!(live.take_counts(), (4, 0), "{:?}", l.version);
        assert_eq!(got[0].3.len(), depth);
        assert_eq!(w.torn_reads(), 4);
        // Torn on every try: the sample fails, and says why, rather than reading on.
        live.torn_for.set(4);
        live.take_counts();
        let err = w.sample_into(&mut raw).unwrap_err();
        assert!(
            matches!(err, WalkError::Unbounded { what: "frame", .. }),
            "{:?}: {err}",
            l.version
        );
        assert!(raw.threads.is_empty());
        assert_eq!(live.take_counts(), (4, 0));
        assert_eq!(w.torn_reads(), 7);
        // And the next sample is whole again.
        let got = sample_matches_fresh(&mut w, &live, l, roots, &mut raw);
        assert_eq!(got[0].3.len(), depth);
    }
}

/// A coroutine's (or generator's) frame lives in its object, outside the data-stack chunk,
/// between the event loop's frames below it and its callees above it, both in the chunk (what
/// an asyncio program looks like). A proof compares that frame byte for byte: the loop's
/// frames below it are proven, and a change in the coroutine's frame (its instruction, its
/// link) is still seen.
#[test]
fn frames_below_a_coroutine_frame_are_proven_and_its_changes_seen() {
    for l in [l311(), l312(), l313(), l314(), l314t()] {
        let depth = 10;
        let (mut img, codes, _, t0, roots) = deep_chunk_image(l, depth, 48);
        // f5 (the coroutine's callee) now returns into the coroutine `co`, which was resumed
        // by f4 (the event loop).
        let chain = chain_of(&img, t0);
        let (f4, f5) = (chain[5], chain[4]);
        let co_code = img.code("co", "/co.py", 500, 16);
        let co_obj = img.mem.alloc(512);
        let co = co_obj + 64;
        img.iframe(
            co,
            IFrame {
                previous: f4,
                code: co_code,
                instr_ptr: img.adaptive(co_code) + 2 * 3,
                owner: 1, // FRAME_OWNED_BY_GENERATOR
                tlbc_index: 0,
            },
        );
        img.mem
            .write_u64(f5 + u64::from(l.iframe_previous.unwrap()), co);
        let (mut w, live) = live_walker(&mut img, roots);
        let mut raw = RawSample::new();
        for _ in 0..3 {
            let got = sample_matches_fresh(&mut w, &live, l, roots, &mut raw);
            assert_eq!(got[0].3.len(), depth + 1);
            assert_eq!(
                no_entry(&got[0].3[5]),
                ("co".into(), "/co.py".into(), Some(503))
            );
        }
        let proven = w.frames_proven();
        assert!(proven >= depth as u64, "{:?}: proven {proven}", l.version);
        // The innermost frame moves on: the frames below it, coroutine included, are proven.
        edit(&mut img, &live, |img| set_instr(img, chain[0], codes[9], 5));
        let got = sample_matches_fresh(&mut w, &live, l, roots, &mut raw);
        assert_eq!(got[0].3[0].2, Some(109 + 5));
        assert_eq!(raw.threads[0].unchanged, depth, "{:?}", l.version);
        assert!(
            w.frames_proven() - proven >= depth as u64,
            "{:?}: proven {}",
            l.version,
            w.frames_proven() - proven
        );
        // The coroutine moves on (below the innermost frames, which do not change).
        edit(&mut img, &live, |img| set_instr(img, co, co_code, 7));
        let got = sample_matches_fresh(&mut w, &live, l, roots, &mut raw);
        assert_eq!(
            no_entry(&got[0].3[5]),
            ("co".into(), "/co.py".into(), Some(507)),
            "{:?}",
            l.version
        );
        assert_eq!(raw.threads[0].unchanged, 5, "{:?}: f0..f4", l.version);
        // It was resumed by f3 instead (f4 is gone from the stack).
        edit(&mut img, &live, |img| {
            img.mem
                .write_u64(co + u64::from(l.iframe_previous.unwrap()), chain[6])
        });
        let got = sample_matches_fresh(&mut w, &live, l, roots, &mut raw);
        assert_eq!(got[0].3.len(), depth, "{:?}", l.version);
        assert!(!got[0].3.iter().any(|f| f.0 == "f4"));
        // Steady again: proven again.
        let before = w.frames_proven();
        sample_matches_fresh(&mut w, &live, l, roots, &mut raw);
        sample_matches_fresh(&mut w, &live, l, roots, &mut raw);
        assert!(
            w.frames_proven() - before >= depth as u64,
            "{:?}: proven {}",
            l.version,
            w.frames_proven() - before
        );
    }
}

/// Frames of a chunk whose links do not fall in address (not what CPython does, but what
/// garbage or a torn read may look like): the walk does not vouch for itself, every sample
/// walks, and an outer change is seen.
#[test]
fn frames_out_of_address_order_are_walked_not_proven() {
    let l = l313();
    let (mut img, codes, _, t0, roots) = deep_chunk_image(l, 6, 32);
    // Rewire the chain to f5 → f2 → f3 → f4 → f1 → f0: below f2 the walk goes up the chunk,
    // so the chunk prefix up to f2 does not hold f3 and f4.
    let chain = chain_of(&img, t0);
    let (f2, f3, f4, f5) = (chain[3], chain[2], chain[1], chain[0]);
    let f1 = img
        .mem
        .read_u64(f2 + u64::from(l.iframe_previous.unwrap()))
        .unwrap();
    for (from, to) in [(f5, f2), (f2, f3), (f3, f4), (f4, f1)] {
        img.mem
            .write_u64(from + u64::from(l.iframe_previous.unwrap()), to);
    }
    let (mut w, live) = live_walker(&mut img, roots);
    let mut raw = RawSample::new();
    for round in 0..5u64 {
        edit(&mut img, &live, |img| set_instr(img, f4, codes[4], round));
        let got = sample_matches_fresh(&mut w, &live, l, roots, &mut raw);
        let order: Vec<&str> = got[0].3.iter().map(|f| f.0.as_str()).collect();
        assert_eq!(order, ["f5", "f2", "f3", "f4", "f1", "f0"]);
        assert_eq!(got[0].3[3].2, Some(104 + round as i32), "round {round}");
    }
    assert_eq!(w.frames_proven(), 0);
}

/// The frame chain of thread state `t` (3.11+), innermost first, as the image has it.
fn chain_of(img: &Image, t: u64) -> Vec<u64> {
    let l = img.l;
    let read = |at: u64| img.mem.read_u64(at).unwrap();
    let mut f = match l.frame_model {
        FrameModel::CFrame311 => read(
            read(t + u64::from(l.tstate_cframe.unwrap()))
                + u64::from(l.cframe_current_frame.unwrap()),
        ),
        _ => read(t + u64::from(l.tstate_current_frame.unwrap())),
    };
    let mut chain = Vec::new();
    while f != 0 {
        chain.push(f);
        f = read(f + u64::from(l.iframe_previous.unwrap()));
    }
    chain
}

fn entries(t: &ThreadStack) -> Vec<bool> {
    t.frames.iter().map(|f| f.entry).collect()
}

/// Up to 3.10 every frame is evaluated by its own `PyEval_EvalFrameEx` call: every frame is
/// an entry.
#[test]
fn entry_flags_frame_objects_every_frame() {
    for l in [l27(), l310()] {
        let mut img = Image::new(l);
        let a = img.code("a", "/e.py", 1, 8);
        let b = img.code("b", "/e.py", 10, 8);
        let c = img.code("c", "/e.py", 20, 8);
        let inner = img.frame_objects(&[(a, 1), (b, 2), (c, 3)]);
        let (_, _, roots) = img.one_interpreter(&[Thread::new(0x10, 1, inner)]);
        let stacks = img.walker(roots).walk().unwrap();
        assert_eq!(entries(&stacks[0]), [true, true, true], "{:?}", l.version);
    }
}

/// 3.11: the frame's own `is_entry` byte, as the frame says it (not guessed from its place).
#[test]
fn entry_flags_311_from_is_entry() {
    let l = l311();
    let mut img = Image::new(l);
    let codes: Vec<u64> = (0..4)
        .map(|i| img.code(&format!("g{i}"), "/e.py", 10 * i + 1, 8))
        .collect();
    let chunk = img.chunk(16 * 1024, 0);
    let stack: Vec<(u64, i64)> = codes.iter().map(|&c| (c, 1)).collect();
    let frames = img.chunk_frames(chunk, 0, &stack, 16);
    // Outermost first: g0 entry (the thread's first), g1 not, g2 entry (called from C), g3 not.
    let at = u64::from(l.iframe_is_entry.unwrap());
    img.mem.write_u8(frames[0] + at, 1);
    img.mem.write_u8(frames[2] + at, 1);
    let (_, _, roots) = img.one_interpreter(&[Thread::new(0x11, 2, frames[3]).in_chunk(chunk)]);
    let mut w = img.walker(roots);
    let stacks = w.walk().unwrap();
    // Innermost first.
    assert_eq!(entries(&stacks[0]), [false, true, false, true]);
    // The same from a sample that proves the outer frames unchanged.
    let mut raw = RawSample::new();
    for _ in 0..3 {
        w.sample_into(&mut raw).unwrap();
        assert_eq!(raw.entries_of(&raw.threads[0]), [false, true, false, true]);
    }
}

/// 3.12+: each evaluation loop call pushes a shim frame (owned by the C stack; by the
/// interpreter from 3.14) on the C stack below its first Python frame; that frame, and the
/// outermost, are entries. The shims are not reported, and memoised samples agree.
#[test]
fn entry_flags_312_and_later_from_the_shim_below() {
    for l in [l312(), l313(), l314(), l314t()] {
        let mut img = Image::new(l);
        let shim_owner = l.entry_shim_owner().unwrap();
        let codes: Vec<u64> = (0..4)
            .map(|i| img.code(&format!("h{i}"), "/e.py", 10 * i + 1, 8))
            .collect();
        let cstack = img.mem.alloc(4096);
        let shims = [cstack + 256, cstack + 1024];
        let chunk = img.chunk(16 * 1024, 0);
        // Outermost first: shim0 <- h0 <- h1 <- shim1 <- h2 <- h3.
        let low = img.chunk_frames(chunk, shims[0], &[(codes[0], 1), (codes[1], 1)], 16);
        let data_used = u64::from(l.iframe_size.unwrap()) * 2 + 32;
        let high = img.chunk_frames(
            chunk + data_used + 64,
            shims[1],
            &[(codes[2], 1), (codes[3], 1)],
            16,
        );
        for (shim, previous) in [(shims[0], 0), (shims[1], low[1])] {
            img.iframe(
                shim,
                IFrame {
                    previous,
                    code: 0,
                    instr_ptr: 0,
                    owner: shim_owner,
                    tlbc_index: 0,
                },
            );
        }
        let (_, _, roots) = img.one_interpreter(&[Thread::new(0x12, 3, high[1]).in_chunk(chunk)]);
        let (mut w, live) = live_walker(&mut img, roots);
        let stacks = Walker::new(live.clone(), l, roots).walk().unwrap();
        let names: Vec<&str> = stacks[0].frames.iter().map(|f| &*f.function).collect();
        assert_eq!(names, ["h3", "h2", "h1", "h0"], "{:?}", l.version);
        assert_eq!(
            entries(&stacks[0]),
            [false, true, false, true],
            "{:?}",
            l.version
        );
        let mut raw = RawSample::new();
        for _ in 0..3 {
            sample_matches_fresh(&mut w, &live, l, roots, &mut raw);
        }
        // The innermost frame moves: the outer ones are proven, their flags kept.
        edit(&mut img, &live, |img| set_instr(img, high[1], codes[3], 3));
        let got = sample_matches_fresh(&mut w, &live, l, roots, &mut raw);
        let flags: Vec<bool> = got[0].3.iter().map(|f| f.3).collect();
        assert_eq!(flags, [false, true, false, true], "{:?}", l.version);
    }
}

/// Where `l`'s collector flag is in an image: the `collecting` static (≤3.6, in `roots`), the
/// runtime's (3.7–3.8) or the interpreter's (3.9+).
fn collector_flag(img: &mut Image, interp: u64, roots: &mut Roots) -> u64 {
    let l = img.l;
    let off = || {
        u64::from(
            l.gc_collecting
                .expect("a 3.7+ layout has the flag's offset"),
        )
    };
    match l.gc_model {
        GcModel::StaticSymbol => {
            let at = img.mem.alloc(8);
            roots.gc_collecting = Some(at);
            at
        }
        GcModel::Runtime => roots.runtime.unwrap() + off(),
        GcModel::Interp => interp + off(),
    }
}

/// Make `holder` the GIL holder (or nobody, with 0), as `l` records it.
fn set_gil_holder(img: &mut Image, interp: u64, roots: Roots, holder: u64) {
    let l = img.l;
    match l.gil_model {
        GilModel::CurrentSymbol => img.mem.write_u64(roots.tstate_current.unwrap(), holder),
        GilModel::RuntimeTstateCurrent => img.mem.write_u64(
            roots.runtime.unwrap() + u64::from(l.runtime_tstate_current.unwrap()),
            holder,
        ),
        GilModel::InterpGilPointer => {
            let ptr_at = interp + u64::from(l.interp_ceval_gil.unwrap());
            let mut gil = img.mem.read_u64(ptr_at).unwrap();
            if gil == 0 {
                gil = img.mem.alloc(256);
                img.mem.write_u64(ptr_at, gil);
            }
            img.mem.write_i32(
                gil + u64::from(l.gil_locked.unwrap()),
                i32::from(holder != 0),
            );
            img.mem
                .write_u64(gil + u64::from(l.gil_last_holder.unwrap()), holder);
        }
    }
}

#[test]
fn the_collector_flag_marks_the_gil_holder_within_the_one_batched_read() {
    for l in [
        l27(),
        layout(3, 6, false),
        layout(3, 7, false),
        layout(3, 8, false),
        layout(3, 9, false),
        l310(),
        l311(),
        l312(),
        l313(),
        l314(),
    ] {
        let mut img = Image::new(l);
        let code = img.code("allocate", "/gc.py", 1, 4);
        let mut threads = Vec::new();
        for (ident, tid) in [(0x10, 100), (0x11, 101)] {
            let thread = if l.frame_model == FrameModel::FrameObject {
                Thread::new(ident, tid, img.frame_objects(&[(code, 1)]))
            } else {
                let chunk = img.chunk(4096, 0);
                let f = img.chunk_frames(chunk, 0, &[(code, 1)], 0);
                Thread::new(ident, tid, f[0]).in_chunk(chunk)
            };
            threads.push(thread);
        }
        let (interp, ts, mut roots) = img.one_interpreter(&threads);
        let flag = collector_flag(&mut img, interp, &mut roots);
        set_gil_holder(&mut img, interp, roots, ts[1]);
        let (mut w, live) = live_walker(&mut img, roots);
        let mut raw = RawSample::new();
        let mut sample = |w: &mut Walker<Live>| -> Vec<(u64, bool, bool)> {
            w.sample_into(&mut raw).unwrap();
            raw.threads
                .iter()
                .map(|t| (t.thread_id, t.holds_gil, t.gc))
                .collect()
        };
        let v = l.version;
        // Not collecting.
        let quiet = vec![(0x10, false, false), (0x11, true, false)];
        assert_eq!(sample(&mut w), quiet, "{v:?}");
        assert_eq!(sample(&mut w), quiet, "{v:?}");
        // Collecting: the GIL holder is the thread running the collector. Reading the flag
        // costs no read of its own.
        edit(&mut img, &live, |img| img.mem.write_i32(flag, 1));
        live.take_counts();
        let collecting = vec![(0x10, false, false), (0x11, true, true)];
        assert_eq!(sample(&mut w), collecting, "{v:?}");
        assert_eq!(live.take_counts(), (1, 0), "{v:?}: one batched read");
        // The flag set but nobody holding the GIL (a finaliser that released it, or a
        // free-threaded build): no thread is said to collect.
        edit(&mut img, &live, |img| set_gil_holder(img, interp, roots, 0));
        assert_eq!(
            sample(&mut w),
            vec![(0x10, false, false), (0x11, false, false)],
            "{v:?}"
        );
        // The other thread collects next.
        edit(&mut img, &live, |img| {
            set_gil_holder(img, interp, roots, ts[0])
        });
        assert_eq!(
            sample(&mut w),
            vec![(0x10, true, true), (0x11, false, false)],
            "{v:?}"
        );
        // Done.
        edit(&mut img, &live, |img| img.mem.write_i32(flag, 0));
        assert_eq!(
            sample(&mut w),
            vec![(0x10, true, false), (0x11, false, false)],
            "{v:?}"
        );
        // walk() says the same.
        edit(&mut img, &live, |img| img.mem.write_i32(flag, 1));
        let stacks = w.walk().unwrap();
        assert!(
            by_ident(&stacks)[&0x10].gc && !by_ident(&stacks)[&0x11].gc,
            "{v:?}"
        );
    }
}
