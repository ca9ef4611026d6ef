# -*- coding: utf-8 -*-
# strobe dump --locals target (tests/integration/dump_locals.rs): frames whose arguments, locals,
# cell and free variables hold known values of every kind strobe shows, blocked reading stdin.
#
# Writes "obj <hex id> evil <hex id> weird <hex id> closure <hex id>" to locals_ids.txt beside this file, then
# prints "READY <pid>". Runs on 2.7 and 3.x (unicode names on 3.x only). A byte on stdin ends
# it; the byte "r" first calls repr() on the Hostile object, whose `__repr__` creates the file
# "pwned" beside this file and prints a line: strobe must never run it.
import os
import sys

PY2 = sys.version_info[0] == 2
HERE = os.path.dirname(os.path.abspath(__file__))
PWNED = os.path.join(HERE, "pwned")
IDS = {}


class Hostile(object):
    def __repr__(self):
        with open(PWNED, "w") as f:
            f.write("__repr__ ran")
        sys.stdout.write("HOSTILE REPR RAN\n")
        sys.stdout.flush()
        return "hostile"

    __str__ = __repr__


class Plain(object):
    pass


# A class whose name would break a line of text output.
Weird = type("We\nird", (object,), {})


def announce(obj, evil, weird):
    with open(os.path.join(HERE, "locals_ids.txt"), "w") as f:
        f.write("obj %x evil %x weird %x closure %x\n"
                % (id(obj), id(evil), id(weird), IDS["closure"]))
    sys.stdout.write("READY %d\n" % os.getpid())
    sys.stdout.flush()


def innermost(n, flag, *rest, **options):
    nothing = None
    yes = True
    no = False
    small = -42
    big = 2 ** 200
    huge = -(10 ** 500)
    pi = 3.25
    tiny = 1.5e-07
    text = 'it\'s "q"\n\ttab'
    uni = u"grüße 中"
    raw = b"\x00\xffab'"
    megabyte = "x" * (1 << 20)
    tup = (1, "two", 3.0)
    single = (7,)
    many = list(range(10000))
    selfref = [1, 2]
    selfref.append(selfref)
    mapping = {3: "c", 1: [1.5], 2: (None,)}
    nested = [[[[1]]]]
    bag = {5}
    frozen = frozenset(["a"])
    empty = set()
    obj = Plain()
    evil = Hostile()
    weird = Weird()
    announce(obj, evil, weird)
    got = os.read(0, 1)  # @line:innermost
    later = 1
    if got == b"r":
        # The test asks for this after its dumps, to show that the file would have appeared.
        repr(evil)
    return later


if PY2:

    def gruesse(wert, anderer):
        groesse = wert
        return innermost(groesse, anderer, "r1", key="v")

    middle = gruesse
else:
    exec(
        compile(
            u"def grüße(wert, anderer):\n"
            u"    größe = wert\n"
            u"    return innermost(größe, anderer, 'r1', key='v')\n",
            __file__,
            "exec",
        )
    )
    middle = globals()[u"grüße"]


def outer(arg_cell):
    captured = "cell value"

    def closure():
        return middle(captured + "!", arg_cell)

    IDS["closure"] = id(closure)
    return closure()


outer(7)
