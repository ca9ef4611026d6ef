# Dump every code object's line table together with CPython's own line answers, as JSON.
#
# Used by crates/walker/tests/linetable_cpython.rs, which feeds this file to each test
# interpreter on stdin (`python -`) and checks strobe's LineMap against the answers. Runs
# unchanged on Python 2.7 and 3.6 through 3.15, so it only uses what all of them have.
#
# For every code object it reports:
#   table        co_lnotab (<= 3.9) or co_linetable (3.10+), hex
#   firstlineno  co_firstlineno
#   nbytes       len(co_code), in bytes
#   c            [byte offset, line] from the C function PyCode_Addr2Line, which is what
#                frame.f_lineno reports for an untraced frame (called through ctypes), including
#                the offset a not-yet-started frame reports (-1 bytes <= 3.9, -1 code unit =
#                -2 bytes 3.10+) and, <= 3.9 only, offsets past the end (3.10+ asserts there)
#   step         bytes per offset in py: 2 (3.10+, code units) or 1 (<= 3.9, every byte)
#   py           line or null for byte offsets 0, step, 2*step, ... < nbytes, from the
#                Python-level API: the line of the last dis.findlinestarts() start <= offset
#                (<= 3.9, what f_lineno reports), co_lines() (3.10), co_positions() (3.11+)
import binascii
import ctypes
import dis
import json
import sys

V = sys.version_info[:2]


def build_source():
    parts = []
    add = parts.append
    add('''
import os

def decorator(f):
    return f

@decorator
@decorator(
    1)
def decorated(a,
              b=1,
              *args,
              **kwargs):
    total = (a +
             b +
             len(args))
    return total

square = lambda x: (x *
                    x)

def comprehensions(items):
    doubled = [x * 2
               for x in items
               if x % 2]
    pairs = dict((k, v) for k, v in zip(items,
                                         items))
    nested = [[y for y in range(x)] for x in items]
    return doubled, pairs, nested, {x for x in items}, {x: 1 for x in items}

def try_finally(x):
    try:
        if x:
            return 1
        y = 2
    except (ValueError,
            TypeError) as e:
        y = 3
    finally:
        x = None
    return y

def try_in_loop(xs):
    for x in xs:
        try:
            try:
                if x:
                    continue
                if not x:
                    break
            finally:
                x = 1
        except Exception:
            raise
    return xs

def nested(a):
    def inner(b):
        def innermost(c):
            return a + b + c
        return innermost
    return inner

class Klass(object):
    attr = [1,
            2]

    @staticmethod
    def method(self):
        return self.attr[
            0
        ]

def with_stmt(path):
    with open(path) as f, \\
            open(path) as g:
        data = f.read() + \\
            g.read()
    return data

def loops(n):
    i = 0
    while i < n:
        i += 1
        if i == 5:
            continue
        elif i == 7:
            break
    else:
        i = -1
    for j in range(n):
        pass
    return i

def multiline_call():
    return max(
        1,
        2,
        3,
    )

def backwards(f, a, b, c):
    return f(
        a,
        b)(
        c).attr[
        a]

def gen():
    yield 1
    x = yield 2
    yield x
    """a docstring-like
    string spanning
    lines"""
    return

def chained(a, b, c):
    return (a <
            b <
            c) and (a
                    or b)

def one_line(): return 1
''')
    # Long forward and backward jumps (> 255 bytes, and > 65535 bytes for EXTENDED_ARG).
    body = ''.join('        x%d = a + %d * b\n' % (i, i) for i in range(200))
    add('def long_jumps(a, b):\n    if a:\n' + body + '    else:\n        x = 2\n'
        '    while b:\n' + body + '        b -= 1\n    return a\n')
    body = ''.join('        y = a[%d] + b.c%d(d)\n' % (i, i) for i in range(1500))
    add('def huge(a, b, d):\n    if a:\n' + body + '    return d\n')
    # One line compiling to far more than 255 bytes (lnotab and 3.10 split such ranges).
    add('def long_line(a):\n    return ' + ' + '.join(['a.b(a)'] * 150) + '\n')
    # Blank-line gaps > 127 and > 255 lines, and a gap in the middle of an expression.
    add('def gaps(a):\n    a = 1\n' + '\n' * 300 + '    a = 2\n' + '# comment\n' * 140 +
        '    a = 3\n' + '\n' * 1000 + '    return (a +\n' + '\n' * 400 + '        a)\n')
    # Large negative line deltas: the call instruction belongs to the line where it starts.
    add('def big_backwards(f, a):\n    return f(1, [\n' + '             a,\n' * 300 + '    ])\n')
    add('table = {\n' + ''.join('    %d: [%d,\n        %d],\n' % (i, i, i) for i in range(300)) +
        '}\n')
    if V >= (3, 0):
        add('''
def py3(a, *, b=2):
    counter = 0
    def inner():
        nonlocal counter
        counter += 1
        return counter
    return inner

async def coro(x, y):
    async with x as z:
        await y
    async for item in z:
        await item(
            1)
    return [i async for i in x]
''')
    if V >= (3, 6):
        add('''
def fstrings(a, b):
    return f"{a!r:>{b}} {b}" + f"""
{a
 + b}"""
''')
    if V >= (3, 8):
        add('''
def walrus(xs):
    if (n := len(xs)) > 10:
        return [y for x in xs if (y := x * 2)]
    return n
''')
    if V >= (3, 10):
        add('''
def matcher(cmd):
    match cmd:
        case [x, y, *rest] if x > y:
            return rest
        case {"key": value}:
            return value
        case Klass(attr=1) | None:
            return 1
        case _:
            pass
    return 0
''')
    if V >= (3, 11):
        add('''
def groups(f):
    try:
        f()
    except* ValueError as e:
        f = e
    except* (TypeError,
             KeyError):
        raise
''')
    if V >= (3, 12):
        add('''
type Alias[T] = list[T]

def generic[T: int](x: T) -> T:
    return x

class Box[T]:
    def get(self) -> T:
        return self.value
''')
    # Functions whose co_firstlineno is large.
    add('\n' * 70000 + 'def far_away(a):\n    return (a,\n            a)\n')
    return ''.join(parts)


def code_objects(co, out):
    out.append(co)
    for const in co.co_consts:
        if isinstance(const, type(co)):
            code_objects(const, out)
    return out


def stdlib_sources():
    # Real-world code too: a few large pure-Python modules of the interpreter under test.
    import argparse
    import inspect
    for mod in (argparse, inspect):
        path = mod.__file__
        if path.endswith(('.pyc', '.pyo')):
            path = path[:-1]
        with open(path) as f:
            yield path, f.read()


addr2line = ctypes.pythonapi.PyCode_Addr2Line
addr2line.argtypes = [ctypes.py_object, ctypes.c_int]
addr2line.restype = ctypes.c_int


C_DENSE_LIMIT = 8192


def describe(co):
    nbytes = len(co.co_code)
    if V >= (3, 10):
        table = co.co_linetable
        c_offsets = [-2] + list(range(0, nbytes, 2))
    else:
        table = co.co_lnotab
        c_offsets = list(range(-1, nbytes + 4))
    if nbytes > C_DENSE_LIMIT:
        # PyCode_Addr2Line scans the table from the start on every call: asking it about every
        # offset of the one huge function would take minutes. Ask about both ends densely and
        # about a stride of the middle; the Python-level answers below still cover every offset.
        c_offsets = [off for off in c_offsets
                     if off < C_DENSE_LIMIT // 2 or off >= nbytes - C_DENSE_LIMIT // 2
                     or off % 202 == 0]
    c = [[off, addr2line(co, off)] for off in c_offsets]

    py = []
    if V >= (3, 11):
        for i, pos in enumerate(co.co_positions()):
            py.append(pos[0])
    elif V >= (3, 10):
        for start, end, line in co.co_lines():
            for off in range(start, end, 2):
                py.append(line)
    else:
        starts = list(dis.findlinestarts(co))
        line = None
        k = 0
        for off in range(nbytes):
            while k < len(starts) and starts[k][0] <= off:
                line = starts[k][1]
                k += 1
            py.append(line)
    return {
        'name': co.co_name,
        'firstlineno': co.co_firstlineno,
        'table': binascii.hexlify(table).decode('ascii'),
        'nbytes': nbytes,
        'c': c,
        'step': 2 if V >= (3, 10) else 1,
        'py': py,
    }


def main():
    sources = [('<linetable-test>', build_source())] + list(stdlib_sources())
    codes = []
    for name, src in sources:
        code_objects(compile(src, name, 'exec'), codes)
    json.dump({
        'version': list(sys.version_info[:3]),
        'debug': hasattr(sys, 'gettotalrefcount'),
        'codes': [describe(co) for co in codes],
    }, sys.stdout, separators=(',', ':'))
    sys.stdout.write('\n')


main()
