"""A benchmark target: one thread taking random paths through thousands of functions.

    python functions_target.py [N]

N functions (default 5,000), each defined from source so that each has a name and code object
of its own, in a module file of its own per 100 (`mod0.py`, `mod1.py`, ... as far as the
profiler can tell: each function's code says so). Each does a little work, then calls a
randomly chosen one until a random depth (1 to 24) is reached; the main loop starts such a
path again and again. At 100 Hz a sampler sees about twelve functions a sample, so nearly all
N within 20 s: a `strobe top` whose table has thousands of rows, of which a few hundred change
at each refresh. Prints READY, then runs until killed. Used by benches/top_refresh.sh.
"""
import random
import sys

RAND = random.Random(13).randrange
N = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
FUNCS = []

SOURCE = """
def handler_{i}(depth):
    x = depth
    for _ in range({work}):
        x = (x * 7 + 1) & 0xFFFF
    if depth:
        return FUNCS[RAND(N)](depth - 1)
    return x
"""

for i in range(N):
    space = {"FUNCS": FUNCS, "RAND": RAND, "N": N}
    code = compile(SOURCE.format(i=i, work=20 + i % 31), f"/srv/app/mod{i // 100}.py", "exec")
    exec(code, space)
    FUNCS.append(space[f"handler_{i}"])


def main():
    sys.stdout.write("READY\n")
    sys.stdout.flush()
    while True:
        FUNCS[RAND(N)](RAND(1, 25))


main()
