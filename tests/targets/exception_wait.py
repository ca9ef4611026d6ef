# strobe dump target (tests/integration/dump_exceptions.rs). Runs on 2.7 and every 3.x.
#
# The main thread waits on stdin inside an `except KeyError` block; a second thread waits on a
# lock outside any exception. Prints "READY <pid>" just before blocking; closing stdin ends it.
import os
import sys
import threading

gate = threading.Lock()
gate.acquire()


def calm():
    gate.acquire()  # @line:calm


def handler():
    try:
        {}["missing"]
    except KeyError:
        sys.stdout.write("READY %d\n" % os.getpid())
        sys.stdout.flush()
        os.read(0, 1)  # @line:wait


t = threading.Thread(target=calm, name="calm")
t.daemon = True
t.start()
handler()
