# strobe dump --async target (tests/integration/dump_async.rs): one event loop with a known tree
# of tasks, every one of them suspended at a marked line:
#
#   main                 awaits gather(sleeper, consumer, parent, grouper)
#   ├── sleeper          asyncio.sleep(3600)
#   ├── consumer         an empty asyncio.Queue
#   ├── parent           awaits the task child
#   │   └── child        a future nobody completes
#   └── grouper          a TaskGroup (3.11+; before 3.11 neither grouper nor tg-leaf exists)
#       └── tg-leaf      asyncio.sleep(3600)
#
# Prints "READY <pid>" once every task is suspended (from a loop callback scheduled by the last
# task to reach its await, so it runs after that task's step). Closing stdin ends it.
import asyncio
import os
import sys

HAS_TASKGROUP = hasattr(asyncio, "TaskGroup")  # 3.11+
TASKS = 6 if HAS_TASKGROUP else 4  # the tasks below main that count themselves
started = 0


def reached():
    global started
    started += 1
    if started == TASKS:
        asyncio.get_running_loop().call_soon(announce)


def announce():
    sys.stdout.write("READY %d\n" % os.getpid())
    sys.stdout.flush()


async def sleeper():
    reached()
    await asyncio.sleep(3600)  # @line:sleeper


async def consumer():
    queue = asyncio.Queue()
    reached()
    await queue.get()  # @line:consumer


async def child_fn(never):
    reached()
    await never  # @line:child


async def parent():
    never = asyncio.get_running_loop().create_future()
    child = asyncio.create_task(child_fn(never), name="child")
    reached()
    await child  # @line:parent


async def tg_leaf():
    reached()
    await asyncio.sleep(3600)  # @line:tg_leaf


async def grouper():
    async with asyncio.TaskGroup() as tg:  # @line:grouper
        tg.create_task(tg_leaf(), name="tg-leaf")
        reached()


async def main():
    loop = asyncio.get_running_loop()
    loop.add_reader(sys.stdin.fileno(), lambda: os._exit(0))
    children = [
        asyncio.create_task(sleeper(), name="sleeper"),
        asyncio.create_task(consumer(), name="consumer"),
        asyncio.create_task(parent(), name="parent"),
    ]
    if HAS_TASKGROUP:
        children.append(asyncio.create_task(grouper(), name="grouper"))
    gathered = asyncio.gather(*children)
    await gathered  # @line:main


asyncio.run(main())
