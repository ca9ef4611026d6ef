//! The `_Py_DebugOffsets` members strobe uses: how each is checked, and which [`Layout`]
//! field it provides.

use strobe_python_abi::Layout;

/// Bound on `sizeof(_PyRuntimeState)` and `sizeof(PyInterpreterState)`: both embed large
/// static tables (measured here: runtime 283–347 KiB, interpreter 191–221 KiB for 3.13–3.15).
const MAX_BIG_SIZE: u64 = 1 << 20;

/// Bound on every other struct size the table reports (thread state, frame, code, objects:
/// all below 1 KiB in 3.13–3.15).
pub(super) const MAX_SMALL_SIZE: u64 = 64 * 1024;

/// How a `_Py_DebugOffsets` member is validated and converted.
#[derive(Debug, Clone, Copy)]
pub(super) enum Kind {
    /// A struct size, bounded by `max`.
    Size { max: u64 },
    /// A size that must fit in an already-validated size (e.g. `sizeof(PyASCIIObject)` within
    /// `sizeof(PyUnicodeObject)`).
    SizeWithin { within: &'static str },
    /// An offset of a `width`-byte member inside the struct whose size is `within`.
    Offset { within: &'static str, width: u64 },
    /// Like `Offset`, but the member only exists in free-threaded builds (0 otherwise).
    OffsetIfFreeThreaded { within: &'static str, width: u64 },
    /// A member of the interpreter's embedded `_gil`, rebased onto `struct _gil_runtime_state`.
    GilMember { width: u64 },
    /// A member of `struct _gc_runtime_state` (offset within it, bounded by `gc.size`), moved
    /// onto `PyInterpreterState` by adding `interpreter_state.gc`.
    GcMember { width: u64 },
}

/// One `_Py_DebugOffsets` member we use, and the `Layout` field it provides (none for the sizes
/// that only bound other members).
pub(super) struct Field {
    /// The member's name in the position table.
    pub(super) source: &'static str,
    /// How it is checked and converted.
    pub(super) kind: Kind,
    /// The `Layout` field it sets.
    pub(super) target: Option<Accessor>,
}

/// Name and accessors of one `Layout` field.
#[derive(Clone, Copy)]
pub(super) struct Accessor {
    /// The field's name.
    pub(super) name: &'static str,
    /// Reads it.
    pub(super) get: fn(&Layout) -> Option<u32>,
    /// Writes it.
    pub(super) set: fn(&mut Layout, Option<u32>),
}

/// Accessors for a `u32` field. Only free-threaded-only members are ever cleared, and those are
/// `Option`s, so a `None` never reaches these.
macro_rules! req {
    ($f:ident) => {
        Some(Accessor {
            name: stringify!($f),
            get: |l: &Layout| Some(l.$f),
            set: |l: &mut Layout, v: Option<u32>| {
                if let Some(v) = v {
                    l.$f = v;
                }
            },
        })
    };
}

/// Accessors for an `Option<u32>` field.
macro_rules! opt {
    ($f:ident) => {
        Some(Accessor {
            name: stringify!($f),
            get: |l: &Layout| l.$f,
            set: |l: &mut Layout, v: Option<u32>| l.$f = v,
        })
    };
}

const fn f(target: Option<Accessor>, source: &'static str, kind: Kind) -> Field {
    Field {
        source,
        kind,
        target,
    }
}

const fn size(max: u64) -> Kind {
    Kind::Size { max }
}

const fn within(within: &'static str) -> Kind {
    Kind::SizeWithin { within }
}

const fn off(within: &'static str, width: u64) -> Kind {
    Kind::Offset { within, width }
}

const fn ft_only(within: &'static str, width: u64) -> Kind {
    Kind::OffsetIfFreeThreaded { within, width }
}

const RUNTIME: &str = "runtime_state.size";
const INTERP: &str = "interpreter_state.size";
const TSTATE: &str = "thread_state.size";
const IFRAME: &str = "interpreter_frame.size";
const CODE: &str = "code_object.size";
const OBJECT: &str = "pyobject.size";
const TYPE: &str = "type_object.size";
const HEAPTYPE: &str = "heap_type_object.size";
const TUPLE: &str = "tuple_object.size";
const DICT: &str = "dict_object.size";
const LIST: &str = "list_object.size";
const FLOAT: &str = "float_object.size";
const SET: &str = "set_object.size";
const LONG: &str = "long_object.size";
const BYTES: &str = "bytes_object.size";
const UNICODE: &str = "unicode_object.size";
const ASCII: &str = "unicode_object.asciiobject_size";
const GEN: &str = "gen_object.size";
/// `sizeof(struct _gc_runtime_state)`.
pub(super) const GC: &str = "gc.size";

/// Every `_Py_DebugOffsets` member we use. Sizes come before the offsets they bound. Member
/// widths are those of the C members (3.13–3.15 headers): pointers, `Py_ssize_t`, `unsigned
/// long`, `int64_t`, `uintptr_t` 8 bytes; `int`, `digit` and the `state` bitfield word 4;
/// `char` 1 (`owner`, and the first byte of the `co_code_adaptive` / `ob_sval` arrays).
pub(super) static FIELDS: &[Field] = &[
    // Struct sizes.
    f(None, RUNTIME, size(MAX_BIG_SIZE)),
    f(None, INTERP, size(MAX_BIG_SIZE)),
    f(req!(tstate_size), TSTATE, size(MAX_SMALL_SIZE)),
    f(opt!(iframe_size), IFRAME, size(MAX_SMALL_SIZE)),
    f(req!(code_size), CODE, size(MAX_SMALL_SIZE)),
    f(req!(pyobject_size), OBJECT, size(MAX_SMALL_SIZE)),
    f(None, TYPE, size(MAX_SMALL_SIZE)),
    f(None, HEAPTYPE, size(MAX_SMALL_SIZE)),
    f(None, TUPLE, size(MAX_SMALL_SIZE)),
    f(None, DICT, size(MAX_SMALL_SIZE)),
    f(None, LIST, size(MAX_SMALL_SIZE)),
    f(None, FLOAT, size(MAX_SMALL_SIZE)),
    f(None, SET, size(MAX_SMALL_SIZE)),
    f(None, LONG, size(MAX_SMALL_SIZE)),
    f(None, BYTES, size(MAX_SMALL_SIZE)),
    f(None, UNICODE, size(MAX_SMALL_SIZE)),
    f(None, GC, size(MAX_SMALL_SIZE)),
    f(opt!(unicode_ascii_size), ASCII, within(UNICODE)),
    f(
        opt!(unicode_compact_size),
        "unicode_object.compactunicodeobject_size",
        within(UNICODE),
    ),
    // PyObject / PyVarObject (`ob_base.ob_size` of a tuple is PyVarObject's `ob_size`).
    f(req!(pyobject_ob_type), "pyobject.ob_type", off(OBJECT, 8)),
    f(
        req!(pyvarobject_ob_size),
        "tuple_object.ob_size",
        off(TUPLE, 8),
    ),
    // _PyRuntimeState.
    f(
        opt!(runtime_interpreters_head),
        "runtime_state.interpreters_head",
        off(RUNTIME, 8),
    ),
    // PyInterpreterState.
    f(req!(interp_next), "interpreter_state.next", off(INTERP, 8)),
    f(
        req!(interp_tstate_head),
        "interpreter_state.threads_head",
        off(INTERP, 8),
    ),
    f(opt!(interp_id), "interpreter_state.id", off(INTERP, 8)),
    f(
        req!(interp_modules),
        "interpreter_state.imports_modules",
        off(INTERP, 8),
    ),
    f(
        opt!(interp_ceval_gil),
        "interpreter_state.ceval_gil",
        off(INTERP, 8),
    ),
    f(
        opt!(gil_locked),
        "interpreter_state.gil_runtime_state_locked",
        Kind::GilMember { width: 4 },
    ),
    f(
        opt!(gil_last_holder),
        "interpreter_state.gil_runtime_state_holder",
        Kind::GilMember { width: 8 },
    ),
    // The collector's state, embedded in PyInterpreterState (`interpreter_state.gc`).
    f(
        opt!(gc_collecting),
        "gc.collecting",
        Kind::GcMember { width: 4 },
    ),
    // PyThreadState.
    f(req!(tstate_next), "thread_state.next", off(TSTATE, 8)),
    f(req!(tstate_interp), "thread_state.interp", off(TSTATE, 8)),
    f(opt!(tstate_prev), "thread_state.prev", off(TSTATE, 8)),
    f(
        opt!(tstate_current_frame),
        "thread_state.current_frame",
        off(TSTATE, 8),
    ),
    f(
        req!(tstate_thread_id),
        "thread_state.thread_id",
        off(TSTATE, 8),
    ),
    f(
        opt!(tstate_native_thread_id),
        "thread_state.native_thread_id",
        off(TSTATE, 8),
    ),
    f(
        opt!(tstate_datastack_chunk),
        "thread_state.datastack_chunk",
        off(TSTATE, 8),
    ),
    // 3.15+: the raised exception and the thread's own `_PyErr_StackItem` (two pointers).
    f(
        opt!(tstate_current_exception),
        "thread_state.current_exception",
        off(TSTATE, 8),
    ),
    f(
        opt!(tstate_exc_state),
        "thread_state.exc_state",
        off(TSTATE, 16),
    ),
    // _PyInterpreterFrame.
    f(
        opt!(iframe_previous),
        "interpreter_frame.previous",
        off(IFRAME, 8),
    ),
    f(
        opt!(iframe_code),
        "interpreter_frame.executable",
        off(IFRAME, 8),
    ),
    f(
        opt!(iframe_instr_ptr),
        "interpreter_frame.instr_ptr",
        off(IFRAME, 8),
    ),
    f(
        opt!(iframe_localsplus),
        "interpreter_frame.localsplus",
        off(IFRAME, 8),
    ),
    f(
        opt!(iframe_owner),
        "interpreter_frame.owner",
        off(IFRAME, 1),
    ),
    f(
        opt!(iframe_stackpointer),
        "interpreter_frame.stackpointer",
        off(IFRAME, 8),
    ),
    f(
        opt!(iframe_tlbc_index),
        "interpreter_frame.tlbc_index",
        ft_only(IFRAME, 4),
    ),
    // PyCodeObject.
    f(req!(code_filename), "code_object.filename", off(CODE, 8)),
    f(req!(code_name), "code_object.name", off(CODE, 8)),
    f(opt!(code_qualname), "code_object.qualname", off(CODE, 8)),
    f(opt!(code_linetable), "code_object.linetable", off(CODE, 8)),
    f(
        req!(code_firstlineno),
        "code_object.firstlineno",
        off(CODE, 4),
    ),
    f(
        opt!(code_code_adaptive),
        "code_object.co_code_adaptive",
        off(CODE, 1),
    ),
    f(opt!(code_tlbc), "code_object.co_tlbc", ft_only(CODE, 8)),
    // Types (tp_basicsize, tp_dictoffset and the heap type since 3.15).
    f(req!(type_flags), "type_object.tp_flags", off(TYPE, 8)),
    f(
        req!(type_basicsize),
        "type_object.tp_basicsize",
        off(TYPE, 8),
    ),
    f(
        req!(type_dictoffset),
        "type_object.tp_dictoffset",
        off(TYPE, 8),
    ),
    f(
        opt!(heaptype_cached_keys),
        "heap_type_object.ht_cached_keys",
        off(HEAPTYPE, 8),
    ),
    // dict / long / bytes / str.
    f(req!(dict_ma_keys), "dict_object.ma_keys", off(DICT, 8)),
    f(req!(dict_ma_values), "dict_object.ma_values", off(DICT, 8)),
    f(req!(long_digit), "long_object.ob_digit", off(LONG, 4)),
    f(opt!(long_lv_tag), "long_object.lv_tag", off(LONG, 8)),
    f(req!(bytes_ob_sval), "bytes_object.ob_sval", off(BYTES, 1)),
    f(opt!(unicode_state), "unicode_object.state", off(ASCII, 4)),
    f(opt!(unicode_length), "unicode_object.length", off(ASCII, 8)),
    // Values of locals (`dump --locals`): code objects' names and kinds, containers, floats,
    // type names (sets since 3.14).
    f(req!(code_argcount), "code_object.argcount", off(CODE, 4)),
    f(
        opt!(code_localsplusnames),
        "code_object.localsplusnames",
        off(CODE, 8),
    ),
    f(
        opt!(code_localspluskinds),
        "code_object.localspluskinds",
        off(CODE, 8),
    ),
    f(req!(tuple_ob_item), "tuple_object.ob_item", off(TUPLE, 8)),
    f(req!(list_ob_item), "list_object.ob_item", off(LIST, 8)),
    f(req!(float_ob_fval), "float_object.ob_fval", off(FLOAT, 8)),
    f(req!(type_name), "type_object.tp_name", off(TYPE, 8)),
    f(req!(set_used), "set_object.used", off(SET, 8)),
    f(req!(set_mask), "set_object.mask", off(SET, 8)),
    f(req!(set_table), "set_object.table", off(SET, 8)),
    // Coroutines (`dump --async`, 3.14+): the embedded frame and the `int8_t` state.
    f(None, GEN, size(MAX_SMALL_SIZE)),
    f(opt!(gen_iframe), "gen_object.gi_iframe", off(GEN, 8)),
    f(
        opt!(gen_frame_state),
        "gen_object.gi_frame_state",
        off(GEN, 1),
    ),
];

/// The value of a `Layout` field that `_Py_DebugOffsets` can provide, by name (as listed in
/// [`Overlay::fields`](crate::debug_offsets::Overlay::fields)): `None` for a name we do not
/// take from the target, `Some(None)` when the layout has no such member.
pub fn layout_field(layout: &Layout, name: &str) -> Option<Option<u32>> {
    FIELDS
        .iter()
        .filter_map(|f| f.target)
        .find(|a| a.name == name)
        .map(|a| (a.get)(layout))
}

/// Names of every `Layout` field that `_Py_DebugOffsets` can provide, each once.
pub fn overlay_field_names() -> Vec<&'static str> {
    let mut names: Vec<&'static str> = Vec::new();
    for a in FIELDS.iter().filter_map(|f| f.target) {
        if !names.contains(&a.name) {
            names.push(a.name);
        }
    }
    names
}
