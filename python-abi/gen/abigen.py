#!/usr/bin/env python3
"""Generate python-abi/src/tables/*.rs from real CPython headers.

For every header set (one CPython minor version and build flavour) this script writes a small C
probe that prints `offsetof`/`sizeof` values, bitfield masks and enum constants, compiles it with
gcc against those headers (`-DPy_BUILD_CORE`, so the internal headers work) and runs it. The
numbers become one Rust file per (minor, flavour) holding a `Layout`, plus, for 3.13+, the byte
position of every member of `_Py_DebugOffsets` (enumerated by parsing the preprocessed struct
definition, so members added by a new release show up without editing this script).

This file is also the one place where a version maps to the walker's named shapes
(`FrameModel`, `LineTable`, ...): see `shapes()`.

Usage:
    python3 python-abi/gen/abigen.py           write python-abi/src/tables/
    python3 python-abi/gen/abigen.py --check   regenerate into a temporary directory, print a
                                               diff against the committed tables, exit 1 on any
                                               difference

Header sets come from the pyenv builds in the machine image and from the Debian sid chroot that
`.ci/provision.sh` creates; a missing set is an error naming the path. Stdlib only; needs gcc.
"""

from __future__ import annotations

import argparse
import difflib
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
CRATE = HERE.parent
TABLES = CRATE / "src" / "tables"
SCRIPT_REL = "python-abi/gen/abigen.py"

PYENV = Path("/root/.pyenv/versions")
SID = Path("/var/cache/strobe/sid")
SID_INCLUDE = SID / "usr" / "include"
# Debian's <pythonX.Y/pyconfig.h> is a wrapper that does
# `#include <x86_64-linux-gnu/pythonX.Y/pyconfig.h>`, i.e. relative to an include root. Pointing
# gcc at the chroot's whole /usr/include would also pull in the chroot's libc headers, so the probe
# gets a private include root holding only a symlink to that one multiarch directory.
SID_MULTIARCH = SID_INCLUDE / "x86_64-linux-gnu"


@dataclass(frozen=True)
class HeaderSet:
    """One (minor, flavour) header set to probe."""

    module: str  # Rust module name: v3_12, v3_13t, v3_13d
    minor: tuple[int, int]
    include: Path  # directory holding Python.h
    multiarch: Path | None  # Debian's pyconfig.h directory, if the wrapper needs one
    free_threaded: bool = False
    debug: bool = False
    check_only: bool = False  # generated and compared, never written

    @property
    def defines(self) -> list[str]:
        # Py_GIL_DISABLED is what configure --disable-gil writes into pyconfig.h; Debian ships no
        # free-threaded pyconfig.h, so we define it on top of the default one (which leaves it
        # undefined rather than forcing it off; the probe double-checks).
        return ["-DPy_GIL_DISABLED=1"] if self.free_threaded else []


def pyenv(version: str, incdir: str) -> Path:
    return PYENV / version / "include" / incdir


def header_sets() -> list[HeaderSet]:
    sets = [
        HeaderSet("v2_7", (2, 7), pyenv("2.7.18", "python2.7"), None),
        HeaderSet("v3_6", (3, 6), pyenv("3.6.15", "python3.6m"), None),
        HeaderSet("v3_7", (3, 7), pyenv("3.7.16", "python3.7m"), None),
        HeaderSet("v3_8", (3, 8), pyenv("3.8.18", "python3.8"), None),
        HeaderSet("v3_9", (3, 9), pyenv("3.9.18", "python3.9"), None),
        HeaderSet("v3_10", (3, 10), pyenv("3.10.13", "python3.10"), None),
        HeaderSet("v3_11", (3, 11), pyenv("3.11.7", "python3.11"), None),
        HeaderSet("v3_12", (3, 12), pyenv("3.12.1", "python3.12"), None),
    ]
    for minor in (13, 14, 15):
        name = f"python3.{minor}"
        inc = SID_INCLUDE / name
        dinc = SID_INCLUDE / f"{name}d"
        sets += [
            HeaderSet(f"v3_{minor}", (3, minor), inc, SID_MULTIARCH / name),
            HeaderSet(
                f"v3_{minor}t", (3, minor), inc, SID_MULTIARCH / name, free_threaded=True
            ),
            HeaderSet(
                f"v3_{minor}d", (3, minor), dinc, SID_MULTIARCH / f"{name}d", debug=True
            ),
        ]
    # pyenv's 3.13.0 is a second, independent source for 3.13: generated and compared with the
    # sid table (every field) but not written.
    sets.append(
        HeaderSet("pyenv_v3_13", (3, 13), pyenv("3.13.0", "python3.13"), None, check_only=True)
    )
    return sets


# --- version -> shape: the only place in the project that maps versions to shapes -------------


def shapes(v: tuple[int, int]) -> dict[str, str]:
    """The walker's named shapes for a minor version (see the enums in python-abi/src/lib.rs)."""
    if v <= (3, 10):
        frame = "FrameObject"
    elif v <= (3, 12):
        frame = "CFrame311"
    else:
        frame = "Direct313"
    if v < (3, 0):
        lines = "Lnotab27"
    elif v <= (3, 9):
        lines = "Lnotab36"
    elif v == (3, 10):
        lines = "Linetable310"
    else:
        lines = "Location311"
    if v < (3, 0):
        dict_ = "Table27"
    elif v <= (3, 10):
        dict_ = "Compact36"
    else:
        dict_ = "Compact311"
    if v <= (3, 6):
        gil = "CurrentSymbol"
    elif v <= (3, 11):
        gil = "RuntimeTstateCurrent"
    else:
        gil = "InterpGilPointer"
    if v <= (3, 6):
        gc = "StaticSymbol"
    elif v <= (3, 8):
        gc = "Runtime"
    else:
        gc = "Interp"
    if v <= (3, 6):
        exc = "ThreadTypes"
    elif v <= (3, 10):
        exc = "StackTypes"
    elif v == (3, 11):
        exc = "StackValues311"
    else:
        exc = "StackValues"
    return {
        "frame_model": frame,
        "line_table": lines,
        "string_model": "Bytes27" if v < (3, 0) else "Compact33",
        "dict_model": dict_,
        "runtime_model": "InterpHead" if v <= (3, 6) else "PyRuntime37",
        "gil_model": gil,
        "gc_model": gc,
        "exc_model": exc,
    }


SHAPE_TYPES = {
    "frame_model": "FrameModel",
    "line_table": "LineTable",
    "string_model": "StringModel",
    "dict_model": "DictModel",
    "runtime_model": "RuntimeModel",
    "gil_model": "GilModel",
    "gc_model": "GcModel",
    "exc_model": "ExcModel",
}


# --- the probe -------------------------------------------------------------------------------


def includes(hs: HeaderSet) -> list[str]:
    """Headers the probe includes, in an order in which they compile."""
    v = hs.minor
    out = ["Python.h"]
    if v < (3, 0):
        out += ["longintrepr.h"]
    if v < (3, 11):
        out += ["code.h", "frameobject.h"]
    if v == (3, 7):
        # 3.7 keeps _PyRuntimeState and the GIL struct in internal/pystate.h (no pycore_ prefix).
        out += ["internal/pystate.h"]
    elif v >= (3, 8):
        candidates = [
            "pycore_runtime.h",
            "pycore_interp.h",
            "pycore_pystate.h",
            "pycore_gil.h",
            "pycore_moduleobject.h",
            "pycore_code.h",
            "pycore_frame.h",
            "pycore_dict.h",
            "pycore_long.h",
            "pycore_stackref.h",
            "pycore_tstate.h",
            "pycore_interpframe_structs.h",
            "pycore_debug_offsets.h",
        ]
        out += [f"internal/{h}" for h in candidates if (hs.include / "internal" / h).exists()]
    return out


# Declarations of structs that no installed header of that version defines. Each matches the
# CPython source of that exact minor version (file named in the comment); only the position of
# the members we probe matters, but the whole struct is spelled out so the offsets are real.
PRIVATE_DECLS = {
    "module_27": """
/* Objects/moduleobject.c, CPython 2.7 (PyModuleObject is private there). */
typedef struct { PyObject_HEAD PyObject *md_dict; } strobe_PyModuleObject;
""",
    "module_3x": """
/* Objects/moduleobject.c, CPython 3.6-3.9 (moved to internal/pycore_moduleobject.h in 3.10). */
typedef struct {
    PyObject_HEAD
    PyObject *md_dict;
    struct PyModuleDef *md_def;
    void *md_state;
    PyObject *md_weaklist;
    PyObject *md_name;
} strobe_PyModuleObject;
""",
    "dictkeys_36": """
/* Objects/dict-common.h, CPython 3.6 (not installed): indices are a union sized for 8 slots. */
struct _dictkeysobject {
    Py_ssize_t dk_refcnt;
    Py_ssize_t dk_size;
    void *dk_lookup; /* dict_lookup_func */
    Py_ssize_t dk_usable;
    Py_ssize_t dk_nentries;
    union {
        int8_t as_1[8];
        int16_t as_2[4];
        int32_t as_4[2];
        int64_t as_8[1];
    } dk_indices;
};
""",
    "dictkeys_37": """
/* Objects/dict-common.h, CPython 3.7-3.10 (not installed; 3.11 moved it to pycore_dict.h). */
struct _dictkeysobject {
    Py_ssize_t dk_refcnt;
    Py_ssize_t dk_size;
    void *dk_lookup; /* dict_lookup_func */
    Py_ssize_t dk_usable;
    Py_ssize_t dk_nentries;
    char dk_indices[];
};
""",
}


def private_decls(v: tuple[int, int]) -> list[str]:
    out = []
    if v < (3, 0):
        out.append(PRIVATE_DECLS["module_27"])
    elif v <= (3, 9):
        out.append(PRIVATE_DECLS["module_3x"])
    if v == (3, 6):
        out.append(PRIVATE_DECLS["dictkeys_36"])
    elif (3, 7) <= v <= (3, 10):
        out.append(PRIVATE_DECLS["dictkeys_37"])
    return out


def field_exprs(hs: HeaderSet, declared) -> list[tuple[str, str | None]]:
    """(Layout field, C expression or None) for every numeric Layout field, in struct order.

    None means the member does not exist in this version (the Rust field becomes `None`).
    """
    v = hs.minor
    py2 = v < (3, 0)
    ft = hs.free_threaded

    def since(lo, expr, until=None):
        return expr if v >= lo and (until is None or v <= until) else None

    def enum_value(name):
        # Enum constants cannot be tested with #ifdef: ask the compiler whether the name exists.
        return name if declared(name) else None

    module_t = "PyModuleObject" if v >= (3, 10) else "strobe_PyModuleObject"
    interp_threads = "tstate_head" if v <= (3, 10) else "threads.head"
    code_member = "f_code" if v <= (3, 12) else "f_executable"
    instr_member = "prev_instr" if v <= (3, 12) else "instr_ptr"
    return [
        ("pyobject_size", "sizeof(PyObject)"),
        ("pyobject_ob_type", "offsetof(PyObject, ob_type)"),
        ("pyvarobject_ob_size", "offsetof(PyVarObject, ob_size)"),
        # _PyRuntimeState: internal/pystate.h (3.7), pycore_pystate.h (3.8), pycore_runtime.h (3.9+)
        (
            "runtime_interpreters_head",
            since((3, 7), "offsetof(_PyRuntimeState, interpreters.head)"),
        ),
        (
            "runtime_tstate_current",
            since((3, 7), "offsetof(_PyRuntimeState, gilstate.tstate_current)", until=(3, 11)),
        ),
        # PyInterpreterState: pystate.h (<=3.7), pycore_pystate.h (3.8), pycore_interp.h (3.9+);
        # 3.11 groups the thread list as `threads`, 3.12 moves `modules` into `imports`.
        ("interp_next", "offsetof(PyInterpreterState, next)"),
        ("interp_tstate_head", f"offsetof(PyInterpreterState, {interp_threads})"),
        ("interp_id", since((3, 7), "offsetof(PyInterpreterState, id)")),
        (
            "interp_modules",
            "offsetof(PyInterpreterState, imports.modules)"
            if v >= (3, 12)
            else "offsetof(PyInterpreterState, modules)",
        ),
        # 3.12+ pycore_ceval_state.h: `struct _gil_runtime_state *gil` (per-interpreter GIL).
        ("interp_ceval_gil", since((3, 12), "offsetof(PyInterpreterState, ceval.gil)")),
        # struct _gil_runtime_state: internal/gil.h (3.7), pycore_gil.h (3.8+).
        ("gil_locked", since((3, 7), "offsetof(struct _gil_runtime_state, locked)")),
        ("gil_last_holder", since((3, 7), "offsetof(struct _gil_runtime_state, last_holder)")),
        # The collector's `collecting` flag: a static in gcmodule.c (<=3.6); `_PyRuntime.gc`
        # (internal/mem.h 3.7, pycore_pymem.h 3.8); `interp->gc` (pycore_gc.h 3.9-3.13,
        # pycore_interp_structs.h 3.14+).
        (
            "gc_collecting",
            "offsetof(_PyRuntimeState, gc.collecting)"
            if (3, 7) <= v <= (3, 8)
            else since((3, 9), "offsetof(PyInterpreterState, gc.collecting)"),
        ),
        # PyThreadState: pystate.h (<=3.7), cpython/pystate.h (3.8+).
        ("tstate_size", "sizeof(PyThreadState)"),
        ("tstate_next", "offsetof(PyThreadState, next)"),
        ("tstate_interp", "offsetof(PyThreadState, interp)"),
        # `prev` (3.4+): new threads are linked in at the head, so the head's `prev` changing
        # from NULL is how a sample notices a new thread without re-reading the interpreter.
        ("tstate_prev", since((3, 4), "offsetof(PyThreadState, prev)")),
        ("tstate_frame", since((2, 0), "offsetof(PyThreadState, frame)", until=(3, 10))),
        # 3.10 already has a `cframe` member, but its CFrame has no `current_frame`; only the
        # 3.11-3.12 pair is meaningful.
        ("tstate_cframe", since((3, 11), "offsetof(PyThreadState, cframe)", until=(3, 12))),
        (
            "cframe_current_frame",
            since((3, 11), "offsetof(_PyCFrame, current_frame)", until=(3, 12)),
        ),
        ("tstate_current_frame", since((3, 13), "offsetof(PyThreadState, current_frame)")),
        ("tstate_thread_id", "offsetof(PyThreadState, thread_id)"),
        ("tstate_native_thread_id", since((3, 11), "offsetof(PyThreadState, native_thread_id)")),
        ("tstate_datastack_chunk", since((3, 11), "offsetof(PyThreadState, datastack_chunk)")),
        # Exception state: the raised exception (`curexc_type` <=3.11, `current_exception`
        # 3.12+) and the handled one (`exc_type` <=3.6; 3.7+ a stack of _PyErr_StackItem from
        # `exc_info` down to the thread's own `exc_state`, cpython/pystate.h; items hold the
        # type until 3.10 and the instance from 3.11).
        (
            "tstate_curexc_type",
            since((2, 0), "offsetof(PyThreadState, curexc_type)", until=(3, 11)),
        ),
        (
            "tstate_current_exception",
            since((3, 12), "offsetof(PyThreadState, current_exception)"),
        ),
        ("tstate_exc_type", since((2, 0), "offsetof(PyThreadState, exc_type)", until=(3, 6))),
        ("tstate_exc_state", since((3, 7), "offsetof(PyThreadState, exc_state)")),
        ("tstate_exc_info", since((3, 7), "offsetof(PyThreadState, exc_info)")),
        (
            "stackitem_exc",
            since(
                (3, 7),
                "offsetof(_PyErr_StackItem, exc_type)"
                if v <= (3, 10)
                else "offsetof(_PyErr_StackItem, exc_value)",
            ),
        ),
        ("stackitem_previous", since((3, 7), "offsetof(_PyErr_StackItem, previous_item)")),
        # PyFrameObject: frameobject.h (<=3.9), cpython/frameobject.h (3.10).
        ("frame_back", since((2, 0), "offsetof(PyFrameObject, f_back)", until=(3, 10))),
        ("frame_code", since((2, 0), "offsetof(PyFrameObject, f_code)", until=(3, 10))),
        ("frame_lasti", since((2, 0), "offsetof(PyFrameObject, f_lasti)", until=(3, 10))),
        # _PyInterpreterFrame: pycore_frame.h (3.11-3.13), pycore_interpframe_structs.h (3.14+).
        ("iframe_size", since((3, 11), "sizeof(_PyInterpreterFrame)")),
        ("iframe_previous", since((3, 11), "offsetof(_PyInterpreterFrame, previous)")),
        ("iframe_code", since((3, 11), f"offsetof(_PyInterpreterFrame, {code_member})")),
        ("iframe_instr_ptr", since((3, 11), f"offsetof(_PyInterpreterFrame, {instr_member})")),
        ("iframe_owner", since((3, 11), "offsetof(_PyInterpreterFrame, owner)")),
        # 3.11 only: `bool is_entry`, set on the first frame an evaluation loop call runs (the
        # frame entered from C). 3.12+ mark that boundary with a shim frame instead, whose owner
        # is FRAME_OWNED_BY_CSTACK (3.12-3.13) or FRAME_OWNED_BY_INTERPRETER (3.14+).
        (
            "iframe_is_entry",
            since((3, 11), "offsetof(_PyInterpreterFrame, is_entry)", until=(3, 11)),
        ),
        ("iframe_localsplus", since((3, 11), "offsetof(_PyInterpreterFrame, localsplus)")),
        ("iframe_stackpointer", since((3, 14), "offsetof(_PyInterpreterFrame, stackpointer)")),
        (
            "iframe_tlbc_index",
            since((3, 14), "offsetof(_PyInterpreterFrame, tlbc_index)") if ft else None,
        ),
        ("owner_cstack", since((3, 12), enum_value("FRAME_OWNED_BY_CSTACK"))),
        ("owner_interpreter", since((3, 12), enum_value("FRAME_OWNED_BY_INTERPRETER"))),
        # stackref_mask is handled by the probe's #ifdef Py_TAG_BITS (pycore_stackref.h).
        # _PyStackChunk: cpython/pystate.h (3.11+).
        ("chunk_previous", since((3, 11), "offsetof(_PyStackChunk, previous)")),
        ("chunk_size", since((3, 11), "offsetof(_PyStackChunk, size)")),
        ("chunk_top", since((3, 11), "offsetof(_PyStackChunk, top)")),
        ("chunk_data", since((3, 11), "offsetof(_PyStackChunk, data)")),
        # PyCodeObject: code.h (<=3.7), cpython/code.h (3.8+).
        ("code_size", "sizeof(PyCodeObject)"),
        ("code_filename", "offsetof(PyCodeObject, co_filename)"),
        ("code_name", "offsetof(PyCodeObject, co_name)"),
        ("code_qualname", since((3, 11), "offsetof(PyCodeObject, co_qualname)")),
        ("code_firstlineno", "offsetof(PyCodeObject, co_firstlineno)"),
        ("code_lnotab", since((2, 0), "offsetof(PyCodeObject, co_lnotab)", until=(3, 9))),
        ("code_linetable", since((3, 10), "offsetof(PyCodeObject, co_linetable)")),
        ("code_code_adaptive", since((3, 11), "offsetof(PyCodeObject, co_code_adaptive)")),
        ("code_tlbc", since((3, 14), "offsetof(PyCodeObject, co_tlbc)") if ft else None),
        # bytesobject.h (cpython/bytesobject.h 3.9+); 2.7 stringobject.h.
        (
            "bytes_ob_sval",
            "offsetof(PyStringObject, ob_sval)" if py2 else "offsetof(PyBytesObject, ob_sval)",
        ),
        # unicodeobject.h / cpython/unicodeobject.h (PEP 393); masks come from the bitfield probe.
        ("unicode_length", None if py2 else "offsetof(PyASCIIObject, length)"),
        ("unicode_state", None if py2 else "offsetof(PyASCIIObject, state)"),
        ("unicode_ascii_size", None if py2 else "sizeof(PyASCIIObject)"),
        ("unicode_compact_size", None if py2 else "sizeof(PyCompactUnicodeObject)"),
        ("unicode_kind_mask", None if py2 else "strobe_state_mask_kind()"),
        ("unicode_compact_mask", None if py2 else "strobe_state_mask_compact()"),
        ("unicode_ascii_mask", None if py2 else "strobe_state_mask_ascii()"),
        # dictobject.h / cpython/dictobject.h; 2.7 names its table ma_table and its mask ma_mask.
        ("dict_ma_used", "offsetof(PyDictObject, ma_used)"),
        ("dict_ma_keys", f"offsetof(PyDictObject, {'ma_table' if py2 else 'ma_keys'})"),
        ("dict_ma_values", f"offsetof(PyDictObject, {'ma_mask' if py2 else 'ma_values'})"),
        # struct _dictkeysobject: Objects/dict-common.h (3.6-3.10, declared above), pycore_dict.h.
        (
            "dictkeys_size",
            None
            if py2
            else "offsetof(PyDictKeysObject, dk_size)"
            if v <= (3, 10)
            else "offsetof(PyDictKeysObject, dk_log2_size)",
        ),
        (
            "dictkeys_log2_index_bytes",
            since((3, 11), "offsetof(PyDictKeysObject, dk_log2_index_bytes)"),
        ),
        ("dictkeys_kind", since((3, 11), "offsetof(PyDictKeysObject, dk_kind)")),
        ("dictkeys_nentries", since((3, 6), "offsetof(PyDictKeysObject, dk_nentries)")),
        ("dictkeys_indices", since((3, 6), "offsetof(PyDictKeysObject, dk_indices)")),
        ("module_dict", f"offsetof({module_t}, md_dict)"),
        ("type_basicsize", "offsetof(PyTypeObject, tp_basicsize)"),
        ("type_dictoffset", "offsetof(PyTypeObject, tp_dictoffset)"),
        ("type_flags", "offsetof(PyTypeObject, tp_flags)"),
        # ht_cached_keys exists since 3.3 (PEP 412 key-sharing dicts).
        ("heaptype_cached_keys", None if py2 else "offsetof(PyHeapTypeObject, ht_cached_keys)"),
        # longintrepr.h (cpython/longintrepr.h 3.11+); 3.12 nests the digits in `long_value`.
        (
            "long_digit",
            "offsetof(PyIntObject, ob_ival)"
            if py2
            else "offsetof(PyLongObject, long_value.ob_digit)"
            if v >= (3, 12)
            else "offsetof(PyLongObject, ob_digit)",
        ),
        ("long_lv_tag", since((3, 12), "offsetof(PyLongObject, long_value.lv_tag)")),
        # --- values of locals (`dump --locals`) ---------------------------------------------
        # PyCodeObject: code.h (<=3.7), cpython/code.h (3.8+). `co_argcount` counts positional
        # arguments (positional-only included, 3.8+); keyword-only ones are separate (3.0+).
        ("code_argcount", "offsetof(PyCodeObject, co_argcount)"),
        ("code_kwonlyargcount", since((3, 0), "offsetof(PyCodeObject, co_kwonlyargcount)")),
        ("code_nlocals", "offsetof(PyCodeObject, co_nlocals)"),
        ("code_flags", "offsetof(PyCodeObject, co_flags)"),
        ("code_flag_varargs", "CO_VARARGS"),
        ("code_flag_varkeywords", "CO_VARKEYWORDS"),
        # <=3.10: names in three tuples; the frame's f_localsplus holds locals, cells, frees.
        ("code_varnames", since((2, 0), "offsetof(PyCodeObject, co_varnames)", until=(3, 10))),
        ("code_cellvars", since((2, 0), "offsetof(PyCodeObject, co_cellvars)", until=(3, 10))),
        ("code_freevars", since((2, 0), "offsetof(PyCodeObject, co_freevars)", until=(3, 10))),
        # 3.11+: one tuple of names and a bytes object of kinds (pycore_code.h CO_FAST_*).
        ("code_localsplusnames", since((3, 11), "offsetof(PyCodeObject, co_localsplusnames)")),
        ("code_localspluskinds", since((3, 11), "offsetof(PyCodeObject, co_localspluskinds)")),
        ("code_nlocalsplus", since((3, 11), "offsetof(PyCodeObject, co_nlocalsplus)")),
        ("co_fast_hidden", since((3, 12), "CO_FAST_HIDDEN")),
        ("co_fast_local", since((3, 11), "CO_FAST_LOCAL")),
        ("co_fast_cell", since((3, 11), "CO_FAST_CELL")),
        ("co_fast_free", since((3, 11), "CO_FAST_FREE")),
        # PyFrameObject (frameobject.h <=3.9, cpython/frameobject.h 3.10).
        (
            "frame_localsplus",
            since((2, 0), "offsetof(PyFrameObject, f_localsplus)", until=(3, 10)),
        ),
        # cellobject.h (cpython/cellobject.h 3.11+).
        ("cell_ob_ref", "offsetof(PyCellObject, ob_ref)"),
        # floatobject.h (cpython/floatobject.h 3.11+).
        ("float_ob_fval", "offsetof(PyFloatObject, ob_fval)"),
        # tupleobject.h / listobject.h (cpython/ 3.8+).
        ("tuple_ob_item", "offsetof(PyTupleObject, ob_item)"),
        ("list_ob_item", "offsetof(PyListObject, ob_item)"),
        ("list_allocated", "offsetof(PyListObject, allocated)"),
        # setobject.h (cpython/setobject.h 3.11+); 2.7's setentry puts the hash first.
        ("set_used", "offsetof(PySetObject, used)"),
        ("set_mask", "offsetof(PySetObject, mask)"),
        ("set_table", "offsetof(PySetObject, table)"),
        ("setentry_size", "sizeof(setentry)"),
        ("setentry_key", "offsetof(setentry, key)"),
        ("setentry_hash", "offsetof(setentry, hash)"),
        # object.h (cpython/object.h 3.8+).
        ("type_name", "offsetof(PyTypeObject, tp_name)"),
        ("tpflags_heaptype", "Py_TPFLAGS_HEAPTYPE"),
        # longintrepr.h (cpython/longintrepr.h 3.11+): digit width.
        ("long_digit_bits", "PyLong_SHIFT"),
        ("long_digit_size", "sizeof(digit)"),
        # 2.7: `long` is PyLongObject (longintrepr.h); `int` is PyIntObject (long_digit above).
        ("long27_digit", "offsetof(PyLongObject, ob_digit)" if py2 else None),
        # 2.7 unicodeobject.h: PyUnicodeObject {length, Py_UNICODE *str, ...}, UCS2 or UCS4.
        ("unicode27_length", "offsetof(PyUnicodeObject, length)" if py2 else None),
        ("unicode27_str", "offsetof(PyUnicodeObject, str)" if py2 else None),
        ("unicode27_char_size", "sizeof(Py_UNICODE)" if py2 else None),
        # PyGenObject: pycore_interpframe_structs.h (3.14+); frame states: pycore_frame.h.
        # Only 3.14+ (`strobe dump --async` reads tasks from _Py_AsyncioModuleDebugOffsets).
        ("gen_iframe", since((3, 14), "offsetof(PyGenObject, gi_iframe)")),
        ("gen_frame_state", since((3, 14), "offsetof(PyGenObject, gi_frame_state)")),
        ("frame_suspended_yield_from", since((3, 14), enum_value("FRAME_SUSPENDED_YIELD_FROM"))),
        (
            "frame_suspended_yield_from_locked",
            since((3, 14), enum_value("FRAME_SUSPENDED_YIELD_FROM_LOCKED")),
        ),
    ]


PROBE_HEAD = """\
/* Generated by python-abi/gen/abigen.py: prints struct offsets for one CPython header set. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
"""

# PyASCIIObject.state is a bitfield: offsetof cannot name its members, so set one member to all
# ones in a zeroed object and read back the 32-bit word at offsetof(state). Decrementing an
# unsigned bitfield from zero wraps to all ones whatever its width.
MASK_FUNCS = """
static unsigned long long strobe_state_word(const PyASCIIObject *o) {
    uint32_t w;
    memcpy(&w, (const char *)o + offsetof(PyASCIIObject, state), sizeof w);
    return w;
}
#define STROBE_MASK_FN(member)                                   \\
    static unsigned long long strobe_state_mask_##member(void) { \\
        PyASCIIObject o;                                         \\
        memset(&o, 0, sizeof o);                                 \\
        o.state.member--;                                        \\
        return strobe_state_word(&o);                            \\
    }
STROBE_MASK_FN(kind)
STROBE_MASK_FN(compact)
STROBE_MASK_FN(ascii)
"""


def probe_source(hs: HeaderSet, fields, debug_members: list[str]) -> str:
    parts = [PROBE_HEAD]
    parts += [f'#include "{h}"\n' for h in includes(hs)]
    parts += private_decls(hs.minor)
    if hs.minor >= (3, 0):
        parts.append(MASK_FUNCS)
    parts.append(
        "\n#define P(name, expr) printf(\"%s %llu\\n\", name, (unsigned long long)(expr))\n"
        "int main(void) {\n"
        '    P("PY_VERSION_HEX", PY_VERSION_HEX);\n'
        "#ifdef Py_GIL_DISABLED\n"
        '    P("Py_GIL_DISABLED", 1);\n'
        "#endif\n"
        "#ifdef Py_DEBUG\n"
        '    P("Py_DEBUG", 1);\n'
        "#endif\n"
        "#ifdef Py_TAG_BITS\n"
        '    P("Py_TAG_BITS", Py_TAG_BITS);\n'
        "#endif\n"
    )
    for name, expr in fields:
        if expr is not None:
            parts.append(f'    P("{name}", {expr});\n')
    for member in debug_members:
        expr = "sizeof(_Py_DebugOffsets)" if member == "__size" else (
            f"offsetof(_Py_DebugOffsets, {member})"
        )
        parts.append(f'    P("debug:{member}", {expr});\n')
    parts.append("    return 0;\n}\n")
    return "".join(parts)


class GenError(Exception):
    pass


def gcc_args(hs: HeaderSet, incroot: Path) -> list[str]:
    args = ["gcc", "-std=gnu11", "-w", "-DPy_BUILD_CORE", *hs.defines]
    if hs.multiarch is not None:
        args += ["-I", str(incroot)]
    args += ["-I", str(hs.include)]
    return args


def make_incroot(hs: HeaderSet, work: Path) -> Path:
    incroot = work / "incroot"
    if hs.multiarch is not None:
        link = incroot / "x86_64-linux-gnu" / hs.multiarch.name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(hs.multiarch)
    return incroot


def run(cmd: list[str], what: str, cwd: Path) -> str:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise GenError(f"{what} failed ({' '.join(cmd)}):\n{proc.stdout}{proc.stderr}")
    return proc.stdout


def debug_offsets_members(hs: HeaderSet, work: Path, incroot: Path) -> list[str]:
    """Members of `_Py_DebugOffsets` as `section.member`, from the preprocessed header text.

    Preprocessing first means #if'd members are resolved for this flavour, and comments are gone.
    """
    src = work / "dbg.c"
    src.write_text("".join(f'#include "{h}"\n' for h in includes(hs)))
    text = run([*gcc_args(hs, incroot), "-E", "-P", str(src)], "preprocessing", work)
    m = re.search(r"typedef\s+struct\s+_Py_DebugOffsets\s*\{", text)
    if m is None:
        raise GenError(f"{hs.include}: no `typedef struct _Py_DebugOffsets` after preprocessing")
    body, _ = _braced(text, m.end() - 1)
    members: list[str] = []
    pos = 0
    while body[pos:].strip():
        # Each top-level member is either `struct [tag] { ... } name;` or a plain declaration.
        m = re.compile(r"\s*struct\s+(\w+\s*)?\{").match(body, pos)
        if m is not None:
            inner, end = _braced(body, m.end() - 1)
            semi = body.index(";", end)
            section = _declarator(body[end:semi])
            members += [f"{section}.{_declarator(d)}" for d in inner.split(";") if d.strip()]
        else:
            semi = body.index(";", pos)
            members.append(_declarator(body[pos:semi]))
        pos = semi + 1
    members.append("__size")
    return members


def _braced(text: str, open_at: int) -> tuple[str, int]:
    """Contents of the {...} starting at text[open_at] == '{', and the index after '}'."""
    depth = 0
    for i in range(open_at, len(text)):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
            if depth == 0:
                return text[open_at + 1 : i], i + 1
    raise GenError("unbalanced braces in _Py_DebugOffsets")


def _declarator(decl: str) -> str:
    decl = re.sub(r"__attribute__\s*\(\(.*?\)\)", "", decl)
    decl = re.sub(r"\[[^\]]*\]", "", decl)
    names = re.findall(r"[A-Za-z_]\w*", decl)
    if not names:
        raise GenError(f"cannot parse declaration {decl!r} in _Py_DebugOffsets")
    return names[-1]


@dataclass
class Probed:
    hs: HeaderSet
    values: dict[str, int]
    fields: list[tuple[str, str | None]]
    debug_members: list[str]


def probe(hs: HeaderSet) -> Probed:
    for path in [hs.include / "Python.h"] + ([hs.multiarch / "pyconfig.h"] if hs.multiarch else []):
        if not path.exists():
            raise GenError(
                f"missing header set: {path} does not exist.\n"
                "The pyenv builds are part of the machine image and .ci/provision.sh provides the "
                "Debian sid chroot (with python3.1x-dev/-dbg headers); run it, then retry."
            )
    with tempfile.TemporaryDirectory(prefix="abigen-") as tmp:
        work = Path(tmp)
        incroot = make_incroot(hs, work)
        debug_members = (
            debug_offsets_members(hs, work, incroot) if hs.minor >= (3, 13) else []
        )

        def declared(name: str) -> bool:
            src = work / "declared.c"
            src.write_text(
                "".join(f'#include "{h}"\n' for h in includes(hs))
                + f"static const long long strobe_probe = {name};\n"
            )
            cmd = [*gcc_args(hs, incroot), "-fsyntax-only", str(src)]
            return subprocess.run(cmd, cwd=work, capture_output=True).returncode == 0

        fields = field_exprs(hs, declared)
        src = work / "probe.c"
        src.write_text(probe_source(hs, fields, debug_members))
        exe = work / "probe"
        cmd = [*gcc_args(hs, incroot), "-o", str(exe), str(src)]
        run(cmd, f"compiling the probe for {hs.include}", work)
        out = run([str(exe)], f"running the probe for {hs.include}", work)
    values = {}
    for line in out.splitlines():
        name, value = line.split()
        values[name] = int(value)
    # The flavour must be what the headers say, not just what we asked for.
    if bool(values.get("Py_GIL_DISABLED")) != hs.free_threaded:
        raise GenError(f"{hs.module}: Py_GIL_DISABLED is not {hs.free_threaded} in {hs.include}")
    if bool(values.get("Py_DEBUG")) != hs.debug:
        raise GenError(f"{hs.module}: Py_DEBUG is not {hs.debug} in {hs.include}")
    hex_ = values["PY_VERSION_HEX"]
    if ((hex_ >> 24) & 0xFF, (hex_ >> 16) & 0xFF) != hs.minor:
        raise GenError(f"{hs.include} is version {hex_:#x}, expected {hs.minor}")
    return Probed(hs, values, fields, debug_members)


# --- Rust output -------------------------------------------------------------------------------

U8_FIELDS = {
    "owner_cstack",
    "owner_interpreter",
    "co_fast_hidden",
    "co_fast_local",
    "co_fast_cell",
    "co_fast_free",
}

# Enum values that may be negative (pycore_frame.h frame states in 3.14).
I8_FIELDS = {
    "frame_suspended_yield_from",
    "frame_suspended_yield_from_locked",
}


def layout_lines(p: Probed) -> list[str]:
    """`name: value` pairs of the Layout literal (no indentation)."""
    hs, vals = p.hs, p.values
    hex_ = vals["PY_VERSION_HEX"]
    lines = [
        "version: Version {",
        f"    major: {(hex_ >> 24) & 0xFF},",
        f"    minor: {(hex_ >> 16) & 0xFF},",
        f"    micro: {(hex_ >> 8) & 0xFF},",
        f"    level: 0x{(hex_ >> 4) & 0xF:x},",
        f"    serial: {hex_ & 0xF},",
        "},",
        "flavour: Flavour {",
        f"    free_threaded: {'true' if hs.free_threaded else 'false'},",
        f"    debug: {'true' if hs.debug else 'false'},",
        "},",
    ]
    for key, shape in shapes(hs.minor).items():
        lines.append(f"{key}: {SHAPE_TYPES[key]}::{shape},")
    optional = _optional_fields()
    for name, expr in p.fields:
        if expr is None:
            if name not in optional:
                raise GenError(f"{hs.module}: required field {name} has no expression")
            lines.append(f"{name}: None,")
        else:
            val = vals[name]
            if name in I8_FIELDS:
                # The probe prints every value as unsigned long long: undo the wrap.
                val = val - (1 << 64) if val >= 1 << 63 else val
                if not -128 <= val <= 127:
                    raise GenError(f"{hs.module}: {name} = {val} does not fit an i8")
            if name in U8_FIELDS and val > 0xFF:
                raise GenError(f"{hs.module}: {name} = {val} does not fit a u8")
            lines.append(f"{name}: Some({val})," if name in optional else f"{name}: {val},")
        if name == "owner_interpreter":
            tag = vals.get("Py_TAG_BITS")
            lines.append(f"stackref_mask: {'u64::MAX' if tag is None else f'!{tag}'},")
    return lines


def _layout_decl() -> str:
    text = (CRATE / "src" / "lib.rs").read_text()
    body = text[text.index("pub struct Layout {") :]
    return body[: body.index("\n}\n")]


def _optional_fields() -> set[str]:
    """Layout fields declared `Option<_>` in python-abi/src/lib.rs."""
    return set(re.findall(r"pub (\w+): Option<", _layout_decl()))


def _check_coverage(lines: list[str]) -> None:
    """Every Layout field is emitted, so a field added to lib.rs fails here, by name."""
    declared = set(re.findall(r"pub (\w+):", _layout_decl()))
    emitted = {m.group(1) for m in (re.match(r"(\w+): ", line) for line in lines) if m}
    missing = sorted(declared - emitted)
    if missing:
        raise GenError(f"Layout fields with no probe in field_exprs(): {', '.join(missing)}")


def header_line(hs: HeaderSet) -> str:
    return f"// @generated by {SCRIPT_REL} from {hs.include}, do not edit\n"


def rust_file(p: Probed) -> str:
    hs = p.hs
    flav = "free-threaded" if hs.free_threaded else "debug" if hs.debug else "default"
    uses = ["DictModel", "ExcModel", "Flavour", "FrameModel", "GcModel", "GilModel", "Layout"]
    uses += ["LineTable", "RuntimeModel", "StringModel", "Version"]
    if p.debug_members:
        uses.append("DebugOffsetsTable")
    uses.sort()
    out = [header_line(hs)]
    out.append(f"//! CPython {hs.minor[0]}.{hs.minor[1]} ({flav} build) layout.\n\n")
    # One `use` per name: rustfmt leaves these alone, so the output is formatted as emitted.
    out += [f"use crate::{name};\n" for name in uses]
    out.append("\n")
    out.append(f"/// Offsets for CPython {hs.minor[0]}.{hs.minor[1]} ({flav} build).\n")
    out.append("pub const LAYOUT: Layout = Layout {\n")
    lines = layout_lines(p)
    _check_coverage(lines)
    out += [f"    {line}\n" for line in lines]
    out.append("};\n")
    if p.debug_members:
        fields = sorted((m, p.values[f"debug:{m}"]) for m in p.debug_members)
        out.append(
            f"\n/// Positions of the members of `_Py_DebugOffsets` in CPython "
            f"{hs.minor[0]}.{hs.minor[1]} ({flav} build).\n"
        )
        out.append("pub const DEBUG_OFFSETS: DebugOffsetsTable = DebugOffsetsTable {\n")
        out.append("    version: LAYOUT.version,\n")
        out.append("    flavour: LAYOUT.flavour,\n")
        out.append("    fields: &[\n")
        out += [f'        ("{name}", {pos}),\n' for name, pos in fields]
        out.append("    ],\n};\n")
    return "".join(out)


def mod_file(probed: list[Probed]) -> str:
    written = [p for p in probed if not p.hs.check_only]
    out = [f"// @generated by {SCRIPT_REL}, do not edit\n"]
    out.append(
        "//! Generated layout tables: one module per CPython minor version and build flavour.\n\n"
    )
    out.append("use crate::{DebugOffsetsTable, Layout};\n\n")
    # rustfmt sorts consecutive `mod` items by name; ALL below keeps version order.
    out += [f"mod {name};\n" for name in sorted(p.hs.module for p in written)]
    out.append("\n/// Every generated layout, oldest version first.\n")
    out.append("pub static ALL: &[Layout] = &[\n")
    out += [f"    {p.hs.module}::LAYOUT,\n" for p in written]
    out.append("];\n\n")
    out.append("/// Every generated `_Py_DebugOffsets` position table (3.13+).\n")
    out.append("pub static DEBUG_OFFSETS: &[DebugOffsetsTable] = &[\n")
    out += [f"    {p.hs.module}::DEBUG_OFFSETS,\n" for p in written if p.debug_members]
    out.append("];\n")
    return "".join(out)


# Differences between pyenv's 3.13.0 headers and sid's newer 3.13.x that are understood. Offsets
# agree; only the size of a struct that grew at its end within the 3.13 line may differ.
KNOWN_313_DIFFERENCES = {
    # 3.13.x (after 3.13.0) appends `_PyStackChunk *datastack_cached_chunk` to PyThreadState
    # (cpython/pystate.h). The walker must not rely on reading past a 3.13.0 thread state's end.
    "tstate_size",
}


def compare_pyenv_313(probed: list[Probed]) -> tuple[list[str], list[str]]:
    """(unexpected, known) differences between pyenv's 3.13.0 and sid's 3.13 default tables."""
    by = {p.hs.module: p for p in probed}
    a, b = by["pyenv_v3_13"], by["v3_13"]
    unexpected, known = [], []
    for (name, ea), (_, eb) in zip(a.fields, b.fields):
        va = None if ea is None else a.values[name]
        vb = None if eb is None else b.values[name]
        if va != vb:
            line = f"  {name}: pyenv 3.13.0 {va} vs sid {vb}"
            (known if name in KNOWN_313_DIFFERENCES else unexpected).append(line)
    for key in ("Py_TAG_BITS",):
        if a.values.get(key) != b.values.get(key):
            va, vb = a.values.get(key), b.values.get(key)
            unexpected.append(f"  {key}: pyenv 3.13.0 {va} vs sid {vb}")
    da = {m: a.values[f"debug:{m}"] for m in a.debug_members}
    db = {m: b.values[f"debug:{m}"] for m in b.debug_members}
    for key in sorted(set(da) | set(db)):
        if da.get(key) != db.get(key):
            unexpected.append(
                f"  _Py_DebugOffsets {key}: pyenv 3.13.0 {da.get(key)} vs sid {db.get(key)}"
            )
    return unexpected, known


def generate(dest: Path) -> list[str]:
    """Write every table into `dest`; return the file names written."""
    probed = [probe(hs) for hs in header_sets()]
    unexpected, known = compare_pyenv_313(probed)
    if unexpected:
        raise GenError(
            "pyenv 3.13.0 headers disagree with sid 3.13 headers:\n" + "\n".join(unexpected)
        )
    if known:
        print("abigen: known pyenv 3.13.0 vs sid 3.13 differences:\n" + "\n".join(known))
    names = []
    for p in probed:
        if not p.hs.check_only:
            (dest / f"{p.hs.module}.rs").write_text(rust_file(p))
            names.append(f"{p.hs.module}.rs")
    (dest / "mod.rs").write_text(mod_file(probed))
    names.append("mod.rs")
    return names


def check() -> int:
    with tempfile.TemporaryDirectory(prefix="abigen-check-") as tmp:
        fresh = Path(tmp)
        names = set(generate(fresh))
        committed = {p.name for p in TABLES.glob("*.rs")}
        diff: list[str] = []
        for name in sorted(names | committed):
            old = (TABLES / name).read_text().splitlines(keepends=True) if name in committed else []
            new = (fresh / name).read_text().splitlines(keepends=True) if name in names else []
            diff += difflib.unified_diff(
                old, new, f"committed/{name}", f"regenerated/{name}"
            )
    if diff:
        sys.stdout.write("".join(diff))
        print(
            f"\nabigen --check: the committed tables in {TABLES} differ from what the headers "
            f"give. If the change is intended, run `python3 {SCRIPT_REL}` and commit the result."
        )
        return 1
    print(f"abigen --check: {len(names)} files in {TABLES} match the headers")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="compare instead of writing")
    args = ap.parse_args()
    if shutil.which("gcc") is None:
        print("abigen: gcc not found; install gcc (the probe is compiled C)", file=sys.stderr)
        return 1
    try:
        if args.check:
            return check()
        # Generate everything first so a failure leaves the committed tables untouched.
        with tempfile.TemporaryDirectory(prefix="abigen-") as tmp:
            names = generate(Path(tmp))
            TABLES.mkdir(parents=True, exist_ok=True)
            for stale in TABLES.glob("*.rs"):
                if stale.name not in names:
                    stale.unlink()
            for name in names:
                shutil.copyfile(Path(tmp) / name, TABLES / name)
        print(f"abigen: wrote {len(names)} files to {TABLES}")
        return 0
    except GenError as e:
        print(f"abigen: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
