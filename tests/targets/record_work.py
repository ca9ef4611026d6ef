# -*- coding: utf-8 -*-
"""Target for `strobe record` tests: one thread, busy in a known function for a given time.

Usage: record_work.py SECONDS [EXIT_CODE]. Valid on Python 2.7 and every 3.x. The busy loop is
one line, so every sample of it has the same line; lines carry `# @line:NAME` markers that the
tests read (never hard-coded). Prints READY once the busy part starts; exits with EXIT_CODE.
"""
import sys
import time

clock = getattr(time, "perf_counter", time.time)


def hot(end):
    while clock() < end: pass  # @line:hot


def main():
    seconds = float(sys.argv[1])
    code = int(sys.argv[2]) if len(sys.argv) > 2 else 0
    sys.stdout.write("READY\n")
    sys.stdout.flush()
    hot(clock() + seconds)  # @line:main
    sys.stdout.flush()
    sys.exit(code)


if __name__ == "__main__":
    main()  # @line:module
