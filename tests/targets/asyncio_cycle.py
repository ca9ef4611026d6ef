# strobe dump --async target (tests/integration/dump_async.rs): two tasks awaiting each other (a
# deadlock strobe must report as a cycle), beside the main task waiting on a future.
# Prints "READY <pid>" once both are suspended; closing stdin ends it.
import asyncio
import os
import sys

tasks = {}
started = 0


def reached():
    global started
    started += 1
    if started == 2:
        asyncio.get_running_loop().call_soon(announce)


def announce():
    sys.stdout.write("READY %d\n" % os.getpid())
    sys.stdout.flush()


async def ping():
    reached()
    await tasks["pong"]  # @line:ping


async def pong():
    reached()
    await tasks["ping"]  # @line:pong


async def main():
    loop = asyncio.get_running_loop()
    loop.add_reader(sys.stdin.fileno(), lambda: os._exit(0))
    tasks["ping"] = asyncio.create_task(ping(), name="ping")
    tasks["pong"] = asyncio.create_task(pong(), name="pong")
    await loop.create_future()  # @line:main


asyncio.run(main())
