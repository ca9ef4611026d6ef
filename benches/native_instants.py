"""The analysis of benches/native_instants.sh: each worker sample of a strobe recording against
the state the kernel had that worker in at the sample's instant, and the time the workers spent
in each state with and without the recording.

  native_instants.py WORKERS SWITCH.txt PROFILE.json|- [UNWATCHED.txt]

SWITCH.txt: `perf script` of a system-wide `sched:sched_switch` recording with callchains,
taken with `perf record -k CLOCK_MONOTONIC` while strobe recorded. PROFILE.json: that
recording as a Firefox Profiler (gecko) file, whose samples carry times since its
`meta.startTime` (Unix ms), or `-` for none (the state shares only). UNWATCHED.txt: the same trace taken with no profiler running.

A worker's state between two of its context switches:
  cpu         switched in, on a CPU
  pre user    switched out preempted (state R) in user space, waiting for a CPU
  pre sys     switched out preempted inside a system call (entry_SYSCALL in its callchain)
  stop user   switched out into a ptrace stop (state t): our stop, and the wait for a CPU after
  stop sys    the same, inside a system call
  idle        switched out asleep
A sample's own class is whether its innermost frame is `[syscall]`. If strobe reads each
thread right, samples taken in a `pre sys` state are `[syscall]` and those in `pre user` are
not; how the time shares differ between the two traces is what the recording changed.
"""
import bisect
import collections
import json
import sys
import time

sys.path.insert(0, __import__("os").path.dirname(__file__))
from native_truth import SWITCH, place, records  # noqa: E402

STATES = ["cpu", "pre user", "pre sys", "stop user", "stop sys", "idle"]


def timelines(path, workers):
    """Per worker, its states in time order: [(t, state)]."""
    tl = collections.defaultdict(list)
    for head, frames in records(path):
        m = SWITCH.match(head)
        if not m:
            continue
        t, prev, st, nxt = float(m.group(2)), int(m.group(3)), m.group(4), int(m.group(5))
        if prev in workers:
            where = "sys" if "[syscall]" in place(frames) else "user"
            if st.startswith("R"):
                tl[prev].append((t, "pre " + where))
            elif st.startswith("t"):
                tl[prev].append((t, "stop " + where))
            else:
                tl[prev].append((t, "idle"))
        if nxt in workers:
            tl[nxt].append((t, "cpu"))
    return tl


def shares(tl):
    time_in = collections.Counter()
    for v in tl.values():
        for (ta, s), (tb, _) in zip(v, v[1:]):
            time_in[s] += tb - ta
    total = sum(time_in.values()) or 1
    return {s: time_in[s] / total for s in STATES}


def state_at(line, times, t):
    i = bisect.bisect_right(times, t) - 1
    return line[i][1] if i >= 0 else None


def main():
    workers = {int(w) for w in sys.argv[1].split(",")}
    tl = timelines(sys.argv[2], workers)
    got = collections.Counter()
    rounds = collections.defaultdict(set)
    if sys.argv[3] != "-":
        sample(tl, workers, json.load(open(sys.argv[3])), got, rounds)
    missed = collections.Counter()
    times = {tid: [x[0] for x in v] for tid, v in tl.items()}
    for t, sampled in rounds.items():
        for tid in workers - sampled:
            missed[state_at(tl[tid], times[tid], t)] += 1
    during = shares(tl)
    alone = shares(timelines(sys.argv[4], workers)) if len(sys.argv) > 4 else None
    stops = collections.Counter(s for v in tl.values() for _, s in v if s.startswith("stop"))
    t0, t1 = span(tl)
    print("%.2f s of trace, %d worker samples at %d instants; stops: %d in user space, %d in"
          " a system call" % (t1 - t0, sum(got.values()), len(rounds), stops["stop user"],
                              stops["stop sys"]))
    print("  %-10s %9s %9s %11s %12s %10s" % ("state", "unwatched", "recorded", "samples:",
                                              "[syscall]", "unsampled"))
    for s in STATES:
        print("  %-10s %8s %8.1f%% %11d %12d %10d" % (
            s, "%.1f%%" % (100 * alone[s]) if alone else "-", 100 * during[s],
            got[(s, False)], got[(s, True)], missed[s]))

    def in_call(sh):
        running = 1 - sh["idle"]
        return "%.1f%%" % (100 * (sh["pre sys"] + sh["stop sys"]) / running) if running else "-"

    n = sum(v for (s, _), v in got.items() if s != "idle")
    print("  off a CPU in a system call, of the running time: unwatched %s, recorded %s;"
          " samples ending in [syscall]: %s" % (
              in_call(alone) if alone else "-", in_call(during),
              "%.1f%%" % (100 * sum(v for (s, c), v in got.items() if c and s != "idle") / n)
              if n else "-"))


def span(tl):
    """The time every worker's state is known."""
    return max(v[0][0] for v in tl.values()), min(v[-1][0] for v in tl.values())


def sample(tl, workers, g, got, rounds):
    """Count the workers' samples of profile `g` by (kernel state, in a system call), and
    note which workers each instant sampled."""
    strings = g["shared"]["stringArray"]
    # Gecko times are Unix ms; the trace is CLOCK_MONOTONIC.
    offset = time.clock_gettime(time.CLOCK_REALTIME) - time.clock_gettime(time.CLOCK_MONOTONIC)
    start = g["meta"]["startTime"] / 1000.0 - offset
    t0, t1 = span(tl)
    times = {tid: [x[0] for x in v] for tid, v in tl.items()}
    for th in g["threads"]:
        tid = int(th["tid"])
        if tid not in workers:
            continue
        stacks, frames, funcs = th["stackTable"], th["frameTable"], th["funcTable"]
        for stack, ms in zip(th["samples"]["stack"], th["samples"]["time"]):
            t = start + ms / 1000.0
            if not t0 < t < t1:
                continue
            state = state_at(tl[tid], times[tid], t)
            leaf = strings[funcs["name"][frames["func"][stacks["frame"][stack]]]]
            got[(state, leaf == "[syscall]")] += 1
            rounds[t].add(tid)


if __name__ == "__main__":
    main()
