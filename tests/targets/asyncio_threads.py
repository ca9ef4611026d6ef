# strobe dump --async target (tests/integration/dump_async.rs): three event loops.
# - the main thread runs a loop whose task "main-waiter" waits on a future;
# - thread "loop-thread" runs its own loop whose task "worker" sleeps;
# - thread "gone" made a loop and the task "orphan" on it, never ran it, and exited: the task
#   lives on in the interpreter's list (its thread state is gone), its loop runs nowhere.
# Writes "<main ident> <loop-thread ident>" to asyncio_threads_ids.txt beside this file, then
# prints "READY <pid>" once both running loops have suspended their tasks; closing stdin ends it.
import asyncio
import os
import sys
import threading

worker_ready = threading.Event()
idents = {}
keep = []


async def worker():
    worker_ready.set()
    await asyncio.sleep(3600)  # @line:worker


def loop_thread():
    idents["loop"] = threading.get_ident()
    asyncio.run(worker_main())


async def worker_main():
    await asyncio.create_task(worker(), name="worker")


async def orphan():
    await asyncio.sleep(3600)


def gone():
    loop = asyncio.new_event_loop()
    keep.append((loop, loop.create_task(orphan(), name="orphan")))


def announce():
    here = os.path.dirname(os.path.abspath(__file__))
    with open(os.path.join(here, "asyncio_threads_ids.txt"), "w") as f:
        f.write("%d %d" % (threading.get_ident(), idents["loop"]))
    sys.stdout.write("READY %d\n" % os.getpid())
    sys.stdout.flush()


async def waiter():
    asyncio.get_running_loop().call_soon(announce)
    await asyncio.get_running_loop().create_future()  # @line:main_waiter


async def main():
    loop = asyncio.get_running_loop()
    loop.add_reader(sys.stdin.fileno(), lambda: os._exit(0))
    g = threading.Thread(target=gone, name="gone")
    g.start()
    g.join()
    threading.Thread(target=loop_thread, name="loop-thread", daemon=True).start()
    await loop.run_in_executor(None, worker_ready.wait)
    await asyncio.create_task(waiter(), name="main-waiter")


asyncio.run(main())
