# -*- coding: utf-8 -*-
"""Target for the aliasing test: alternates 3 ms in `burst_a` and 1 ms in `burst_b`.

Usage: record_bursts.py SECONDS. The cycle is exactly 4 ms of wall time because every burst
ends at an absolute time (start + k * 4 ms + 3 ms, then + 4 ms): overheads and preemption do
not shift the phase, so 75% / 25% is the true split. A sampler with a fixed 4 ms (250 Hz) or
1 ms / 10 ms period would see the same phase over and over.

On a loaded machine the split drifts (a burst that is preempted absorbs the delay and the
next burst is cut short), so the script also measures the wall time it really spent in each
function and prints `SPLIT <seconds in a> <seconds in b>` before exiting: the tests compare
strobe's attribution with that.
"""
import sys
import time

clock = getattr(time, "perf_counter", time.time)
CYCLE = 0.004
A_PART = 0.003


SPENT = [0.0, 0.0]


def burst_a(until):
    start = clock()
    while clock() < until: pass  # @line:a
    SPENT[0] += clock() - start


def burst_b(until):
    start = clock()
    while clock() < until: pass  # @line:b
    SPENT[1] += clock() - start


def main():
    t = clock()
    end = t + float(sys.argv[1])
    sys.stdout.write("READY\n")
    sys.stdout.flush()
    while t < end:
        burst_a(t + A_PART)
        burst_b(t + CYCLE)
        t += CYCLE
    sys.stdout.write("SPLIT %.6f %.6f\n" % (SPENT[0], SPENT[1]))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
