# Checks a generated python-abi Layout against the memory of the interpreter running this script.
#
# python-abi/tests/live.rs runs this under every real interpreter on the machine, passing the
# table's offsets as NAME=VALUE arguments (and, for 3.13+, the `_Py_DebugOffsets` member positions
# as debug:NAME=POS). The script reads its own objects through ctypes at those offsets and compares
# with what the interpreter reports through its API (id(), len(), PyThreadState_Get(), ...).
#
# Output, one per line: "PASS field", "FAIL field: detail", "NOTE text", and a final "DONE".
# The Rust side requires no FAIL and a PASS for every field the table fills in (with a short,
# documented list of exceptions), so a check that silently does nothing is itself a failure.
#
# Runs on Python 2.7 and 3.6+: no f-strings, no int.from_bytes.
from __future__ import print_function

import ctypes
import sys
import threading

L = {}
DBG = {}
SHAPE = {}
for _arg in sys.argv[1:]:
    _k, _v = _arg.split("=", 1)
    if _k.startswith("debug:"):
        DBG[_k[len("debug:"):]] = int(_v)
    elif _v.lstrip("-").isdigit():
        L[_k] = int(_v)
    else:
        SHAPE[_k] = _v

PY2 = sys.version_info[0] == 2
MASK = L["stackref_mask"]


def out(line):
    print(line)
    sys.stdout.flush()


def check(name, ok, detail=""):
    out(("PASS %s" % name) if ok else ("FAIL %s: %s" % (name, detail)))


def u64(a):
    return ctypes.c_uint64.from_address(a).value


def i64(a):
    return ctypes.c_int64.from_address(a).value


def u32(a):
    return ctypes.c_uint32.from_address(a).value


def i32(a):
    return ctypes.c_int32.from_address(a).value


def u8(a):
    return ctypes.c_uint8.from_address(a).value


def mem(a, n):
    return ctypes.string_at(a, n)


def api(name, restype=ctypes.c_void_p, argtypes=()):
    f = getattr(ctypes.pythonapi, name)
    f.restype = restype
    f.argtypes = list(argtypes)
    return f


VP = ctypes.c_void_p
PyThreadState_Get = api("PyThreadState_Get")
PyThreadState_Next = api("PyThreadState_Next", VP, [VP])
PyInterpreterState_Head = api("PyInterpreterState_Head")
PyInterpreterState_Next = api("PyInterpreterState_Next", VP, [VP])
PyInterpreterState_ThreadHead = api("PyInterpreterState_ThreadHead", VP, [VP])


def nz(p):
    return p or 0


def has(name):
    return name in L


# --- threads and interpreters --------------------------------------------------------------


def check_threads():
    tstate = PyThreadState_Get()
    interp = PyInterpreterState_Head()
    check("tstate_interp", u64(tstate + L["tstate_interp"]) == interp, "interp mismatch")
    check("interp_next", u64(interp + L["interp_next"]) == nz(PyInterpreterState_Next(interp)))
    head = u64(interp + L["interp_tstate_head"])
    check("interp_tstate_head", head == PyInterpreterState_ThreadHead(interp), hex(head))
    # Walk the list with our offsets and with the API: same thread states, same order.
    ours, theirs = [], []
    p = head
    while p and len(ours) < 100:
        ours.append(p)
        p = u64(p + L["tstate_next"])
    p = PyInterpreterState_ThreadHead(interp)
    while p and len(theirs) < 100:
        theirs.append(p)
        p = PyThreadState_Next(p)
    check("tstate_next", ours == theirs and len(ours) >= 2 and tstate in ours, (ours, theirs))
    if has("tstate_prev"):
        # The list is doubly linked: each state's prev is the one before it, the head's is NULL.
        prevs = [u64(p + L["tstate_prev"]) for p in ours]
        check("tstate_prev", prevs == [0] + ours[:-1], (prevs, ours))
    check("interp_modules", u64(interp + L["interp_modules"]) == id(sys.modules))
    ident = threading.current_thread().ident
    check("tstate_thread_id", u64(tstate + L["tstate_thread_id"]) == ident)
    if has("tstate_native_thread_id"):
        got = u64(tstate + L["tstate_native_thread_id"])
        check("tstate_native_thread_id", got == threading.get_native_id(), got)
    if has("interp_id"):
        get_id = api("PyInterpreterState_GetID", ctypes.c_int64, [VP])
        check("interp_id", i64(interp + L["interp_id"]) == get_id(interp))
    if has("runtime_interpreters_head"):
        rt = ctypes.addressof(ctypes.c_char.in_dll(ctypes.pythonapi, "_PyRuntime"))
        check("runtime_interpreters_head", u64(rt + L["runtime_interpreters_head"]) == interp)
        if has("runtime_tstate_current"):
            check("runtime_tstate_current", u64(rt + L["runtime_tstate_current"]) == tstate)
    if has("interp_ceval_gil"):
        # We hold the GIL while running: it is locked and we are its last holder.
        gil = u64(interp + L["interp_ceval_gil"])
        check("interp_ceval_gil", gil != 0)
        check("gil_locked", i32(gil + L["gil_locked"]) == 1)
        check("gil_last_holder", u64(gil + L["gil_last_holder"]) == tstate)


def check_gc():
    # The collector's `collecting` flag: 0 now, 1 inside a collection (gc.callbacks, 3.3+, run
    # during it). In `_PyRuntime` (GcModel::Runtime, 3.7-3.8) or the interpreter (3.9+).
    if not has("gc_collecting"):
        return
    import gc

    if SHAPE.get("gc_model", "").endswith("Runtime"):
        base = ctypes.addressof(ctypes.c_char.in_dll(ctypes.pythonapi, "_PyRuntime"))
    else:
        base = PyInterpreterState_Head()
    at = base + L["gc_collecting"]
    seen = []

    def callback(phase, info):
        seen.append((phase, i32(at)))

    idle = i32(at)
    gc.callbacks.append(callback)
    try:
        gc.collect()
    finally:
        gc.callbacks.remove(callback)
    check("gc_collecting", idle == 0 and seen == [("start", 1), ("stop", 1)], (idle, seen))


# --- frames ---------------------------------------------------------------------------------


def frame_checks(arg0):
    here = sys._getframe()
    tstate = PyThreadState_Get()
    # Read the innermost-frame pointer inline: calling a Python helper here would make the
    # helper's frame the innermost one.
    if has("tstate_frame"):
        cur = ctypes.c_uint64.from_address(tstate + L["tstate_frame"]).value
    elif has("tstate_cframe"):
        cframe = ctypes.c_uint64.from_address(tstate + L["tstate_cframe"]).value
        cur = ctypes.c_uint64.from_address(cframe + L["cframe_current_frame"]).value
    else:
        cur = ctypes.c_uint64.from_address(tstate + L["tstate_current_frame"]).value
    code = here.f_code
    if has("tstate_frame"):
        check("tstate_frame", cur == id(here))
        check("frame_back", u64(cur + L["frame_back"]) == id(here.f_back))
        check("frame_code", u64(cur + L["frame_code"]) == id(code))
        # f_localsplus starts with the locals, arguments first.
        check("frame_localsplus", u64(cur + L["frame_localsplus"]) == id(arg0))
        # The caller is suspended in its call, so its f_lasti is stable; 3.10 stores code units
        # and reports bytes.
        back = here.f_back
        scale = 2 if SHAPE["line_table"] == "Linetable310" else 1
        raw = i32(id(back) + L["frame_lasti"])
        check("frame_lasti", raw * scale == back.f_lasti, (raw, back.f_lasti))
        return
    name = "tstate_cframe" if has("tstate_cframe") else "tstate_current_frame"
    check(name, cur != 0)
    if has("cframe_current_frame"):
        check("cframe_current_frame", cur != 0)
    check("iframe_code", u64(cur + L["iframe_code"]) & MASK == id(code))
    # Tagged references (3.14+) only resolve with the mask; untagged ones are unchanged by it.
    check("stackref_mask", u64(cur + L["iframe_code"]) & MASK == id(code))
    prev = u64(cur + L["iframe_previous"])
    check("iframe_previous", u64(prev + L["iframe_code"]) & MASK == id(here.f_back.f_code))
    check("iframe_owner", u8(cur + L["iframe_owner"]) == 0, u8(cur + L["iframe_owner"]))
    check("iframe_localsplus", u64(cur + L["iframe_localsplus"]) & MASK == id(arg0))
    ip = u64(cur + L["iframe_instr_ptr"])
    base = id(code) + L["code_code_adaptive"]
    ok = base <= ip < base + len(code.co_code)
    check("iframe_instr_ptr", ok, (ip - base, len(code.co_code)))
    check("code_code_adaptive", ok)
    if has("iframe_stackpointer"):
        sp = u64(cur + L["iframe_stackpointer"])
        lo = cur + L["iframe_localsplus"]
        nslots = len(code.co_varnames) + len(code.co_cellvars) + len(code.co_freevars)
        hi = lo + 8 * (nslots + code.co_stacksize)
        check("iframe_stackpointer", lo <= sp <= hi, (sp - lo, hi - lo))
    chunk = u64(tstate + L["tstate_datastack_chunk"])
    size = u64(chunk + L["chunk_size"])
    check("tstate_datastack_chunk", chunk != 0)
    check("chunk_size", size % 4096 == 0 and 4096 <= size <= (1 << 30), size)
    check("chunk_data", chunk + L["chunk_data"] <= cur < chunk + size, cur - chunk)
    top = u64(chunk + L["chunk_top"])
    check("chunk_top", top * 8 <= size, top)
    previous = u64(chunk + L["chunk_previous"])
    ok = previous == 0 or 4096 <= u64(previous + L["chunk_size"]) <= (1 << 30)
    check("chunk_previous", ok, previous)
    # Walk to the bottom: owners other than THREAD must be the entry frame's enumerator.
    owners = []
    p = cur
    while p and len(owners) < 1000:
        owners.append(u8(p + L["iframe_owner"]))
        p = u64(p + L["iframe_previous"])
    special = set(o for o in owners if o not in (0, 1, 2))
    known = {}
    for field in ("owner_cstack", "owner_interpreter"):
        if has(field):
            known[L[field]] = field
    for o in special:
        if o in known:
            check(known[o], True)
        else:
            check("iframe_owner", False, "unknown owner %d on the frame chain" % o)
    out("NOTE frame owners bottom-up %s" % list(reversed(owners)))
    if has("iframe_is_entry"):
        # 3.11: this frame was called from Python (not an entry); the bottom one was entered
        # from C (the module by PyEval_EvalCode, a thread by its bootstrap). Stronger checks, with
        # frames entered from C in the middle of the chain, are in tests/entry_frames.rs.
        flags = []
        p = cur
        while p and len(flags) < 1000:
            flags.append(u8(p + L["iframe_is_entry"]))
            p = u64(p + L["iframe_previous"])
        ok = flags[0] == 0 and flags[-1] == 1 and set(flags) <= set([0, 1])
        check("iframe_is_entry", ok, flags)


def caller_of_frame_checks():
    marker = object()
    frame_checks(marker)
    return marker


# --- code objects -----------------------------------------------------------------------------


class _Holder(object):
    def method(self):
        return self


def check_code():
    # A method: its qualname ("_Holder.method") is a different object from its name.
    code = _Holder.method.__code__
    c = id(code)
    check("code_filename", u64(c + L["code_filename"]) == id(code.co_filename))
    check("code_name", u64(c + L["code_name"]) == id(code.co_name))
    if has("code_qualname"):
        check("code_qualname", u64(c + L["code_qualname"]) == id(code.co_qualname))
    check("code_firstlineno", i32(c + L["code_firstlineno"]) == code.co_firstlineno)
    if has("code_lnotab"):
        check("code_lnotab", u64(c + L["code_lnotab"]) == id(code.co_lnotab))
    if has("code_linetable"):
        check("code_linetable", u64(c + L["code_linetable"]) == id(code.co_linetable))
    # tp_basicsize of code objects: sizeof(PyCodeObject) until 3.10; from 3.11 the bytecode is
    # the variable part, so it is offsetof(co_code_adaptive).
    basic = type(code).__basicsize__
    if has("code_code_adaptive"):
        check("code_size", L["code_size"] >= basic == L["code_code_adaptive"], basic)
    else:
        check("code_size", L["code_size"] == basic, basic)


# --- objects ----------------------------------------------------------------------------------


def check_objects():
    check("pyobject_size", L["pyobject_size"] == object.__basicsize__, object.__basicsize__)
    t = (1, 2, 3)
    check("pyobject_ob_type", u64(id(t) + L["pyobject_ob_type"]) == id(tuple))
    check("pyvarobject_ob_size", i64(id(t) + L["pyvarobject_ob_size"]) == 3)
    check("module_dict", u64(id(sys) + L["module_dict"]) == id(sys.__dict__))

    class WithDict(object):
        def __init__(self):
            self.a = 1

    class Slots(object):
        __slots__ = ()

    WithDict()
    for ty in (int, dict, type, WithDict, Slots):
        ok = (
            i64(id(ty) + L["type_basicsize"]) == ty.__basicsize__
            and i64(id(ty) + L["type_dictoffset"]) == ty.__dictoffset__
            and u64(id(ty) + L["type_flags"]) == ty.__flags__
        )
        check("type_basicsize", ok, ty)
        check("type_dictoffset", ok, ty)
        check("type_flags", ok, ty)
    if has("heaptype_cached_keys"):
        with_dict = u64(id(WithDict) + L["heaptype_cached_keys"])
        slots = u64(id(Slots) + L["heaptype_cached_keys"])
        check("heaptype_cached_keys", with_dict != 0 and slots == 0, (with_dict, slots))

    n = int("1234567")
    if PY2:
        check("long_digit", i64(id(n) + L["long_digit"]) == 1234567)
    else:
        check("long_digit", u32(id(n) + L["long_digit"]) == 1234567)
        check("long_digit", L["long_digit"] == int.__basicsize__, int.__basicsize__)
        if has("long_lv_tag"):
            # One digit, positive: lv_tag = ndigits << 3 (cpython/longintrepr.h).
            check("long_lv_tag", u64(id(n) + L["long_lv_tag"]) == 1 << 3)
        else:
            check("pyvarobject_ob_size", i64(id(n) + L["pyvarobject_ob_size"]) == 1)


def check_strings():
    if PY2:
        s = "".join(["ab", "c\x00"])
        ok = i64(id(s) + L["pyvarobject_ob_size"]) == 4
        check("bytes_ob_sval", ok and mem(id(s) + L["bytes_ob_sval"], 4) == s)
        return
    b = b"".join([b"xy", b"z\x00q"])
    ok = mem(id(b) + L["bytes_ob_sval"], 5) == b and L["bytes_ob_sval"] + 1 == bytes.__basicsize__
    check("bytes_ob_sval", ok)
    km, cm, am = L["unicode_kind_mask"], L["unicode_compact_mask"], L["unicode_ascii_mask"]
    shift = (km & -km).bit_length() - 1
    cases = [
        ("".join(["ab", "c"]), 1, True, "latin-1"),
        ("".join(["h\xe9", "llo"]), 1, False, "latin-1"),
        ("".join(["\u0100", "\u0101z"]), 2, False, "utf-16-le"),
        ("".join(["\U0001F600", "x"]), 4, False, "utf-32-le"),
    ]
    for s, kind, ascii_, codec in cases:
        word = u32(id(s) + L["unicode_state"])
        got_kind = (word & km) >> shift
        check("unicode_kind_mask", got_kind == kind, (s, hex(word)))
        check("unicode_compact_mask", word & cm != 0, (s, hex(word)))
        check("unicode_ascii_mask", (word & am != 0) == ascii_, (s, hex(word)))
        check("unicode_length", i64(id(s) + L["unicode_length"]) == len(s))
        check("unicode_state", got_kind == kind)
        field = "unicode_ascii_size" if ascii_ else "unicode_compact_size"
        data = id(s) + L[field]
        check(field, mem(data, len(s) * kind) == s.encode(codec), s)


def check_dicts():
    keys = ["k%d" % i for i in range(5)]
    d = {}
    for i, k in enumerate(keys):
        d[k] = i
    check("dict_ma_used", i64(id(d) + L["dict_ma_used"]) == 5)
    if PY2:
        table = u64(id(d) + L["dict_ma_keys"])
        mask = i64(id(d) + L["dict_ma_values"])
        found = set(u64(table + 24 * i + 8) for i in range(mask + 1))
        ok = mask + 1 >= 8 and (mask + 1) & mask == 0 and set(map(id, keys)) <= found
        check("dict_ma_keys", ok, mask)
        check("dict_ma_values", ok, mask)
        return
    check("dict_ma_values", u64(id(d) + L["dict_ma_values"]) == 0)
    ints = {}
    for i in range(5):
        ints[1000 + i] = i
    for dd, unicode_keys in ((d, True), (ints, False)):
        k = u64(id(dd) + L["dict_ma_keys"])
        n = i64(k + L["dictkeys_nentries"])
        check("dictkeys_nentries", n == 5, n)
        if has("dictkeys_kind"):
            log2 = u8(k + L["dictkeys_size"])
            log2_bytes = u8(k + L["dictkeys_log2_index_bytes"])
            kind = u8(k + L["dictkeys_kind"])
            size = 1 << log2
            width = 1 if size <= 0xFF else 2 if size <= 0xFFFF else 4
            check("dictkeys_log2_index_bytes", 1 << log2_bytes == size * width, log2_bytes)
            # DICT_KEYS_GENERAL = 0, DICT_KEYS_UNICODE = 1 (pycore_dict.h)
            check("dictkeys_kind", kind == (1 if unicode_keys else 0), kind)
            entries = k + L["dictkeys_indices"] + (1 << log2_bytes)
            esize, key_at = (16, 0) if kind else (24, 8)
        else:
            size = i64(k + L["dictkeys_size"])
            width = 1 if size <= 0xFF else 2 if size <= 0xFFFF else 4
            entries = k + L["dictkeys_indices"] + size * width
            esize, key_at = 24, 8
        check("dictkeys_size", size >= 8 and size & (size - 1) == 0, size)
        got = [u64(entries + esize * i + key_at) for i in range(5)]
        ok = got == [id(x) for x in dd]
        check("dictkeys_indices", ok, "entries do not hold the keys in insertion order")
        check("dict_ma_keys", ok)


# --- values of locals (`dump --locals`) ---------------------------------------------------------


def _outer(a, b, *args, **kw):
    x = 1

    def inner():
        return a + x

    return inner


def _comprehension():
    y = [q for q in range(3)]
    return y


def _obj(addr):
    return ctypes.cast(addr, ctypes.py_object).value


def check_values():
    import inspect
    import struct

    code = _outer.__code__
    c = id(code)
    check("code_argcount", i32(c + L["code_argcount"]) == code.co_argcount == 2)
    if has("code_kwonlyargcount"):
        check("code_kwonlyargcount", i32(c + L["code_kwonlyargcount"]) == code.co_kwonlyargcount)
    check("code_nlocals", i32(c + L["code_nlocals"]) == code.co_nlocals)
    check("code_flags", i32(c + L["code_flags"]) == code.co_flags)
    plain = _comprehension.__code__.co_flags
    check("code_flag_varargs", L["code_flag_varargs"] == inspect.CO_VARARGS
          and code.co_flags & L["code_flag_varargs"] and not plain & L["code_flag_varargs"])
    check("code_flag_varkeywords", L["code_flag_varkeywords"] == inspect.CO_VARKEYWORDS
          and code.co_flags & L["code_flag_varkeywords"]
          and not plain & L["code_flag_varkeywords"])
    for field in ("code_varnames", "code_cellvars", "code_freevars"):
        if has(field):
            attr = getattr(code, "co_" + field[len("code_"):])
            check(field, u64(c + L[field]) == id(attr), field)
    inner = _outer(1, 2).__code__
    if has("code_freevars"):
        check("code_freevars", u64(id(inner) + L["code_freevars"]) == id(inner.co_freevars))
    if has("code_localsplusnames"):
        for co, cells in ((code, ("a", "x")), (inner, ())):
            names = _obj(u64(id(co) + L["code_localsplusnames"]))
            want = co.co_varnames + tuple(
                n for n in co.co_cellvars if n not in co.co_varnames) + co.co_freevars
            check("code_localsplusnames", names == want, (names, want))
            check("code_nlocalsplus", i32(id(co) + L["code_nlocalsplus"]) == len(names))
            kinds = bytearray(_obj(u64(id(co) + L["code_localspluskinds"])))
            check("code_localspluskinds", len(kinds) == len(names), kinds)
            for name, k in zip(names, kinds):
                local = name in co.co_varnames
                cell = name in co.co_cellvars
                free = name in co.co_freevars
                check("co_fast_local", bool(k & L["co_fast_local"]) == local, (name, k))
                check("co_fast_cell", bool(k & L["co_fast_cell"]) == cell, (name, k))
                check("co_fast_free", bool(k & L["co_fast_free"]) == free, (name, k))
        if has("co_fast_hidden"):
            # An inlined comprehension in a class body: its variable is a hidden fast local of
            # the class body's code (a function's comprehension variables are plain locals).
            module = compile("class C:\n    y = [q for q in range(3)]\n", "<hidden>", "exec")
            co = [k for k in module.co_consts if hasattr(k, "co_code")][0]
            names = _obj(u64(id(co) + L["code_localsplusnames"]))
            kinds = bytearray(_obj(u64(id(co) + L["code_localspluskinds"])))
            hidden = [n for n, k in zip(names, kinds) if k & L["co_fast_hidden"]]
            check("co_fast_hidden", "q" in hidden, (names, kinds))
    cell = _outer(1, 2).__closure__[0]
    check("cell_ob_ref", u64(id(cell) + L["cell_ob_ref"]) == id(cell.cell_contents))
    f = 1.5
    got = struct.unpack("<d", mem(id(f) + L["float_ob_fval"], 8))[0]
    check("float_ob_fval", got == f, got)
    t = (object(), object())
    check("tuple_ob_item", u64(id(t) + L["tuple_ob_item"] + 8) == id(t[1]))
    lst = [object(), object(), object()]
    items = u64(id(lst) + L["list_ob_item"])
    check("list_ob_item", u64(items + 16) == id(lst[2]))
    check("list_allocated", len(lst) <= i64(id(lst) + L["list_allocated"]) <= 64)
    members = [1000 + i for i in range(6)]
    st = set(members)
    check("set_used", i64(id(st) + L["set_used"]) == 6)
    mask = i64(id(st) + L["set_mask"])
    table = u64(id(st) + L["set_table"])
    size = L["setentry_size"]
    entries = [(u64(table + i * size + L["setentry_key"]),
                i64(table + i * size + L["setentry_hash"])) for i in range(mask + 1)]
    live = dict((k, h) for k, h in entries if k)
    ok = mask + 1 >= 8 and (mask + 1) & mask == 0 and set(map(id, members)) == set(live)
    check("set_mask", ok, mask)
    check("set_table", ok)
    check("setentry_size", ok and size >= 16, size)
    check("setentry_key", ok)
    check("setentry_hash", ok and all(live[id(m)] == hash(m) for m in members))
    check("type_name", ctypes.string_at(u64(id(int) + L["type_name"])) == b"int")

    class Heap(object):
        pass

    def flags(ty):
        return u64(id(ty) + L["type_flags"])

    heap = L["tpflags_heaptype"]
    check("tpflags_heaptype", flags(Heap) & heap and not flags(int) & heap, heap)
    info = sys.long_info if PY2 else sys.int_info
    check("long_digit_bits", L["long_digit_bits"] == info.bits_per_digit)
    check("long_digit_size", L["long_digit_size"] == info.sizeof_digit)
    if has("long27_digit"):
        n = long(2) ** 40 + 5  # noqa: F821 (Python 2 only)
        got = u32(id(n) + L["long27_digit"])
        check("long27_digit", got == 5 and i64(id(n) + L["pyvarobject_ob_size"]) == 2, got)
    if has("unicode27_str"):
        u = u"h\xe9llo\u4e2d"
        width = L["unicode27_char_size"]
        check("unicode27_char_size", width == (4 if sys.maxunicode > 0xFFFF else 2), width)
        check("unicode27_length", i64(id(u) + L["unicode27_length"]) == len(u))
        data = u64(id(u) + L["unicode27_str"])
        codec = "utf-32-le" if width == 4 else "utf-16-le"
        check("unicode27_str", mem(data, len(u) * width) == u.encode(codec))


# --- exceptions (`--mode exception`) ----------------------------------------------------------


def check_exceptions():
    # The exception being handled: inside an `except` block it is `exc_type` (<=3.6), or the
    # thread's own `_PyErr_StackItem` that `exc_info` points to holds it (its type until 3.10,
    # the instance from 3.11); inside a generator, `exc_info` points to the generator's item,
    # whose `previous_item` is the thread's own.
    tstate = PyThreadState_Get()
    try:
        raise ValueError("selfcheck")
    except ValueError as e:
        held = id(ValueError) if SHAPE["exc_model"] in ("ThreadTypes", "StackTypes") else id(e)
        if has("tstate_exc_type"):
            check("tstate_exc_type", u64(tstate + L["tstate_exc_type"]) == held)
            return
        own = tstate + L["tstate_exc_state"]
        top = u64(tstate + L["tstate_exc_info"])
        check("tstate_exc_info", top == own, (top, own))
        check("tstate_exc_state", top == own, (top, own))
        check("stackitem_exc", u64(own + L["stackitem_exc"]) == held)

    def gen():
        # Read while it runs: a generator unlinks its item when it yields.
        top = u64(tstate + L["tstate_exc_info"])
        yield top, u64(top + L["stackitem_previous"])

    item, previous = next(gen())
    check("stackitem_previous", item != own and previous == own, (item, previous, own))


# --- _Py_DebugOffsets (3.13+): the interpreter's own description of itself -------------------

DEBUG_MAP = [
    ("runtime_interpreters_head", "runtime_state.interpreters_head"),
    ("interp_next", "interpreter_state.next"),
    ("interp_tstate_head", "interpreter_state.threads_head"),
    ("interp_id", "interpreter_state.id"),
    ("interp_modules", "interpreter_state.imports_modules"),
    ("interp_ceval_gil", "interpreter_state.ceval_gil"),
    ("tstate_size", "thread_state.size"),
    ("tstate_next", "thread_state.next"),
    ("tstate_interp", "thread_state.interp"),
    ("tstate_prev", "thread_state.prev"),
    ("tstate_current_frame", "thread_state.current_frame"),
    ("tstate_thread_id", "thread_state.thread_id"),
    ("tstate_native_thread_id", "thread_state.native_thread_id"),
    ("tstate_datastack_chunk", "thread_state.datastack_chunk"),
    ("tstate_current_exception", "thread_state.current_exception"),
    ("tstate_exc_state", "thread_state.exc_state"),
    ("iframe_size", "interpreter_frame.size"),
    ("iframe_previous", "interpreter_frame.previous"),
    ("iframe_code", "interpreter_frame.executable"),
    ("iframe_instr_ptr", "interpreter_frame.instr_ptr"),
    ("iframe_localsplus", "interpreter_frame.localsplus"),
    ("iframe_owner", "interpreter_frame.owner"),
    ("iframe_stackpointer", "interpreter_frame.stackpointer"),
    ("iframe_tlbc_index", "interpreter_frame.tlbc_index"),
    ("code_size", "code_object.size"),
    ("code_filename", "code_object.filename"),
    ("code_name", "code_object.name"),
    ("code_qualname", "code_object.qualname"),
    ("code_linetable", "code_object.linetable"),
    ("code_firstlineno", "code_object.firstlineno"),
    ("code_code_adaptive", "code_object.co_code_adaptive"),
    ("code_tlbc", "code_object.co_tlbc"),
    ("pyobject_size", "pyobject.size"),
    ("pyobject_ob_type", "pyobject.ob_type"),
    ("type_flags", "type_object.tp_flags"),
    ("type_basicsize", "type_object.tp_basicsize"),
    ("type_dictoffset", "type_object.tp_dictoffset"),
    ("heaptype_cached_keys", "heap_type_object.ht_cached_keys"),
    ("dict_ma_keys", "dict_object.ma_keys"),
    ("dict_ma_values", "dict_object.ma_values"),
    ("long_lv_tag", "long_object.lv_tag"),
    ("long_digit", "long_object.ob_digit"),
    ("pyvarobject_ob_size", "bytes_object.ob_size"),
    ("bytes_ob_sval", "bytes_object.ob_sval"),
    ("unicode_state", "unicode_object.state"),
    ("unicode_length", "unicode_object.length"),
    ("unicode_ascii_size", "unicode_object.asciiobject_size"),
    ("unicode_compact_size", "unicode_object.compactunicodeobject_size"),
    ("code_argcount", "code_object.argcount"),
    ("code_localsplusnames", "code_object.localsplusnames"),
    ("code_localspluskinds", "code_object.localspluskinds"),
    ("tuple_ob_item", "tuple_object.ob_item"),
    ("list_ob_item", "list_object.ob_item"),
    ("float_ob_fval", "float_object.ob_fval"),
    ("type_name", "type_object.tp_name"),
    ("set_used", "set_object.used"),
    ("set_mask", "set_object.mask"),
    ("set_table", "set_object.table"),
]


def check_generators():
    # 3.14+ (`strobe dump --async`): a generator suspended in `yield from` (what an `await`
    # compiles to) embeds its frame at gi_iframe and is in state FRAME_SUSPENDED_YIELD_FROM; the
    # generator it delegates to is merely suspended. Source text: 2.7 cannot parse `yield from`.
    if not has("gen_iframe"):
        return
    ns = {}
    exec("def leaf():\n    yield 1\ndef outer():\n    yield from leaf()\n", ns)
    g = ns["outer"]()
    next(g)
    inner = g.gi_yieldfrom
    for gen in (g, inner):
        code = u64(id(gen) + L["gen_iframe"] + L["iframe_code"]) & MASK
        check("gen_iframe", code == id(gen.gi_code), (code, id(gen.gi_code)))
    state = ctypes.c_int8.from_address(id(g) + L["gen_frame_state"]).value
    inner_state = ctypes.c_int8.from_address(id(inner) + L["gen_frame_state"]).value
    want = L["frame_suspended_yield_from"]
    check("gen_frame_state", state != inner_state, (state, inner_state))
    check("frame_suspended_yield_from", state == want, (state, want))


def check_debug_offsets():
    if not DBG:
        return
    rt = ctypes.addressof(ctypes.c_char.in_dll(ctypes.pythonapi, "_PyRuntime"))

    def live(name):
        return u64(rt + DBG[name])

    check("debug:cookie", mem(rt + DBG["cookie"], 8) == b"xdebugpy")
    check("debug:version", live("version") == sys.hexversion, hex(live("version")))
    check("debug:free_threaded", live("free_threaded") == L["free_threaded"])
    same_release = sys.hexversion == L["header_version"]
    for field, name in DEBUG_MAP:
        if field not in L or name not in DBG:
            continue
        if field == "tstate_size" and not same_release:
            # PyThreadState can grow at its end within a minor line (3.13.0 vs later 3.13.x).
            out("NOTE tstate_size %d, this release reports %d" % (L[field], live(name)))
            continue
        check(field, live(name) == L[field], "%s: live %d, table %d" % (name, live(name), L[field]))
    # The GIL offsets are relative to PyInterpreterState there, to the GIL struct in the table.
    gil = "interpreter_state.gil_runtime_state"
    for field, name in (("gil_locked", "_locked"), ("gil_last_holder", "_holder")):
        if field in L and gil + name in DBG:
            delta = live(gil + name) - live(gil)
            check(field, delta == L[field], (delta, L[field]))
    # The collector flag is relative to `struct _gc_runtime_state` there, to the interpreter in
    # the table.
    if "gc_collecting" in L and "gc.collecting" in DBG:
        got = live("interpreter_state.gc") + live("gc.collecting")
        check("gc_collecting", got == L["gc_collecting"], (got, L["gc_collecting"]))


def main():
    ready = threading.Event()
    done = threading.Event()

    def other():
        ready.set()
        done.wait()

    t = threading.Thread(target=other)
    t.start()
    ready.wait()
    try:
        check_threads()
        check_gc()
        caller_of_frame_checks()
        check_code()
        check_objects()
        check_strings()
        check_dicts()
        check_values()
        check_generators()
        check_exceptions()
        check_debug_offsets()
    finally:
        done.set()
        t.join()
    out("DONE %s" % sys.version.split()[0])


main()
