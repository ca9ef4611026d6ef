# -*- coding: utf-8 -*-
"""Target for the aliasing test: alternates 3 ms in `burst_a` and 1 ms in `burst_b`.

Usage: record_bursts.py SECONDS TIMELINE. The cycle is exactly 4 ms of wall time because every
burst ends at an absolute time (origin + k * 4 ms + 3 ms, then + 4 ms): overheads and
preemption do not shift the phase. A sampler with a fixed 4 ms (250 Hz) period, or one whose
samples land on the kernel's 4 ms scheduler tick, sees the same phase over and over.

Printed after READY: `ORIGIN <unix seconds>`, the wall-clock time of the first cycle's start,
so a test can place any sample in the schedule. On a loaded machine the target is preempted
and the bursts it really ran drift from the schedule, so it also records when each burst
really started: TIMELINE gets one `a <unix seconds>` or `b <unix seconds>` line per burst
and an `end <unix seconds>` line, written before it prints `SPLIT <seconds in a> <seconds in
b>` and exits.
"""
import sys
import time

clock = getattr(time, "perf_counter", time.time)
CYCLE = 0.004
A_PART = 0.003

LOG = []


def burst_a(until):
    LOG.append(("a", clock()))
    while clock() < until: pass  # @line:a


def burst_b(until):
    LOG.append(("b", clock()))
    while clock() < until: pass  # @line:b


def unix_offset():
    """time.time() - clock(), read where the two reads are closest together."""
    best = None
    for _ in range(20):
        before = clock()
        unix = time.time()
        after = clock()
        if best is None or after - before < best[0]:
            best = (after - before, unix - (before + after) / 2)
    return best[1]


def main():
    seconds = float(sys.argv[1])
    offset = unix_offset()
    t = clock()
    end = t + seconds
    sys.stdout.write("READY\nORIGIN %.6f\n" % (t + offset))
    sys.stdout.flush()
    while t < end:
        burst_a(t + A_PART)
        burst_b(t + CYCLE)
        t += CYCLE
    LOG.append(("end", clock()))
    spent = {"a": 0.0, "b": 0.0}
    with open(sys.argv[2], "w") as f:
        for i, (what, at) in enumerate(LOG):
            f.write("%s %.6f\n" % (what, at + offset))
            if what != "end":
                spent[what] += LOG[i + 1][1] - at
    sys.stdout.write("SPLIT %.6f %.6f\n" % (spent["a"], spent["b"]))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
