# -*- coding: utf-8 -*-
"""A small program for trying strobe: a few threads doing recognisable things.

Runs on Python 2.7 and 3.x. Prints READY once its threads are running, then works until it
is killed or its standard input closes.
"""
import hashlib
import sys
import threading
import time


def fibonacci(n):
    return n if n < 2 else fibonacci(n - 1) + fibonacci(n - 2)


def crunch_numbers():
    while True:
        fibonacci(22)


def hash_blocks():
    block = b"strobe" * 10000
    while True:
        hashlib.sha256(block).hexdigest()


class Poller(object):
    def wait_for_work(self):
        while True:
            time.sleep(0.5)


def main():
    workers = [
        ("cruncher", crunch_numbers),
        ("hasher", hash_blocks),
        ("poller", Poller().wait_for_work),
    ]
    for name, target in workers:
        t = threading.Thread(target=target, name=name)
        t.daemon = True
        t.start()
    sys.stdout.write("READY\n")
    sys.stdout.flush()
    sys.stdin.read()


if __name__ == "__main__":
    main()
