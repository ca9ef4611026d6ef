"""A benchmark target: one thread taking random paths through 16 functions.

    python paths_target.py

Each of f0 ... f15 does a little work, then calls a randomly chosen one of them until a random
depth (1 to 24) is reached; the main loop starts such a path again and again. Nearly every
sample of this thread is a stack not seen before, so a sampler cannot reuse the last one.
Prints READY, then runs until killed. Used by benches/ordinary_rates.sh ("1 thread, random
paths through 16 functions").
"""
import random
import sys

RAND = random.Random(13).randrange


def f0(depth):
    x = depth
    for _ in range(20):
        x = (x * 7 + 1) & 0xFFFF
    if depth:
        return FUNCS[RAND(16)](depth - 1)
    return x


def f1(depth):
    x = depth
    for _ in range(22):
        x = (x * 7 + 1) & 0xFFFF
    if depth:
        return FUNCS[RAND(16)](depth - 1)
    return x


def f2(depth):
    x = depth
    for _ in range(24):
        x = (x * 7 + 1) & 0xFFFF
    if depth:
        return FUNCS[RAND(16)](depth - 1)
    return x


def f3(depth):
    x = depth
    for _ in range(26):
        x = (x * 7 + 1) & 0xFFFF
    if depth:
        return FUNCS[RAND(16)](depth - 1)
    return x


def f4(depth):
    x = depth
    for _ in range(28):
        x = (x * 7 + 1) & 0xFFFF
    if depth:
        return FUNCS[RAND(16)](depth - 1)
    return x


def f5(depth):
    x = depth
    for _ in range(30):
        x = (x * 7 + 1) & 0xFFFF
    if depth:
        return FUNCS[RAND(16)](depth - 1)
    return x


def f6(depth):
    x = depth
    for _ in range(32):
        x = (x * 7 + 1) & 0xFFFF
    if depth:
        return FUNCS[RAND(16)](depth - 1)
    return x


def f7(depth):
    x = depth
    for _ in range(34):
        x = (x * 7 + 1) & 0xFFFF
    if depth:
        return FUNCS[RAND(16)](depth - 1)
    return x


def f8(depth):
    x = depth
    for _ in range(36):
        x = (x * 7 + 1) & 0xFFFF
    if depth:
        return FUNCS[RAND(16)](depth - 1)
    return x


def f9(depth):
    x = depth
    for _ in range(38):
        x = (x * 7 + 1) & 0xFFFF
    if depth:
        return FUNCS[RAND(16)](depth - 1)
    return x


def f10(depth):
    x = depth
    for _ in range(40):
        x = (x * 7 + 1) & 0xFFFF
    if depth:
        return FUNCS[RAND(16)](depth - 1)
    return x


def f11(depth):
    x = depth
    for _ in range(42):
        x = (x * 7 + 1) & 0xFFFF
    if depth:
        return FUNCS[RAND(16)](depth - 1)
    return x


def f12(depth):
    x = depth
    for _ in range(44):
        x = (x * 7 + 1) & 0xFFFF
    if depth:
        return FUNCS[RAND(16)](depth - 1)
    return x


def f13(depth):
    x = depth
    for _ in range(46):
        x = (x * 7 + 1) & 0xFFFF
    if depth:
        return FUNCS[RAND(16)](depth - 1)
    return x


def f14(depth):
    x = depth
    for _ in range(48):
        x = (x * 7 + 1) & 0xFFFF
    if depth:
        return FUNCS[RAND(16)](depth - 1)
    return x


def f15(depth):
    x = depth
    for _ in range(50):
        x = (x * 7 + 1) & 0xFFFF
    if depth:
        return FUNCS[RAND(16)](depth - 1)
    return x


FUNCS = [f0, f1, f2, f3, f4, f5, f6, f7, f8, f9, f10, f11, f12, f13, f14, f15]


def main():
    sys.stdout.write("READY\n")
    sys.stdout.flush()
    while True:
        FUNCS[RAND(16)](RAND(1, 25))


main()
