# The target of benches/native_compare.sh: THREADS threads (argv[1]) each calling into C in a
# loop (zlib.crc32 over 64 KiB: native code under a Python line, releasing nothing), counting
# iterations. Every 0.25 s the main thread prints "RATE <iterations per second>" over the last
# interval, after a first "READY <pid>" line. Runs until killed. With a second argument DEPTH,
# each thread first goes DEPTH calls deep through C (`list(map(...))`, a few hundred bytes of
# native stack per level) and computes there: native stacks of ~100 KiB or more, as a deep
# program's would be.
import os
import sys
import threading
import time
import zlib

THREADS = int(sys.argv[1]) if len(sys.argv) > 1 else 1
DEPTH = int(sys.argv[2]) if len(sys.argv) > 2 else 0
DATA = os.urandom(64 * 1024)
counts = [0] * THREADS


def work(i):
    while True:
        zlib.crc32(DATA)
        counts[i] += 1


def deep(i, depth):
    if depth == 0:
        work(i)
    list(map(lambda d: deep(i, d), [depth - 1]))


if DEPTH:
    threading.stack_size(16 << 20)
for i in range(THREADS):
    t = threading.Thread(target=deep, args=(i, DEPTH), name="worker-%d" % i)
    t.daemon = True
    t.start()
sys.stdout.write("READY %d\n" % os.getpid())
sys.stdout.flush()
last, then = 0, time.time()
while True:
    time.sleep(0.25)
    now, total = time.time(), sum(counts)
    sys.stdout.write("RATE %.1f\n" % ((total - last) / (now - then)))
    sys.stdout.flush()
    last, then = total, now
