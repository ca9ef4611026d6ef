# strobe record --async with exceptions (tests/integration/record_exceptions.rs), CPython 3.14+.
#
# Two tasks take turns on one event loop: "thrower" raises a ValueError, catches it and spins
# inside the `except` block (at the `caught` marker); "calm" spins with no exception around (at
# the `calm` marker). Prints "READY <pid>"; closing stdin ends it.
import asyncio
import os
import sys
import threading

done = threading.Event()


def spin(n):
    x = 0
    for _ in range(n):
        x = (x * 7 + 1) & 0xFFFF
    return x


async def thrower():
    while not done.is_set():
        try:
            raise ValueError("expected")
        except ValueError:
            spin(20000)  # @line:caught
        await asyncio.sleep(0)


async def calm():
    while not done.is_set():
        spin(20000)  # @line:calm
        await asyncio.sleep(0)


def watch_stdin():
    os.read(0, 1)
    done.set()


async def main():
    threading.Thread(target=watch_stdin, daemon=True).start()
    tasks = [
        asyncio.create_task(thrower(), name="thrower"),
        asyncio.create_task(calm(), name="calm"),
    ]
    await asyncio.sleep(0)
    sys.stdout.write("READY %d\n" % os.getpid())
    sys.stdout.flush()
    await asyncio.gather(*tasks)  # @line:main


asyncio.run(main())
