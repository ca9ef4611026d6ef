# -*- coding: utf-8 -*-
"""Target for the hostile-name test: a busy function whose name and file name are markup.

Python 3.8+ (uses `CodeType.replace`). The function is compiled from source with a file name
full of markup, then its code object is renamed to `<script>alert(1)</script>`; every output
format must carry both names escaped. Usage: record_hostile.py SECONDS.
"""
import sys
import time

NAME = "<script>alert(1)</script>"
FILE = "<b>&amp;\"evil'</b>.py"
SOURCE = "def busy(end, clock):\n    while clock() < end: pass\n"

namespace = {}
exec(compile(SOURCE, FILE, "exec"), namespace)
busy = namespace["busy"]
if sys.version_info >= (3, 11):
    busy.__code__ = busy.__code__.replace(co_name=NAME, co_qualname=NAME)
else:
    busy.__code__ = busy.__code__.replace(co_name=NAME)

clock = time.perf_counter
sys.stdout.write("READY\n")
sys.stdout.flush()
busy(clock() + float(sys.argv[1]), clock)
