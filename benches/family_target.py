"""A benchmark target for `--subprocesses`: a parent and CHILDREN busy children (4 by default).

    python family_target.py [CHILDREN]

Each child spins in its main thread and has a helper thread blocked on a queue (as a
multiprocessing worker's feeder and result threads are), so that each round looks its state
up from the kernel's switch records. The parent waits for its children. Prints READY once
every child runs, and runs until killed (or until its stdin closes: the children end when the
parent does). Used by benches/family_cost.sh.
"""
import os
import queue
import subprocess
import sys
import threading

CHILDREN = int(sys.argv[1]) if len(sys.argv) > 1 and sys.argv[1] != "child" else 4


def spin():
    n = 0
    while True:
        n = (n * 3 + 1) & 0xFFFF


def helper(q):
    q.get()


def child():
    q = queue.Queue()
    threading.Thread(target=helper, args=(q,), daemon=True).start()
    # Ends with the parent: its stdin closes.
    threading.Thread(target=lambda: (sys.stdin.read(), os._exit(0)), daemon=True).start()
    sys.stdout.write("r")
    sys.stdout.flush()
    spin()


def parent():
    children = [
        subprocess.Popen([sys.executable, os.path.abspath(__file__), "child"],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        for _ in range(CHILDREN)
    ]
    for c in children:
        c.stdout.read(1)
    sys.stdout.write("READY %s\n" % " ".join(str(c.pid) for c in children))
    sys.stdout.flush()
    for c in children:
        c.wait()


if __name__ == "__main__":
    if sys.argv[1:] == ["child"]:
        child()
    else:
        parent()
