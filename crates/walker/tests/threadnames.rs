//! `threadnames::thread_names` against synthetic memory images (free-threaded shapes, corrupt
//! tables, wrong types, what a lookup reads); against real interpreters in
//! `threadnames_live.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;

use strobe_memory::RemoteMemory;
use strobe_python_abi::{layout_for, DictModel, Flavour, Layout, StringModel};
use strobe_testkit::ImageMemory;
use strobe_walker::threadnames::thread_names;
use strobe_walker::WalkError;

// ------------------------------------------------------------------------------------------------
// Synthetic images
// ------------------------------------------------------------------------------------------------

/// `Py_TPFLAGS_INLINE_VALUES` / `Py_TPFLAGS_MANAGED_DICT` (3.13 `Include/object.h`).
const INLINE_VALUES: u64 = 1 << 2;
const MANAGED_DICT: u64 = 1 << 4;

/// Builds CPython objects in an [`ImageMemory`] as the generated layout describes them.
struct Img {
    m: ImageMemory,
    l: &'static Layout,
    types: HashMap<&'static str, u64>,
}

impl Img {
    fn new(major: u8, minor: u8, flavour: Flavour) -> Img {
        let l = layout_for(major, minor, flavour)
            .unwrap_or_else(|| panic!("no layout for {major}.{minor} {flavour:?}"));
        Img {
            m: ImageMemory::new(),
            l,
            types: HashMap::new(),
        }
    }

    /// A type object named `name` (`tp_name` right after `PyObject_VAR_HEAD`).
    fn new_type(&mut self, name: &str, flags: u64, basicsize: u64, dictoffset: i64) -> u64 {
        let l = self.l;
        let cname = self.m.alloc(name.len() + 1);
        self.m.write(cname, name.as_bytes());
        let ty = self.m.alloc(2048);
        self.m
            .write_u64(ty + u64::from(l.pyvarobject_ob_size) + 8, cname);
        self.m.write_u64(ty + u64::from(l.type_flags), flags);
        self.m
            .write_u64(ty + u64::from(l.type_basicsize), basicsize);
        self.m
            .write_u64(ty + u64::from(l.type_dictoffset), dictoffset as u64);
        ty
    }

    fn builtin(&mut self, name: &'static str) -> u64 {
        if let Some(&t) = self.types.get(name) {
            return t;
        }
        let t = self.new_type(name, 0, 0, 0);
        self.types.insert(name, t);
        t
    }

    /// An object of `size` bytes (plus 32 bytes of pre-header before it) of type `ty`.
    fn obj(&mut self, ty: u64, size: usize) -> u64 {
        let base = self.m.alloc(size + 32);
        let obj = base + 32;
        self.m
            .write_u64(obj + u64::from(self.l.pyobject_ob_type), ty);
        obj
    }

    /// An ASCII `str`.
    fn s(&mut self, text: &str) -> u64 {
        let l = self.l;
        let ty = self.builtin("str");
        match l.string_model {
            StringModel::Bytes27 => {
                let o = self.obj(ty, l.bytes_ob_sval as usize + text.len() + 1);
                self.m
                    .write_u64(o + u64::from(l.pyvarobject_ob_size), text.len() as u64);
                self.m
                    .write(o + u64::from(l.bytes_ob_sval), text.as_bytes());
                o
            }
            StringModel::Compact33 => {
                let ascii = l.unicode_ascii_size.unwrap();
                // `read_string` copies a whole `PyCompactUnicodeObject` header in one read.
                let size =
                    (ascii as usize + text.len() + 1).max(l.unicode_compact_size.unwrap() as usize);
                let o = self.obj(ty, size);
                let kind = l.unicode_kind_mask.unwrap();
                let state = (1 << kind.trailing_zeros())
                    | l.unicode_compact_mask.unwrap()
                    | l.unicode_ascii_mask.unwrap();
                self.m
                    .write_u64(o + u64::from(l.unicode_length.unwrap()), text.len() as u64);
                self.m
                    .write_u32(o + u64::from(l.unicode_state.unwrap()), state);
                self.m.write(o + u64::from(ascii), text.as_bytes());
                o
            }
        }
    }

    /// An `int` holding `v`, as `threading.get_ident()` makes it.
    fn int(&mut self, v: u64) -> u64 {
        let l = self.l;
        let ty = self.builtin("int");
        let o = self.obj(ty, l.long_digit as usize + 16);
        if l.string_model == StringModel::Bytes27 {
            self.m.write_u64(o + u64::from(l.long_digit), v);
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
                .m
                .write_u64(o + u64::from(tag), (digits.len() as u64) << 3),
            None => self
                .m
                .write_u64(o + u64::from(l.pyvarobject_ob_size), digits.len() as u64),
        }
        for (i, d) in digits.iter().enumerate() {
            self.m
                .write_u32(o + u64::from(l.long_digit) + 4 * i as u64, *d);
        }
        o
    }

    /// A dict-keys object (3.6+) holding `entries`; `kind` is the 3.11+ `dk_kind`.
    /// Returns (keys address, entries address).
    fn keys(&mut self, entries: &[(u64, u64)], kind: u8) -> (u64, u64) {
        let l = self.l;
        let indices = l.dictkeys_indices.unwrap() as usize;
        let size = (entries.len() * 3 / 2).next_power_of_two().max(8);
        let wide = l.dict_model == DictModel::Compact36 || kind == 0;
        let stride = if wide { 24 } else { 16 };
        let k = self.m.alloc(indices + size + size * stride);
        let size_off = u64::from(l.dictkeys_size.unwrap());
        if l.dict_model == DictModel::Compact311 {
            let log2 = size.trailing_zeros() as u8;
            self.m.write_u8(k + size_off, log2);
            self.m
                .write_u8(k + u64::from(l.dictkeys_log2_index_bytes.unwrap()), log2);
            self.m
                .write_u8(k + u64::from(l.dictkeys_kind.unwrap()), kind);
        } else {
            self.m.write_u64(k + size_off, size as u64);
        }
        self.m.write_u64(
            k + u64::from(l.dictkeys_nentries.unwrap()),
            entries.len() as u64,
        );
        let first = k + indices as u64 + size as u64;
        for (i, &(key, value)) in entries.iter().enumerate() {
            let e = first + (i * stride) as u64;
            let key_at = if wide { 8 } else { 0 };
            self.m.write_u64(e + key_at, key);
            self.m.write_u64(e + key_at + 8, value);
        }
        (k, first)
    }

    /// A combined dict holding `entries` (general keys when `general`).
    fn dict_kind(&mut self, entries: &[(u64, u64)], general: bool) -> u64 {
        let l = self.l;
        let ty = self.builtin("dict");
        let d = self.obj(ty, 64);
        self.m
            .write_u64(d + u64::from(l.dict_ma_used), entries.len() as u64);
        if l.dict_model == DictModel::Table27 {
            let slots = (entries.len() * 3 / 2).next_power_of_two().max(8);
            let table = self.m.alloc(slots * 24);
            for (i, &(key, value)) in entries.iter().enumerate() {
                self.m.write_u64(table + (i * 24) as u64 + 8, key);
                self.m.write_u64(table + (i * 24) as u64 + 16, value);
            }
            self.m.write_u64(d + u64::from(l.dict_ma_keys), table);
            self.m
                .write_u64(d + u64::from(l.dict_ma_values), slots as u64 - 1);
        } else {
            let (k, _) = self.keys(entries, if general { 0 } else { 1 });
            self.m.write_u64(d + u64::from(l.dict_ma_keys), k);
        }
        d
    }

    fn dict(&mut self, entries: &[(u64, u64)]) -> u64 {
        self.dict_kind(entries, false)
    }

    fn module(&mut self, namespace: u64) -> u64 {
        let ty = self.builtin("module");
        let m = self.obj(ty, 64);
        self.m
            .write_u64(m + u64::from(self.l.module_dict), namespace);
        m
    }

    /// `threading._active` of one thread, ident 42, named "x" (in its instance dict).
    fn active_x42(&mut self) -> u64 {
        let k_name = self.s("_name");
        let v = self.s("x");
        let t = self.thread_dictoffset(&[(k_name, v)]);
        let ident = self.int(42);
        self.dict_kind(&[(ident, t)], true)
    }

    /// An interpreter state whose `sys.modules` holds `threading` with `_active = active`.
    fn interp_with_active(&mut self, active: u64) -> u64 {
        let k_active = self.s("_active");
        let k_other = self.s("_limbo");
        let other = self.dict(&[]);
        let ns = self.dict(&[(k_other, other), (k_active, active)]);
        let threading = self.module(ns);
        let k_sys = self.s("sys");
        let sys = self.module(other);
        let k_threading = self.s("threading");
        let modules = self.dict(&[(k_sys, sys), (k_threading, threading)]);
        self.interp(modules)
    }

    fn interp(&mut self, modules: u64) -> u64 {
        let at = self.l.interp_modules as usize;
        let i = self.m.alloc(at + 8);
        self.m.write_u64(i + at as u64, modules);
        i
    }

    /// A `Thread` whose attributes are in a dict at `tp_dictoffset` (≤3.10).
    fn thread_dictoffset(&mut self, attrs: &[(u64, u64)]) -> u64 {
        let ty = self.new_type("Thread", 0, 32, 16);
        let t = self.obj(ty, 32);
        let d = self.dict(attrs);
        self.m.write_u64(t + 16, d);
        t
    }

    fn run(&self, interp: u64) -> Result<HashMap<u64, String>, WalkError> {
        thread_names(&self.m, self.l, interp)
    }
}

#[test]
fn synthetic_2_7_table_and_mangled_name() {
    let mut img = Img::new(2, 7, Flavour::DEFAULT);
    let k = img.s("_Thread__name");
    let v = img.s("worker");
    let t = img.thread_dictoffset(&[(k, v)]);
    let ident = img.int(0x7f00_1234_5678);
    let active = img.dict(&[(ident, t)]);
    let interp = img.interp_with_active(active);
    assert_eq!(
        img.run(interp),
        Ok(HashMap::from([(0x7f00_1234_5678, "worker".to_string())]))
    );
}

#[test]
fn synthetic_3_10_split_instance_dict() {
    let mut img = Img::new(3, 10, Flavour::DEFAULT);
    let k_target = img.s("_target");
    let k_name = img.s("_name");
    let v = img.s("split");
    let dict_ty = img.builtin("dict");
    // Shared keys with two names; this instance only set `_name` (values[0] stays NULL).
    let (keys, _) = img.keys(&[(k_target, 0), (k_name, 0)], 0);
    let values = img.m.alloc(16);
    img.m.write_u64(values + 8, v);
    let d = img.obj(dict_ty, 64);
    img.m.write_u64(d + u64::from(img.l.dict_ma_keys), keys);
    img.m.write_u64(d + u64::from(img.l.dict_ma_values), values);
    let ty = img.new_type("Thread", 0, 32, 16);
    let t = img.obj(ty, 32);
    img.m.write_u64(t + 16, d);
    let ident = img.int(u64::MAX - 5);
    let active = img.dict_kind(&[(ident, t)], true);
    let interp = img.interp_with_active(active);
    assert_eq!(
        img.run(interp),
        Ok(HashMap::from([(u64::MAX - 5, "split".to_string())]))
    );
}

/// Free-threaded 3.13t (no such interpreter here): the managed dict pointer is one word before
/// the object (`MANAGED_DICT_OFFSET`, `pycore_object.h`), the inline values follow
/// `tp_basicsize` = `sizeof(PyObject)` = 32, and every object field sits 16 bytes later.
#[test]
fn synthetic_3_13t_inline_values_and_managed_dict() {
    let ft = Flavour {
        free_threaded: true,
        debug: false,
    };
    let mut img = Img::new(3, 13, ft);
    let l = img.l;
    let k_ident = img.s("_ident");
    let k_name = img.s("_name");
    let (shared, _) = img.keys(&[(k_ident, 0), (k_name, 0)], 2);
    let basicsize = u64::from(l.pyobject_size);
    let ty = img.new_type("Thread", MANAGED_DICT | INLINE_VALUES, basicsize, -1);
    img.m
        .write_u64(ty + u64::from(l.heaptype_cached_keys.unwrap()), shared);

    // Thread 1: attributes in inline values (capacity 2, valid).
    let t1 = img.obj(ty, basicsize as usize + 8 + 16);
    let values = t1 + basicsize;
    img.m.write(values, &[2, 2, 1, 1]);
    let n1 = img.s("inline");
    img.m.write_u64(values + 8 + 8, n1);

    // Thread 2: a materialised dict in the managed dict slot; inline values invalidated.
    let t2 = img.obj(ty, basicsize as usize + 8 + 16);
    img.m.write(t2 + basicsize, &[2, 0, 1, 0]);
    let n2 = img.s("materialised");
    let d = img.dict(&[(k_name, n2)]);
    img.m.write_u64(t2 - 8, d);

    // Thread 3: inline values no longer valid and no dict: no name, not an error.
    let t3 = img.obj(ty, basicsize as usize + 8 + 16);
    img.m.write(t3 + basicsize, &[2, 0, 1, 0]);

    let (i1, i2, i3) = (img.int(1 << 40), img.int(7), img.int(1 << 62));
    let active = img.dict_kind(&[(i1, t1), (i2, t2), (i3, t3)], true);
    let interp = img.interp_with_active(active);
    assert_eq!(
        img.run(interp),
        Ok(HashMap::from([
            (1 << 40, "inline".to_string()),
            (7, "materialised".to_string()),
        ]))
    );
}

#[test]
fn no_threading_module_is_an_empty_map() {
    let mut img = Img::new(3, 12, Flavour::DEFAULT);
    let k = img.s("sys");
    let empty = img.dict(&[]);
    let sys = img.module(empty);
    let modules = img.dict(&[(k, sys)]);
    let interp = img.interp(modules);
    assert_eq!(img.run(interp), Ok(HashMap::new()));

    // `sys.modules["threading"] = None` blocks the import: also no names.
    let mut img = Img::new(3, 12, Flavour::DEFAULT);
    let k = img.s("threading");
    let none_ty = img.builtin("NoneType");
    let none = img.obj(none_ty, 16);
    let modules = img.dict(&[(k, none)]);
    let interp = img.interp(modules);
    assert_eq!(img.run(interp), Ok(HashMap::new()));

    // NULL `interp->modules` (interpreter starting or finalising).
    let interp = img.interp(0);
    assert_eq!(img.run(interp), Ok(HashMap::new()));
}

#[test]
fn odd_entries_are_skipped() {
    let mut img = Img::new(3, 11, Flavour::DEFAULT);
    let k_name = img.s("_name");
    let good_name = img.s("good");
    let good = img.thread_dictoffset(&[(k_name, good_name)]);
    // A name that is not a str, a thread without a name, a key that is not an int, and a
    // negative int key.
    let not_str = img.int(5);
    let bad_name = img.thread_dictoffset(&[(k_name, not_str)]);
    let k_other = img.s("_other");
    let nameless = img.thread_dictoffset(&[(k_other, not_str)]);
    let str_key = img.s("123");
    let negative = img.int(9);
    img.m.write_u64(negative + 16, (-1i64) as u64);
    let (i1, i2, i3) = (img.int(1), img.int(2), img.int(3));
    let active = img.dict_kind(
        &[
            (i1, good),
            (i2, bad_name),
            (i3, nameless),
            (str_key, good),
            (negative, good),
        ],
        true,
    );
    let interp = img.interp_with_active(active);
    assert_eq!(
        img.run(interp),
        Ok(HashMap::from([(1, "good".to_string())]))
    );
}

fn assert_corrupt(r: Result<HashMap<u64, String>, WalkError>, what: &str) {
    match r {
        Err(e @ WalkError::Corrupt { .. }) => {
            assert!(e.is_transient());
            assert!(e.to_string().contains(what), "{e} does not mention {what}");
        }
        other => panic!("expected a Corrupt({what}) error, got {other:?}"),
    }
}

/// Build the usual chain on 3.12 and return (image, interp, the sys.modules dict).
fn chain_3_12() -> (Img, u64, u64) {
    let mut img = Img::new(3, 12, Flavour::DEFAULT);
    let active = img.active_x42();
    let interp = img.interp_with_active(active);
    let modules = img
        .m
        .read_u64(interp + u64::from(img.l.interp_modules))
        .unwrap();
    assert_eq!(img.run(interp), Ok(HashMap::from([(42, "x".to_string())])));
    (img, interp, modules)
}

#[test]
fn corrupt_keys_headers_are_errors() {
    let (img, interp, modules) = chain_3_12();
    let l = img.l;
    let keys = img.m.read_u64(modules + u64::from(l.dict_ma_keys)).unwrap();
    let at = |off: Option<u32>| keys + u64::from(off.unwrap());

    let mut huge = img.m.clone();
    huge.write_u8(at(l.dictkeys_size), 60);
    assert_corrupt(thread_names(&huge, l, interp), "dk_log2_size");

    let mut index = img.m.clone();
    index.write_u8(at(l.dictkeys_log2_index_bytes), 40);
    assert_corrupt(thread_names(&index, l, interp), "dk_log2_index_bytes");

    let mut kind = img.m.clone();
    kind.write_u8(at(l.dictkeys_kind), 7);
    assert_corrupt(thread_names(&kind, l, interp), "dk_kind");

    let mut count = img.m.clone();
    count.write_u64(at(l.dictkeys_nentries), 1 << 40);
    assert_corrupt(thread_names(&count, l, interp), "dk_nentries");

    let mut not_dict = img.m.clone();
    // Point sys.modules' type at the `str` type.
    let str_ty = img.types["str"];
    not_dict.write_u64(modules + u64::from(l.pyobject_ob_type), str_ty);
    assert_corrupt(thread_names(&not_dict, l, interp), "sys.modules");

    // Entries that are not mapped: a memory fault, transient.
    let mut unmapped = img.m.clone();
    unmapped.write_u64(modules + u64::from(l.dict_ma_keys), 0x10);
    match thread_names(&unmapped, l, interp) {
        Err(e @ WalkError::Mem(_)) => assert!(e.is_transient()),
        other => panic!("expected a memory error, got {other:?}"),
    }
}

#[test]
fn corrupt_compact36_and_table27_sizes_are_errors() {
    let mut img = Img::new(3, 8, Flavour::DEFAULT);
    let modules = img.dict(&[]);
    let interp = img.interp(modules);
    let keys = img
        .m
        .read_u64(modules + u64::from(img.l.dict_ma_keys))
        .unwrap();
    img.m
        .write_u64(keys + u64::from(img.l.dictkeys_size.unwrap()), 12);
    assert_corrupt(img.run(interp), "dk_size");
    img.m
        .write_u64(keys + u64::from(img.l.dictkeys_size.unwrap()), 1 << 40);
    assert_corrupt(img.run(interp), "dk_size");

    let mut img = Img::new(2, 7, Flavour::DEFAULT);
    let modules = img.dict(&[]);
    let interp = img.interp(modules);
    img.m
        .write_u64(modules + u64::from(img.l.dict_ma_values), 12);
    assert_corrupt(img.run(interp), "ma_mask");
    img.m
        .write_u64(modules + u64::from(img.l.dict_ma_values), u64::MAX);
    assert_corrupt(img.run(interp), "ma_mask");
}

/// Whatever the bytes of every dict-keys object and table say, the walk returns (an error or
/// a map) and never panics or loops.
#[test]
fn scribbled_tables_never_panic() {
    for (major, minor) in [(2, 7), (3, 8), (3, 12), (3, 13)] {
        let mut img = Img::new(major, minor, Flavour::DEFAULT);
        let active = img.active_x42();
        let interp = img.interp_with_active(active);
        assert_eq!(img.run(interp), Ok(HashMap::from([(42, "x".to_string())])));
        let l = img.l;
        let modules = img
            .m
            .read_u64(interp + u64::from(l.interp_modules))
            .unwrap();
        let keys = img.m.read_u64(modules + u64::from(l.dict_ma_keys)).unwrap();
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..2000 {
            let mut m = img.m.clone();
            for _ in 0..4 {
                seed = seed
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                let off = (seed >> 33) % 48;
                let byte = (seed >> 17) as u8;
                m.write_u8(keys + off, byte);
                m.write_u8(modules + 16 + (seed >> 40) % 32, byte);
            }
            let _ = thread_names(&m, l, interp);
        }
    }
}

/// Counts the reads made through it: a batched read counts once.
struct Counting<'a> {
    mem: &'a ImageMemory,
    reads: std::cell::Cell<usize>,
}

impl RemoteMemory for Counting<'_> {
    fn read_into(&self, addr: u64, buf: &mut [u8]) -> Result<(), strobe_memory::MemError> {
        self.reads.set(self.reads.get() + 1);
        self.mem.read_into(addr, buf)
    }

    fn read_batch(
        &self,
        reqs: &[(u64, usize)],
        buf: &mut [u8],
    ) -> Result<(), strobe_memory::MemError> {
        self.reads.set(self.reads.get() + 1);
        self.mem.read_batch(reqs, buf)
    }
}

/// A `sys.modules` of many modules, `threading` last: its keys' types and lengths are read in
/// one batch, not two reads a key; a key that cannot be read makes the lookup fail as it did
/// key by key.
#[test]
fn a_dict_is_searched_with_its_keys_read_together() {
    const MODULES: usize = 200;
    let mut img = Img::new(3, 12, Flavour::DEFAULT);
    let active = img.active_x42();
    let k_active = img.s("_active");
    let ns = img.dict(&[(k_active, active)]);
    let threading = img.module(ns);
    let other = img.dict(&[]);
    let mut entries: Vec<(u64, u64)> = (0..MODULES)
        .map(|i| (img.s(&format!("m{i}")), img.module(other)))
        .collect();
    let k_threading = img.s("threading");
    entries.push((k_threading, threading));
    let modules = img.dict(&entries);
    let interp = img.interp(modules);
    let counting = Counting {
        mem: &img.m,
        reads: std::cell::Cell::new(0),
    };
    let expected = HashMap::from([(42, "x".to_string())]);
    assert_eq!(thread_names(&counting, img.l, interp), Ok(expected));
    assert!(
        counting.reads.get() < MODULES,
        "{} reads for {MODULES} modules",
        counting.reads.get()
    );

    // A key whose memory is gone: the batch fails, and so does the key-by-key search.
    entries.insert(5, (0xdead_0000, other));
    let modules = img.dict(&entries);
    let interp = img.interp(modules);
    assert!(matches!(
        thread_names(&img.m, img.l, interp),
        Err(WalkError::Mem(_))
    ));
}
