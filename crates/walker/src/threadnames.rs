//! Thread names from the `threading` module of a remote interpreter.
//!
//! CPython itself does not know thread names: they live in Python objects. `threading` keeps
//! `_active`, a dict mapping `get_ident()` (the `pthread_t`, equal to `PyThreadState.thread_id`)
//! to the `Thread` object, whose instance attribute `_name` holds the name (`_Thread__name` in
//! 2.7, where `threading.py` spells it `self.__name`). We follow
//! `interp->modules` (`sys.modules`) → `"threading"` → `md_dict` → `"_active"` → each
//! `(int, Thread)` entry → the instance's attributes → the name.
//!
//! Everything is read through [`RemoteMemory`]: dict tables are copied in one read each and
//! decoded with the `le` helpers; every size and count read from the target is bounded, and
//! dicts are scanned (never probed), so a corrupt table cannot loop.
//!
//! Costs: a lookup scans every entry of the dict and reads the type and length of each key
//! (two small reads; the text only when the length matches), so resolving names costs a few
//! hundred small reads for a typical `sys.modules`, about a millisecond. Call it when a new
//! thread ident shows up, not on every sample.
//!
//! Only `_active` is read: it holds every running thread (main, started, and `_DummyThread`s
//! for threads `threading` did not start). Threads still in `_limbo` have no ident yet.

use std::collections::HashMap;

use crate::error::WalkError;
use crate::strings::read_string;
use strobe_memory::{le, RemoteMemory};
use strobe_python_abi::{DictModel, Layout, StringModel};

/// Most entries we accept in one dict (`sys.modules`, a module's namespace, `_active`,
/// an instance dict). A larger count means we read garbage.
pub const MAX_DICT_ENTRIES: usize = 1 << 16;

/// Most slots we accept in a 2.7 dict table (it keeps up to a third of them free, and more
/// after deletions).
const MAX_TABLE27_SLOTS: usize = 1 << 18;

/// Largest `log2(dk_size)` we accept (3.11+); `1 << 24` slots is far beyond any real dict.
const MAX_LOG2_SIZE: u8 = 24;

/// `Py_TPFLAGS_INLINE_VALUES` (3.13+, `Include/object.h`): instance attributes live in a
/// `PyDictValues` right after the object (`_PyObject_InlineValues`, `pycore_object.h`).
const TPFLAGS_INLINE_VALUES: u64 = 1 << 2;

/// `Py_TPFLAGS_MANAGED_DICT` (3.11+, `Include/object.h`): the instance dict (or values) sits
/// in the pre-header before the object instead of at `tp_dictoffset`.
const TPFLAGS_MANAGED_DICT: u64 = 1 << 4;

/// `DICT_KEYS_GENERAL` (3.11+, `Include/internal/pycore_dict.h`): entries carry their hash
/// (`PyDictKeyEntry {me_hash, me_key, me_value}`); the other kinds (`DICT_KEYS_UNICODE`,
/// `DICT_KEYS_SPLIT`) use `PyDictUnicodeEntry {me_key, me_value}`.
const DICT_KEYS_GENERAL: u8 = 0;
/// `DICT_KEYS_SPLIT` (3.11+, `pycore_dict.h`): the highest valid `dk_kind`.
const DICT_KEYS_SPLIT: u8 = 2;

/// `PYLONG_BITS_IN_DIGIT` (`Include/pyport.h`): 30 on every 64-bit build we support.
const LONG_DIGIT_BITS: u32 = 30;
/// `NON_SIZE_BITS` (3.12+, `Include/internal/pycore_long.h`): `lv_tag >> 3` is the digit count.
const LV_TAG_NON_SIZE_BITS: u32 = 3;
/// `SIGN_MASK` (3.12+, `pycore_long.h`): 0 positive, 1 zero, 2 negative.
const LV_TAG_SIGN_MASK: u64 = 3;
/// A `pthread_t` needs at most three 30-bit digits.
const MAX_IDENT_DIGITS: usize = 3;

/// How an instance finds its attribute dict. This is a per-version shape that `Layout` does not
/// carry yet (see [`object_dict_model`]); the offsets are from `Include/internal/pycore_object.h`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ObjectDictModel {
    /// ≤3.10: `*(obj + tp_dictoffset)` is the dict.
    DictOffset,
    /// 3.11: `_PyObject_ValuesPointer` (word -4 before the object) holds a `PyDictValues *`
    /// while attributes are unmaterialised, else `_PyObject_ManagedDictPointer` (word -3) the
    /// dict.
    Managed311,
    /// 3.12: one `PyDictOrValues` at word -3; values pointers are stored minus one, so a set low
    /// bit means values (`_PyDictOrValues_IsValues`, `_PyDictOrValues_GetValues`).
    DictOrValues312,
    /// 3.13+: the managed dict pointer at `MANAGED_DICT_OFFSET` (word -3, or -1 free-threaded);
    /// when it is NULL and the type has `Py_TPFLAGS_INLINE_VALUES`, the values sit at
    /// `obj + tp_basicsize`.
    Inline313,
}

/// The one place that maps a layout to its [`ObjectDictModel`].
///
/// `Layout` has no field for this shape; until python-abi grows one, the dict model narrows it
/// to 3.11+ and the minor version picks among the three 3.11+ shapes.
fn object_dict_model(layout: &Layout) -> ObjectDictModel {
    match layout.dict_model {
        DictModel::Table27 | DictModel::Compact36 => ObjectDictModel::DictOffset,
        DictModel::Compact311 => match layout.version.minor {
            11 => ObjectDictModel::Managed311,
            12 => ObjectDictModel::DictOrValues312,
            _ => ObjectDictModel::Inline313,
        },
    }
}

/// Byte offset of `values[]` inside `struct _dictvalues` (`pycore_dict.h`): 3.13 put
/// `capacity`, `size`, `embedded`, `valid` bytes before the array (padded to a pointer);
/// earlier versions have the bare array (3.6–3.10 `ma_values` is a `PyObject **`).
fn dictvalues_array_offset(model: ObjectDictModel) -> u64 {
    match model {
        ObjectDictModel::Inline313 => 8,
        _ => 0,
    }
}

/// Offset (from the object) of the managed dict pointer: `MANAGED_DICT_OFFSET` in
/// `pycore_object.h`: three words back on default builds (the GC header sits in between),
/// one word back on free-threaded builds (no pre-header GC links).
fn managed_dict_offset(layout: &Layout) -> i64 {
    if layout.flavour.free_threaded {
        -8
    } else {
        -24
    }
}

/// `_PyObject_ValuesPointer` (3.11 `pycore_object.h`): four words before the object.
const VALUES_POINTER_OFFSET_311: i64 = -32;

/// Map thread ident (`threading.get_ident()`, == `PyThreadState.thread_id`) → `Thread.name`,
/// for one interpreter. Empty map if `threading` was never imported (or was blocked with
/// `sys.modules["threading"] = None`).
///
/// Entries whose key is not an int or whose thread has no `str` name are left out. Failed
/// reads and implausible sizes are errors; they are transient when the target was changing
/// under us (see [`WalkError::is_transient`]).
pub fn thread_names<M: RemoteMemory + ?Sized>(
    mem: &M,
    layout: &Layout,
    interp_addr: u64,
) -> Result<HashMap<u64, String>, WalkError> {
    let mut reader = Reader::new(mem, layout);
    let mut names = HashMap::new();

    let modules = mem.read_u64(field(interp_addr, u64::from(layout.interp_modules)))?;
    if modules == 0 {
        // Interpreter still starting or already finalising.
        return Ok(names);
    }
    if reader.kind_of(modules)? != Kind::Dict {
        return Err(WalkError::Corrupt {
            what: "sys.modules (not a dict)",
            addr: modules,
        });
    }
    let Some(module) = reader.dict_get_str(modules, "threading")? else {
        return Ok(names);
    };
    if reader.kind_of(module)? != Kind::Module {
        return Ok(names);
    }
    let namespace = mem.read_u64(field(module, u64::from(layout.module_dict)))?;
    if namespace == 0 || reader.kind_of(namespace)? != Kind::Dict {
        return Ok(names);
    }
    let Some(active) = reader.dict_get_str(namespace, "_active")? else {
        return Ok(names);
    };
    if reader.kind_of(active)? != Kind::Dict {
        return Ok(names);
    }
    for (key, thread) in reader.dict_items(active)? {
        let Some(ident) = reader.read_ident(key)? else {
            continue;
        };
        if let Some(name) = reader.thread_name(thread)? {
            names.insert(ident, name);
        }
    }
    Ok(names)
}

/// The few object types we need to tell apart, by `tp_name`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Str,
    Int,
    /// 2.7's arbitrary-precision `long` (3.x calls that type `int`).
    Long27,
    Dict,
    Module,
    Other,
}

/// The parts of a dict-keys object we need to walk its entries.
pub(crate) struct Entries {
    /// Address of entry 0.
    pub(crate) addr: u64,
    /// Number of entries to look at.
    pub(crate) count: usize,
    /// Entries the object has room for (`USABLE_FRACTION` of its slots; every slot of a 2.7
    /// table): past `count` they are zeroed until used.
    pub(crate) capacity: usize,
    /// Bytes per entry.
    pub(crate) stride: usize,
    /// Offset of `me_key` in an entry.
    pub(crate) key: usize,
    /// Offset of `me_value` in an entry.
    pub(crate) value: usize,
}

/// The dict-keys decoding of this module, for the value reader (`crate::value`): where the
/// entries of a `PyDictKeysObject` are (3.6+), and the pairs of a split table.
pub(crate) struct DictKeys<'a, M: RemoteMemory + ?Sized>(Reader<'a, M>);

impl<'a, M: RemoteMemory + ?Sized> DictKeys<'a, M> {
    pub(crate) fn new(mem: &'a M, layout: &'a Layout) -> Self {
        DictKeys(Reader::new(mem, layout))
    }

    /// Where the entries of the keys object at `keys` are (3.6+ dict models).
    pub(crate) fn entries(&self, keys: u64) -> Result<Entries, WalkError> {
        self.0.dict_entries(keys)
    }

    /// The live pairs of a split table whose values are at `values`.
    pub(crate) fn split_items(
        &self,
        e: &Entries,
        values: u64,
    ) -> Result<Vec<(u64, u64)>, WalkError> {
        self.0.split_items(e, values)
    }
}

/// Objects reached by name, for `dump --async` before 3.14 ([`crate::asyncio_legacy`]): a
/// module's namespace, a dict's `str` keys, an instance's attributes, with this module's bounds.
pub(crate) struct Names<'a, M: RemoteMemory + ?Sized>(Reader<'a, M>);

impl<'a, M: RemoteMemory + ?Sized> Names<'a, M> {
    pub(crate) fn new(mem: &'a M, layout: &'a Layout) -> Self {
        Names(Reader::new(mem, layout))
    }

    /// The memory read.
    pub(crate) fn memory(&self) -> &'a M {
        self.0.mem
    }

    /// The namespace dict of module `name` in `sys.modules` of the interpreter at `interp`;
    /// `None` when it is not imported.
    pub(crate) fn module_dict(
        &mut self,
        interp: u64,
        name: &str,
    ) -> Result<Option<u64>, WalkError> {
        let r = &mut self.0;
        let modules = r
            .mem
            .read_u64(field(interp, u64::from(r.layout.interp_modules)))?;
        if modules == 0 || r.kind_of(modules)? != Kind::Dict {
            return Ok(None);
        }
        let Some(module) = r.dict_get_str(modules, name)? else {
            return Ok(None);
        };
        if r.kind_of(module)? != Kind::Module {
            return Ok(None);
        }
        let namespace = r
            .mem
            .read_u64(field(module, u64::from(r.layout.module_dict)))?;
        if namespace == 0 || r.kind_of(namespace)? != Kind::Dict {
            return Ok(None);
        }
        Ok(Some(namespace))
    }

    /// The value under the `str` key `key` of a dict (`None` if `dict` is no dict).
    pub(crate) fn get(&mut self, dict: u64, key: &str) -> Result<Option<u64>, WalkError> {
        if dict == 0 || self.0.kind_of(dict)? != Kind::Dict {
            return Ok(None);
        }
        self.0.dict_get_str(dict, key)
    }

    /// The instance attribute `name` of `obj` (from its `__dict__` or managed values).
    pub(crate) fn attr(&mut self, obj: u64, name: &str) -> Result<Option<u64>, WalkError> {
        let items = self.0.instance_items(obj)?;
        self.0.find_str(&items, name)
    }

    /// Every `(key, value)` pair of a dict (`None` if `dict` is no dict).
    pub(crate) fn items(&mut self, dict: u64) -> Result<Option<Vec<(u64, u64)>>, WalkError> {
        if dict == 0 || self.0.kind_of(dict)? != Kind::Dict {
            return Ok(None);
        }
        self.0.dict_items(dict).map(Some)
    }
}

struct Reader<'a, M: RemoteMemory + ?Sized> {
    mem: &'a M,
    layout: &'a Layout,
    obj_model: ObjectDictModel,
    /// Type address → kind, so each type's name is read once per call.
    kinds: HashMap<u64, Kind>,
}

impl<'a, M: RemoteMemory + ?Sized> Reader<'a, M> {
    fn new(mem: &'a M, layout: &'a Layout) -> Self {
        Reader {
            mem,
            layout,
            obj_model: object_dict_model(layout),
            kinds: HashMap::new(),
        }
    }

    fn corrupt(what: &'static str, addr: u64) -> WalkError {
        WalkError::Corrupt { what, addr }
    }

    fn ob_type(&self, obj: u64) -> Result<u64, WalkError> {
        if obj == 0 {
            return Err(Self::corrupt("NULL object", obj));
        }
        Ok(self
            .mem
            .read_u64(field(obj, u64::from(self.layout.pyobject_ob_type)))?)
    }

    fn kind_of(&mut self, obj: u64) -> Result<Kind, WalkError> {
        let ty = self.ob_type(obj)?;
        self.kind_of_type(ty)
    }

    fn kind_of_type(&mut self, ty: u64) -> Result<Kind, WalkError> {
        if let Some(&k) = self.kinds.get(&ty) {
            return Ok(k);
        }
        if ty == 0 {
            return Err(Self::corrupt("NULL type", ty));
        }
        // `tp_name` is the first member after `PyObject_VAR_HEAD` (`Include/cpython/object.h`),
        // i.e. at `sizeof(PyVarObject)`.
        let name_ptr = self
            .mem
            .read_u64(field(ty, u64::from(self.layout.pyvarobject_ob_size) + 8))?;
        let name = self.read_c_name(name_ptr)?;
        let python2 = self.layout.string_model == StringModel::Bytes27;
        let kind = match &name[..] {
            b"str" => Kind::Str,
            b"int" => Kind::Int,
            b"long" if python2 => Kind::Long27,
            b"dict" => Kind::Dict,
            b"module" => Kind::Module,
            _ => Kind::Other,
        };
        self.kinds.insert(ty, kind);
        Ok(kind)
    }

    /// Up to 8 bytes of a C type name, stopping at NUL: enough to recognise the names above.
    fn read_c_name(&self, addr: u64) -> Result<Vec<u8>, WalkError> {
        if addr == 0 {
            return Err(Self::corrupt("NULL tp_name", addr));
        }
        let mut buf = [0u8; 8];
        let got = match self.mem.read_into(addr, &mut buf) {
            Ok(()) => buf.to_vec(),
            // A short name at the very end of a mapping: read it byte by byte.
            Err(_) => {
                let mut v = Vec::new();
                for i in 0..8 {
                    let b = self.mem.read_u8(field(addr, i))?;
                    v.push(b);
                    if b == 0 {
                        break;
                    }
                }
                v
            }
        };
        let end = got.iter().position(|&b| b == 0).unwrap_or(got.len());
        Ok(got[..end].to_vec())
    }

    // --- dicts ---------------------------------------------------------------------------------

    /// Every live `(key, value)` pair of the dict at `dict`.
    fn dict_items(&self, dict: u64) -> Result<Vec<(u64, u64)>, WalkError> {
        let l = self.layout;
        let keys = self.mem.read_u64(field(dict, u64::from(l.dict_ma_keys)))?;
        let values = self
            .mem
            .read_u64(field(dict, u64::from(l.dict_ma_values)))?;
        if keys == 0 {
            return Err(Self::corrupt("dict without keys", dict));
        }
        match l.dict_model {
            DictModel::Table27 => self.table27_items(dict, keys, values),
            DictModel::Compact36 | DictModel::Compact311 => {
                let entries = self.dict_entries(keys)?;
                if values == 0 {
                    self.combined_items(&entries)
                } else {
                    self.split_items(&entries, values)
                }
            }
        }
    }

    /// 2.7 (`Include/dictobject.h`): `ma_table` points at `ma_mask + 1` slots of
    /// `PyDictEntry {me_hash, me_key, me_value}`; free slots have a NULL key, deleted ones the
    /// dummy key and a NULL value. (`Layout` stores `ma_table` in `dict_ma_keys` and `ma_mask`
    /// in `dict_ma_values`.)
    fn table27_items(
        &self,
        dict: u64,
        table: u64,
        mask: u64,
    ) -> Result<Vec<(u64, u64)>, WalkError> {
        let slots = usize::try_from(mask)
            .ok()
            .and_then(|m| m.checked_add(1))
            .filter(|s| s.is_power_of_two() && *s <= MAX_TABLE27_SLOTS)
            .ok_or(Self::corrupt("dict ma_mask", dict))?;
        let entries = Entries {
            addr: table,
            count: slots,
            capacity: slots,
            stride: 24,
            key: 8,
            value: 16,
        };
        self.combined_items(&entries)
    }

    /// Decode a `PyDictKeysObject` header (3.6+) into where its entries are.
    fn dict_entries(&self, keys: u64) -> Result<Entries, WalkError> {
        let l = self.layout;
        let missing = || WalkError::Unsupported("layout lacks dict-keys offsets".into());
        let indices = l.dictkeys_indices.ok_or_else(missing)? as usize;
        let size_off = l.dictkeys_size.ok_or_else(missing)? as usize;
        let nentries_off = l.dictkeys_nentries.ok_or_else(missing)? as usize;
        // The whole fixed header in one read.
        let head = self.mem.read_vec(keys, indices, 256)?;
        let bad = |what| Self::corrupt(what, keys);
        let nentries = le::u64_at(&head, nentries_off).ok_or(bad("dict keys header"))?;
        let (slots, index_bytes, stride, key, value) = match l.dict_model {
            DictModel::Compact311 => {
                let log2_size = le::u8_at(&head, size_off).ok_or(bad("dict keys header"))?;
                let log2_index = l
                    .dictkeys_log2_index_bytes
                    .and_then(|o| le::u8_at(&head, o as usize))
                    .ok_or_else(missing)?;
                let kind = l
                    .dictkeys_kind
                    .and_then(|o| le::u8_at(&head, o as usize))
                    .ok_or_else(missing)?;
                if !(3..=MAX_LOG2_SIZE).contains(&log2_size) {
                    return Err(bad("dict dk_log2_size"));
                }
                // Indices are 1, 2, 4 or 8 bytes each (`DK_IXSIZE`), so their total is
                // between `size` and `8 * size` bytes.
                if log2_index < log2_size || log2_index > log2_size + 3 {
                    return Err(bad("dict dk_log2_index_bytes"));
                }
                if kind > DICT_KEYS_SPLIT {
                    return Err(bad("dict dk_kind"));
                }
                let slots = 1u64 << log2_size;
                let index_bytes = 1u64 << log2_index;
                if kind == DICT_KEYS_GENERAL {
                    (slots, index_bytes, 24, 8, 16)
                } else {
                    (slots, index_bytes, 16, 0, 8)
                }
            }
            // 3.6–3.10 (`Objects/dict-common.h`): `dk_size` slots, index width by `DK_IXSIZE`,
            // then `PyDictKeyEntry {me_hash, me_key, me_value}`.
            _ => {
                let size = le::u64_at(&head, size_off).ok_or(bad("dict keys header"))?;
                if !size.is_power_of_two() || !(8..=1 << MAX_LOG2_SIZE).contains(&size) {
                    return Err(bad("dict dk_size"));
                }
                let width = if size <= 0xff {
                    1
                } else if size <= 0xffff {
                    2
                } else {
                    4
                };
                (size, size * width, 24, 8, 16)
            }
        };
        let count = usize::try_from(nentries)
            .ok()
            .filter(|&n| n as u64 <= slots && n <= MAX_DICT_ENTRIES)
            .ok_or(bad("dict dk_nentries"))?;
        Ok(Entries {
            addr: field(keys, indices as u64 + index_bytes),
            count,
            // `USABLE_FRACTION` (Objects/dictobject.c): entries are allocated for 2/3 of the slots.
            capacity: (slots as usize * 2 / 3).max(count),
            stride,
            key,
            value,
        })
    }

    /// Pairs whose key and value both live in the entries.
    fn combined_items(&self, e: &Entries) -> Result<Vec<(u64, u64)>, WalkError> {
        let buf = self.mem.read_vec(
            e.addr,
            e.count * e.stride,
            MAX_TABLE27_SLOTS.max(MAX_DICT_ENTRIES) * 24,
        )?;
        Ok(buf
            .chunks_exact(e.stride)
            .filter_map(|c| {
                let k = le::u64_at(c, e.key)?;
                let v = le::u64_at(c, e.value)?;
                (k != 0 && v != 0).then_some((k, v))
            })
            .collect())
    }

    /// Pairs of a split table: key `i` from the shared keys, value `i` from the values array
    /// (at `values`, the `PyDictValues` / 3.6–3.10 `PyObject **`).
    fn split_items(&self, e: &Entries, values: u64) -> Result<Vec<(u64, u64)>, WalkError> {
        let mut count = e.count;
        let array_off = dictvalues_array_offset(self.obj_model);
        if array_off > 0 {
            // 3.13+: the array holds `capacity` slots (`struct _dictvalues`, `pycore_dict.h`);
            // keys added to the shared table later have no slot here.
            let capacity = self.mem.read_u8(values)?;
            count = count.min(usize::from(capacity));
        }
        let keys = self
            .mem
            .read_vec(e.addr, count * e.stride, MAX_DICT_ENTRIES * 24)?;
        let vals = self
            .mem
            .read_vec(field(values, array_off), count * 8, MAX_DICT_ENTRIES * 8)?;
        Ok(keys
            .chunks_exact(e.stride)
            .zip(vals.chunks_exact(8))
            .filter_map(|(kc, vc)| {
                let k = le::u64_at(kc, e.key)?;
                let v = le::u64_at(vc, 0)?;
                (k != 0 && v != 0).then_some((k, v))
            })
            .collect())
    }

    /// The value stored under the `str` key `needle`, if any.
    fn dict_get_str(&mut self, dict: u64, needle: &str) -> Result<Option<u64>, WalkError> {
        let items = self.dict_items(dict)?;
        self.find_str(&items, needle)
    }

    fn find_str(&mut self, items: &[(u64, u64)], needle: &str) -> Result<Option<u64>, WalkError> {
        for &(key, value) in items {
            if self.str_equals(key, needle)? {
                return Ok(Some(value));
            }
        }
        Ok(None)
    }

    /// Whether `obj` is a `str` whose text is `needle`. Reads the length first so that only
    /// candidates of the right length are decoded.
    fn str_equals(&mut self, obj: u64, needle: &str) -> Result<bool, WalkError> {
        if self.kind_of(obj)? != Kind::Str {
            return Ok(false);
        }
        let (len_off, want) = match self.layout.string_model {
            // 2.7 `PyStringObject.ob_size` counts bytes.
            StringModel::Bytes27 => (self.layout.pyvarobject_ob_size, needle.len()),
            // `PyASCIIObject.length` counts code points.
            StringModel::Compact33 => match self.layout.unicode_length {
                Some(o) => (o, needle.chars().count()),
                None => {
                    return Err(WalkError::Unsupported(
                        "layout lacks unicode offsets".into(),
                    ))
                }
            },
        };
        let len = self.mem.read_u64(field(obj, u64::from(len_off)))?;
        if len != want as u64 {
            return Ok(false);
        }
        Ok(read_string(self.mem, self.layout, obj)? == needle)
    }

    // --- ints ----------------------------------------------------------------------------------

    /// The value of an `int` key as a thread ident; `None` for anything that is not a
    /// non-negative integer fitting in 64 bits.
    fn read_ident(&mut self, obj: u64) -> Result<Option<u64>, WalkError> {
        let l = self.layout;
        match self.kind_of(obj)? {
            // 2.7 `PyIntObject {PyObject_HEAD; long ob_ival}` (`Include/intobject.h`);
            // `Layout::long_digit` holds `ob_ival` there.
            Kind::Int if l.string_model == StringModel::Bytes27 => {
                let v = self.mem.read_u64(field(obj, u64::from(l.long_digit)))? as i64;
                Ok(u64::try_from(v).ok())
            }
            Kind::Int => {
                let (negative, ndigits) = match l.long_lv_tag {
                    // 3.12+ (`pycore_long.h`): `lv_tag` = digit count << 3 | sign.
                    Some(tag_off) => {
                        let tag = self.mem.read_u64(field(obj, u64::from(tag_off)))?;
                        (tag & LV_TAG_SIGN_MASK == 2, tag >> LV_TAG_NON_SIZE_BITS)
                    }
                    // ≤3.11 (`Include/longintrepr.h`): `ob_size` is the signed digit count.
                    None => {
                        let size = self
                            .mem
                            .read_u64(field(obj, u64::from(l.pyvarobject_ob_size)))?
                            as i64;
                        (size < 0, size.unsigned_abs())
                    }
                };
                if negative {
                    return Ok(None);
                }
                self.read_digits(field(obj, u64::from(l.long_digit)), ndigits)
            }
            // 2.7 `PyLongObject {PyObject_VAR_HEAD; digit ob_digit[1]}` (`longintrepr.h`):
            // digits right after the variable-size header.
            Kind::Long27 => {
                let size = self
                    .mem
                    .read_u64(field(obj, u64::from(l.pyvarobject_ob_size)))?
                    as i64;
                if size < 0 {
                    return Ok(None);
                }
                let digits = field(obj, u64::from(l.pyvarobject_ob_size) + 8);
                self.read_digits(digits, size.unsigned_abs())
            }
            _ => Ok(None),
        }
    }

    /// Combine `ndigits` 30-bit digits (least significant first) into a `u64`.
    fn read_digits(&self, addr: u64, ndigits: u64) -> Result<Option<u64>, WalkError> {
        let Some(n) = usize::try_from(ndigits)
            .ok()
            .filter(|&n| n <= MAX_IDENT_DIGITS)
        else {
            return Ok(None);
        };
        let buf = self.mem.read_vec(addr, n * 4, MAX_IDENT_DIGITS * 4)?;
        let mut value: u128 = 0;
        for (i, c) in buf.chunks_exact(4).enumerate() {
            let d = le::u32_at(c, 0).ok_or(Self::corrupt("int digit", addr))?;
            if d >> LONG_DIGIT_BITS != 0 {
                return Err(Self::corrupt("int digit", addr));
            }
            value |= u128::from(d) << (LONG_DIGIT_BITS as usize * i);
        }
        Ok(u64::try_from(value).ok())
    }

    // --- instances -----------------------------------------------------------------------------

    /// The `str` name of a `Thread` instance, if it has one.
    fn thread_name(&mut self, thread: u64) -> Result<Option<String>, WalkError> {
        let items = self.instance_items(thread)?;
        // 3.x spells it `self._name`; 2.7's `self.__name` is mangled to `_Thread__name`.
        for attr in ["_name", "_Thread__name"] {
            if let Some(value) = self.find_str(&items, attr)? {
                if self.kind_of(value)? != Kind::Str {
                    return Ok(None);
                }
                return Ok(Some(read_string(self.mem, self.layout, value)?));
            }
        }
        Ok(None)
    }

    /// The attributes of an instance as `(key, value)` pairs, wherever its version keeps them.
    fn instance_items(&mut self, obj: u64) -> Result<Vec<(u64, u64)>, WalkError> {
        let l = self.layout;
        let ty = self.ob_type(obj)?;
        let flags = self.mem.read_u64(field(ty, u64::from(l.type_flags)))?;
        let managed = flags & TPFLAGS_MANAGED_DICT != 0;
        let dict = match self.obj_model {
            ObjectDictModel::Managed311 if managed => {
                let values = self.mem.read_u64(offset(obj, VALUES_POINTER_OFFSET_311))?;
                if values != 0 {
                    return self.shared_items(ty, values);
                }
                self.mem.read_u64(offset(obj, managed_dict_offset(l)))?
            }
            ObjectDictModel::DictOrValues312 if managed => {
                let dorv = self.mem.read_u64(offset(obj, managed_dict_offset(l)))?;
                if dorv & 1 != 0 {
                    return self.shared_items(ty, dorv.wrapping_add(1));
                }
                dorv
            }
            ObjectDictModel::Inline313 if managed => {
                let dict = self.mem.read_u64(offset(obj, managed_dict_offset(l)))?;
                if dict == 0 && flags & TPFLAGS_INLINE_VALUES != 0 {
                    let basicsize = self.mem.read_u64(field(ty, u64::from(l.type_basicsize)))?;
                    if basicsize == 0 || basicsize > 1 << 20 || basicsize % 8 != 0 {
                        return Err(Self::corrupt("tp_basicsize", ty));
                    }
                    let values = field(obj, basicsize);
                    // `valid` (4th byte of `struct _dictvalues`) is cleared when the values
                    // were handed over to a materialised dict.
                    if self.mem.read_u8(field(values, 3))? == 0 {
                        return Ok(Vec::new());
                    }
                    return self.shared_items(ty, values);
                }
                dict
            }
            _ => {
                let dictoffset = self.mem.read_u64(field(ty, u64::from(l.type_dictoffset)))? as i64;
                // A negative offset counts from the end of a variable-size object; `Thread`
                // instances are fixed-size, so anything but a positive offset has no dict for us.
                if dictoffset <= 0 || dictoffset > 1 << 20 {
                    return Ok(Vec::new());
                }
                self.mem.read_u64(offset(obj, dictoffset))?
            }
        };
        if dict == 0 {
            return Ok(Vec::new());
        }
        if self.kind_of(dict)? != Kind::Dict {
            return Err(Self::corrupt("instance __dict__ (not a dict)", dict));
        }
        self.dict_items(dict)
    }

    /// Attributes kept as values against the type's shared keys (`ht_cached_keys`).
    fn shared_items(&self, ty: u64, values: u64) -> Result<Vec<(u64, u64)>, WalkError> {
        let cached = self.layout.heaptype_cached_keys.ok_or_else(|| {
            WalkError::Unsupported("layout lacks PyHeapTypeObject.ht_cached_keys".into())
        })?;
        let keys = self.mem.read_u64(field(ty, u64::from(cached)))?;
        if keys == 0 {
            return Err(Self::corrupt("shared keys of a managed dict", ty));
        }
        let entries = self.dict_entries(keys)?;
        self.split_items(&entries, values)
    }
}

/// `base + off`: the address of a field. Pointers come from the target and may be garbage
/// near `u64::MAX`; the sum wraps to an address that is not mapped, and the read of it fails
/// like any other bad pointer instead of overflowing.
fn field(base: u64, off: u64) -> u64 {
    base.wrapping_add(off)
}

/// `base + off` for a signed offset (pre-header fields sit before the object).
fn offset(base: u64, off: i64) -> u64 {
    base.wrapping_add_signed(off)
}
