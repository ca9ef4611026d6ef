# strobe record --blocking target (tests/integration/blocking.rs): BUSY threads (argv[1],
# default 2) computing crc32 over 32 MiB in C for ever (zlib releases the GIL for each call of
# ~10 ms, so they share the CPU and hardly ever wait for the GIL), and three threads that only
# wait, each in its own system call: one sleeps (time.sleep: clock_nanosleep), one waits on a
# lock the main thread holds (a futex), and the main thread reads stdin. The whole process is
# pinned to one CPU, which the busy threads keep saturated: a thread woken from its wait by a
# freeze then waits for the CPU, typically longer than a sampling interval, on any machine.
#
# Prints "READY <pid>" once every thread has started, then "WAITERS <tid> <tid> <tid>" (the
# waiting threads' kernel ids: sleeper, lock waiter, main). Closing stdin ends it. 3.8+.
import os
import sys
import threading
import time
import zlib

BUSY = int(sys.argv[1]) if len(sys.argv) > 1 else 2
DATA = bytes(32 << 20)  # ~10 ms of crc32 per call: the GIL is rarely wanted
os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # inherited by every thread below
held = threading.Lock()
held.acquire()


def crunch(started):
    started.set()
    while True:
        zlib.crc32(DATA)  # @line:crunch


def sleep_forever(tids, started):
    tids.append(threading.get_native_id())
    started.set()
    time.sleep(3600)  # @line:sleep


def wait_on_lock(tids, started):
    tids.append(threading.get_native_id())
    started.set()
    held.acquire()  # @line:lock


def wait_for_stdin():
    os.read(0, 1)  # @line:main


for i in range(BUSY):
    started = threading.Event()
    threading.Thread(target=crunch, args=(started,), name="busy-%d" % i, daemon=True).start()
    started.wait()
tids = []
for f in (sleep_forever, wait_on_lock):
    started = threading.Event()
    threading.Thread(target=f, args=(tids, started), name=f.__name__, daemon=True).start()
    started.wait()
sys.stdout.write("READY %d\n" % os.getpid())
sys.stdout.write("WAITERS %d %d %d\n" % (tids[0], tids[1], threading.get_native_id()))
sys.stdout.flush()
wait_for_stdin()
