# A target for the bounded stack table of `record --format raw`: the main thread takes random
# paths through eight functions, 1 to 12 deep, so nearly every sample is a stack not seen
# before. Prints READY, then runs until its stdin closes (a second thread waits for EOF).
import os
import random
import sys
import threading

RAND = random.Random(7).randrange


def step(depth):
    x = depth
    for _ in range(30):
        x = (x * 7 + 1) & 0xFFFF
    return x


def p0(depth):
    step(depth)
    return FUNCS[RAND(8)](depth - 1) if depth else 0


def p1(depth):
    step(depth)
    return FUNCS[RAND(8)](depth - 1) if depth else 1


def p2(depth):
    step(depth)
    return FUNCS[RAND(8)](depth - 1) if depth else 2


def p3(depth):
    step(depth)
    return FUNCS[RAND(8)](depth - 1) if depth else 3


def p4(depth):
    step(depth)
    return FUNCS[RAND(8)](depth - 1) if depth else 4


def p5(depth):
    step(depth)
    return FUNCS[RAND(8)](depth - 1) if depth else 5


def p6(depth):
    step(depth)
    return FUNCS[RAND(8)](depth - 1) if depth else 6


def p7(depth):
    step(depth)
    return FUNCS[RAND(8)](depth - 1) if depth else 7


FUNCS = [p0, p1, p2, p3, p4, p5, p6, p7]


def wait_for_eof():
    sys.stdin.read()
    os._exit(0)


def main():
    threading.Thread(target=wait_for_eof, name="eof-waiter", daemon=True).start()
    print("READY %d" % os.getpid(), flush=True)
    while True:
        FUNCS[RAND(8)](RAND(12))


main()
