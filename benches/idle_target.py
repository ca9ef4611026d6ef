"""A benchmark target: one thread DEPTH Python frames deep (50 by default), asleep.

    python idle_target.py [DEPTH]

Prints READY once the stack is built, then sleeps in time.sleep() until killed. Used by
benches/dump_latency.sh, where every tool dumps the same process.
"""
import sys
import time

DEPTH = int(sys.argv[1]) if len(sys.argv) > 1 else 50


def bottom():
    sys.stdout.write("READY\n")
    sys.stdout.flush()
    while True:
        time.sleep(3600)


def rec(k):
    if k == 0:
        return bottom()
    return rec(k - 1)


# <module>, DEPTH - 2 calls of rec, and bottom: DEPTH frames.
rec(DEPTH - 3)
