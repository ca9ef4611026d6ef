# The target of benches/native_compare.sh: THREADS threads (argv[1]) each calling into C in a
# loop (zlib.crc32 over 64 KiB: native code under a Python line, releasing nothing), counting
# iterations. Every 0.25 s the main thread prints "RATE <iterations per second>" over the last
# interval, after a first "READY <pid>" line. Runs until killed.
import os
import sys
import threading
import time
import zlib

THREADS = int(sys.argv[1]) if len(sys.argv) > 1 else 1
DATA = os.urandom(64 * 1024)
counts = [0] * THREADS


def work(i):
    while True:
        zlib.crc32(DATA)
        counts[i] += 1


for i in range(THREADS):
    t = threading.Thread(target=work, args=(i,), name="worker-%d" % i)
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
