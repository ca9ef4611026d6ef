# strobe dump --native target (tests/integration/native.rs): a thread that runs without
# pause inside a C builtin (sum over itertools.repeat), so strobe must stop it to read it.
# Prints "READY <pid>" first; runs on 2.7 and 3.x.
import itertools
import os
import sys


def spin():
    return sum(itertools.repeat(1, 10 ** 15))  # @line:sum


sys.stdout.write("READY %d\n" % os.getpid())
sys.stdout.flush()
spin()  # @line:module
