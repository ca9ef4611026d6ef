# A process family for `--subprocesses`: this parent starts a child by fork (multiprocessing,
# 'fork' start method) and one by fork + exec (subprocess, the same interpreter running this
# file with the argument `exec-child`). Once both say they are ready, the parent prints
# `READY <pid>` and every process waits on a known line until the parent's stdin closes; the
# parent then closes the children's pipes and waits for them to exit.
import os
import sys
import subprocess


def forked_child(ready_w, stop_r, stop_w):
    # The write end came with the fork: closed here, the parent closing its own ends the read.
    os.close(stop_w)
    os.write(ready_w, b"r")
    os.read(stop_r, 1)  # @line:forked


def exec_child():
    sys.stdout.write("r")
    sys.stdout.flush()
    sys.stdin.readline()  # @line:exec


def parent_wait():
    sys.stdin.readline()  # @line:parent


def main():
    import multiprocessing

    ctx = multiprocessing
    if hasattr(multiprocessing, "get_context"):
        ctx = multiprocessing.get_context("fork")
    ready_r, ready_w = os.pipe()
    stop_r, stop_w = os.pipe()
    forked = ctx.Process(target=forked_child, args=(ready_w, stop_r, stop_w))
    forked.start()
    execd = subprocess.Popen(
        [sys.executable, os.path.abspath(__file__), "exec-child"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        close_fds=True,
    )
    os.read(ready_r, 1)
    execd.stdout.read(1)
    sys.stdout.write("READY %d\n" % os.getpid())
    sys.stdout.flush()
    parent_wait()
    os.close(stop_w)
    execd.stdin.close()
    forked.join()
    execd.wait()


if __name__ == "__main__":
    if sys.argv[1:] == ["exec-child"]:
        exec_child()
    else:
        main()
