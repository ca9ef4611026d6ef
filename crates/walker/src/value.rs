//! Safe, bounded reprs of Python objects read from the target, without running its code.
//!
//! [`ValueReader::repr`] turns the object at an address into a [`Value`]: its type name and a
//! repr like Python's for `None`, `bool`, `int` (any size), `float`, `str`, `bytes`, `tuple`,
//! `list`, `dict`, `set` and `frozenset` (2.7: `int`, `long`, `str`, `unicode` too), and
//! `<ClassName object at 0x...>` for anything else. A type is recognised by its `tp_name` only
//! when it is a static (non-heap) type, so a `class int:` in the target is not taken for `int`.
//! Subclasses of the built-in types (heap types) are shown as other objects.
//!
//! Nothing the target holds is trusted: every length, count and depth is bounded (the `MAX_*`
//! constants below), a container met again on its own path is shown as Python does (`[...]`),
//! and a read that fails or decodes to nonsense makes that one value `<unreadable>` while the
//! rest of the repr goes on. The reader only needs a [`RemoteMemory`] and a [`Layout`], so a
//! live process, a core file or a synthetic image all work.
//!
//! `str` reprs escape what Python's `str.isprintable` rejects, approximated without the Unicode
//! database: C0/C1 controls, the non-space separators and format characters of Latin-1 and
//! the General Punctuation block, surrogates, private-use characters and noncharacters. An
//! unassigned code point is shown as itself (Python would escape it).

use std::cell::Cell;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;

use strobe_memory::{le, MemError, RemoteMemory};
use strobe_python_abi::{Layout, StringModel};

use crate::error::WalkError;

/// Items of a container shown before `...`.
pub const MAX_ITEMS: usize = 10;
/// Containers nested deeper than this are shown as `[...]` (and the value marked truncated).
pub const MAX_NESTING: usize = 3;
/// Characters of a `str` (bytes of a `bytes`) shown before the repr is cut.
pub const MAX_TEXT: usize = 100;
/// Decimal digits of an `int` shown before the repr is cut.
pub const MAX_INT_SHOWN: usize = 100;
/// Most 30-bit digits of an `int` converted to decimal (about 10,800 decimal digits); a larger
/// `int` is shown by its size in bits.
pub const MAX_INT_WORDS: usize = 1200;
/// Longest repr built for one value (in bytes); past it the repr ends with `...`.
pub const MAX_REPR: usize = 2000;
/// Most objects visited for one value (containers and their items together).
pub const MAX_OBJECTS: usize = 200;
/// Longest type name read (`tp_name`).
pub const MAX_TYPE_NAME: usize = 200;
/// Most hash-table slots scanned for the first items of one `dict` or `set` (a table whose
/// first live items lie further shows fewer, and `...`).
pub const MAX_SCAN_SLOTS: usize = 1 << 12;
/// Most reads of the target for one value (its repr stops with `...` past them).
pub const MAX_VALUE_READS: u32 = 2000;
/// Most reads of the target by one reader (one snapshot): what a hostile target can cost at
/// most, about a second and a half of reads. Past it, values are `...` and frames fail.
pub const MAX_TOTAL_READS: u64 = 1_000_000;
/// Most type objects remembered by one reader.
const MAX_TYPES: usize = 4096;
/// Largest length of a container or text we believe (2^40): larger means garbage.
const MAX_LEN: u64 = 1 << 40;

/// The repr of one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Value {
    /// `tp_name` of the object's type (`int`, `list`, `Hostile`...); `None` when even the type
    /// could not be read.
    pub type_name: Option<String>,
    /// The repr, or `<unreadable>` when the object could not be read.
    pub repr: String,
    /// Something was left out: items past [`MAX_ITEMS`], text past [`MAX_TEXT`], digits past
    /// [`MAX_INT_SHOWN`], nesting past [`MAX_NESTING`], or the whole past [`MAX_REPR`].
    pub truncated: bool,
}

impl Value {
    /// The value of an object whose header could not be read.
    pub fn unreadable() -> Value {
        Value {
            type_name: None,
            repr: UNREADABLE.to_string(),
            truncated: false,
        }
    }
}

/// What a value that could not be read is shown as.
pub const UNREADABLE: &str = "<unreadable>";

/// The built-in types the reader decodes; everything else is [`Kind::Other`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    NoneType,
    Bool,
    /// 3.x `int` (`PyLongObject`); 2.7 `int` is [`Kind::Int27`].
    Int,
    Int27,
    Long27,
    Float,
    /// 3.x `str` (PEP 393).
    Str,
    /// 2.7 `str` (bytes) and 3.x `bytes`.
    Bytes,
    Unicode27,
    Tuple,
    List,
    Dict,
    Set,
    FrozenSet,
    Cell,
    Code,
    Other,
}

#[derive(Debug, Clone)]
pub(crate) struct TypeInfo {
    pub(crate) name: Arc<str>,
    pub(crate) kind: Kind,
}

/// Where one repr is being built.
struct Ctx {
    out: String,
    truncated: bool,
    objects: usize,
    /// Containers being printed, outermost first (to show a cycle as `[...]`).
    path: Vec<u64>,
}

/// The target's memory with a count of reads: at most [`MAX_VALUE_READS`] for the value
/// being read and [`MAX_TOTAL_READS`] in all; past either, reads fail before reaching the
/// target. Every read of a [`ValueReader`] goes through it, so no object graph, however
/// large or cyclic, costs more than that.
#[derive(Debug)]
pub struct Budgeted<'a, M: RemoteMemory + ?Sized> {
    inner: &'a M,
    value_left: Cell<u32>,
    total_left: Cell<u64>,
}

impl<M: RemoteMemory + ?Sized> Budgeted<'_, M> {
    /// Whether the reads of the current value, or of the whole reader, are spent.
    pub fn spent(&self) -> bool {
        self.value_left.get() == 0 || self.total_left.get() == 0
    }

    /// Whether the reads of the whole reader are spent.
    pub fn total_spent(&self) -> bool {
        self.total_left.get() == 0
    }

    fn start_value(&self) {
        self.value_left.set(MAX_VALUE_READS);
    }

    fn start_with(&self, reads: u32) {
        self.value_left.set(reads);
    }
}

impl<M: RemoteMemory + ?Sized> RemoteMemory for Budgeted<'_, M> {
    fn read_into(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemError> {
        if self.spent() {
            return Err(MemError::TooLarge {
                addr,
                len: buf.len(),
                limit: 0,
            });
        }
        self.value_left.set(self.value_left.get() - 1);
        self.total_left.set(self.total_left.get() - 1);
        self.inner.read_into(addr, buf)
    }
}

/// Reads object reprs from a target (see the module documentation). Keep one per snapshot:
/// it remembers type objects and counts its reads.
#[derive(Debug)]
pub struct ValueReader<'a, M: RemoteMemory + ?Sized> {
    mem: Budgeted<'a, M>,
    layout: &'a Layout,
    types: HashMap<u64, TypeInfo>,
}

impl<'a, M: RemoteMemory + ?Sized> ValueReader<'a, M> {
    /// A reader of objects in `mem` laid out as `layout` says.
    pub fn new(mem: &'a M, layout: &'a Layout) -> Self {
        ValueReader {
            mem: Budgeted {
                inner: mem,
                value_left: Cell::new(MAX_VALUE_READS),
                total_left: Cell::new(MAX_TOTAL_READS),
            },
            layout,
            types: HashMap::new(),
        }
    }

    /// The memory read, through the reader's count of reads.
    pub fn memory(&self) -> &Budgeted<'a, M> {
        &self.mem
    }

    /// Allow `reads` more reads before the next value (e.g. for decoding a code object).
    pub(crate) fn allow_reads(&self, reads: u32) {
        self.mem.start_with(reads);
    }

    /// The layout in use.
    pub fn layout(&self) -> &'a Layout {
        self.layout
    }

    /// The repr of the object at `obj`. Never fails: what cannot be read is `<unreadable>`.
    pub fn repr(&mut self, obj: u64) -> Value {
        self.mem.start_value();
        let Ok(ty) = self.type_of(obj) else {
            return Value::unreadable();
        };
        let mut ctx = Ctx {
            out: String::new(),
            truncated: false,
            objects: 0,
            path: Vec::new(),
        };
        self.write(obj, &mut ctx, 0);
        Value {
            type_name: Some(ty.name.to_string()),
            repr: ctx.out,
            truncated: ctx.truncated,
        }
    }

    /// The type of the object at `obj`, its name read once per type object.
    pub(crate) fn type_of(&mut self, obj: u64) -> Result<TypeInfo, WalkError> {
        if obj == 0 {
            return Err(corrupt("NULL object", obj));
        }
        let ty = self
            .mem
            .read_u64(field(obj, self.layout.pyobject_ob_type))?;
        if let Some(info) = self.types.get(&ty) {
            return Ok(info.clone());
        }
        if ty == 0 {
            return Err(corrupt("NULL type", obj));
        }
        let l = self.layout;
        let flags = self.mem.read_u64(field(ty, l.type_flags))?;
        let name_ptr = self.mem.read_u64(field(ty, l.type_name))?;
        let name = escape_controls(&read_c_string(&self.mem, name_ptr, MAX_TYPE_NAME)?);
        let heap = flags & u64::from(l.tpflags_heaptype) != 0;
        let python2 = l.string_model == StringModel::Bytes27;
        let kind = if heap {
            Kind::Other
        } else {
            match (name.as_str(), python2) {
                ("NoneType", _) => Kind::NoneType,
                ("bool", _) => Kind::Bool,
                ("int", false) => Kind::Int,
                ("int", true) => Kind::Int27,
                ("long", true) => Kind::Long27,
                ("float", _) => Kind::Float,
                ("str", false) => Kind::Str,
                ("str", true) | ("bytes", false) => Kind::Bytes,
                ("unicode", true) => Kind::Unicode27,
                ("tuple", _) => Kind::Tuple,
                ("list", _) => Kind::List,
                ("dict", _) => Kind::Dict,
                ("set", _) => Kind::Set,
                ("frozenset", _) => Kind::FrozenSet,
                ("cell", _) => Kind::Cell,
                ("code", _) => Kind::Code,
                _ => Kind::Other,
            }
        };
        let info = TypeInfo {
            name: name.into(),
            kind,
        };
        if self.types.len() >= MAX_TYPES {
            self.types.clear();
        }
        self.types.insert(ty, info.clone());
        Ok(info)
    }

    /// The object a cell holds (`ob_ref`), 0 when empty.
    pub(crate) fn cell_contents(&self, cell: u64) -> Result<u64, WalkError> {
        Ok(self.mem.read_u64(field(cell, self.layout.cell_ob_ref))?)
    }

    /// The items of a tuple (its `ob_size` bounded by `limit`).
    pub(crate) fn tuple_items(&self, tuple: u64, limit: usize) -> Result<Vec<u64>, WalkError> {
        let n = self.var_size(tuple)?;
        let n = usize::try_from(n)
            .ok()
            .filter(|&n| n <= limit)
            .ok_or(corrupt("tuple size", tuple))?;
        self.pointers(field(tuple, self.layout.tuple_ob_item), n)
    }

    /// The bytes of a `bytes` object (2.7 `str`), bounded by `limit`.
    pub(crate) fn bytes_of(&self, obj: u64, limit: usize) -> Result<Vec<u8>, WalkError> {
        let n = self.var_size(obj)?;
        let n = usize::try_from(n)
            .ok()
            .filter(|&n| n <= limit)
            .ok_or(corrupt("bytes size", obj))?;
        Ok(self
            .mem
            .read_vec(field(obj, self.layout.bytes_ob_sval), n, limit)?)
    }

    fn var_size(&self, obj: u64) -> Result<u64, WalkError> {
        let n = self
            .mem
            .read_u64(field(obj, self.layout.pyvarobject_ob_size))?;
        if n > MAX_LEN {
            return Err(corrupt("object size", obj));
        }
        Ok(n)
    }

    fn pointers(&self, at: u64, n: usize) -> Result<Vec<u64>, WalkError> {
        let buf = self.mem.read_vec(at, n * 8, MAX_SCAN_SLOTS * 8)?;
        Ok(buf
            .chunks_exact(8)
            .filter_map(|c| le::u64_at(c, 0))
            .collect())
    }

    // --- writing reprs -------------------------------------------------------------------------

    /// Append the repr of `obj` (at nesting `depth`) to `ctx`; a failure shows as
    /// `<unreadable>` in its place.
    fn write(&mut self, obj: u64, ctx: &mut Ctx, depth: usize) {
        if ctx.objects >= MAX_OBJECTS || ctx.out.len() >= MAX_REPR || self.mem.spent() {
            ctx.out.push_str("...");
            ctx.truncated = true;
            return;
        }
        ctx.objects += 1;
        let mark = ctx.out.len();
        if self.write_object(obj, ctx, depth).is_err() {
            ctx.out.truncate(mark);
            ctx.out.push_str(UNREADABLE);
        }
    }

    fn write_object(&mut self, obj: u64, ctx: &mut Ctx, depth: usize) -> Result<(), WalkError> {
        let ty = self.type_of(obj)?;
        let l = self.layout;
        match ty.kind {
            Kind::NoneType => ctx.out.push_str("None"),
            Kind::Bool => {
                let v = if l.string_model == StringModel::Bytes27 {
                    self.mem.read_u64(field(obj, l.long_digit))? != 0
                } else {
                    let (negative, digits) = self.long_digits(obj, field(obj, l.long_digit))?;
                    negative || digits.iter().any(|&d| d != 0)
                };
                ctx.out.push_str(if v { "True" } else { "False" });
            }
            Kind::Int27 => {
                let v = self.mem.read_u64(field(obj, l.long_digit))? as i64;
                let _ = write!(ctx.out, "{v}");
            }
            Kind::Int => self.write_long(obj, field(obj, l.long_digit), "", ctx)?,
            Kind::Long27 => {
                let at = l
                    .long27_digit
                    .ok_or_else(|| missing("PyLongObject.ob_digit"))?;
                self.write_long(obj, field(obj, at), "L", ctx)?;
            }
            Kind::Float => {
                let bits = self.mem.read_u64(field(obj, l.float_ob_fval))?;
                ctx.out.push_str(&float_repr(f64::from_bits(bits)));
            }
            Kind::Str => self.write_str(obj, ctx)?,
            Kind::Bytes => {
                let n = self.var_size(obj)?;
                let shown = n.min(MAX_TEXT as u64) as usize;
                let bytes = self
                    .mem
                    .read_vec(field(obj, l.bytes_ob_sval), shown, MAX_TEXT)?;
                let prefix = if l.string_model == StringModel::Bytes27 {
                    ""
                } else {
                    "b"
                };
                ctx.out.push_str(&bytes_repr(prefix, &bytes));
                if n > shown as u64 {
                    let _ = write!(ctx.out, "... ({n} bytes)");
                    ctx.truncated = true;
                }
            }
            Kind::Unicode27 => self.write_unicode27(obj, ctx)?,
            Kind::Tuple | Kind::List | Kind::Set | Kind::FrozenSet | Kind::Dict => {
                self.write_container(obj, ty.kind, ctx, depth)?
            }
            Kind::Cell | Kind::Code | Kind::Other => {
                let _ = write!(ctx.out, "<{} object at {obj:#x}>", ty.name);
            }
        }
        Ok(())
    }

    /// Sign and 30-bit digits (least significant first) of a 3.x `int` / 2.7 `long` whose digits
    /// start at `digits`; refuses more than [`MAX_INT_WORDS`] with `Ok((_, empty))` never: the
    /// caller checks the count first through [`ValueReader::long_size`].
    fn long_digits(&self, obj: u64, digits: u64) -> Result<(bool, Vec<u32>), WalkError> {
        let (negative, n) = self.long_size(obj)?;
        if n > MAX_INT_WORDS as u64 {
            return Err(corrupt("int size", obj));
        }
        self.read_digits(digits, n as usize).map(|d| (negative, d))
    }

    /// Sign and digit count of an `int`: `lv_tag` (3.12+, `pycore_long.h`: count << 3 | sign,
    /// sign 0 positive, 1 zero, 2 negative) or the signed `ob_size` (≤3.11, 2.7 `long`).
    fn long_size(&self, obj: u64) -> Result<(bool, u64), WalkError> {
        let l = self.layout;
        match l.long_lv_tag {
            Some(tag_at) if l.string_model != StringModel::Bytes27 => {
                let tag = self.mem.read_u64(field(obj, tag_at))?;
                let sign = tag & 3;
                if sign == 3 {
                    return Err(corrupt("int lv_tag", obj));
                }
                let n = tag >> 3;
                if sign == 1 && n != 0 {
                    return Err(corrupt("int lv_tag", obj));
                }
                Ok((sign == 2, n))
            }
            _ => {
                let size = self.mem.read_u64(field(obj, l.pyvarobject_ob_size))? as i64;
                Ok((size < 0, size.unsigned_abs()))
            }
        }
    }

    fn read_digits(&self, at: u64, n: usize) -> Result<Vec<u32>, WalkError> {
        let l = self.layout;
        let size = l.long_digit_size as usize;
        if !(size == 2 || size == 4) || l.long_digit_bits == 0 || l.long_digit_bits > 31 {
            return Err(missing("a plausible int digit size"));
        }
        let buf = self.mem.read_vec(at, n * size, MAX_INT_WORDS * size)?;
        buf.chunks_exact(size)
            .map(|c| {
                let d = if size == 4 {
                    u32::from_le_bytes([c[0], c[1], c[2], c[3]])
                } else {
                    u32::from(u16::from_le_bytes([c[0], c[1]]))
                };
                if d >> l.long_digit_bits != 0 {
                    Err(corrupt("int digit", at))
                } else {
                    Ok(d)
                }
            })
            .collect()
    }

    fn write_long(
        &self,
        obj: u64,
        digits_at: u64,
        suffix: &str,
        ctx: &mut Ctx,
    ) -> Result<(), WalkError> {
        let (negative, n) = self.long_size(obj)?;
        if n > MAX_INT_WORDS as u64 {
            let bits = n.saturating_mul(u64::from(self.layout.long_digit_bits));
            let _ = write!(
                ctx.out,
                "<{}int of about {bits} bits>",
                if negative { "negative " } else { "" }
            );
            ctx.truncated = true;
            return Ok(());
        }
        let digits = self.read_digits(digits_at, n as usize)?;
        let decimal = to_decimal(&digits, self.layout.long_digit_bits);
        if negative && decimal != "0" {
            ctx.out.push('-');
        }
        if decimal.len() > MAX_INT_SHOWN {
            let _ = write!(
                ctx.out,
                "{}... ({} digits)",
                &decimal[..MAX_INT_SHOWN],
                decimal.len()
            );
            ctx.truncated = true;
        } else {
            ctx.out.push_str(&decimal);
            ctx.out.push_str(suffix);
        }
        Ok(())
    }

    /// A 3.x `str` (PEP 393): its first [`MAX_TEXT`] code points, quoted and escaped.
    fn write_str(&self, obj: u64, ctx: &mut Ctx) -> Result<(), WalkError> {
        let l = self.layout;
        let need = |v: Option<u32>| v.ok_or_else(|| missing("unicode offsets"));
        let length_off = need(l.unicode_length)?;
        let state_off = need(l.unicode_state)?;
        let ascii_size = need(l.unicode_ascii_size)?;
        let compact_size = need(l.unicode_compact_size)?;
        let kind_mask = need(l.unicode_kind_mask)?;
        let compact_mask = need(l.unicode_compact_mask)?;
        let ascii_mask = need(l.unicode_ascii_mask)?;
        let length = self.mem.read_u64(field(obj, length_off))?;
        if length > MAX_LEN {
            return Err(corrupt("str length", obj));
        }
        let state = self.mem.read_u32(field(obj, state_off))?;
        let kind = (state & kind_mask) >> kind_mask.trailing_zeros();
        let ascii = state & ascii_mask != 0;
        let data = if state & compact_mask != 0 {
            field(obj, if ascii { ascii_size } else { compact_size })
        } else {
            // Legacy strings keep a pointer to their data after the compact header
            // (`PyUnicodeObject.data`, Include/cpython/unicodeobject.h).
            self.mem.read_u64(field(obj, compact_size))?
        };
        let width = match kind {
            1 | 2 | 4 => kind as usize,
            _ => return Err(corrupt("str kind", obj)),
        };
        let shown = length.min(MAX_TEXT as u64) as usize;
        let bytes = self.mem.read_vec(data, shown * width, MAX_TEXT * 4)?;
        let chars: Vec<u32> = bytes
            .chunks_exact(width)
            .map(|c| match width {
                1 => u32::from(c[0]),
                2 => u32::from(u16::from_le_bytes([c[0], c[1]])),
                _ => u32::from_le_bytes([c[0], c[1], c[2], c[3]]),
            })
            .collect();
        if chars.iter().any(|&c| c > 0x10_FFFF) || (ascii && chars.iter().any(|&c| c > 0x7f)) {
            return Err(corrupt("str text", obj));
        }
        ctx.out.push_str(&str_repr(&chars));
        if length > shown as u64 {
            let _ = write!(ctx.out, "... ({length} chars)");
            ctx.truncated = true;
        }
        Ok(())
    }

    /// A 2.7 `unicode`: `Py_UNICODE` (2 or 4 bytes) text behind a pointer.
    fn write_unicode27(&self, obj: u64, ctx: &mut Ctx) -> Result<(), WalkError> {
        let l = self.layout;
        let need = |v: Option<u32>| v.ok_or_else(|| missing("2.7 unicode offsets"));
        let length = self.mem.read_u64(field(obj, need(l.unicode27_length)?))?;
        if length > MAX_LEN {
            return Err(corrupt("unicode length", obj));
        }
        let data = self.mem.read_u64(field(obj, need(l.unicode27_str)?))?;
        let width = need(l.unicode27_char_size)? as usize;
        if width != 2 && width != 4 {
            return Err(missing("a plausible Py_UNICODE size"));
        }
        // One more unit than shown, so a surrogate pair at the cut is not split.
        let shown = length.min(MAX_TEXT as u64 + 1) as usize;
        let bytes = self.mem.read_vec(data, shown * width, (MAX_TEXT + 1) * 4)?;
        let mut units: Vec<u32> = bytes
            .chunks_exact(width)
            .map(|c| match width {
                2 => u32::from(u16::from_le_bytes([c[0], c[1]])),
                _ => u32::from_le_bytes([c[0], c[1], c[2], c[3]]),
            })
            .collect();
        units.truncate(MAX_TEXT);
        ctx.out.push_str(&unicode27_repr(&units));
        if length > units.len() as u64 {
            let _ = write!(ctx.out, "... ({length} chars)");
            ctx.truncated = true;
        }
        Ok(())
    }

    fn write_container(
        &mut self,
        obj: u64,
        kind: Kind,
        ctx: &mut Ctx,
        depth: usize,
    ) -> Result<(), WalkError> {
        let python2 = self.layout.string_model == StringModel::Bytes27;
        let (open, close) = match (kind, python2) {
            (Kind::Tuple, _) => ("(", ")"),
            (Kind::List, _) => ("[", "]"),
            (Kind::Dict, _) => ("{", "}"),
            (Kind::Set, true) => ("set([", "])"),
            (Kind::FrozenSet, true) => ("frozenset([", "])"),
            (Kind::Set, false) => ("{", "}"),
            _ => ("frozenset({", "})"),
        };
        if ctx.path.contains(&obj) {
            // Python's own repr of a container inside itself.
            let _ = write!(ctx.out, "{open}...{close}");
            return Ok(());
        }
        if depth >= MAX_NESTING {
            let _ = write!(ctx.out, "{open}...{close}");
            ctx.truncated = true;
            return Ok(());
        }
        let (len, items) = match kind {
            Kind::Tuple => {
                let n = self.var_size(obj)?;
                let shown = n.min(MAX_ITEMS as u64) as usize;
                let items = self.pointers(field(obj, self.layout.tuple_ob_item), shown)?;
                (n, items.into_iter().map(|i| (i, 0)).collect::<Vec<_>>())
            }
            Kind::List => {
                let l = self.layout;
                let n = self.var_size(obj)?;
                let allocated = self.mem.read_u64(field(obj, l.list_allocated))?;
                if n > allocated {
                    return Err(corrupt("list size", obj));
                }
                let shown = n.min(MAX_ITEMS as u64) as usize;
                let items = if shown == 0 {
                    Vec::new()
                } else {
                    let array = self.mem.read_u64(field(obj, l.list_ob_item))?;
                    self.pointers(array, shown)?
                };
                (n, items.into_iter().map(|i| (i, 0)).collect())
            }
            Kind::Dict => self.dict_items(obj, MAX_ITEMS)?,
            _ => self.set_items(obj, MAX_ITEMS)?,
        };
        let empty_set = matches!(kind, Kind::Set | Kind::FrozenSet) && len == 0;
        if empty_set {
            let name = if kind == Kind::Set {
                "set"
            } else {
                "frozenset"
            };
            let _ = write!(ctx.out, "{name}({})", if python2 { "[]" } else { "" });
            return Ok(());
        }
        ctx.path.push(obj);
        ctx.out.push_str(open);
        for (i, &(item, value)) in items.iter().enumerate() {
            if i > 0 {
                ctx.out.push_str(", ");
            }
            self.write(item, ctx, depth + 1);
            if kind == Kind::Dict {
                ctx.out.push_str(": ");
                self.write(value, ctx, depth + 1);
            }
            if ctx.out.len() >= MAX_REPR {
                break;
            }
        }
        ctx.path.pop();
        let more = len > items.len() as u64;
        if more {
            ctx.out
                .push_str(if items.is_empty() { "..." } else { ", ..." });
            ctx.truncated = true;
        }
        if kind == Kind::Tuple && len == 1 {
            ctx.out.push(',');
        }
        ctx.out.push_str(close);
        if more {
            let _ = write!(ctx.out, " ({len} items)");
        }
        Ok(())
    }

    /// `ma_used` and the first `max` live `(key, value)` pairs of a dict, in its order.
    fn dict_items(&self, dict: u64, max: usize) -> Result<(u64, Vec<(u64, u64)>), WalkError> {
        let l = self.layout;
        let used = self.mem.read_u64(field(dict, l.dict_ma_used))?;
        if used > MAX_LEN {
            return Err(corrupt("dict size", dict));
        }
        if used == 0 {
            return Ok((0, Vec::new()));
        }
        let keys = self.mem.read_u64(field(dict, l.dict_ma_keys))?;
        let values = self.mem.read_u64(field(dict, l.dict_ma_values))?;
        if keys == 0 {
            return Err(corrupt("dict without keys", dict));
        }
        let want = max.min(used as usize);
        let items = match l.dict_model {
            strobe_python_abi::DictModel::Table27 => {
                // 2.7 (`Include/dictobject.h`): `ma_table` (in `dict_ma_keys`) of `ma_mask + 1`
                // (in `dict_ma_values`) `{hash, key, value}`; deleted slots have a NULL value.
                let slots = values
                    .checked_add(1)
                    .filter(|s| s.is_power_of_two())
                    .ok_or(corrupt("dict ma_mask", dict))?;
                scan_slots(&self.mem, keys, slots, 24, want, |c| {
                    let k = le::u64_at(c, 8)?;
                    let v = le::u64_at(c, 16)?;
                    (k != 0 && v != 0).then_some((k, v))
                })?
            }
            _ => {
                let reader = crate::threadnames::DictKeys::new(&self.mem, l);
                let e = reader.entries(keys)?;
                if values == 0 {
                    scan_slots(&self.mem, e.addr, e.count as u64, e.stride, want, |c| {
                        let k = le::u64_at(c, e.key)?;
                        let v = le::u64_at(c, e.value)?;
                        (k != 0 && v != 0).then_some((k, v))
                    })?
                } else {
                    // A split table (instance dicts): keys shared, values apart.
                    let mut pairs = reader.split_items(&e, values)?;
                    pairs.truncate(want);
                    pairs
                }
            }
        };
        Ok((used, items))
    }

    /// `used` and the first `max` keys of a set, in table order (as Python iterates it).
    fn set_items(&self, set: u64, max: usize) -> Result<(u64, Vec<(u64, u64)>), WalkError> {
        let l = self.layout;
        let used = self.mem.read_u64(field(set, l.set_used))?;
        if used > MAX_LEN {
            return Err(corrupt("set size", set));
        }
        if used == 0 {
            return Ok((0, Vec::new()));
        }
        let mask = self.mem.read_u64(field(set, l.set_mask))?;
        let table = self.mem.read_u64(field(set, l.set_table))?;
        let slots = mask
            .checked_add(1)
            .filter(|s| s.is_power_of_two())
            .ok_or(corrupt("set mask", set))?;
        let stride = l.setentry_size as usize;
        let (key_at, hash_at) = (l.setentry_key as usize, l.setentry_hash as usize);
        if stride == 0 || stride > 64 {
            return Err(missing("a plausible setentry size"));
        }
        let want = max.min(used as usize);
        // Free slots have a NULL key; deleted ones the `dummy` key with hash -1, a hash no
        // real object has (CPython turns -1 into -2).
        let items = scan_slots(&self.mem, table, slots, stride, want, |c| {
            let k = le::u64_at(c, key_at)?;
            let h = le::u64_at(c, hash_at)?;
            (k != 0 && h != u64::MAX).then_some((k, 0))
        })?;
        Ok((used, items))
    }
}

/// The first `want` live entries of a hash table of `slots` entries of `stride` bytes at
/// `addr`, read in chunks; at most [`MAX_SCAN_SLOTS`] slots are looked at.
fn scan_slots<M: RemoteMemory + ?Sized>(
    mem: &M,
    addr: u64,
    slots: u64,
    stride: usize,
    want: usize,
    live: impl Fn(&[u8]) -> Option<(u64, u64)>,
) -> Result<Vec<(u64, u64)>, WalkError> {
    const CHUNK: u64 = 256;
    let slots = slots.min(MAX_SCAN_SLOTS as u64);
    let mut out = Vec::new();
    let mut at = 0u64;
    while at < slots && out.len() < want {
        let n = CHUNK.min(slots - at);
        let buf = mem.read_vec(
            addr.wrapping_add(at * stride as u64),
            n as usize * stride,
            CHUNK as usize * 64,
        )?;
        for c in buf.chunks_exact(stride) {
            if let Some(pair) = live(c) {
                out.push(pair);
                if out.len() == want {
                    break;
                }
            }
        }
        at += n;
    }
    Ok(out)
}

/// A NUL-terminated C string of at most `max` bytes, read in 16-byte aligned pieces (an aligned
/// piece never crosses a page, so a name at the end of a mapping is still read; a piece that
/// fails anyway is read byte by byte), decoded lossily.
pub(crate) fn read_c_string<M: RemoteMemory + ?Sized>(
    mem: &M,
    addr: u64,
    max: usize,
) -> Result<String, WalkError> {
    if addr == 0 {
        return Err(corrupt("NULL name", addr));
    }
    let mut out = Vec::new();
    let mut at = addr;
    while out.len() < max {
        let piece = (16 - (at % 16)) as usize;
        let mut buf = [0u8; 16];
        if mem.read_into(at, &mut buf[..piece]).is_err() {
            // Memory that is not mapped by pages (a synthetic image, a core file's segment
            // ending mid-page): byte by byte, up to the NUL.
            for (i, b) in buf[..piece].iter_mut().enumerate() {
                *b = mem.read_u8(at.wrapping_add(i as u64))?;
                if *b == 0 {
                    break;
                }
            }
        }
        if let Some(end) = buf[..piece].iter().position(|&b| b == 0) {
            out.extend_from_slice(&buf[..end]);
            return Ok(String::from_utf8_lossy(&out).into_owned());
        }
        out.extend_from_slice(&buf[..piece]);
        at = at.wrapping_add(piece as u64);
    }
    out.truncate(max);
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// `text` with control characters (C0, DEL, C1) written as `\xNN`: a name from the target
/// (`type("a\nb", (), {})` makes a class whose name holds a newline) must not break the line
/// it is printed on.
pub fn escape_controls(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for ch in text.chars() {
        let c = u32::from(ch);
        if c < 0x20 || (0x7f..0xa0).contains(&c) {
            let _ = write!(out, "\\x{c:02x}");
        } else {
            out.push(ch);
        }
    }
    out
}

/// Decimal text of the magnitude whose `bits`-bit digits are `digits`, least significant first.
fn to_decimal(digits: &[u32], bits: u32) -> String {
    // Base 10^9 limbs, least significant first: multiply by 2^bits and add each digit.
    const BASE: u64 = 1_000_000_000;
    let mut limbs: Vec<u64> = Vec::new();
    for &d in digits.iter().rev() {
        let mut carry = u64::from(d);
        for limb in limbs.iter_mut() {
            let v = (*limb << bits) + carry;
            *limb = v % BASE;
            carry = v / BASE;
        }
        while carry > 0 {
            limbs.push(carry % BASE);
            carry /= BASE;
        }
    }
    let Some((top, rest)) = limbs.split_last() else {
        return "0".to_string();
    };
    let mut s = top.to_string();
    for limb in rest.iter().rev() {
        let _ = write!(s, "{limb:09}");
    }
    s
}

/// Python's `repr(float)`: the shortest digits that read back the same, in fixed notation when
/// the decimal point falls within 16 digits, else in exponent notation (`1e+16`, `1.5e-07`)
/// (`float_repr_style` "short", `format_float_short` with mode 'r').
pub fn float_repr(v: f64) -> String {
    if v.is_nan() {
        return "nan".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "inf" } else { "-inf" }.into();
    }
    let sci = format!("{:e}", v.abs());
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let digits: String = mantissa.chars().filter(|c| c.is_ascii_digit()).collect();
    let decpt = exp + 1;
    let mut out = String::new();
    if v.is_sign_negative() {
        out.push('-');
    }
    if decpt <= -4 || decpt > 16 {
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        let _ = write!(
            out,
            "e{}{:02}",
            if exp < 0 { '-' } else { '+' },
            exp.unsigned_abs()
        );
    } else if decpt <= 0 {
        out.push_str("0.");
        out.push_str(&"0".repeat(decpt.unsigned_abs() as usize));
        out.push_str(&digits);
    } else {
        let decpt = decpt as usize;
        if decpt >= digits.len() {
            out.push_str(&digits);
            out.push_str(&"0".repeat(decpt - digits.len()));
            out.push_str(".0");
        } else {
            out.push_str(&digits[..decpt]);
            out.push('.');
            out.push_str(&digits[decpt..]);
        }
    }
    out
}

/// The quote Python picks: `'` unless the text has `'` and no `"`.
fn quote_for(has_single: bool, has_double: bool) -> char {
    if has_single && !has_double {
        '"'
    } else {
        '\''
    }
}

/// Python 3's `repr(str)` of code points `chars` (see the module documentation for what counts
/// as printable).
pub(crate) fn str_repr(chars: &[u32]) -> String {
    let q = quote_for(chars.contains(&0x27), chars.contains(&0x22));
    let mut out = String::with_capacity(chars.len() + 2);
    out.push(q);
    for &c in chars {
        match c {
            0x5c => out.push_str("\\\\"),
            0x09 => out.push_str("\\t"),
            0x0a => out.push_str("\\n"),
            0x0d => out.push_str("\\r"),
            _ if c == q as u32 => {
                out.push('\\');
                out.push(q);
            }
            0x20..=0x7e => out.push(c as u8 as char),
            _ if c < 0x80 || !printable(c) => escape_code_point(&mut out, c),
            _ => match char::from_u32(c) {
                Some(ch) => out.push(ch),
                None => escape_code_point(&mut out, c),
            },
        }
    }
    out.push(q);
    out
}

/// `\xNN`, `\uNNNN` or `\UNNNNNNNN`, the shortest that fits, as Python writes them.
fn escape_code_point(out: &mut String, c: u32) {
    let _ = if c <= 0xff {
        write!(out, "\\x{c:02x}")
    } else if c <= 0xffff {
        write!(out, "\\u{c:04x}")
    } else {
        write!(out, "\\U{c:08x}")
    };
}

/// Whether Python's `str.isprintable` holds for the non-ASCII code point `c` (approximated:
/// see the module documentation).
fn printable(c: u32) -> bool {
    !matches!(c,
        0x80..=0xa0 | 0xad
        | 0x600..=0x605 | 0x61c | 0x6dd | 0x70f
        | 0x1680 | 0x180e
        | 0x2000..=0x200f | 0x2028..=0x202f | 0x205f..=0x206f
        | 0x3000
        | 0xd800..=0xf8ff
        | 0xfeff | 0xfff9..=0xfffb | 0xfffe | 0xffff
        | 0xe0001 | 0xe0020..=0xe007f
        | 0xf0000..=0x10ffff)
        && (c & 0xfffe) != 0xfffe
}

/// Python's `repr(bytes)` (`prefix` "b"), or 2.7's `repr(str)` (`prefix` "").
pub(crate) fn bytes_repr(prefix: &str, bytes: &[u8]) -> String {
    let q = quote_for(bytes.contains(&b'\''), bytes.contains(&b'"'));
    let mut out = String::with_capacity(bytes.len() + 3);
    out.push_str(prefix);
    out.push(q);
    for &b in bytes {
        match b {
            b'\\' => out.push_str("\\\\"),
            b'\t' => out.push_str("\\t"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            _ if b == q as u8 => {
                out.push('\\');
                out.push(q);
            }
            0x20..=0x7e => out.push(b as char),
            _ => {
                let _ = write!(out, "\\x{b:02x}");
            }
        }
    }
    out.push(q);
    out
}

/// Python 2.7's `repr(unicode)`: `u'...'`, everything outside printable ASCII escaped; UTF-16
/// surrogate pairs (UCS-2 builds) combined into one `\U` escape.
pub(crate) fn unicode27_repr(units: &[u32]) -> String {
    let q = quote_for(units.contains(&0x27), units.contains(&0x22));
    let mut out = String::from("u");
    out.push(q);
    let mut i = 0;
    while i < units.len() {
        let mut c = units[i];
        if (0xd800..0xdc00).contains(&c) {
            if let Some(&low) = units
                .get(i + 1)
                .filter(|&&lo| (0xdc00..0xe000).contains(&lo))
            {
                c = 0x10000 + ((c - 0xd800) << 10) + (low - 0xdc00);
                i += 1;
            }
        }
        match c {
            0x5c => out.push_str("\\\\"),
            0x09 => out.push_str("\\t"),
            0x0a => out.push_str("\\n"),
            0x0d => out.push_str("\\r"),
            _ if c == q as u32 => {
                out.push('\\');
                out.push(q);
            }
            0x20..=0x7e => out.push(c as u8 as char),
            _ => escape_code_point(&mut out, c),
        }
        i += 1;
    }
    out.push(q);
    out
}

fn corrupt(what: &'static str, addr: u64) -> WalkError {
    WalkError::Corrupt { what, addr }
}

fn missing(what: &str) -> WalkError {
    WalkError::Unsupported(format!("the interpreter layout lacks {what}"))
}

/// `addr + off`; wraps instead of overflowing (a garbage address then fails to read).
fn field(addr: u64, off: u32) -> u64 {
    addr.wrapping_add(u64::from(off))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn floats_read_back_like_python() {
        let cases = [
            (0.0, "0.0"),
            (-0.0, "-0.0"),
            (1.0, "1.0"),
            (1.5, "1.5"),
            (0.1, "0.1"),
            (std::f64::consts::PI, "3.141592653589793"),
            (1e16, "1e+16"),
            (1e15, "1000000000000000.0"),
            (123456789012345680.0, "1.2345678901234568e+17"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (1.5e-7, "1.5e-07"),
            (-2.5e300, "-2.5e+300"),
            (f64::INFINITY, "inf"),
            (f64::NEG_INFINITY, "-inf"),
            (f64::NAN, "nan"),
        ];
        for (v, want) in cases {
            assert_eq!(float_repr(v), want, "{v:e}");
        }
    }

    #[test]
    fn control_characters_in_names_are_escaped() {
        assert_eq!(escape_controls("a\nb\x7f\u{85}é"), "a\\x0ab\\x7f\\x85é");
        assert_eq!(escape_controls("Plain"), "Plain");
    }

    #[test]
    fn ints_convert_to_decimal() {
        assert_eq!(to_decimal(&[], 30), "0");
        assert_eq!(to_decimal(&[5], 30), "5");
        // 2**30 and 2**60 + 1.
        assert_eq!(to_decimal(&[0, 1], 30), "1073741824");
        assert_eq!(to_decimal(&[1, 0, 1], 30), "1152921504606846977");
        // 2**200: digit 6 (bit 180) holds 2**20.
        let mut d = vec![0u32; 7];
        d[6] = 1 << 20;
        assert_eq!(
            to_decimal(&d, 30),
            "1606938044258990275541962092341162602522202993782792835301376"
        );
    }

    #[test]
    fn text_is_quoted_and_escaped_like_python() {
        let cps = |s: &str| s.chars().map(u32::from).collect::<Vec<_>>();
        assert_eq!(str_repr(&cps("abc")), "'abc'");
        assert_eq!(str_repr(&cps("it's")), "\"it's\"");
        assert_eq!(str_repr(&cps("'\"")), "'\\'\"'");
        assert_eq!(
            str_repr(&cps("a\tb\n\\\x00\x7f")),
            "'a\\tb\\n\\\\\\x00\\x7f'"
        );
        assert_eq!(str_repr(&cps("grüße 中 😀")), "'grüße 中 😀'");
        assert_eq!(
            str_repr(&[0xa0, 0xad, 0x2028, 0xdc80, 0x1f600]),
            "'\\xa0\\xad\\u2028\\udc80😀'"
        );
        assert_eq!(bytes_repr("b", b"a'\x00\xff\""), "b'a\\'\\x00\\xff\"'");
        assert_eq!(bytes_repr("b", b"it's"), "b\"it's\"");
        assert_eq!(
            unicode27_repr(&[0x67, 0xfc, 0x4e2d, 0xd83d, 0xde00, 0x1f600]),
            "u'g\\xfc\\u4e2d\\U0001f600\\U0001f600'"
        );
    }
}
