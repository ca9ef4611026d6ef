# benches/locals.sh target: a DEPTH-frame Python stack (default 50) whose every frame has 10
# arguments and locals of mixed kinds, asleep at the innermost frame; prints READY when there.
# Usage: locals_target.py [DEPTH]
import sys
import time


def frame(depth, a=1, b=2.5, c="text", d=None):
    e = [depth, depth + 1, "x"]
    g = {"k": depth, 2: (1, 2)}
    h = (depth, "y")
    i = depth * 1000
    j = "s" * 20
    if depth > 1:
        return frame(depth - 1)
    sys.stdout.write("READY\n")
    sys.stdout.flush()
    time.sleep(3600)
    return a, b, c, d, e, g, h, i, j


frame(int(sys.argv[1]) if len(sys.argv) > 1 else 50)
