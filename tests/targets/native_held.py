# Targets of tests/integration/native_held.rs: a busy process whose running threads strobe's
# `record --native` stops for each sample, doing what such a thread must still do.
# Prints "READY <pid>" first; each mode waits until strobe traces one of its threads (its
# TracerPid in /proc) before it starts, so the work happens while it is recorded.
#
#   signals   the main thread and a worker keep computing while the worker is sent SIGUSR1 200
#             times (each one waited for: the handler counts it), an interval timer sends
#             SIGALRM every 2 ms, and 20 child processes are run and reaped (SIGCHLD handler);
#             prints "DONE usr1=N alarms=N chld=N children_ok=N" and exits 0.
#   stdin     two workers compute; each line read from stdin is answered with
#             "ALIVE <iterations of the workers since the previous answer>" once they made
#             some (or 10 s passed); EOF ends it.
#   churn     400 short threads, two at a time, each computing for a while and exiting; then
#             prints "DONE threads=N tasks=N" (tasks: threads left in /proc/self/task once the
#             last one was joined, waiting up to 10 s for exited threads to be collected).
import os
import signal
import subprocess
import sys
import threading
import time
import zlib

DATA = os.urandom(16 * 1024)
counts = [0, 0]
stop = []


def work(i):
    while not stop:
        zlib.crc32(DATA)  # @line:work
        counts[i] += 1


def traced():
    for tid in os.listdir("/proc/self/task"):
        try:
            with open("/proc/self/task/%s/status" % tid) as f:
                for line in f:
                    if line.startswith("TracerPid:") and line.split()[1] != "0":
                        return True
        except (IOError, OSError):
            pass
    return False


def wait_traced():
    deadline = time.time() + 60
    while not traced():
        if time.time() > deadline:
            sys.stdout.write("NOT TRACED\n")
            sys.stdout.flush()
            sys.exit(1)
        zlib.crc32(DATA)


def start_workers(n):
    threads = []
    for i in range(n):
        t = threading.Thread(target=work, args=(i,), name="worker-%d" % i)
        t.daemon = True
        t.start()
        threads.append(t)
    return threads


def signals():
    got = [0, 0, 0]

    def on_usr1(sig, frame):
        got[0] += 1

    def on_alarm(sig, frame):
        got[1] += 1

    def on_chld(sig, frame):
        got[2] += 1

    signal.signal(signal.SIGUSR1, on_usr1)
    signal.signal(signal.SIGALRM, on_alarm)
    signal.signal(signal.SIGCHLD, on_chld)
    worker = start_workers(1)[0]
    say("READY %d" % os.getpid())
    wait_traced()
    signal.setitimer(signal.ITIMER_REAL, 0.002, 0.002)
    sent = 200
    for i in range(sent):
        # To the worker thread, which is running (so seized): the kernel delivers it there,
        # and the Python handler runs on this thread, which keeps computing meanwhile.
        signal.pthread_kill(worker.ident, signal.SIGUSR1)
        deadline = time.time() + 10
        while got[0] <= i:
            if time.time() > deadline:
                say("LOST usr1 %d of %d" % (i + 1, sent))
                sys.exit(1)
            zlib.crc32(DATA)
    children_ok = 0
    for _ in range(20):
        if subprocess.call(["true"]) == 0:
            children_ok += 1
    signal.setitimer(signal.ITIMER_REAL, 0, 0)
    say("DONE usr1=%d alarms=%d chld=%d children_ok=%d" % (got[0], got[1], got[2], children_ok))


def stdin_mode():
    start_workers(2)
    say("READY %d" % os.getpid())
    wait_traced()
    say("TRACED")
    last = sum(counts)
    while True:
        line = sys.stdin.readline()
        if not line:
            return
        # The workers compute on: wait (10 s at most) until they did since the last answer.
        deadline = time.time() + 10
        while sum(counts) == last and time.time() < deadline:
            time.sleep(0.001)
        now = sum(counts)
        say("ALIVE %d" % (now - last))
        last = now


def churn():
    say("READY %d" % os.getpid())
    wait_traced_by_churning = 0
    started = 0
    # Threads start and exit until strobe traces one, then 400 more.
    while True:
        pair = [threading.Thread(target=short) for _ in range(2)]
        for t in pair:
            t.start()
        for t in pair:
            t.join()
        started += 2
        if traced():
            break
        wait_traced_by_churning += 1
        if wait_traced_by_churning > 5000:
            say("NOT TRACED")
            sys.exit(1)
    for _ in range(200):
        pair = [threading.Thread(target=short) for _ in range(2)]
        for t in pair:
            t.start()
        for t in pair:
            t.join()
        started += 2
    deadline = time.time() + 10
    while len(os.listdir("/proc/self/task")) > 1 and time.time() < deadline:
        time.sleep(0.001)
    say("DONE threads=%d tasks=%d" % (started, len(os.listdir("/proc/self/task"))))


def short():
    for _ in range(200):
        zlib.crc32(DATA)  # @line:short


def say(line):
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


{"signals": signals, "stdin": stdin_mode, "churn": churn}[sys.argv[1]]()
