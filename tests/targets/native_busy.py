# strobe record --native target (tests/integration/native_record.rs): THREADS threads (argv[1],
# default 3) each sort arrays with libc's qsort through ctypes, comparing in Python, for ever:
# Python -> C (qsort) -> Python (compare) while running, and waiting for the GIL in the kernel
# while another thread holds it. Prints "READY <pid>" once every thread runs; runs on 2.7 and
# 3.x. Closing stdin ends it.
import ctypes
import os
import sys
import threading

libc = ctypes.CDLL("libc.so.6")
CMP = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_int), ctypes.POINTER(ctypes.c_int))


def compare(a, b):
    return a[0] - b[0]  # @line:compare


COMPARE = CMP(compare)


def sort_forever(started):
    started.set()
    n = 64
    while True:
        arr = (ctypes.c_int * n)(*range(n, 0, -1))
        libc.qsort(arr, n, ctypes.sizeof(ctypes.c_int), COMPARE)  # @line:qsort


threads = int(sys.argv[1]) if len(sys.argv) > 1 else 3
for i in range(threads):
    started = threading.Event()
    t = threading.Thread(target=sort_forever, args=(started,), name="sorter-%d" % i)
    t.daemon = True
    t.start()
    started.wait()
sys.stdout.write("READY %d\n" % os.getpid())
sys.stdout.flush()
os.read(0, 1)  # @line:main
