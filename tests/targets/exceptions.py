# strobe exception target (tests/integration/record_exceptions.rs). Runs on 2.7 and every 3.x.
#
# One thread alternates two phases of the same work for ever: `plain` spins with no exception
# around (at the `plain` marker), then `handling` raises a ValueError, catches it and spins
# inside the `except` block (at the `caught` marker) for half as long. The target times both
# phases itself. Prints "READY <pid>"; closing stdin makes it print
# "SHARE <seconds in handling> <seconds in both>" and exit.
import os
import sys
import threading
import time


def spin(n):
    x = 0
    for _ in range(n):
        x = (x * 7 + 1) & 0xFFFF
    return x


def plain(n):
    return spin(n)  # @line:plain


def handling(n):
    try:
        raise ValueError("expected")
    except ValueError:
        return spin(n)  # @line:caught


done = threading.Event()


def watch_stdin():
    os.read(0, 1)
    done.set()


watcher = threading.Thread(target=watch_stdin)
watcher.daemon = True
watcher.start()
sys.stdout.write("READY %d\n" % os.getpid())
sys.stdout.flush()
in_handling = 0.0
both = 0.0
while not done.is_set():
    t0 = time.time()
    plain(100000)
    t1 = time.time()
    handling(50000)
    t2 = time.time()
    in_handling += t2 - t1
    both += t2 - t0
sys.stdout.write("SHARE %f %f\n" % (in_handling, both))
sys.stdout.flush()
