# strobe dump --native target (tests/integration/native.rs): Python -> ctypes -> libc qsort ->
# Python comparison, blocked reading stdin; a thread blocked in time.sleep, and one waiting on
# a lock that is never released.
# Prints "READY <pid>" first; runs on 2.7 and 3.x. Closing stdin ends it.
import ctypes
import os
import sys
import threading
import time

libc = ctypes.CDLL("libc.so.6")
CMP = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_int), ctypes.POINTER(ctypes.c_int))
started = threading.Event()


def sleeper():
    started.set()
    time.sleep(100000)  # @line:sleep


held = threading.Lock()
held.acquire()
waiting = threading.Event()


def waiter():
    waiting.set()
    held.acquire()  # @line:acquire


def wait_here():
    sys.stdout.write("READY %d\n" % os.getpid())
    sys.stdout.flush()
    os.read(0, 1)  # @line:read
    os._exit(0)


def compare(a, b):
    wait_here()  # @line:compare
    return a[0] - b[0]


def sort():
    arr = (ctypes.c_int * 2)(2, 1)
    libc.qsort(arr, 2, ctypes.sizeof(ctypes.c_int), CMP(compare))  # @line:qsort


t = threading.Thread(target=sleeper, name="sleeper")
t.daemon = True
t.start()
started.wait()
w = threading.Thread(target=waiter, name="waiter")
w.daemon = True
w.start()
waiting.wait()
sort()  # @line:module
