# strobe dump --async target (tests/integration/dump_async.rs): the task "spinner" is running
# (busy in its own coroutine, never yielding) while the task "idle" waits on a future.
# Prints "READY <pid>" from inside the spinner; a reader thread ends it when stdin closes.
import asyncio
import os
import sys
import threading


def watch_stdin():
    sys.stdin.read()
    os._exit(0)


async def idle():
    await asyncio.get_running_loop().create_future()  # @line:idle


async def spinner():
    await asyncio.sleep(0)
    n = 0
    while True:  # @line:spin
        n += 1  # @line:spin_body
        # READY from inside the loop, so that a dump right after it finds the task here.
        if n == 1000:  # @line:spin_check
            sys.stdout.write("READY %d\n" % os.getpid())  # @line:spin_ready
            sys.stdout.flush()  # @line:spin_flush


async def main():
    threading.Thread(target=watch_stdin, daemon=True).start()
    asyncio.create_task(idle(), name="idle")
    await asyncio.create_task(spinner(), name="spinner")


asyncio.run(main())
