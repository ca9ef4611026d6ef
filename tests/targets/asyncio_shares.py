# strobe record --async target (tests/integration/record_async.rs), CPython 3.7+ (3.7: tasks
# without names, for the test that --async warns and records plain stacks).
#
# One event loop runs three busy tasks that take turns: "alpha" burns 1 unit of CPU per turn,
# "beta" 2 units, and "gamma" 3 units, gamma's burning done by the task "inner" that gamma
# awaits for each turn (a chain of awaits: gamma -> inner). A fourth task, "sleeper", waits
# in asyncio.sleep the whole time. Every task times its own burning. Prints "READY <pid>";
# closing stdin makes it print "SHARES alpha=S beta=S inner=S" (seconds) and exit.
import asyncio
import os
import sys
import threading
import time

UNIT = 20000
spent = {"alpha": 0.0, "beta": 0.0, "inner": 0.0}
done = threading.Event()


def burn(units):
    x = 0
    for _ in range(units * UNIT):
        x = (x * 7 + 1) & 0xFFFF  # @line:burn
    return x


async def work(name, units):
    t0 = time.perf_counter()
    burn(units)  # @line:work
    spent[name] += time.perf_counter() - t0


async def busy(name, units):
    while not done.is_set():
        await work(name, units)  # @line:busy
        await asyncio.sleep(0)


async def inner_turn():
    await work("inner", 3)  # @line:inner


async def gamma():
    while not done.is_set():
        await spawn(inner_turn(), "inner")  # @line:gamma
        await asyncio.sleep(0)


async def sleeper():
    await asyncio.sleep(3600)  # @line:sleeper


def spawn(coro, name):
    if sys.version_info < (3, 8):
        return asyncio.ensure_future(coro)
    return asyncio.create_task(coro, name=name)


def watch_stdin():
    os.read(0, 1)
    done.set()


async def main():
    threading.Thread(target=watch_stdin, daemon=True).start()
    spawn(sleeper(), "sleeper")
    tasks = [
        spawn(busy("alpha", 1), "alpha"),
        spawn(busy("beta", 2), "beta"),
        spawn(gamma(), "gamma"),
    ]
    await asyncio.sleep(0)
    # READY once this task waits in the gather (the callback runs after it suspends there), so
    # that from the first sample on every task is where the test expects it.
    asyncio.get_event_loop().call_soon(announce)
    await asyncio.gather(*tasks)  # @line:main


def announce():
    sys.stdout.write("READY %d\n" % os.getpid())
    sys.stdout.flush()


asyncio.run(main())
sys.stdout.write("SHARES alpha=%f beta=%f inner=%f\n" % (spent["alpha"], spent["beta"], spent["inner"]))
sys.stdout.flush()
