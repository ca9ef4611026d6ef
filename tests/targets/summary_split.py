# -*- coding: utf-8 -*-
"""Target for the end-of-record summary test: a known split, measured by the target itself.

The main thread alternates heavy() and light(); heavy() does three times light()'s iterations.
Each round's size is drawn at random (seeded), so no period of the target lines up with the
sampler's. The target measures with its own wall clock how long it spends in each function
(a wall-clock sampler's samples fall in proportion to wall time) and, when its stdin closes,
prints `SPENT heavy=S light=S total=S` (seconds since READY) and exits. Valid on 2.7 and 3.x.
"""
import os
import random
import select
import sys
import time

now = getattr(time, "perf_counter", time.time)


def heavy(n):
    s = 0
    for i in range(3 * n):
        s += i
    return s


def light(n):
    s = 0
    for i in range(n):
        s += i
    return s


def main():
    rng = random.Random(16)
    spent_heavy = spent_light = 0.0
    sys.stdout.write("READY %d\n" % os.getpid())
    sys.stdout.flush()
    start = now()
    while True:
        n = rng.randint(4000, 12000)
        t0 = now()
        heavy(n)
        t1 = now()
        light(n)
        t2 = now()
        spent_heavy += t1 - t0
        spent_light += t2 - t1
        # Readable with nothing written: stdin was closed.
        if select.select([sys.stdin], [], [], 0)[0]:
            break
    total = now() - start
    sys.stdout.write("SPENT heavy=%.6f light=%.6f total=%.6f\n" % (spent_heavy, spent_light, total))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
