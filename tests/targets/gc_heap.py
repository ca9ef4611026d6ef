# strobe `<GC>` target (tests/integration/record_gc.rs). Runs on 2.7 and every 3.x.
#
# gc_heap.py collect: builds a large heap of reference cycles that stay alive, then calls
#   gc.collect() from one line for ever: almost all of its time is the collector traversing
#   that heap, on top of the `collect_forever` frame at the `collect` marker.
# gc_heap.py auto: the collector enabled, never called: `allocate_forever` makes reference
#   cycles that become garbage at once, at the `allocate` marker, so the automatic collections
#   run on top of it.
# gc_heap.py plain: the collector disabled, no cycles; it spins in `spin_forever` at the
#   `spin` marker, so no sample may show `<GC>`.
#
# Prints "READY <pid>" once the heap is built; closing stdin ends it.
import gc
import os
import sys
import threading


class Node(object):
    __slots__ = ("other", "payload")


def build_heap(n):
    heap = []
    for i in range(n):
        a, b = Node(), Node()
        a.other, b.other = b, a  # a cycle the collector must traverse, kept alive
        a.payload = [i, (i,), {"k": i}]
        b.payload = None
        heap.append(a)
    return heap


def collect_forever():
    while True:
        gc.collect()  # @line:collect


def allocate_forever():
    while True:
        a, b = Node(), Node()
        a.other, b.other = b, a  # @line:allocate


def spin_forever():
    x = 0
    while True:
        x = (x + 1) % 1000003  # @line:spin


def watch_stdin():
    os.read(0, 1)
    os._exit(0)


mode = sys.argv[1]
if mode == "collect":
    heap = build_heap(200000)
    work = collect_forever
elif mode == "auto":
    work = allocate_forever
else:
    gc.disable()
    work = spin_forever
watcher = threading.Thread(target=watch_stdin)
watcher.daemon = True
watcher.start()
sys.stdout.write("READY %d\n" % os.getpid())
sys.stdout.flush()
work()  # @line:main
