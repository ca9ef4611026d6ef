# strobe --native target (tests/integration/native_record.rs): a numpy matrix multiply in a
# loop, on the calling thread (OpenBLAS limited to one thread), so the BLAS kernel runs under
# the Python line that calls it. Prints "READY <pid>" first. Closing stdin is not watched:
# the test kills it.
import os
import sys

os.environ["OPENBLAS_NUM_THREADS"] = "1"
os.environ["OMP_NUM_THREADS"] = "1"
import numpy as np  # noqa: E402

a = np.random.rand(300, 300)
b = np.random.rand(300, 300)


def multiply():
    while True:
        a @ b  # @line:matmul


sys.stdout.write("READY %d\n" % os.getpid())
sys.stdout.flush()
multiply()  # @line:module
