//! CPython struct layouts per version and build flavour.
//!
//! This crate is data: [`Layout`] is a bag of byte offsets and sizes, and the tables under
//! `src/tables/` are generated from real CPython headers by `python-abi/gen/abigen.py`
//! (`offsetof` probes compiled against each header set). Do not edit the tables by hand:
//! regenerate them (see `docs/NEW_PYTHON_VERSION.md`).
//!
//! One table is written by hand, because its structs are in no installed header:
//! [`AsyncioLegacy`] (`src/asyncio_legacy.rs`), the `_asyncio` task objects of 3.8–3.13 for
//! `dump --async`, each value confirmed on real interpreters by `tests/live_asyncio.rs`.
//!
//! A field is `None` when the struct member does not exist in that version. The walker never
//! branches on version numbers; it branches on the few named shapes below.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod asyncio_legacy;
mod tables;

pub use asyncio_legacy::{
    asyncio_legacy_for, AsyncioLegacy, CoroFrameModel, RunningLoopModel, ASYNCIO_LEGACY,
};
pub use tables::{ALL, DEBUG_OFFSETS};

/// A CPython version as `PY_VERSION_HEX` describes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version {
    /// Major version (2 or 3).
    pub major: u8,
    /// Minor version.
    pub minor: u8,
    /// Micro version.
    pub micro: u8,
    /// Release level: 0xA alpha, 0xB beta, 0xC candidate, 0xF final.
    pub level: u8,
    /// Release serial (e.g. the 2 of rc2).
    pub serial: u8,
}

impl Version {
    /// Decode a `PY_VERSION_HEX` value (e.g. `0x030d00f0` is 3.13.0 final).
    pub fn from_hex(hex: u64) -> Version {
        Version {
            major: ((hex >> 24) & 0xff) as u8,
            minor: ((hex >> 16) & 0xff) as u8,
            micro: ((hex >> 8) & 0xff) as u8,
            level: ((hex >> 4) & 0xf) as u8,
            serial: (hex & 0xf) as u8,
        }
    }

    /// Encode as `PY_VERSION_HEX`.
    pub fn to_hex(self) -> u64 {
        (u64::from(self.major) << 24)
            | (u64::from(self.minor) << 16)
            | (u64::from(self.micro) << 8)
            | (u64::from(self.level & 0xf) << 4)
            | u64::from(self.serial & 0xf)
    }

    /// Whether this is the same minor release line as `other` (e.g. 3.12.1 and 3.12.7).
    pub fn same_minor(self, other: Version) -> bool {
        self.major == other.major && self.minor == other.minor
    }
}

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.micro)?;
        match self.level {
            0xa => write!(f, "a{}", self.serial),
            0xb => write!(f, "b{}", self.serial),
            0xc => write!(f, "rc{}", self.serial),
            _ => Ok(()),
        }
    }
}

/// Build flavour: which preprocessor switches change the struct layouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Flavour {
    /// `Py_GIL_DISABLED` (free-threaded, "3.13t").
    pub free_threaded: bool,
    /// `Py_DEBUG` (debug build, "python3.13d").
    pub debug: bool,
}

impl Flavour {
    /// The ordinary release build.
    pub const DEFAULT: Flavour = Flavour {
        free_threaded: false,
        debug: false,
    };
}

/// How Python frames are linked (named after the first version that has the shape).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FrameModel {
    /// ≤3.10: heap `PyFrameObject`s linked by `f_back`; `tstate->frame` is the innermost.
    FrameObject,
    /// 3.11–3.12: `_PyInterpreterFrame`s in data-stack chunks; innermost is
    /// `tstate->cframe->current_frame`.
    CFrame311,
    /// 3.13+: `_PyInterpreterFrame`s; innermost is `tstate->current_frame`.
    Direct313,
}

/// How a code object maps instruction offsets to line numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LineTable {
    /// 2.7: `co_lnotab` with unsigned line increments; `f_lasti` in bytes.
    Lnotab27,
    /// 3.6–3.9: `co_lnotab` with signed line increments; `f_lasti` in bytes.
    Lnotab36,
    /// 3.10: `co_linetable` (start/end delta pairs); `f_lasti` in code units.
    Linetable310,
    /// 3.11+: the varint location table; offset from `instr_ptr` in code units.
    Location311,
}

/// How `str` objects (names, file names) are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StringModel {
    /// 2.7: `PyStringObject`: `ob_size` bytes at `ob_sval`.
    Bytes27,
    /// 3.3+: compact `PyUnicodeObject` (PEP 393).
    Compact33,
}

/// How dictionaries are laid out (used to find `threading` thread names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DictModel {
    /// 2.7: open-addressing `ma_table` of `{hash, key, value}`, `ma_mask`.
    Table27,
    /// 3.6–3.10: compact dict, `dk_size`, indices then `{hash, key, value}` entries.
    Compact36,
    /// 3.11+: compact dict, `dk_log2_size`/`dk_log2_index_bytes`/`dk_kind`, unicode entries
    /// `{key, value}` when `dk_kind != DICT_KEYS_GENERAL`.
    Compact311,
}

/// Where the interpreter list starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RuntimeModel {
    /// ≤3.6: the `interp_head` static (from the symbol table); the current thread from the
    /// `_PyThreadState_Current` symbol.
    InterpHead,
    /// 3.7+: `_PyRuntime.interpreters.head`.
    PyRuntime37,
}

/// Where the GIL holder is recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GilModel {
    /// ≤3.6: the `_PyThreadState_Current` symbol is the GIL holder (NULL when released).
    CurrentSymbol,
    /// 3.7–3.11: `_PyRuntime.gilstate.tstate_current` (offset [`Layout::runtime_tstate_current`]).
    RuntimeTstateCurrent,
    /// 3.12+: `interp->ceval.gil` points at a `struct _gil_runtime_state`; the holder is
    /// `last_holder` while `locked` is set.
    InterpGilPointer,
}

/// Where the cyclic garbage collector's `collecting` flag (an `int`, non-zero while a collection
/// runs) is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GcModel {
    /// ≤3.6: the `collecting` static of `Modules/gcmodule.c`, found in the symbol table of an
    /// unstripped build (not exported).
    StaticSymbol,
    /// 3.7–3.8: `_PyRuntime.gc.collecting` (offset [`Layout::gc_collecting`] in
    /// `_PyRuntimeState`).
    Runtime,
    /// 3.9+: `interp->gc.collecting` (offset [`Layout::gc_collecting`] in
    /// `PyInterpreterState`), one collector per interpreter.
    Interp,
}

/// Where a thread's exception state is: the exception it is handling (inside an `except` or
/// `finally` block) and the one being raised (propagating through its frames).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExcModel {
    /// ≤3.6: the handled exception's type is `tstate->exc_type` ([`Layout::tstate_exc_type`]);
    /// the raised one's is `tstate->curexc_type` ([`Layout::tstate_curexc_type`]). Both are type
    /// objects.
    ThreadTypes,
    /// 3.7–3.10: `tstate->exc_info` points to a linked stack of `_PyErr_StackItem` (one per
    /// running generator, the thread's own `exc_state` at the bottom); the handled exception is
    /// the first item whose `exc_type` ([`Layout::stackitem_exc`]) is neither NULL nor `None`.
    /// The raised one is `curexc_type`. Type objects.
    StackTypes,
    /// 3.11: as [`ExcModel::StackTypes`], but each item holds the exception instance
    /// (`exc_value`); the raised exception is still `curexc_type`, a type object.
    StackValues311,
    /// 3.12+: items hold instances (`exc_value`), and the raised exception is the instance
    /// `tstate->current_exception` ([`Layout::tstate_current_exception`]).
    StackValues,
}

/// Byte offsets and sizes for one CPython version and flavour.
///
/// Offsets are relative to the start of the named struct. `None`: the member does not exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// The exact version of the headers this table was generated from.
    pub version: Version,
    /// The build flavour this table describes.
    pub flavour: Flavour,

    /// Frame linking shape.
    pub frame_model: FrameModel,
    /// Line-table shape.
    pub line_table: LineTable,
    /// String shape.
    pub string_model: StringModel,
    /// Dict shape.
    pub dict_model: DictModel,
    /// Interpreter-list shape.
    pub runtime_model: RuntimeModel,
    /// GIL-holder shape.
    pub gil_model: GilModel,
    /// Where the collector's `collecting` flag is.
    pub gc_model: GcModel,
    /// Where a thread's exception state is.
    pub exc_model: ExcModel,

    // --- PyObject / PyVarObject -------------------------------------------------------------
    /// `sizeof(PyObject)` (16, or 32 free-threaded).
    pub pyobject_size: u32,
    /// `offsetof(PyObject, ob_type)`.
    pub pyobject_ob_type: u32,
    /// `offsetof(PyVarObject, ob_size)`.
    pub pyvarobject_ob_size: u32,

    // --- _PyRuntimeState (3.7+) --------------------------------------------------------------
    /// `offsetof(_PyRuntimeState, interpreters.head)`.
    pub runtime_interpreters_head: Option<u32>,
    /// `offsetof(_PyRuntimeState, gilstate.tstate_current)` (3.7–3.11).
    pub runtime_tstate_current: Option<u32>,

    // --- PyInterpreterState -------------------------------------------------------------------
    /// `offsetof(PyInterpreterState, next)`.
    pub interp_next: u32,
    /// `offsetof(PyInterpreterState, tstate_head)` (`threads.head` since 3.11).
    pub interp_tstate_head: u32,
    /// `offsetof(PyInterpreterState, id)` (3.7+).
    pub interp_id: Option<u32>,
    /// `offsetof(PyInterpreterState, modules)` (`imports.modules` since 3.12): `sys.modules`.
    pub interp_modules: u32,
    /// `offsetof(PyInterpreterState, ceval.gil)` (3.12+: pointer to the GIL in use).
    pub interp_ceval_gil: Option<u32>,
    /// `offsetof(struct _gil_runtime_state, locked)` (3.7+).
    pub gil_locked: Option<u32>,
    /// `offsetof(struct _gil_runtime_state, last_holder)` (3.7+).
    pub gil_last_holder: Option<u32>,
    /// The collector's `collecting` flag (an `int`), per [`Layout::gc_model`]:
    /// `offsetof(_PyRuntimeState, gc.collecting)` (3.7–3.8), `offsetof(PyInterpreterState,
    /// gc.collecting)` (3.9+); `None` ≤3.6, where it is a static.
    pub gc_collecting: Option<u32>,

    // --- PyThreadState ------------------------------------------------------------------------
    /// `sizeof(PyThreadState)` (public part; 3.13+ allocate a larger `_PyThreadStateImpl`).
    /// It can grow at its end within a minor line (3.13.0: 304, later 3.13.x: 312), so never
    /// assume a target's thread state is at least this large.
    pub tstate_size: u32,
    /// `offsetof(PyThreadState, next)`.
    pub tstate_next: u32,
    /// `offsetof(PyThreadState, interp)`.
    pub tstate_interp: u32,
    /// `offsetof(PyThreadState, prev)` (3.4+).
    pub tstate_prev: Option<u32>,
    /// `offsetof(PyThreadState, frame)` (≤3.10).
    pub tstate_frame: Option<u32>,
    /// `offsetof(PyThreadState, cframe)` (3.11–3.12; 3.10's `cframe` has no `current_frame`
    /// and is left `None`).
    pub tstate_cframe: Option<u32>,
    /// `offsetof(_PyCFrame, current_frame)` (3.11–3.12).
    pub cframe_current_frame: Option<u32>,
    /// `offsetof(PyThreadState, current_frame)` (3.13+).
    pub tstate_current_frame: Option<u32>,
    /// `offsetof(PyThreadState, thread_id)` (the `pthread_t`, `threading.get_ident()`).
    pub tstate_thread_id: u32,
    /// `offsetof(PyThreadState, native_thread_id)` (3.11+: the kernel TID; 3.8–3.10 only expose
    /// it through `threading.get_native_id()`, not in the thread state).
    pub tstate_native_thread_id: Option<u32>,
    /// `offsetof(PyThreadState, datastack_chunk)` (3.11+).
    pub tstate_datastack_chunk: Option<u32>,
    /// `offsetof(PyThreadState, curexc_type)` (≤3.11): the type of the exception being raised.
    pub tstate_curexc_type: Option<u32>,
    /// `offsetof(PyThreadState, current_exception)` (3.12+): the exception being raised.
    pub tstate_current_exception: Option<u32>,
    /// `offsetof(PyThreadState, exc_type)` (≤3.6): the type of the exception being handled.
    pub tstate_exc_type: Option<u32>,
    /// `offsetof(PyThreadState, exc_state)` (3.7+): the bottom `_PyErr_StackItem`, the
    /// thread's own.
    pub tstate_exc_state: Option<u32>,
    /// `offsetof(PyThreadState, exc_info)` (3.7+): the top `_PyErr_StackItem *`.
    pub tstate_exc_info: Option<u32>,
    /// `offsetof(_PyErr_StackItem, exc_type)` (3.7–3.10) / `exc_value` (3.11+).
    pub stackitem_exc: Option<u32>,
    /// `offsetof(_PyErr_StackItem, previous_item)` (3.7+).
    pub stackitem_previous: Option<u32>,

    // --- PyFrameObject (≤3.10) ----------------------------------------------------------------
    /// `offsetof(PyFrameObject, f_back)`.
    pub frame_back: Option<u32>,
    /// `offsetof(PyFrameObject, f_code)`.
    pub frame_code: Option<u32>,
    /// `offsetof(PyFrameObject, f_lasti)` (an `int`).
    pub frame_lasti: Option<u32>,

    // --- _PyInterpreterFrame (3.11+) ----------------------------------------------------------
    /// `sizeof(_PyInterpreterFrame)`, as `_Py_DebugOffsets` reports it: the struct declares
    /// `localsplus[1]`, so this includes one slot; the variable part starts at
    /// [`Layout::iframe_localsplus`].
    pub iframe_size: Option<u32>,
    /// `offsetof(_PyInterpreterFrame, previous)`.
    pub iframe_previous: Option<u32>,
    /// `offsetof(_PyInterpreterFrame, f_code)` (`f_executable` since 3.13; a tagged
    /// `_PyStackRef` since 3.14).
    pub iframe_code: Option<u32>,
    /// `offsetof(_PyInterpreterFrame, prev_instr)` (3.11–3.12) / `instr_ptr` (3.13+).
    pub iframe_instr_ptr: Option<u32>,
    /// `offsetof(_PyInterpreterFrame, owner)` (a `char`).
    pub iframe_owner: Option<u32>,
    /// `offsetof(_PyInterpreterFrame, is_entry)` (a `bool`, 3.11 only): true on the first frame
    /// of an evaluation loop call, the one entered from C. 3.12+ put a shim frame below it
    /// instead, owned by [`Layout::owner_cstack`] (3.12–3.13) or
    /// [`Layout::owner_interpreter`] (3.14+).
    pub iframe_is_entry: Option<u32>,
    /// `offsetof(_PyInterpreterFrame, localsplus)`.
    pub iframe_localsplus: Option<u32>,
    /// `offsetof(_PyInterpreterFrame, stackpointer)` (3.14+).
    pub iframe_stackpointer: Option<u32>,
    /// `offsetof(_PyInterpreterFrame, tlbc_index)` (3.14+ free-threaded).
    pub iframe_tlbc_index: Option<u32>,
    /// Value of `FRAME_OWNED_BY_CSTACK` (3.12–3.14), if the version has it. It is the owner of
    /// the shim frame an evaluation loop call pushes below its first frame in 3.12 and 3.13;
    /// 3.14 still declares it (renumbered to 4) but no longer uses it for that.
    pub owner_cstack: Option<u8>,
    /// Value of `FRAME_OWNED_BY_INTERPRETER` (3.14+), if the version has it: the owner of the
    /// shim frame below the first frame of each evaluation loop call from 3.14 on.
    pub owner_interpreter: Option<u8>,
    /// Mask that clears the tag bits of a `_PyStackRef` (3.14+: `!Py_TAG_BITS` from
    /// `pycore_stackref.h`: `!3`, except `!1` in 3.14t), else all ones (3.13t's
    /// `f_executable` is still a plain `PyObject *`).
    pub stackref_mask: u64,

    // --- _PyStackChunk (3.11+) ----------------------------------------------------------------
    /// `offsetof(_PyStackChunk, previous)`.
    pub chunk_previous: Option<u32>,
    /// `offsetof(_PyStackChunk, size)`.
    pub chunk_size: Option<u32>,
    /// `offsetof(_PyStackChunk, top)`.
    pub chunk_top: Option<u32>,
    /// `offsetof(_PyStackChunk, data)`.
    pub chunk_data: Option<u32>,

    // --- PyCodeObject -------------------------------------------------------------------------
    /// `sizeof(PyCodeObject)` (fixed part; bytecode follows at `co_code_adaptive` in 3.11+).
    pub code_size: u32,
    /// `offsetof(PyCodeObject, co_filename)`.
    pub code_filename: u32,
    /// `offsetof(PyCodeObject, co_name)`.
    pub code_name: u32,
    /// `offsetof(PyCodeObject, co_qualname)` (3.11+).
    pub code_qualname: Option<u32>,
    /// `offsetof(PyCodeObject, co_firstlineno)` (an `int`).
    pub code_firstlineno: u32,
    /// `offsetof(PyCodeObject, co_lnotab)` (≤3.9).
    pub code_lnotab: Option<u32>,
    /// `offsetof(PyCodeObject, co_linetable)` (3.10+).
    pub code_linetable: Option<u32>,
    /// `offsetof(PyCodeObject, co_code_adaptive)` (3.11+).
    pub code_code_adaptive: Option<u32>,
    /// `offsetof(PyCodeObject, co_tlbc)` (3.14+ free-threaded).
    pub code_tlbc: Option<u32>,

    // --- bytes / str --------------------------------------------------------------------------
    /// `offsetof(PyBytesObject, ob_sval)` (`PyStringObject` in 2.7).
    pub bytes_ob_sval: u32,
    /// `offsetof(PyASCIIObject, length)` (3.3+).
    pub unicode_length: Option<u32>,
    /// `offsetof(PyASCIIObject, state)` (3.3+).
    pub unicode_state: Option<u32>,
    /// `sizeof(PyASCIIObject)`: ASCII data starts here.
    pub unicode_ascii_size: Option<u32>,
    /// `sizeof(PyCompactUnicodeObject)`: non-ASCII compact data starts here.
    pub unicode_compact_size: Option<u32>,
    /// Bit mask of `state.kind` within the 32-bit word at `state`.
    pub unicode_kind_mask: Option<u32>,
    /// Bit mask of `state.compact`.
    pub unicode_compact_mask: Option<u32>,
    /// Bit mask of `state.ascii`.
    pub unicode_ascii_mask: Option<u32>,

    // --- dict / module / type (thread names) ---------------------------------------------------
    /// `offsetof(PyDictObject, ma_used)`.
    pub dict_ma_used: u32,
    /// `offsetof(PyDictObject, ma_keys)` (3.x) / `ma_table` (2.7).
    pub dict_ma_keys: u32,
    /// `offsetof(PyDictObject, ma_values)` (3.x) / `ma_mask` (2.7).
    pub dict_ma_values: u32,
    /// `offsetof(PyDictKeysObject, dk_size)` (3.6–3.10) or `dk_log2_size` (3.11+, a byte).
    pub dictkeys_size: Option<u32>,
    /// `offsetof(PyDictKeysObject, dk_log2_index_bytes)` (3.11+).
    pub dictkeys_log2_index_bytes: Option<u32>,
    /// `offsetof(PyDictKeysObject, dk_kind)` (3.11+).
    pub dictkeys_kind: Option<u32>,
    /// `offsetof(PyDictKeysObject, dk_nentries)`.
    pub dictkeys_nentries: Option<u32>,
    /// `offsetof(PyDictKeysObject, dk_indices)`.
    pub dictkeys_indices: Option<u32>,
    /// `offsetof(PyModuleObject, md_dict)`.
    pub module_dict: u32,
    /// `offsetof(PyTypeObject, tp_basicsize)`.
    pub type_basicsize: u32,
    /// `offsetof(PyTypeObject, tp_dictoffset)`.
    pub type_dictoffset: u32,
    /// `offsetof(PyTypeObject, tp_flags)`.
    pub type_flags: u32,
    /// `offsetof(PyHeapTypeObject, ht_cached_keys)` (3.3+; the shared keys of managed dicts in
    /// 3.11+).
    pub heaptype_cached_keys: Option<u32>,
    /// `offsetof(PyLongObject, ob_digit)` (3.12+ `long_value.ob_digit`; `PyIntObject.ob_ival` in 2.7).
    pub long_digit: u32,
    /// `offsetof(PyLongObject, long_value.lv_tag)` (3.12+).
    pub long_lv_tag: Option<u32>,

    // --- values of locals (`dump --locals`) ---------------------------------------------------
    /// `offsetof(PyCodeObject, co_argcount)` (an `int`; positional-only included, 3.8+).
    pub code_argcount: u32,
    /// `offsetof(PyCodeObject, co_kwonlyargcount)` (3.0+, an `int`).
    pub code_kwonlyargcount: Option<u32>,
    /// `offsetof(PyCodeObject, co_nlocals)` (an `int`).
    pub code_nlocals: u32,
    /// `offsetof(PyCodeObject, co_flags)` (an `int`).
    pub code_flags: u32,
    /// `CO_VARARGS`: the code takes `*args`.
    pub code_flag_varargs: u32,
    /// `CO_VARKEYWORDS`: the code takes `**kwargs`.
    pub code_flag_varkeywords: u32,
    /// `offsetof(PyCodeObject, co_varnames)` (≤3.10, a tuple of `str`).
    pub code_varnames: Option<u32>,
    /// `offsetof(PyCodeObject, co_cellvars)` (≤3.10, a tuple of `str`).
    pub code_cellvars: Option<u32>,
    /// `offsetof(PyCodeObject, co_freevars)` (≤3.10, a tuple of `str`).
    pub code_freevars: Option<u32>,
    /// `offsetof(PyCodeObject, co_localsplusnames)` (3.11+, a tuple of `str`).
    pub code_localsplusnames: Option<u32>,
    /// `offsetof(PyCodeObject, co_localspluskinds)` (3.11+, a `bytes` of `CO_FAST_*` kinds).
    pub code_localspluskinds: Option<u32>,
    /// `offsetof(PyCodeObject, co_nlocalsplus)` (3.11+, an `int`).
    pub code_nlocalsplus: Option<u32>,
    /// `CO_FAST_HIDDEN` (3.12+): a slot of an inlined comprehension.
    pub co_fast_hidden: Option<u8>,
    /// `CO_FAST_LOCAL` (3.11+).
    pub co_fast_local: Option<u8>,
    /// `CO_FAST_CELL` (3.11+): the slot holds a cell once the frame started.
    pub co_fast_cell: Option<u8>,
    /// `CO_FAST_FREE` (3.11+): the slot holds a cell of the enclosing function.
    pub co_fast_free: Option<u8>,
    /// `offsetof(PyFrameObject, f_localsplus)` (≤3.10): locals, then cells, then frees.
    pub frame_localsplus: Option<u32>,
    /// `offsetof(PyCellObject, ob_ref)`.
    pub cell_ob_ref: u32,
    /// `offsetof(PyFloatObject, ob_fval)` (a `double`).
    pub float_ob_fval: u32,
    /// `offsetof(PyTupleObject, ob_item)`: the items, inline.
    pub tuple_ob_item: u32,
    /// `offsetof(PyListObject, ob_item)`: pointer to the items.
    pub list_ob_item: u32,
    /// `offsetof(PyListObject, allocated)`.
    pub list_allocated: u32,
    /// `offsetof(PySetObject, used)`.
    pub set_used: u32,
    /// `offsetof(PySetObject, mask)`.
    pub set_mask: u32,
    /// `offsetof(PySetObject, table)`.
    pub set_table: u32,
    /// `sizeof(setentry)`.
    pub setentry_size: u32,
    /// `offsetof(setentry, key)`.
    pub setentry_key: u32,
    /// `offsetof(setentry, hash)`.
    pub setentry_hash: u32,
    /// `offsetof(PyTypeObject, tp_name)` (a `const char *`).
    pub type_name: u32,
    /// `Py_TPFLAGS_HEAPTYPE`: the type was made by a `class` statement (or `type()`), so its
    /// name says nothing about its layout.
    pub tpflags_heaptype: u32,
    /// `PyLong_SHIFT`: bits per digit of an arbitrary-precision int (30 on our builds).
    pub long_digit_bits: u32,
    /// `sizeof(digit)`.
    pub long_digit_size: u32,
    /// `offsetof(PyLongObject, ob_digit)` of 2.7's `long` (2.7 only).
    pub long27_digit: Option<u32>,
    /// `offsetof(PyUnicodeObject, length)` (2.7 only).
    pub unicode27_length: Option<u32>,
    /// `offsetof(PyUnicodeObject, str)` (2.7 only: pointer to the `Py_UNICODE` text).
    pub unicode27_str: Option<u32>,
    /// `sizeof(Py_UNICODE)` (2.7 only: 2 on UCS-2 builds, 4 on UCS-4 builds).
    pub unicode27_char_size: Option<u32>,

    // --- PyGenObject / coroutines (3.14+, `strobe dump --async`) -----------------------------
    /// `offsetof(PyGenObject, gi_iframe)`: the generator's or coroutine's own
    /// `_PyInterpreterFrame`, embedded in the object (pycore_interpframe_structs.h).
    pub gen_iframe: Option<u32>,
    /// `offsetof(PyGenObject, gi_frame_state)` (an `int8_t`, values below).
    pub gen_frame_state: Option<u32>,
    /// Value of `FRAME_SUSPENDED_YIELD_FROM` (pycore_frame.h; -1 in 3.14, 2 in 3.15): the
    /// generator is suspended in `yield from` / `await`, the awaited object on top of its
    /// frame's stack (`_PyGen_yf`).
    pub frame_suspended_yield_from: Option<i8>,
    /// Value of `FRAME_SUSPENDED_YIELD_FROM_LOCKED` (3.15+), the same state while another
    /// thread inspects it.
    pub frame_suspended_yield_from_locked: Option<i8>,
}

impl Layout {
    /// The owner value of the shim frame that each evaluation loop call pushes below its first
    /// Python frame (3.12+): a frame whose `previous` frame has this owner was entered from C.
    /// `FRAME_OWNED_BY_CSTACK` in 3.12 and 3.13, `FRAME_OWNED_BY_INTERPRETER` from 3.14 (which
    /// still declares `FRAME_OWNED_BY_CSTACK`, renumbered, but no longer uses it for the shim).
    /// `None` before 3.12: 3.11 flags the entry frame itself ([`Layout::iframe_is_entry`]),
    /// and up to 3.10 every frame is its own loop call.
    pub fn entry_shim_owner(&self) -> Option<u8> {
        self.owner_interpreter.or(self.owner_cstack)
    }
}

/// Where each field of `_Py_DebugOffsets` (3.13+) sits inside that struct, for one version and
/// flavour, generated from the headers that define it (`pycore_runtime.h` in 3.13,
/// `pycore_debug_offsets.h` since 3.14).
///
/// Field names are `section.member` as in the C struct, e.g. `"runtime_state.interpreters_head"`
/// or `"interpreter_frame.owner"`; `"cookie"`, `"version"`, `"free_threaded"` are the header and
/// `"__size"` is `sizeof(_Py_DebugOffsets)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DebugOffsetsTable {
    /// The headers' `PY_VERSION_HEX`.
    pub version: Version,
    /// The flavour the table was generated for.
    pub flavour: Flavour,
    /// `(name, byte position within _Py_DebugOffsets)`, sorted by name.
    pub fields: &'static [(&'static str, u32)],
}

impl DebugOffsetsTable {
    /// Position of `name` within `_Py_DebugOffsets`, if this version has it.
    pub fn position(&self, name: &str) -> Option<u32> {
        self.fields
            .binary_search_by(|(n, _)| (*n).cmp(name))
            .ok()
            .map(|i| self.fields[i].1)
    }
}

/// Find the generated table for a version's minor line and flavour.
pub fn layout_for(major: u8, minor: u8, flavour: Flavour) -> Option<&'static Layout> {
    ALL.iter()
        .find(|l| l.version.major == major && l.version.minor == minor && l.flavour == flavour)
}

/// Find the generated `_Py_DebugOffsets` positions for a minor line and flavour.
pub fn debug_offsets_for(
    major: u8,
    minor: u8,
    flavour: Flavour,
) -> Option<&'static DebugOffsetsTable> {
    DEBUG_OFFSETS
        .iter()
        .find(|t| t.version.major == major && t.version.minor == minor && t.flavour == flavour)
}
