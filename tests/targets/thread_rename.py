# A thread renamed while strobe records (tests/integration/thread_rename.rs): a worker thread
# named "worker-before" spins in Python; the main thread prints "READY <pid>", then waits for a
# line on stdin, renames the worker to "worker-after", prints "RENAMED <time.time() in ns>",
# and 1.5 s later (past strobe's once-a-second look at names) prints "LATER"; closing stdin
# ends it. Runs on 2.7 and 3.x.
import os
import sys
import threading
import time


def spin():
    n = 0
    while True:
        n += 1  # @line:spin


worker = threading.Thread(target=spin, name="worker-before")
worker.daemon = True
worker.start()
sys.stdout.write("READY %d\n" % os.getpid())
sys.stdout.flush()
sys.stdin.readline()
worker.name = "worker-after"
sys.stdout.write("RENAMED %d\n" % int(time.time() * 1e9))
sys.stdout.flush()
time.sleep(1.5)
sys.stdout.write("LATER\n")
sys.stdout.flush()
sys.stdin.readline()
