# Checks python-abi's asyncio table for CPython 3.8-3.13 (src/asyncio_legacy.rs) against the
# interpreter running this script.
#
# python-abi/tests/live_asyncio.rs passes the table as NAME=VALUE arguments (lists comma
# separated). The script makes tasks in a known state, reads them, their coroutines and its own
# thread state through ctypes at those offsets, and compares with what asyncio reports (id(),
# task.get_coro(), coro.cr_await, ...). Output: "PASS name", "FAIL name: detail", "DONE".
# The Rust side requires a PASS for every name it passed and no FAIL.
import asyncio
import ctypes
import sys

import _asyncio

A = {}
for _arg in sys.argv[1:]:
    _k, _v = _arg.split("=", 1)
    A[_k] = int(_v) if _v.lstrip("-").isdigit() else _v


def out(line):
    print(line)
    sys.stdout.flush()


def check(name, ok, detail=""):
    out(("PASS %s" % name) if ok else ("FAIL %s: %r" % (name, detail)))


def u64(a):
    return ctypes.c_uint64.from_address(a).value


def i32(a):
    return ctypes.c_int32.from_address(a).value


def i8(a):
    return ctypes.c_int8.from_address(a).value


def u8(a):
    return ctypes.c_uint8.from_address(a).value


ctypes.pythonapi.PyThreadState_Get.restype = ctypes.c_void_p


def names(key):
    v = A.get(key, "")
    return [n for n in v.split(",") if n]


async def inner(fut):
    await fut


async def outer(fut):
    await inner(fut)


async def plain_yield():
    # A generator-based step that suspends in a bare `yield`, not an `await`.
    await asyncio.sleep(0)
    await asyncio.sleep(3600)


async def main():
    loop = asyncio.get_running_loop()
    fut = loop.create_future()
    task = asyncio.ensure_future(outer(fut))
    task.set_name("probe-task")
    doomed = asyncio.ensure_future(outer(loop.create_future()))
    done = asyncio.ensure_future(asyncio.sleep(0))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    doomed.cancel()
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    t = id(task)
    coro = task.get_coro()

    # The module's containers.
    weak = names("weak_sets")
    found = set()
    for attr in weak:
        ws = getattr(_asyncio, attr)
        ok = type(ws).__name__ == "WeakSet" and type(ws.data) is set
        refs = list(ws.data)
        ok = ok and all(u64(id(r) + A["weakref_object"]) == id(r()) for r in refs if r() is not None)
        found |= {id(r()) for r in refs if r() is not None}
        check("weak_sets", ok and refs, (attr, type(ws)))
    check("weakref_object", t in found, "task not in the weak sets")
    for attr in names("sets"):
        check("sets", type(getattr(_asyncio, attr)) is set, attr)
    if not names("sets"):
        check("sets", not hasattr(_asyncio, "_eager_tasks"), "the module has _eager_tasks")
    cur = getattr(_asyncio, A["current_tasks"])
    check("current_tasks", type(cur) is dict and cur.get(loop) is asyncio.current_task(), cur)

    # TaskObj.
    check("task_size", type(task).__basicsize__ == A["task_size"], type(task).__basicsize__)
    check("fut_loop", u64(t + A["fut_loop"]) == id(loop))
    states = (i32(t + A["fut_state"]), i32(id(doomed) + A["fut_state"]), i32(id(done) + A["fut_state"]))
    check("fut_state", states == (0, 1, 2) and doomed.cancelled() and done.done(), states)
    check("task_fut_waiter", u64(t + A["task_fut_waiter"]) == id(task._fut_waiter) == id(fut))
    check("task_coro", u64(t + A["task_coro"]) == id(coro))
    check("task_name", u64(t + A["task_name"]) == id(task.get_name()))
    # An unnamed task: its name, or (3.12+) the int N of the name "Task-N" until asked for it.
    unnamed = asyncio.ensure_future(asyncio.sleep(0))
    held = ctypes.cast(u64(id(unnamed) + A["task_name"]), ctypes.py_object).value
    ctypes.pythonapi.Py_IncRef(ctypes.py_object(held))
    name = unnamed.get_name()
    ok = held == name if type(held) is str else "Task-%d" % held == name
    check("task_name", ok, (held, name))
    await unnamed

    # What the innermost coroutine awaits: an _asyncio.FutureIter over the future.
    innermost = coro.cr_await
    it = innermost.cr_await
    check(
        "future_iter_future",
        type(it).__name__ == "FutureIter" and u64(id(it) + A["future_iter_future"]) == id(fut),
        type(it),
    )

    # The coroutine's frame and its awaited object (`cr_await` is CPython's `_PyGen_yf`).
    gen = plain_yield()
    gen.send(None)  # suspended in asyncio.sleep(0)'s bare `yield` (a generator, not await)
    sleep0 = gen.cr_await.cr_await  # asyncio.sleep's coroutine awaits the `__sleep0` generator
    model = A["coro"]
    if model in ("StackTop38", "StackDepth310"):
        frame = u64(id(coro) + A["gi_frame"])
        check("gi_frame", frame == id(coro.cr_frame))
        code = coro.cr_code
        check("co_code", u64(id(code) + A["co_code"]) == id(code.co_code))
        # The C member: bytes in 3.8-3.9, code units in 3.10 (whose Python getter doubles it).
        lasti = i32(frame + A["frame_lasti"])
        if model == "StackTop38":
            nxt = code.co_code[lasti + 2]
        else:
            nxt = code.co_code[(lasti + 1) * 2]
        check("yield_from", nxt == A["yield_from"], nxt)
        if model == "StackTop38":
            top = u64(frame + A["f_stacktop"])
            check("f_stacktop", top != 0 and u64(top - 8) == id(coro.cr_await))
        else:
            depth = i32(frame + A["f_stackdepth"])
            stack = u64(frame + A["f_valuestack"])
            check("f_stackdepth", depth >= 1 and u64(stack + 8 * (depth - 1)) == id(coro.cr_await))
            check("f_valuestack", stack > frame)
            st = i8(frame + A["f_state"])
            check("f_state", st == A["suspended"], st)
            check("suspended", st == A["suspended"], st)
        # The bare yield of `__sleep0` is not an await.
        f2 = sleep0.gi_frame
        lasti2 = i32(id(f2) + A["frame_lasti"])
        if model == "StackTop38":
            bare = f2.f_code.co_code[lasti2 + 2]
        else:
            bare = f2.f_code.co_code[(lasti2 + 1) * 2]
        check("yield_from", bare != A["yield_from"] and sleep0.gi_yieldfrom is None, bare)
    else:
        it = id(coro) + A["gi_iframe"]
        state = i8(id(coro) + A["gi_frame_state"])
        check("gi_frame_state", state == A["suspended_yield_from"], state)
        check("suspended_yield_from", state == A["suspended_yield_from"], state)
        stacktop = i32(it + A["stacktop"])
        localsplus = A["iframe_localsplus"]
        check(
            "stacktop",
            0 < stacktop < 64 and u64(it + localsplus + 8 * (stacktop - 1)) == id(coro.cr_await),
            stacktop,
        )
        check("gi_iframe", u64(it + A["iframe_code"]) & A["stackref_mask"] == id(coro.cr_code))
        ops = [int(o) for o in names("resume_ops")]
        if ops:
            # 3.11-3.12: the code unit after prev_instr is RESUME (or a variant) with arg >= 2
            # in an await, and not after the bare yield of asyncio.sleep(0)'s `__sleep0`.
            def after(g, frame_addr):
                ip = u64(frame_addr + A["iframe_instr_ptr"])
                return u8(ip + 2), u8(ip + 3)

            op, arg = after(coro, it)
            s_op, s_arg = after(sleep0, id(sleep0) + A["gi_iframe"])
            ok = op in ops and arg >= 2 and not (s_op in ops and s_arg >= 2)
            ok = ok and sleep0.gi_yieldfrom is None
            check("resume_ops", ok, (op, arg, s_op, s_arg))
        else:
            s_state = i8(id(sleep0) + A["gi_frame_state"])
            check("resume_ops", s_state != A["suspended_yield_from"], s_state)
    gen.close()

    # The thread's running loop.
    ts = ctypes.pythonapi.PyThreadState_Get()
    if A["running_loop"] == "ThreadDict":
        get_dict = ctypes.pythonapi.PyThreadState_GetDict
        get_dict.restype = ctypes.py_object
        tdict = get_dict()
        # The function returns a borrowed reference, which ctypes will release: own one.
        ctypes.pythonapi.Py_IncRef(ctypes.py_object(tdict))
        check("tstate_dict", u64(ts + A["tstate_dict"]) == id(tdict))
        holder = tdict.get("__asyncio_running_event_loop__")
        if "holder_loop" in A:
            ok = holder is not None and u64(id(holder) + A["holder_loop"]) == id(loop)
            check("holder_loop", ok, type(holder))
        else:
            check("running_loop", holder is loop, type(holder))
        if "holder_loop" in A:
            check("running_loop", True)
        del holder
    else:
        check("running_loop", u64(ts + A["tstate_size"]) == id(loop), A["tstate_size"])

    for t2 in (task, doomed, done):
        t2.cancel()
    fut.cancel()
    await asyncio.gather(task, doomed, done, return_exceptions=True)


asyncio.run(main())
out("DONE %s" % sys.version.split()[0])
