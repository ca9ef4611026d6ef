"""The reference of benches/native_truth.sh: which native code the target's threads run, from
the kernel's own records, and each strobe recording's distance from it.

  native_truth.py reference WORKERS CLOCK.txt SWITCH.txt   # prints the reference's shares
  native_truth.py compare REFERENCE.json COLLAPSED.txt     # prints agreement and shares

What strobe calls running is a thread on a CPU or preempted from one (runnable after a
switch-out that was a preemption); a thread woken from a wait and not yet on a CPU is idle. The
reference is the time the worker threads spend in each of those two states, split by where they
are: on a CPU by `perf record -e cpu-clock` samples of the target (their share of the on-CPU
time), preempted by `sched:sched_switch` records system-wide (the time from a switch-out in
state R to the next switch-in of that thread, at the place the switch-out's callchain names).
Places are coarse so that both sides can name them the same way: the shared object of the
innermost user-space frame, and whether the thread was in a system call (`[syscall]` as
strobe's innermost frame; `entry_SYSCALL_64` in the kernel callchain on perf's side).
Agreement is 1 - the total variation distance between the shares, as in native_agreement.sh.
"""
import collections
import json
import os
import re
import sys

KERNEL = 0xFFFF800000000000
SWITCH = re.compile(
    r"^\s*(\d+)\s+([\d.]+): sched:sched_switch: .*prev_pid=(\d+) prev_prio=\d+ "
    r"prev_state=(\S+) ==> .*next_pid=(\d+)"
)


def records(path):
    """perf script output: (header line, [(ip, symbol, dso)]) per record."""
    for rec in open(path).read().split("\n\n"):
        lines = [l for l in rec.strip("\n").split("\n") if l.strip()]
        if not lines:
            continue
        frames = []
        for l in lines[1:]:
            m = re.match(r"\s*([0-9a-f]+) (.*) \((.*)\)\s*$", l)
            if m:
                frames.append((int(m.group(1), 16), m.group(2), m.group(3)))
        yield lines[0], frames


def place(frames):
    user = [dso for ip, _, dso in frames if ip < KERNEL]
    in_call = any(sym.startswith("entry_SYSCALL") for ip, sym, _ in frames if ip >= KERNEL)
    obj = os.path.basename(user[0]) if user else "?"
    return obj + (" [syscall]" if in_call else "")


def reference(workers, clock, switch):
    workers = {int(w) for w in workers.split(",")}
    on_cpu = collections.Counter()
    for head, frames in records(clock):
        if int(head.split()[0]) in workers:
            on_cpu[place(frames)] += 1
    since, preempted_at = {}, {}
    on_time, preempted = 0.0, collections.Counter()
    for head, frames in records(switch):
        m = SWITCH.match(head)
        if not m:
            continue
        t, prev, state, nxt = float(m.group(2)), int(m.group(3)), m.group(4), int(m.group(5))
        if prev in workers:
            if prev in since:
                on_time += t - since.pop(prev)
            if state.startswith("R"):
                preempted_at[prev] = (t, place(frames))
        if nxt in workers:
            since[nxt] = t
            if nxt in preempted_at:
                t0, where = preempted_at.pop(nxt)
                preempted[where] += t - t0
    n = sum(on_cpu.values()) or 1
    time = collections.Counter({k: on_time * v / n for k, v in on_cpu.items()})
    time.update(preempted)
    total = sum(time.values()) or 1
    shares = {k: v / total for k, v in time.items()}
    run = sum(preempted.values())
    print("reference: %.2f s on a CPU, %.2f s preempted (%.0f%% of the running time)"
          % (on_time, run, 100 * run / ((on_time + run) or 1)), file=sys.stderr)
    json.dump(shares, sys.stdout)


def collapsed(path, workers_only=True):
    """Shares of a strobe collapsed file by place; stacks of the main thread (rooted in
    `_start`) are left out, as the reference covers the workers only."""
    places = collections.Counter()
    for line in open(path):
        stack, _, v = line.rstrip("\n").rpartition(" ")
        frames = stack.split(";")
        if workers_only and frames[0].startswith("_start"):
            continue
        in_call = frames[-1] == "[syscall]"
        leaf = frames[-2] if in_call and len(frames) > 1 else frames[-1]
        m = re.search(r" \(([^()]*)\)", leaf)
        obj = os.path.basename(m.group(1)) if m else "(python)"
        places[obj + (" [syscall]" if in_call else "")] += int(v)
    total = sum(places.values()) or 1
    return {k: v / total for k, v in places.items()}


def compare(ref_path, path):
    ref = json.load(open(ref_path))
    got = collapsed(path)
    tvd = 0.5 * sum(abs(ref.get(k, 0) - got.get(k, 0)) for k in set(ref) | set(got))
    top = sorted(ref, key=lambda k: -ref[k])[:3]
    print("%5.1f%%  %s" % (100 * (1 - tvd),
          "  ".join("%s %.1f%%" % (k, 100 * got.get(k, 0)) for k in top)))


if __name__ == "__main__":
    if sys.argv[1] == "reference":
        reference(*sys.argv[2:5])
    else:
        compare(*sys.argv[2:4])
