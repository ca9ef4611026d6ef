# -*- coding: utf-8 -*-
"""Target for strobe's integration tests: a process with a known, stable set of Python stacks.

Valid on Python 2.7 and every 3.x (no f-strings). Each worker thread calls into a function of
its own and blocks in `lock.acquire()` on a lock the main thread holds, so the innermost Python
frame of every thread is ours and its line is fixed. Lines where a thread blocks carry a
`# @block:NAME` comment: the tests find the expected line numbers there, never by hard-coding.

Protocol on stdout: one line `READY`, then one JSON line describing the process and its
threads. Every line then read from stdin is answered with `pong`; end of input exits.
"""
import json
import os
import sys
import threading

DEPTH = 60
PY3 = sys.version_info[0] >= 3

LOCK = threading.Lock()
# Filled by each worker before it blocks: name -> {"ident", "native_id"}.
STARTED = {}


def native_id():
    """The kernel thread id of the calling thread, where Python can tell us."""
    get = getattr(threading, "get_native_id", None)
    if get is not None:
        return get()
    try:
        import ctypes
        # SYS_gettid is 186 on x86-64 (asm/unistd_64.h); Python < 3.8 has no get_native_id().
        return ctypes.CDLL(None).syscall(186)
    except Exception:
        return None


def announce(ready):
    me = threading.current_thread()
    STARTED[me.name] = {"ident": me.ident, "native_id": native_id()}
    ready.set()


def deep(n, ready):
    if n == 0:
        announce(ready)
        LOCK.acquire()  # @block:deep
        return 0
    return deep(n - 1, ready) + 1  # @block:deep-recurse


def gen(ready):
    announce(ready)
    LOCK.acquire()  # @block:gen
    yield 1


def run_gen(ready):
    for _ in gen(ready):  # @block:gen-caller
        pass


LAMBDA_TARGET = lambda ready: (announce(ready), LOCK.acquire())  # @block:lambda


class Worker(object):
    def run_job(self, ready):
        announce(ready)
        LOCK.acquire()  # @block:method


# A function with a non-ASCII name only parses on Python 3. It is compiled from this string with
# the file's own name and padded so that its lines are the lines it occupies in this file.
GRUSSE_SOURCE = u'''
def grüße(ready):
    announce(ready)
    LOCK.acquire()  # @block:unicode
'''


def define_grusse():
    here = sys._getframe().f_code.co_filename
    start = 0
    with open(os.path.abspath(__file__), "rb") as f:
        for number, line in enumerate(f.read().decode("utf-8").splitlines(), 1):
            if line.startswith("GRUSSE_SOURCE = "):
                start = number
                break
    padded = u"\n" * (start - 1) + GRUSSE_SOURCE
    namespace = {}
    exec(compile(padded, here, "exec"), globals(), namespace)
    return namespace[u"gr\u00fc\u00dfe"]


def block_lines():
    """Line numbers of this file's `# @block:` markers."""
    lines = set()
    with open(os.path.abspath(__file__), "rb") as f:
        for number, line in enumerate(f.read().decode("utf-8").splitlines(), 1):
            if "# @block:" in line:
                lines.add(number)
    return lines


def wait_until_blocked(idents):
    """Return once every worker's innermost frame is on its `# @block:` line.

    A worker announces itself just before it blocks; this closes the gap between the
    announcement and the call, so a reader attaching after READY sees the final stacks.
    """
    lines = block_lines()
    while True:
        frames = sys._current_frames()
        if all(i in frames and frames[i].f_lineno in lines for i in idents):
            return
        # Let the workers run: this releases the GIL without sleeping for a fixed time.
        threading.Event().wait(0.001)


def start_threads():
    workers = [
        ("deep", deep, (DEPTH,)),
        ("gen", run_gen, ()),
        ("lambda", LAMBDA_TARGET, ()),
        ("method", Worker().run_job, ()),
    ]
    if PY3:
        workers.append((u"unicode-\u00fc", define_grusse(), ()))
    for name, target, args in workers:
        ready = threading.Event()
        t = threading.Thread(target=target, args=args + (ready,), name=name)
        t.daemon = True
        t.start()
        if not ready.wait(60):
            sys.stderr.write("thread %s did not start\n" % name)
            os._exit(3)
    names = [name for name, _, _ in workers]
    wait_until_blocked([STARTED[n]["ident"] for n in names])
    return names


def main():
    LOCK.acquire()
    names = start_threads()
    me = threading.current_thread()
    STARTED[me.name] = {"ident": me.ident, "native_id": native_id()}
    info = {
        "pid": os.getpid(),
        "version": list(sys.version_info[:3]),
        "executable": sys.executable,
        "depth": DEPTH,
        "threads": [dict(STARTED[n], name=n) for n in names + [me.name]],
    }
    sys.stdout.write("READY\n" + json.dumps(info) + "\n")
    sys.stdout.flush()
    while True:
        line = sys.stdin.readline()  # @block:main
        if not line:
            os._exit(0)
        sys.stdout.write("pong\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()  # @block:main-call
