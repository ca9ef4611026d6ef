# -*- coding: utf-8 -*-
"""Target for the production-safety tests: a process that is hard on a profiler.

Usage: safety_stress.py MODE SECONDS [ARG]. Prints `READY <pid>` once the hard part is set up,
then keeps it up for SECONDS (or until stdin closes, if SECONDS is 0) and exits with status 0.
Written for Python 3.6+. Lines the tests look for carry `# @line:NAME` markers.

Modes:
  churn    threads created and destroyed as fast as four spawner threads can (thousands/s);
           prints `CHURNED <count>` at the end
  threads  ARG live threads (default 500), each blocked on an event, while main spins
  deep     a recursion ARG frames deep (default 5000; the recursion limit is raised), spinning
  fork     (SECONDS > 0) forks a child every few ms; each child spins briefly and exits with os._exit
  exec     spins, then execs into ARG (a program, e.g. /bin/sleep) with argument "600"
"""
import os
import sys
import threading
import time

clock = time.perf_counter


def spin(end):
    while clock() < end: pass  # @line:spin


def ready():
    sys.stdout.write("READY %d\n" % os.getpid())
    sys.stdout.flush()


def until(seconds):
    """Spin until SECONDS have passed, or (SECONDS == 0) until stdin closes."""
    if seconds > 0:
        spin(clock() + seconds)
    else:
        sys.stdin.read()


def nothing():
    pass


def churn(seconds):
    stop = []
    counts = [0] * 4

    def spawner(i):
        while not stop:
            t = threading.Thread(target=nothing)
            t.start()  # @line:churn
            t.join()
            counts[i] += 1

    spawners = [threading.Thread(target=spawner, args=(i,)) for i in range(4)]
    for s in spawners:
        s.start()
    ready()
    until(seconds)
    stop.append(1)
    for s in spawners:
        s.join()
    sys.stdout.write("CHURNED %d\n" % sum(counts))


def many_threads(seconds, count):
    gate = threading.Event()
    started = threading.Semaphore(0)

    def parked():
        started.release()
        gate.wait()  # @line:parked

    threads = [threading.Thread(target=parked) for _ in range(count)]
    for t in threads:
        t.start()
    for _ in threads:
        started.acquire()
    ready()
    until(seconds)
    gate.set()
    for t in threads:
        t.join()


def recurse(n, seconds):
    if n > 1:
        return recurse(n - 1, seconds)  # @line:recurse
    ready()
    until(seconds)  # @line:bottom


def forker(seconds):
    ready()
    end = clock() + seconds
    while clock() < end:
        pid = os.fork()
        if pid == 0:
            spin(clock() + 0.002)
            os._exit(0)
        spin(clock() + 0.005)  # @line:fork-parent
        # Reap whatever has exited, without blocking.
        while True:
            try:
                done, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if done == 0:
                break
    while True:
        try:
            os.wait()
        except ChildProcessError:
            break


def execer(seconds, program):
    ready()
    spin(clock() + seconds)
    sys.stdout.flush()
    # The new program must not hold the test's pipes open (the test reads them to EOF).
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    os.execv(program, [program, "600"])


def main():
    mode = sys.argv[1]
    seconds = float(sys.argv[2])
    arg = sys.argv[3] if len(sys.argv) > 3 else None
    if mode == "churn":
        churn(seconds)
    elif mode == "threads":
        many_threads(seconds, int(arg or 500))
    elif mode == "deep":
        depth = int(arg or 5000)
        sys.setrecursionlimit(depth + 1000)
        recurse(depth, seconds)
    elif mode == "fork":
        forker(seconds)
    elif mode == "exec":
        execer(seconds, arg or "/bin/sleep")
    else:
        sys.exit("unknown mode %r" % mode)


if __name__ == "__main__":
    main()
