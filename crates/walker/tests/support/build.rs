//! A complete, valid process image for one generated [`Layout`], laid out only with that
//! layout's offsets (python-abi's tables are generated from the real headers).
//!
//! What it holds (the same for every version, in each version's shapes):
//! - the interpreter list: a main interpreter and a sub-interpreter (3.7+: `_PyRuntime` with
//!   `_Py_DebugOffsets` at its start from 3.13; ≤3.6: the `interp_head` static);
//! - main interpreter threads A (three frames, holds the GIL), B (two frames) and C (idle), and
//!   one thread D in the sub-interpreter;
//! - frames in each frame model's form: frame objects (≤3.10); data-stack chunks, an older
//!   chunk linked by `previous`, a generator frame outside the chunks, C-stack and
//!   interpreter-owned entry frames where the version has them, tagged `f_executable`
//!   (3.14+) and thread-local bytecode (3.14t);
//! - code objects with ASCII, Latin-1, UCS-2 and UCS-4 names and one line per instruction;
//! - `sys.modules` → `threading` → `_active` → `Thread` objects whose names are stored in each
//!   version's instance-dict shape (tp_dictoffset dicts, managed dicts, values arrays against
//!   the type's shared keys, 3.13+ inline values).
//!
//! Every pointer, length and byte area the builder writes is recorded in [`Slots`], so the
//! fuzzer mutates the fields the walker actually follows.

use std::collections::HashMap;

use strobe_python_abi::{
    DebugOffsetsTable, DictModel, FrameModel, GcModel, GilModel, Layout, LineTable, RuntimeModel,
    StringModel,
};
use strobe_walker::Roots;

/// `Py_TPFLAGS_INLINE_VALUES` / `Py_TPFLAGS_MANAGED_DICT` (3.13 `Include/object.h`; managed
/// dicts since 3.11).
const INLINE_VALUES: u64 = 1 << 2;
const MANAGED_DICT: u64 = 1 << 4;

/// Bytes of pre-header room before every object (3.11+ keep the managed dict or values
/// pointers there).
const PRE_HEADER: u64 = 32;

/// Where the image's fields are, for targeted mutations.
#[derive(Debug, Default, Clone)]
pub struct Slots {
    /// `(slot address, address of the object holding it)` of every pointer written.
    pub ptrs: Vec<(u64, u64)>,
    /// `(address, width in bytes)` of every length, count, size or index written.
    pub lens: Vec<(u64, u8)>,
    /// `(address, length)` of byte areas: string data, line tables, C names, state words.
    pub data: Vec<(u64, usize)>,
    /// Start of every structure (objects, frames, thread states, chunks, ...).
    pub objects: Vec<u64>,
    /// Every `str` object (`PyStringObject` on 2.7).
    pub strings: Vec<(u64, String)>,
    /// Addresses of the `uint64_t` members of `_Py_DebugOffsets` (3.13+).
    pub debug_words: Vec<u64>,
}

/// What the walker must report for one thread of the unmutated image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpectedThread {
    pub interp_id: i64,
    pub thread_id: u64,
    pub native_id: Option<u32>,
    pub holds_gil: bool,
    /// Running the collector: the image's collector flag is set and thread A, the GIL holder,
    /// is the one collecting.
    pub gc: bool,
    /// `(type name, raised)`: thread B handles a `ValueError`, thread D raises a `TypeError`;
    /// thread C's own exception item holds `None` (≤3.6: its `exc_type` does).
    pub exception: Option<(String, bool)>,
    /// `(function, file, line)`, innermost first.
    pub frames: Vec<(String, String, Option<i32>)>,
}

/// A built image and what reading it must give.
#[derive(Debug, Clone)]
pub struct Built {
    pub layout: Layout,
    pub regions: Vec<(u64, Vec<u8>)>,
    pub roots: Roots,
    /// `_PyRuntime` (3.7+).
    pub runtime: Option<u64>,
    /// The main interpreter (`thread_names` is asked about it).
    pub interp: u64,
    pub threads: Vec<ExpectedThread>,
    pub names: HashMap<u64, String>,
    pub slots: Slots,
    /// Objects of every kind the value reader decodes, with their repr.
    pub values: Vec<(u64, String)>,
    /// Thread A's thread state, whose innermost frame (`leaf_frame`, running `leaf_code`) has
    /// the locals `leaf_locals`: `(name, kind, repr)`, repr `None` when unbound.
    pub leaf_tstate: u64,
    pub leaf_frame: u64,
    pub leaf_code: u64,
    pub leaf_locals: Vec<(String, &'static str, Option<String>)>,
}

/// A bump-allocated set of regions with gaps between them (reads past an end fault).
struct Space {
    regions: Vec<(u64, Vec<u8>)>,
    next: u64,
    slots: Slots,
}

impl Space {
    fn new() -> Space {
        Space {
            regions: Vec::new(),
            next: 0x5555_0000_0000,
            slots: Slots::default(),
        }
    }

    fn alloc(&mut self, len: usize) -> u64 {
        let addr = self.next;
        self.regions.push((addr, vec![0; len]));
        self.next = (addr + len as u64 + 0x100 + 15) & !15;
        addr
    }

    fn write(&mut self, addr: u64, bytes: &[u8]) {
        let i = self.regions.partition_point(|(b, _)| *b <= addr) - 1;
        let (base, r) = &mut self.regions[i];
        let off = (addr - *base) as usize;
        r[off..off + bytes.len()].copy_from_slice(bytes);
    }

    fn u64(&mut self, addr: u64, v: u64) {
        self.write(addr, &v.to_le_bytes());
    }

    /// A pointer field of `owner` at `at`.
    fn ptr(&mut self, owner: u64, at: u64, v: u64) {
        self.u64(at, v);
        self.slots.ptrs.push((at, owner));
    }

    fn len(&mut self, at: u64, v: u64, width: u8) {
        self.write(at, &v.to_le_bytes()[..width as usize]);
        self.slots.lens.push((at, width));
    }

    fn data(&mut self, at: u64, bytes: &[u8]) {
        self.write(at, bytes);
        self.slots.data.push((at, bytes.len()));
    }
}

/// Builds the image for one layout.
struct Builder {
    l: Layout,
    s: Space,
    types: HashMap<&'static str, u64>,
    none: u64,
}

fn o(v: Option<u32>) -> u64 {
    u64::from(v.expect("layout field needed by this image"))
}

/// Instruction index each code object's frame is at, and thus its line (first + k).
const UNITS: usize = 16;
/// Local slots of the leaf frame (thread A's innermost).
const LEAF_SLOTS: u64 = 7;

impl Builder {
    fn new(l: Layout) -> Builder {
        let mut b = Builder {
            l,
            s: Space::new(),
            types: HashMap::new(),
            none: 0,
        };
        let none_ty = b.ty("NoneType", 0, 16, 0);
        b.none = b.obj(none_ty, 16);
        b
    }

    /// A type object named `name` (`tp_name` right after `PyObject_VAR_HEAD`,
    /// Include/cpython/object.h).
    fn ty(&mut self, name: &str, flags: u64, basicsize: u64, dictoffset: u64) -> u64 {
        let l = self.l;
        let cname = self.s.alloc(name.len() + 1);
        self.s.data(cname, name.as_bytes());
        let ty = self.s.alloc(2048);
        self.s.slots.objects.push(ty);
        self.s
            .ptr(ty, ty + u64::from(l.pyvarobject_ob_size) + 8, cname);
        self.s.u64(ty + u64::from(l.type_flags), flags);
        self.s.len(ty + u64::from(l.type_basicsize), basicsize, 8);
        self.s.len(ty + u64::from(l.type_dictoffset), dictoffset, 8);
        ty
    }

    fn builtin(&mut self, name: &'static str) -> u64 {
        if let Some(&t) = self.types.get(name) {
            return t;
        }
        let t = self.ty(name, 0, 0, 0);
        self.types.insert(name, t);
        t
    }

    /// An object of `size` bytes of type `ty`, with pre-header room before it.
    fn obj(&mut self, ty: u64, size: usize) -> u64 {
        let size = size.max(self.l.pyobject_size as usize);
        let base = self.s.alloc(size + PRE_HEADER as usize);
        let obj = base + PRE_HEADER;
        self.s.slots.objects.push(obj);
        self.s
            .ptr(obj, obj + u64::from(self.l.pyobject_ob_type), ty);
        obj
    }

    /// A `str` (a `PyStringObject` holding UTF-8 on 2.7; compact PEP 393 otherwise, in the
    /// narrowest kind that fits).
    fn str(&mut self, text: &str) -> u64 {
        let l = self.l;
        let ty = self.builtin("str");
        let o = match l.string_model {
            StringModel::Bytes27 => {
                let o = self.obj(ty, l.bytes_ob_sval as usize + text.len() + 1);
                self.s
                    .len(o + u64::from(l.pyvarobject_ob_size), text.len() as u64, 8);
                self.s.data(o + u64::from(l.bytes_ob_sval), text.as_bytes());
                o
            }
            StringModel::Compact33 => {
                let cps: Vec<u32> = text.chars().map(u32::from).collect();
                let max = cps.iter().copied().max().unwrap_or(0);
                let (kind, ascii) = match max {
                    0..=0x7f => (1usize, true),
                    0x80..=0xff => (1, false),
                    0x100..=0xffff => (2, false),
                    _ => (4, false),
                };
                let header = if ascii {
                    o(l.unicode_ascii_size)
                } else {
                    o(l.unicode_compact_size)
                };
                let o_ = self.obj(ty, header as usize + (cps.len() + 1) * kind);
                self.s.len(o_ + o(l.unicode_length), cps.len() as u64, 8);
                let kind_mask = l.unicode_kind_mask.unwrap();
                let mut state = ((kind as u32) << kind_mask.trailing_zeros()) & kind_mask;
                state |= l.unicode_compact_mask.unwrap();
                if ascii {
                    state |= l.unicode_ascii_mask.unwrap();
                }
                self.s.data(o_ + o(l.unicode_state), &state.to_le_bytes());
                let bytes: Vec<u8> = cps
                    .iter()
                    .flat_map(|&c| match kind {
                        1 => vec![c as u8],
                        2 => (c as u16).to_le_bytes().to_vec(),
                        _ => c.to_le_bytes().to_vec(),
                    })
                    .collect();
                self.s.data(o_ + header, &bytes);
                o_
            }
        };
        self.s.slots.strings.push((o, text.to_string()));
        o
    }

    /// A `bytes` object (`str` on 2.7) holding `data`.
    fn bytes(&mut self, data: &[u8]) -> u64 {
        let l = self.l;
        let ty = self.builtin("bytes");
        let o = self.obj(ty, l.bytes_ob_sval as usize + data.len() + 1);
        self.s
            .len(o + u64::from(l.pyvarobject_ob_size), data.len() as u64, 8);
        self.s.data(o + u64::from(l.bytes_ob_sval), data);
        o
    }

    /// An `int` holding `v` (`PyIntObject` on 2.7), as `threading.get_ident()` makes it.
    fn int(&mut self, v: u64) -> u64 {
        let l = self.l;
        let ty = self.builtin("int");
        let o = self.obj(ty, l.long_digit as usize + 16);
        if l.string_model == StringModel::Bytes27 {
            self.s.len(o + u64::from(l.long_digit), v, 8);
            return o;
        }
        let mut digits = Vec::new();
        let mut rest = v;
        while rest != 0 {
            digits.push((rest & ((1 << 30) - 1)) as u32);
            rest >>= 30;
        }
        match l.long_lv_tag {
            Some(tag) => self
                .s
                .len(o + u64::from(tag), (digits.len() as u64) << 3, 8),
            None => self
                .s
                .len(o + u64::from(l.pyvarobject_ob_size), digits.len() as u64, 8),
        }
        for (i, d) in digits.iter().enumerate() {
            self.s
                .data(o + u64::from(l.long_digit) + 4 * i as u64, &d.to_le_bytes());
        }
        o
    }

    /// A dict-keys object (3.6+) holding `entries`; `kind` is the 3.11+ `dk_kind`
    /// (0 general, 1 unicode, 2 split).
    fn keys(&mut self, entries: &[(u64, u64)], kind: u8) -> u64 {
        let l = self.l;
        let indices = o(l.dictkeys_indices) as usize;
        let size = (entries.len() * 3 / 2).next_power_of_two().max(8);
        let wide = l.dict_model == DictModel::Compact36 || kind == 0;
        let stride = if wide { 24 } else { 16 };
        let k = self.s.alloc(indices + size + size * stride);
        self.s.slots.objects.push(k);
        let size_off = o(l.dictkeys_size);
        if l.dict_model == DictModel::Compact311 {
            let log2 = size.trailing_zeros() as u64;
            self.s.len(k + size_off, log2, 1);
            self.s.len(k + o(l.dictkeys_log2_index_bytes), log2, 1);
            self.s.len(k + o(l.dictkeys_kind), u64::from(kind), 1);
        } else {
            self.s.len(k + size_off, size as u64, 8);
        }
        self.s
            .len(k + o(l.dictkeys_nentries), entries.len() as u64, 8);
        let first = k + indices as u64 + size as u64;
        for (i, &(key, value)) in entries.iter().enumerate() {
            let e = first + (i * stride) as u64;
            let key_at = if wide { 8 } else { 0 };
            self.s.ptr(k, e + key_at, key);
            if value != 0 {
                self.s.ptr(k, e + key_at + 8, value);
            }
        }
        k
    }

    fn dict(&mut self, entries: &[(u64, u64)]) -> u64 {
        let l = self.l;
        let ty = self.builtin("dict");
        let d = self.obj(ty, 64);
        self.s
            .len(d + u64::from(l.dict_ma_used), entries.len() as u64, 8);
        if l.dict_model == DictModel::Table27 {
            // 2.7 `ma_table` of `ma_mask + 1` `{hash, key, value}` slots; Layout keeps
            // `ma_table` in `dict_ma_keys` and `ma_mask` in `dict_ma_values`.
            let slots = (entries.len() * 3 / 2).next_power_of_two().max(8);
            let table = self.s.alloc(slots * 24);
            self.s.slots.objects.push(table);
            for (i, &(key, value)) in entries.iter().enumerate() {
                self.s.ptr(table, table + (i * 24) as u64 + 8, key);
                self.s.ptr(table, table + (i * 24) as u64 + 16, value);
            }
            self.s.ptr(d, d + u64::from(l.dict_ma_keys), table);
            self.s
                .len(d + u64::from(l.dict_ma_values), slots as u64 - 1, 8);
        } else {
            // 3.11+: unicode keys; general keys elsewhere.
            let kind = u8::from(l.dict_model == DictModel::Compact311);
            let k = self.keys(entries, kind);
            self.s.ptr(d, d + u64::from(l.dict_ma_keys), k);
        }
        d
    }

    fn module(&mut self, namespace: u64) -> u64 {
        let ty = self.builtin("module");
        let m = self.obj(ty, 64);
        self.s.ptr(m, m + u64::from(self.l.module_dict), namespace);
        m
    }

    /// A code object whose instruction k (code unit k, byte 2k) is on line `first + k`.
    fn code(&mut self, name: &str, file: &str, first: i32) -> u64 {
        let l = self.l;
        let table: Vec<u8> = match l.line_table {
            // (byte increment, line increment) pairs.
            LineTable::Lnotab27 | LineTable::Lnotab36 => {
                (1..UNITS).flat_map(|_| [2u8, 1u8]).collect()
            }
            // 3.10: (byte length, line delta) pairs.
            LineTable::Linetable310 => (0..UNITS).flat_map(|k| [2u8, u8::from(k != 0)]).collect(),
            // 3.11+: kind 13 (no columns) entries of one code unit with a varint line delta.
            LineTable::Location311 => (0..UNITS)
                .flat_map(|k| [0x80 | (13 << 3), if k == 0 { 0 } else { 2 }])
                .collect(),
        };
        let name_s = self.str(name);
        let file_s = self.str(file);
        let table_b = self.bytes(&table);
        let ty = self.builtin("code");
        let adaptive = l.code_code_adaptive.map_or(0, |a| a as usize);
        let size =
            (l.code_size as usize).max(adaptive) + l.code_code_adaptive.map_or(0, |_| UNITS * 2);
        let c = self.obj(ty, size);
        if l.line_table == LineTable::Location311 {
            // Py_SIZE(code): bytecode length in code units (3.11+).
            self.s
                .len(c + u64::from(l.pyvarobject_ob_size), UNITS as u64, 8);
        }
        self.s.ptr(c, c + u64::from(l.code_name), name_s);
        if let Some(q) = l.code_qualname {
            self.s.ptr(c, c + u64::from(q), name_s);
        }
        self.s.ptr(c, c + u64::from(l.code_filename), file_s);
        self.s
            .len(c + u64::from(l.code_firstlineno), first as u32 as u64, 4);
        let table_off = l.code_linetable.or(l.code_lnotab).unwrap();
        self.s.ptr(c, c + u64::from(table_off), table_b);
        c
    }

    /// A tuple of `items`.
    fn tuple(&mut self, items: &[u64]) -> u64 {
        let l = self.l;
        let ty = self.builtin("tuple");
        let t = self.obj(ty, l.tuple_ob_item as usize + 8 * items.len().max(1));
        self.s
            .len(t + u64::from(l.pyvarobject_ob_size), items.len() as u64, 8);
        for (i, &item) in items.iter().enumerate() {
            self.s
                .ptr(t, t + u64::from(l.tuple_ob_item) + 8 * i as u64, item);
        }
        t
    }

    /// A list of `items`, then itself when `with_self`.
    fn list(&mut self, items: &[u64], with_self: bool) -> u64 {
        let l = self.l;
        let ty = self.builtin("list");
        let lst = self.obj(ty, l.list_allocated as usize + 8);
        let n = items.len() + usize::from(with_self);
        let array = self.s.alloc(8 * (n + 1));
        self.s.slots.objects.push(array);
        for (i, &item) in items.iter().enumerate() {
            self.s.ptr(array, array + 8 * i as u64, item);
        }
        if with_self {
            self.s.ptr(array, array + 8 * items.len() as u64, lst);
        }
        self.s
            .len(lst + u64::from(l.pyvarobject_ob_size), n as u64, 8);
        self.s
            .len(lst + u64::from(l.list_allocated), n as u64 + 1, 8);
        self.s.ptr(lst, lst + u64::from(l.list_ob_item), array);
        lst
    }

    fn float(&mut self, v: f64) -> u64 {
        let l = self.l;
        let ty = self.builtin("float");
        let f = self.obj(ty, l.float_ob_fval as usize + 8);
        self.s
            .data(f + u64::from(l.float_ob_fval), &v.to_bits().to_le_bytes());
        f
    }

    /// A set of `(key, hash)` entries in the first slots of an 8-slot table.
    fn set(&mut self, entries: &[(u64, u64)]) -> u64 {
        let l = self.l;
        let ty = self.builtin("set");
        let st = self.obj(ty, l.set_table as usize + 8);
        let size = u64::from(l.setentry_size);
        let table = self.s.alloc(8 * size as usize);
        self.s.slots.objects.push(table);
        for (i, &(key, hash)) in entries.iter().enumerate() {
            let e = table + size * i as u64;
            self.s.ptr(table, e + u64::from(l.setentry_key), key);
            self.s.len(e + u64::from(l.setentry_hash), hash, 8);
        }
        self.s
            .len(st + u64::from(l.set_used), entries.len() as u64, 8);
        self.s.len(st + u64::from(l.set_mask), 7, 8);
        self.s.ptr(st, st + u64::from(l.set_table), table);
        st
    }

    /// Give `code` the argument count, flags and local names of a function whose first
    /// `args` names are its parameters.
    fn locals(&mut self, code: u64, names: &[&str], args: u32) {
        let l = self.l;
        self.s
            .len(code + u64::from(l.code_argcount), u64::from(args), 4);
        if let Some(off) = l.code_kwonlyargcount {
            self.s.len(code + u64::from(off), 0, 4);
        }
        self.s.len(code + u64::from(l.code_flags), 0, 4);
        self.s
            .len(code + u64::from(l.code_nlocals), names.len() as u64, 4);
        let strs: Vec<u64> = names.iter().map(|n| self.str(n)).collect();
        let tuple = self.tuple(&strs);
        match (l.code_localsplusnames, l.code_localspluskinds) {
            (Some(names_off), Some(kinds_off)) => {
                self.s.ptr(code, code + u64::from(names_off), tuple);
                let kinds = vec![l.co_fast_local.unwrap(); names.len()];
                let kinds = self.bytes(&kinds);
                self.s.ptr(code, code + u64::from(kinds_off), kinds);
                let n = l.code_nlocalsplus.unwrap();
                self.s.len(code + u64::from(n), names.len() as u64, 4);
            }
            _ => {
                let empty = self.tuple(&[]);
                self.s.ptr(code, code + o(l.code_varnames), tuple);
                self.s.ptr(code, code + o(l.code_cellvars), empty);
                self.s.ptr(code, code + o(l.code_freevars), empty);
            }
        }
    }

    fn adaptive(&self, code: u64) -> u64 {
        code + o(self.l.code_code_adaptive)
    }

    /// ≤3.10 frame objects for `(code, k)`, outermost first; returns the innermost.
    fn frame_objects(&mut self, stack: &[(u64, i64)]) -> u64 {
        let l = self.l;
        let mut back = 0;
        for &(code, k) in stack {
            let ty = self.builtin("frame");
            let size = [l.frame_back, l.frame_code, l.frame_lasti]
                .iter()
                .map(|f| o(*f) + 8)
                .max()
                .unwrap()
                .max(o(l.frame_localsplus) + 8 * LEAF_SLOTS);
            let f = self.obj(ty, size as usize);
            self.s.ptr(f, f + o(l.frame_back), back);
            self.s.ptr(f, f + o(l.frame_code), code);
            // f_lasti: bytes ≤3.9, code units in 3.10.
            let lasti = match l.line_table {
                LineTable::Linetable310 => k,
                _ => 2 * k,
            };
            self.s.len(f + o(l.frame_lasti), lasti as u32 as u64, 4);
            back = f;
        }
        back
    }

    /// A data-stack chunk (3.11+) of `size` bytes whose older chunk is `previous`.
    fn chunk(&mut self, size: usize, previous: u64) -> u64 {
        let l = self.l;
        let c = self.s.alloc(size);
        self.s.slots.objects.push(c);
        self.s.ptr(c, c + o(l.chunk_previous), previous);
        self.s.len(c + o(l.chunk_size), size as u64, 8);
        c
    }

    /// Write a `_PyInterpreterFrame` at `at`.
    fn iframe(&mut self, at: u64, previous: u64, code: u64, instr_ptr: u64, owner: u8, tlbc: i32) {
        let l = self.l;
        self.s.slots.objects.push(at);
        self.s.ptr(at, at + o(l.iframe_previous), previous);
        self.s.ptr(at, at + o(l.iframe_code), code);
        self.s.ptr(at, at + o(l.iframe_instr_ptr), instr_ptr);
        self.s.len(at + o(l.iframe_owner), u64::from(owner), 1);
        if let Some(off) = l.iframe_tlbc_index {
            self.s.len(at + u64::from(off), tlbc as u32 as u64, 4);
        }
    }

    /// The tagged `f_executable` of `code` (3.14+ `_PyStackRef`, pycore_stackref.h): set the
    /// low bit where the layout masks it off.
    fn tagged(&self, code: u64) -> u64 {
        if self.l.stackref_mask & 1 == 0 {
            code | 1
        } else {
            code
        }
    }
}

/// Build the image for `l`. `positions` is the `_Py_DebugOffsets` position table (3.13+).
pub fn build(l: &Layout, positions: Option<&DebugOffsetsTable>) -> Built {
    let l = *l;
    let mut b = Builder::new(l);
    let py2 = l.string_model == StringModel::Bytes27;

    // Code objects: names in every string kind.
    let c_main = b.code("<module>", "/app/main.py", 1);
    let c_work = b.code("wörk", "/app/lïb.py", 40);
    let c_leaf = b.code("leaf☃", "/app/deep/\u{1f600}.py", 100);
    let c_gen = b.code("gen\u{1f40d}", "/app/gen.py", 200);

    // Values of every kind the value reader decodes, and the leaf's locals holding them.
    let v_int = b.int(7);
    let v_str = b.str("hello");
    let v_float = b.float(2.5);
    let v_tuple = b.tuple(&[v_int, v_str]);
    let v_list = b.list(&[v_int, v_str], true);
    let k = b.str("k");
    let v_dict = b.dict(&[(k, v_int)]);
    let v_set = b.set(&[(v_int, 7)]);
    let plain_ty = b.ty("Plain", u64::from(l.tpflags_heaptype), 32, 0);
    let v_plain = b.obj(plain_ty, 32);
    let values = vec![
        (b.none, "None".to_string()),
        (v_int, "7".to_string()),
        (v_str, "'hello'".to_string()),
        (v_float, "2.5".to_string()),
        (v_tuple, "(7, 'hello')".to_string()),
        (v_list, "[7, 'hello', [...]]".to_string()),
        (v_dict, "{'k': 7}".to_string()),
        (v_set, if py2 { "set([7])" } else { "{7}" }.to_string()),
        (v_plain, format!("<Plain object at {v_plain:#x}>")),
    ];
    let leaf_names = ["n", "s", "lst", "d", "st", "p", "gone"];
    b.locals(c_leaf, &leaf_names, 1);
    let leaf_slots = [v_int, v_str, v_list, v_dict, v_set, v_plain, 0];
    let leaf_locals: Vec<(String, &'static str, Option<String>)> = leaf_names
        .iter()
        .zip(leaf_slots)
        .enumerate()
        .map(|(i, (name, slot))| {
            let repr = values.iter().find(|v| v.0 == slot).map(|v| v.1.clone());
            (name.to_string(), if i == 0 { "arg" } else { "local" }, repr)
        })
        .collect();

    let line = |first: i32, k: i64| Some(first + k as i32);
    let fr =
        |f: &str, file: &str, first: i32, k: i64| (f.to_string(), file.to_string(), line(first, k));

    // Stacks: (innermost, datastack chunk) per thread, with the expected frames.
    struct Stack {
        innermost: u64,
        chunk: u64,
        frames: Vec<(String, String, Option<i32>)>,
    }
    let idle = Stack {
        innermost: 0,
        chunk: 0,
        frames: Vec::new(),
    };
    let (stack_a, stack_b, stack_d) = match l.frame_model {
        FrameModel::FrameObject => {
            let a = b.frame_objects(&[(c_main, 3), (c_work, 5), (c_leaf, 7)]);
            for (i, &v) in leaf_slots.iter().enumerate() {
                b.s.ptr(a, a + o(l.frame_localsplus) + 8 * i as u64, v);
            }
            let bb = b.frame_objects(&[(c_main, 2), (c_gen, 9)]);
            let d = b.frame_objects(&[(c_main, 0)]);
            (
                Stack {
                    innermost: a,
                    chunk: 0,
                    frames: vec![
                        fr("leaf☃", "/app/deep/\u{1f600}.py", 100, 7),
                        fr("wörk", "/app/lïb.py", 40, 5),
                        fr("<module>", "/app/main.py", 1, 3),
                    ],
                },
                Stack {
                    innermost: bb,
                    chunk: 0,
                    frames: vec![
                        fr("gen\u{1f40d}", "/app/gen.py", 200, 9),
                        fr("<module>", "/app/main.py", 1, 2),
                    ],
                },
                Stack {
                    innermost: d,
                    chunk: 0,
                    frames: vec![fr("<module>", "/app/main.py", 1, 0)],
                },
            )
        }
        FrameModel::CFrame311 | FrameModel::Direct313 => {
            let fsize = o(l.iframe_size);
            let step = fsize + 16;
            // Thread A: older chunk [entry (C stack / interpreter owned), main], current
            // chunk [work], and the leaf is a generator frame outside both.
            let older = b.chunk(4096, 0);
            let mut at = older + o(l.chunk_data);
            let mut prev = 0;
            for owner in [l.owner_cstack, l.owner_interpreter].into_iter().flatten() {
                // Entry frames hold None (3.13+) or nothing useful; they are skipped by owner.
                let code = b.tagged(b.none);
                b.iframe(at, prev, code, 0, owner, 0);
                prev = at;
                at += step;
            }
            let main_ip = b.adaptive(c_main) + 2 * 3;
            let tagged_main = b.tagged(c_main);
            b.iframe(at, prev, tagged_main, main_ip, 0, 0);
            let f_main = at;
            let current = b.chunk(4096, older);
            let f_work = current + o(l.chunk_data);
            let work_ip = b.adaptive(c_work) + 2 * 5;
            b.iframe(f_work, f_main, c_work, work_ip, 0, 0);
            let gen = b.s.alloc(fsize as usize + 64);
            // 3.14t: the leaf runs thread-local bytecode copy 1 (co_tlbc, Include/cpython/
            // code.h `_PyCodeArray`).
            let (leaf_ip, tlbc) = match l.code_tlbc {
                Some(off) => {
                    let copy = b.s.alloc(UNITS * 2);
                    let array = b.s.alloc(24);
                    b.s.slots.objects.push(array);
                    b.s.len(array, 2, 8);
                    let adaptive = b.adaptive(c_leaf);
                    b.s.ptr(array, array + 8, adaptive);
                    b.s.ptr(array, array + 16, copy);
                    b.s.ptr(c_leaf, c_leaf + u64::from(off), array);
                    (copy + 2 * 7, 1)
                }
                None => (b.adaptive(c_leaf) + 2 * 7, 0),
            };
            let tagged_leaf = b.tagged(c_leaf);
            b.iframe(gen, f_work, tagged_leaf, leaf_ip, 0, tlbc);
            for (i, &v) in leaf_slots.iter().enumerate() {
                // 3.14+ slots are tagged stack references too.
                let v = if v == 0 { 0 } else { b.tagged(v) };
                b.s.ptr(gen, gen + o(l.iframe_localsplus) + 8 * i as u64, v);
            }
            // Thread B: one chunk, two frames.
            let chunk_b = b.chunk(4096, 0);
            let f1 = chunk_b + o(l.chunk_data);
            let ip1 = b.adaptive(c_main) + 2 * 2;
            b.iframe(f1, 0, c_main, ip1, 0, 0);
            let ip2 = b.adaptive(c_gen) + 2 * 9;
            b.iframe(f1 + step, f1, c_gen, ip2, 0, 0);
            // Thread D (sub-interpreter).
            let chunk_d = b.chunk(4096, 0);
            let fd = chunk_d + o(l.chunk_data);
            let ipd = b.adaptive(c_main);
            b.iframe(fd, 0, c_main, ipd, 0, 0);
            (
                Stack {
                    innermost: gen,
                    chunk: current,
                    frames: vec![
                        fr("leaf☃", "/app/deep/\u{1f600}.py", 100, 7),
                        fr("wörk", "/app/lïb.py", 40, 5),
                        fr("<module>", "/app/main.py", 1, 3),
                    ],
                },
                Stack {
                    innermost: f1 + step,
                    chunk: chunk_b,
                    frames: vec![
                        fr("gen\u{1f40d}", "/app/gen.py", 200, 9),
                        fr("<module>", "/app/main.py", 1, 2),
                    ],
                },
                Stack {
                    innermost: fd,
                    chunk: chunk_d,
                    frames: vec![fr("<module>", "/app/main.py", 1, 0)],
                },
            )
        }
    };

    // Interpreters.
    let interp_len = [
        Some(l.interp_next),
        Some(l.interp_tstate_head),
        l.interp_id,
        Some(l.interp_modules),
        l.interp_ceval_gil,
        l.gc_collecting.filter(|_| l.gc_model == GcModel::Interp),
    ]
    .iter()
    .flatten()
    .max()
    .unwrap()
        + 8;
    let main = b.s.alloc(interp_len as usize);
    let sub = b.s.alloc(interp_len as usize);
    b.s.slots.objects.extend([main, sub]);
    b.s.ptr(main, main + u64::from(l.interp_next), sub);
    if let Some(id) = l.interp_id {
        b.s.len(sub + u64::from(id), 1, 8);
    }

    // Thread states.
    let idents = [
        0x7f12_3456_7000u64,
        0x7f12_3456_8000,
        0x7f12_3456_9000,
        0x7f12_3456_a000,
    ];
    let tids = [4242u32, 4243, 4244, 4245];
    let stacks = [&stack_a, &stack_b, &idle, &stack_d];
    let owners = [main, main, main, sub];
    let mut tstates = Vec::new();
    for _ in 0..4 {
        let t = b.s.alloc(l.tstate_size as usize);
        b.s.slots.objects.push(t);
        tstates.push(t);
    }
    for i in 0..4 {
        let t = tstates[i];
        let next = if i == 0 || i == 1 { tstates[i + 1] } else { 0 };
        b.s.ptr(t, t + u64::from(l.tstate_next), next);
        if let Some(off) = l.tstate_prev {
            let prev = if i == 1 || i == 2 { tstates[i - 1] } else { 0 };
            b.s.ptr(t, t + u64::from(off), prev);
        }
        b.s.ptr(t, t + u64::from(l.tstate_interp), owners[i]);
        b.s.u64(t + u64::from(l.tstate_thread_id), idents[i]);
        if let Some(off) = l.tstate_native_thread_id {
            b.s.u64(t + u64::from(off), u64::from(tids[i]));
        }
        let st = stacks[i];
        match l.frame_model {
            FrameModel::FrameObject => b.s.ptr(t, t + o(l.tstate_frame), st.innermost),
            FrameModel::CFrame311 => {
                let cframe = b.s.alloc(64);
                b.s.slots.objects.push(cframe);
                b.s.ptr(cframe, cframe + o(l.cframe_current_frame), st.innermost);
                b.s.ptr(t, t + o(l.tstate_cframe), cframe);
            }
            FrameModel::Direct313 => b.s.ptr(t, t + o(l.tstate_current_frame), st.innermost),
        }
        if let Some(off) = l.tstate_datastack_chunk {
            b.s.ptr(t, t + u64::from(off), st.chunk);
        }
        // 3.7+: `exc_info` points at the thread's own item.
        if let (Some(info), Some(state)) = (l.tstate_exc_info, l.tstate_exc_state) {
            b.s.ptr(t, t + u64::from(info), t + u64::from(state));
        }
    }
    // Exceptions: B handles a ValueError, C's item holds None, D raises a TypeError (types
    // until 3.10 hold the type itself, later ones an instance; the raised one is a type
    // until 3.11).
    let metatype = b.ty("type", 0, 0, 0);
    let exc_type = |b: &mut Builder, name: &str| {
        let ty = b.ty(name, 0, 0, 0);
        b.s.ptr(ty, ty + u64::from(l.pyobject_ob_type), metatype);
        ty
    };
    let value_error = exc_type(&mut b, "ValueError");
    let type_error = exc_type(&mut b, "builtins.TypeError");
    let instances = l.exc_model == strobe_python_abi::ExcModel::StackValues
        || l.exc_model == strobe_python_abi::ExcModel::StackValues311;
    let handled = if instances {
        b.obj(value_error, 64)
    } else {
        value_error
    };
    let handled_at = match (l.tstate_exc_type, l.tstate_exc_state, l.stackitem_exc) {
        (Some(off), _, _) => Some(u64::from(off)),
        (None, Some(state), Some(exc)) => Some(u64::from(state) + u64::from(exc)),
        _ => None,
    };
    if let Some(at) = handled_at {
        b.s.ptr(tstates[1], tstates[1] + at, handled);
        b.s.ptr(tstates[2], tstates[2] + at, b.none);
    }
    let raised = if l.tstate_current_exception.is_some() {
        b.obj(type_error, 64)
    } else {
        type_error
    };
    if let Some(off) = l.tstate_curexc_type.or(l.tstate_current_exception) {
        b.s.ptr(tstates[3], tstates[3] + u64::from(off), raised);
    }
    b.s.ptr(main, main + u64::from(l.interp_tstate_head), tstates[0]);
    b.s.ptr(sub, sub + u64::from(l.interp_tstate_head), tstates[3]);

    // The GIL holder: thread A.
    let holder = tstates[0];
    if l.gil_model == GilModel::InterpGilPointer {
        let gil = b.s.alloc(256);
        b.s.slots.objects.push(gil);
        b.s.ptr(main, main + o(l.interp_ceval_gil), gil);
        b.s.len(gil + o(l.gil_locked), 1, 4);
        b.s.ptr(gil, gil + o(l.gil_last_holder), holder);
    }

    // Roots.
    let mut runtime = None;
    let roots = match l.runtime_model {
        RuntimeModel::PyRuntime37 => {
            let dbg_size = positions.and_then(|p| p.position("__size")).unwrap_or(0);
            let len = [
                l.runtime_interpreters_head,
                l.runtime_tstate_current,
                l.gc_collecting.filter(|_| l.gc_model == GcModel::Runtime),
                Some(dbg_size),
            ]
            .iter()
            .flatten()
            .max()
            .unwrap()
                + 8;
            let r = b.s.alloc(len as usize);
            b.s.slots.objects.push(r);
            b.s.ptr(r, r + o(l.runtime_interpreters_head), main);
            if l.gil_model == GilModel::RuntimeTstateCurrent {
                b.s.ptr(r, r + o(l.runtime_tstate_current), holder);
            }
            if let Some(p) = positions {
                write_debug_offsets(&mut b.s, r, &l, p);
            }
            runtime = Some(r);
            Roots {
                runtime: Some(r),
                ..Roots::default()
            }
        }
        RuntimeModel::InterpHead => {
            let head = b.s.alloc(8);
            b.s.ptr(head, head, main);
            let current = b.s.alloc(8);
            b.s.ptr(current, current, holder);
            Roots {
                interp_head: Some(head),
                tstate_current: Some(current),
                gc_collecting: Some(b.s.alloc(8)),
                ..Roots::default()
            }
        }
    };
    // The collector runs (on the GIL holder, thread A): the main interpreter's flag (3.9+),
    // the runtime's (3.7–3.8) or the static (≤3.6); the subinterpreter's stays clear.
    let collecting_at = match l.gc_model {
        GcModel::Interp => Some(main + o(l.gc_collecting)),
        GcModel::Runtime => runtime.map(|r| r + o(l.gc_collecting)),
        GcModel::StaticSymbol => roots.gc_collecting,
    };
    if let Some(at) = collecting_at {
        b.s.len(at, 1, 4);
    }

    // threading._active: {ident: Thread}.
    let name_attr = if py2 { "_Thread__name" } else { "_name" };
    let thread_names = ["MainThread", "wörker-1", "Thread-3 ☃\u{1f600}"];
    let k_name = b.str(name_attr);
    let k_target = b.str("_target");
    let v_names: Vec<u64> = thread_names.iter().map(|n| b.str(n)).collect();
    let threads: Vec<u64> = match l.dict_model {
        DictModel::Table27 | DictModel::Compact36 => {
            // ≤3.10: the instance dict at tp_dictoffset.
            let ty = b.ty("Thread", 0, 32, 16);
            (0..3)
                .map(|i| {
                    let t = b.obj(ty, 32);
                    let d = b.dict(&[(k_target, b.none), (k_name, v_names[i])]);
                    b.s.ptr(t, t + 16, d);
                    t
                })
                .collect()
        }
        DictModel::Compact311 => {
            // 3.11+: managed dicts; thread B keeps its attributes as values against the
            // type's shared keys (pycore_object.h / pycore_dict.h of each version).
            let minor = l.version.minor;
            let flags = if minor >= 13 {
                MANAGED_DICT | INLINE_VALUES
            } else {
                MANAGED_DICT
            };
            let basicsize = 48u64;
            let ty = b.ty("Thread", flags, basicsize, 0);
            let shared = b.keys(&[(k_target, 0), (k_name, 0)], 2);
            b.s.ptr(ty, ty + o(l.heaptype_cached_keys), shared);
            let managed: i64 = if l.flavour.free_threaded { -8 } else { -24 };
            let mut out = Vec::new();
            for (i, &name) in v_names.iter().enumerate() {
                let t = b.obj(ty, basicsize as usize + 8 + 16);
                let slot = t.wrapping_add_signed(managed);
                if i == 1 {
                    match minor {
                        11 => {
                            let values = b.s.alloc(16);
                            b.s.ptr(values, values, b.none);
                            b.s.ptr(values, values + 8, name);
                            b.s.ptr(t, t - 32, values);
                        }
                        12 => {
                            let values = b.s.alloc(16);
                            b.s.ptr(values, values, b.none);
                            b.s.ptr(values, values + 8, name);
                            // `PyDictOrValues`: values pointers are stored minus one.
                            b.s.ptr(t, slot, values - 1);
                        }
                        _ => {
                            // `struct _dictvalues {capacity, size, embedded, valid, ...;
                            // values[]}` right after the object.
                            let v = t + basicsize;
                            b.s.len(v, 2, 1);
                            b.s.len(v + 1, 2, 1);
                            b.s.len(v + 2, 1, 1);
                            b.s.len(v + 3, 1, 1);
                            b.s.ptr(t, v + 8, b.none);
                            b.s.ptr(t, v + 16, name);
                        }
                    }
                } else {
                    let d = b.dict(&[(k_target, b.none), (k_name, name)]);
                    b.s.ptr(t, slot, d);
                }
                out.push(t);
            }
            out
        }
    };
    let ident_objs: Vec<u64> = idents[..3].iter().map(|&v| b.int(v)).collect();
    let active_entries: Vec<(u64, u64)> = ident_objs.iter().copied().zip(threads).collect();
    let active = b.dict(&active_entries);
    let k_active = b.str("_active");
    let k_limbo = b.str("_limbo");
    let limbo = b.dict(&[]);
    let ns = b.dict(&[(k_limbo, limbo), (k_active, active)]);
    let threading = b.module(ns);
    let k_sys = b.str("sys");
    let sys = b.module(limbo);
    let k_threading = b.str("threading");
    let modules = b.dict(&[(k_sys, sys), (k_threading, threading)]);
    b.s.ptr(main, main + u64::from(l.interp_modules), modules);

    let expected: Vec<ExpectedThread> = (0..4)
        .map(|i| ExpectedThread {
            interp_id: if i == 3 { 1 } else { 0 },
            thread_id: idents[i],
            native_id: l.tstate_native_thread_id.map(|_| tids[i]),
            holds_gil: i == 0,
            gc: i == 0,
            exception: match i {
                1 => Some(("ValueError".to_string(), false)),
                3 => Some(("TypeError".to_string(), true)),
                _ => None,
            },
            frames: stacks[i].frames.clone(),
        })
        .collect();
    let names = idents[..3]
        .iter()
        .zip(thread_names)
        .map(|(&i, n)| (i, n.to_string()))
        .collect();
    let mut slots = std::mem::take(&mut b.s.slots);
    slots.objects.sort_unstable();
    slots.objects.dedup();
    Built {
        layout: l,
        regions: b.s.regions,
        roots,
        runtime,
        interp: main,
        threads: expected,
        names,
        slots,
        values,
        leaf_tstate: tstates[0],
        leaf_frame: stack_a.innermost,
        leaf_code: c_leaf,
        leaf_locals,
    }
}

/// The values `_Py_DebugOffsets_INIT` would put in the struct for `l`: sizes, then offsets.
/// Members with no `Layout` counterpart get a plausible value inside their struct.
fn debug_values(l: &Layout) -> Vec<(&'static str, u64)> {
    let r = |v: u32| u64::from(v);
    let ft = l.flavour.free_threaded;
    let ft_only = |v: Option<u32>| if ft { v.map_or(0, u64::from) } else { 0 };
    const GIL_AT: u64 = 7752;
    let mut v = vec![
        ("runtime_state.size", 300_000),
        ("runtime_state.finalizing", 600),
        (
            "runtime_state.interpreters_head",
            o(l.runtime_interpreters_head),
        ),
        ("interpreter_state.size", 200_000),
        ("interpreter_state.id", o(l.interp_id)),
        ("interpreter_state.next", r(l.interp_next)),
        ("interpreter_state.threads_head", r(l.interp_tstate_head)),
        ("interpreter_state.threads_main", 7400),
        ("interpreter_state.gc", 7408),
        ("interpreter_state.imports_modules", r(l.interp_modules)),
        ("interpreter_state.ceval_gil", o(l.interp_ceval_gil)),
        ("interpreter_state.gil_runtime_state", GIL_AT),
        (
            "interpreter_state.gil_runtime_state_locked",
            GIL_AT + o(l.gil_locked),
        ),
        (
            "interpreter_state.gil_runtime_state_holder",
            GIL_AT + o(l.gil_last_holder),
        ),
        ("thread_state.size", r(l.tstate_size)),
        ("thread_state.next", r(l.tstate_next)),
        ("thread_state.interp", r(l.tstate_interp)),
        ("thread_state.current_frame", o(l.tstate_current_frame)),
        ("thread_state.thread_id", r(l.tstate_thread_id)),
        (
            "thread_state.native_thread_id",
            o(l.tstate_native_thread_id),
        ),
        ("thread_state.datastack_chunk", o(l.tstate_datastack_chunk)),
        (
            "thread_state.current_exception",
            o(l.tstate_current_exception),
        ),
        ("thread_state.exc_state", o(l.tstate_exc_state)),
        ("thread_state.status", 32),
        ("interpreter_frame.size", o(l.iframe_size)),
        ("interpreter_frame.previous", o(l.iframe_previous)),
        ("interpreter_frame.executable", o(l.iframe_code)),
        ("interpreter_frame.instr_ptr", o(l.iframe_instr_ptr)),
        ("interpreter_frame.localsplus", o(l.iframe_localsplus)),
        ("interpreter_frame.owner", o(l.iframe_owner)),
        ("interpreter_frame.tlbc_index", ft_only(l.iframe_tlbc_index)),
        ("code_object.size", r(l.code_size)),
        ("code_object.filename", r(l.code_filename)),
        ("code_object.name", r(l.code_name)),
        ("code_object.qualname", o(l.code_qualname)),
        ("code_object.linetable", o(l.code_linetable)),
        ("code_object.firstlineno", r(l.code_firstlineno)),
        ("code_object.co_code_adaptive", o(l.code_code_adaptive)),
        ("code_object.co_tlbc", ft_only(l.code_tlbc)),
        ("pyobject.size", r(l.pyobject_size)),
        ("pyobject.ob_type", r(l.pyobject_ob_type)),
        ("type_object.size", 1024),
        ("type_object.tp_flags", r(l.type_flags)),
        ("type_object.tp_basicsize", r(l.type_basicsize)),
        ("type_object.tp_dictoffset", r(l.type_dictoffset)),
        ("heap_type_object.size", 1024),
        ("tuple_object.size", 64),
        ("tuple_object.ob_size", r(l.pyvarobject_ob_size)),
        ("tuple_object.ob_item", r(l.tuple_ob_item)),
        ("list_object.size", 64),
        ("list_object.ob_item", r(l.list_ob_item)),
        ("float_object.size", 64),
        ("float_object.ob_fval", r(l.float_ob_fval)),
        ("set_object.size", 256),
        ("set_object.used", r(l.set_used)),
        ("set_object.mask", r(l.set_mask)),
        ("set_object.table", r(l.set_table)),
        ("type_object.tp_name", r(l.type_name)),
        ("code_object.argcount", r(l.code_argcount)),
        ("code_object.localsplusnames", o(l.code_localsplusnames)),
        ("code_object.localspluskinds", o(l.code_localspluskinds)),
        ("dict_object.size", 128),
        ("dict_object.ma_keys", r(l.dict_ma_keys)),
        ("dict_object.ma_values", r(l.dict_ma_values)),
        ("long_object.size", 64),
        ("long_object.lv_tag", o(l.long_lv_tag)),
        ("long_object.ob_digit", r(l.long_digit)),
        ("bytes_object.size", 64),
        ("bytes_object.ob_sval", r(l.bytes_ob_sval)),
        ("unicode_object.size", 128),
        ("unicode_object.state", o(l.unicode_state)),
        ("unicode_object.length", o(l.unicode_length)),
        ("unicode_object.asciiobject_size", o(l.unicode_ascii_size)),
        // `struct _gc_runtime_state` at `interpreter_state.gc` (7408 above).
        ("gc.size", 1024),
        ("gc.collecting", o(l.gc_collecting) - 7408),
    ];
    if let Some(cached) = l.heaptype_cached_keys {
        v.push(("heap_type_object.ht_cached_keys", u64::from(cached)));
    }
    if let Some(sp) = l.iframe_stackpointer {
        v.push(("interpreter_frame.stackpointer", u64::from(sp)));
    }
    if let (Some(iframe), Some(state)) = (l.gen_iframe, l.gen_frame_state) {
        // PyGenObject (3.14+): the frame is its last member.
        v.push(("gen_object.size", u64::from(iframe) + 80));
        v.push(("gen_object.gi_iframe", u64::from(iframe)));
        v.push(("gen_object.gi_frame_state", u64::from(state)));
    }
    if let Some(compact) = l.unicode_compact_size {
        v.push((
            "unicode_object.compactunicodeobject_size",
            u64::from(compact),
        ));
    }
    v
}

fn write_debug_offsets(s: &mut Space, runtime: u64, l: &Layout, p: &DebugOffsetsTable) {
    s.data(runtime, b"xdebugpy");
    s.len(runtime + 8, l.version.to_hex(), 8);
    s.len(runtime + 16, u64::from(l.flavour.free_threaded), 8);
    s.slots.debug_words.extend([runtime + 8, runtime + 16]);
    for (name, value) in debug_values(l) {
        // Members this version's struct does not have are not written.
        if let Some(pos) = p.position(name) {
            s.u64(runtime + u64::from(pos), value);
            s.slots.debug_words.push(runtime + u64::from(pos));
        }
    }
}
