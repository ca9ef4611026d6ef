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

mod containers;
mod numbers;
mod text;

pub use numbers::float_repr;
pub use text::escape_controls;
pub(crate) use text::read_c_string;

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
    /// A heap type (a class, or a module's type since 3.12), which can be freed and another
    /// allocated at its address; a static type lives as long as the interpreter.
    pub(crate) heap: bool,
}

/// Types by address, as [`ValueReader::type_of`] learnt them; see [`ValueReader::with_types`].
pub(crate) type Types = HashMap<u64, TypeInfo>;

/// Where one repr is being built.
struct Ctx {
    out: String,
    truncated: bool,
    objects: usize,
    /// Containers being printed, outermost first (to show a cycle as `[...]`).
    path: Vec<u64>,
}

impl Ctx {
    /// After text showing `shown` of `total` units: when some were left out, say how many
    /// there are (`... (N chars)`) and mark the value truncated.
    fn more_of(&mut self, total: u64, shown: u64, unit: &str) {
        if total > shown {
            let _ = write!(self.out, "... ({total} {unit})");
            self.truncated = true;
        }
    }
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

    /// A reader that starts knowing `types` (what an earlier reader of the same process
    /// learnt; hand back with [`ValueReader::into_types`]).
    pub(crate) fn with_types(mem: &'a M, layout: &'a Layout, types: Types) -> Self {
        let mut reader = ValueReader::new(mem, layout);
        reader.types = types;
        reader
    }

    /// The types learnt, to start another reader of the same process with.
    pub(crate) fn into_types(self) -> Types {
        self.types
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
            heap,
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
        let n = self.var_size_within(tuple, limit, "tuple size")?;
        self.pointers(field(tuple, self.layout.tuple_ob_item), n)
    }

    /// The bytes of a `bytes` object (2.7 `str`), bounded by `limit`.
    pub(crate) fn bytes_of(&self, obj: u64, limit: usize) -> Result<Vec<u8>, WalkError> {
        let n = self.var_size_within(obj, limit, "bytes size")?;
        Ok(self
            .mem
            .read_vec(field(obj, self.layout.bytes_ob_sval), n, limit)?)
    }

    fn var_size(&self, obj: u64) -> Result<u64, WalkError> {
        self.read_len(obj, self.layout.pyvarobject_ob_size, "object size")
    }

    /// A length or count at `off` in the object at `obj`, refused as a corrupt `what` past
    /// [`MAX_LEN`].
    fn read_len(&self, obj: u64, off: u32, what: &'static str) -> Result<u64, WalkError> {
        let n = self.mem.read_u64(field(obj, off))?;
        if n > MAX_LEN {
            return Err(corrupt(what, obj));
        }
        Ok(n)
    }

    /// `ob_size` of `obj`, refused as a corrupt `what` past `limit`.
    fn var_size_within(
        &self,
        obj: u64,
        limit: usize,
        what: &'static str,
    ) -> Result<usize, WalkError> {
        let n = self.var_size(obj)?;
        usize::try_from(n)
            .ok()
            .filter(|&n| n <= limit)
            .ok_or(corrupt(what, obj))
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
            Kind::Bytes => self.write_bytes(obj, ctx)?,
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
}

/// The little-endian units of `width` bytes (1, 2 or 4) in `bytes`, each widened to `u32`.
fn le_units(bytes: &[u8], width: usize) -> impl Iterator<Item = u32> + '_ {
    bytes.chunks_exact(width).map(|c| match c {
        [b] => u32::from(*b),
        [a, b] => u32::from(u16::from_le_bytes([*a, *b])),
        _ => u32::from_le_bytes([c[0], c[1], c[2], c[3]]),
    })
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
