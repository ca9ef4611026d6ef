# Target for crates/walker/tests/threadnames.rs (runs on Python 2.7 and 3.x).
#
# Starts threads that keep their names in every place an instance can keep attributes (a plain
# Thread, a default-named one, non-ASCII names of each str kind, a subclass with many extra
# attributes, a thread whose __dict__ was materialised, a renamed thread, a _DummyThread for a
# thread not started by threading), then prints:
#   VERSION <major> <minor> <debug 0|1> <free-threaded 0|1>
#   INTERP <address of the main PyInterpreterState>
#   THREAD <ident> <hex of the UTF-8 name>      (one per thread in threading.enumerate())
#   READY
# then follows commands on stdin until it is closed, answering each with OK:
#   rename <hex of UTF-8>   renames the renamed thread
#   start <hex of UTF-8>    starts a thread of that name (first printing THREAD for it)
#   end                     ends the thread started last, and waits until it has

import binascii
import ctypes
import sys
import sysconfig
import threading

PY2 = sys.version_info[0] == 2
if PY2:
    import thread as _thread
else:
    import _thread


def native(u):
    # 2.7 thread names are byte strings: threading.py calls str() on them.
    return u.encode("utf-8") if PY2 else u


def hex_utf8(s):
    if not isinstance(s, bytes):
        s = s.encode("utf-8")
    return binascii.hexlify(s).decode("ascii")


stop = threading.Event()
running = []


def work(ev):
    ev.set()
    stop.wait()


class Many(threading.Thread):
    """Sets more attributes than any shared-keys table holds, before Thread.__init__."""

    def __init__(self, name, ev):
        for i in range(40):
            setattr(self, "extra_%d" % i, i)
        threading.Thread.__init__(self, name=name, target=work, args=(ev,))


def start(make):
    ev = threading.Event()
    t = make(ev)
    t.daemon = True
    t.start()
    running.append(ev)
    return t


start(lambda ev: threading.Thread(target=work, args=(ev,), name=native(u"w\u00f6rker-1")))
start(lambda ev: threading.Thread(target=work, args=(ev,)))
start(lambda ev: threading.Thread(target=work, args=(ev,), name=native(u"\u4e2d\u6587-2")))
start(lambda ev: Many(native(u"many-attrs"), ev))
touched = start(lambda ev: threading.Thread(target=work, args=(ev,), name="touched"))
touched.__dict__["extra"] = 1
renamed = start(lambda ev: threading.Thread(target=work, args=(ev,), name="before"))
renamed.name = native(u"renamed-\U0001F600")

dummy_ev = threading.Event()


def dummy():
    threading.current_thread()  # registers a _DummyThread in threading._active
    dummy_ev.set()
    stop.wait()


_thread.start_new_thread(dummy, ())
running.append(dummy_ev)

for ev in running:
    ev.wait()

head = ctypes.pythonapi.PyInterpreterState_Head
head.restype = ctypes.c_void_p
debug = int(hasattr(sys, "gettotalrefcount"))
free_threaded = int(bool(sysconfig.get_config_var("Py_GIL_DISABLED")))
out = ["VERSION %d %d %d %d" % (sys.version_info[0], sys.version_info[1], debug, free_threaded)]
out.append("INTERP %d" % head())
for t in threading.enumerate():
    out.append("THREAD %d %s" % (t.ident, hex_utf8(t.name)))
out.append("READY")
sys.stdout.write("\n".join(out) + "\n")
sys.stdout.flush()

late = []
while True:
    line = sys.stdin.readline()
    if not line:
        break
    words = line.split()
    if words[0] == "rename":
        renamed.name = native(binascii.unhexlify(words[1]).decode("utf-8"))
    elif words[0] == "start":
        late_stop = threading.Event()
        ev = threading.Event()
        t = threading.Thread(target=lambda: (ev.set(), late_stop.wait()))
        t.name = native(binascii.unhexlify(words[1]).decode("utf-8"))
        t.daemon = True
        t.start()
        ev.wait()
        late.append((t, late_stop))
        sys.stdout.write("THREAD %d %s\n" % (t.ident, hex_utf8(t.name)))
    elif words[0] == "end":
        t, late_stop = late.pop()
        late_stop.set()
        t.join()
        # The thread leaves _active under this lock (2.7 after waking join()).
        with threading._active_limbo_lock:
            assert t.ident not in threading._active
    sys.stdout.write("OK\n")
    sys.stdout.flush()
stop.set()
