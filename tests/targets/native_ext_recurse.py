# strobe dump --native target (tests/integration/native.rs): Python -> C (native_ext.descend)
# -> Python, three times, then blocked reading stdin. Prints "READY <pid>" first.
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import native_ext  # noqa: E402 (built beside this script by the test)


def wait_here():
    sys.stdout.write("READY %d\n" % os.getpid())
    sys.stdout.flush()
    os.read(0, 1)  # @line:read
    os._exit(0)


def step(n):
    if n == 0:
        wait_here()  # @line:leaf
        return 0
    return native_ext.descend(n - 1, step)  # @line:step


native_ext.descend(2, step)  # @line:module
