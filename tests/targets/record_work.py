# -*- coding: utf-8 -*-
"""Target for `strobe record` tests: one thread, busy in a known function for a given time.

Usage: record_work.py SECONDS [EXIT_CODE]. Valid on Python 2.7 and every 3.x. The busy loop is
one line, so every sample of it has the same line; lines carry `# @line:NAME` markers that the
tests read (never hard-coded). Prints READY once the busy part starts; exits with EXIT_CODE.

`record_work.py stdin:SECONDS` waits (asleep) for a line on stdin and then stays busy for SECONDS
of its own CPU time, however loaded the machine: a test that launches it under strobe sends the
line once strobe says it is recording, so the busy part is always sampled.

After the busy part it prints `FIRST_LINES <module>=N main=N hot=N`: each code object's
`co_firstlineno` as the interpreter has it (a module's differs between versions: the line its
docstring ends on up to 3.7, the line it starts on in 3.8 and 3.9, 1 from 3.10).
"""
import sys
import time

wall = getattr(time, "perf_counter", time.time)
# The process's CPU time, as a builtin (a Python function would add a frame above `hot`).
cpu = getattr(time, "process_time", None) or time.clock
MODULE_FIRST_LINE = sys._getframe().f_code.co_firstlineno


def hot(clock, end):  # @line:def_hot
    while clock() < end: pass  # @line:hot


def main():  # @line:def_main
    arg = sys.argv[1]
    code = int(sys.argv[2]) if len(sys.argv) > 2 else 0
    if arg.startswith("stdin:"):
        sys.stdin.readline()
        clock, seconds = cpu, float(arg[len("stdin:"):])
    else:
        clock, seconds = wall, float(arg)
    sys.stdout.write("READY\n")
    sys.stdout.flush()
    hot(clock, clock() + seconds)  # @line:main
    sys.stdout.write("FIRST_LINES <module>=%d main=%d hot=%d\n" % (
        MODULE_FIRST_LINE, main.__code__.co_firstlineno, hot.__code__.co_firstlineno))
    sys.stdout.flush()
    sys.exit(code)


if __name__ == "__main__":
    main()  # @line:module
