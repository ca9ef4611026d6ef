# A target for `strobe top` tests: the main thread spends about 75% of its time in
# heavy_work() and 25% in light_work(), measured by the wall clock (so the split does not
# depend on the machine's speed). With --until-eof, a second thread waits on stdin and the
# process exits when stdin closes: the test's way to make the target exit on cue.
import os
import sys
import threading
import time


def heavy_work():
    end = time.perf_counter() + 0.030
    while time.perf_counter() < end:
        pass


def light_work():
    end = time.perf_counter() + 0.010
    while time.perf_counter() < end:
        pass


def wait_for_eof():
    sys.stdin.read()
    os._exit(0)


def main():
    if "--until-eof" in sys.argv:
        threading.Thread(target=wait_for_eof, name="eof-waiter", daemon=True).start()
    print("READY %d" % os.getpid(), flush=True)
    while True:
        heavy_work()
        light_work()


main()
