"""A benchmark target: one busy thread and seven that sleep or wait.

    python threads_target.py [SLEEPERS]

The main thread spins in Python code for ever; three threads sleep in time.sleep(), two wait on
an Event, one on a Queue and one on a Lock, each a few frames deep. Prints READY once every
thread is started. Used by benches/ordinary_rates.sh ("1 busy thread + 7 sleeping/waiting
threads"). With SLEEPERS, that many more threads sleep in time.sleep() (benches/thread_states.sh:
many threads of which few run).
"""
import sys
import threading
import time

try:
    import queue
except ImportError:  # Python 2
    import Queue as queue

EVENT = threading.Event()
QUEUE = queue.Queue()
LOCK = threading.Lock()


def sleeper(started):
    started.set()
    while True:
        time.sleep(3600)


def event_waiter(started):
    started.set()
    EVENT.wait()


def queue_waiter(started):
    started.set()
    QUEUE.get()


def lock_waiter(started):
    started.set()
    LOCK.acquire()


def nested(work, started, depth):
    if depth == 0:
        return work(started)
    return nested(work, started, depth - 1)


def step(n):
    return (n * 3 + 1) & 0xFFFF


def busy():
    n = 0
    while True:
        for _ in range(1000):
            n = step(n)


def main():
    LOCK.acquire()
    extra = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    works = [sleeper] * (3 + extra) + [event_waiter] * 2 + [queue_waiter, lock_waiter]
    for i, work in enumerate(works):
        started = threading.Event()
        t = threading.Thread(target=nested, args=(work, started, 3 + i), name="waiter-%d" % i)
        t.daemon = True
        t.start()
        started.wait()
    sys.stdout.write("READY\n")
    sys.stdout.flush()
    busy()


main()
