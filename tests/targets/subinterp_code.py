# Runs inside a sub-interpreter (see subinterp.py); READY_W and HOLD_R are set by the runner.
import os


def sub_block():
    os.write(READY_W, b"x")
    os.read(HOLD_R, 1)  # @block:sub


sub_block()  # @block:sub-call
