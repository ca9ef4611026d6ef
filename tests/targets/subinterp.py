# -*- coding: utf-8 -*-
# Target with a sub-interpreter: thread "sub-runner" runs subinterp_code.py inside a second
# interpreter, where it blocks in os.read(). Prints READY once the sub-interpreter is blocked,
# then a JSON line {"pid": ..., "code": <path of subinterp_code.py>}, then waits on stdin.
import json
import os
import sys
import threading

HERE = os.path.dirname(os.path.abspath(__file__))
CODE_PATH = os.path.join(HERE, "subinterp_code.py")
ready_r, ready_w = os.pipe()  # sub-interpreter -> main: "I am blocked"
hold_r, hold_w = os.pipe()  # never written: the sub-interpreter blocks reading it

# The sub-interpreter compiles the file itself, so its frames carry the real file name and lines.
CODE = (
    "READY_W, HOLD_R = %d, %d\n"
    "exec(compile(open(%r).read(), %r, 'exec'))\n" % (ready_w, hold_r, CODE_PATH, CODE_PATH)
)


def run_sub():
    try:
        from concurrent import interpreters  # 3.14+

        interpreters.create().exec(CODE)
        return
    except ImportError:
        pass
    try:
        import _interpreters as mod  # 3.13
    except ImportError:
        import _xxsubinterpreters as mod  # 3.12
    iid = mod.create()
    if hasattr(mod, "exec"):
        mod.exec(iid, CODE)
    else:
        mod.run_string(iid, CODE)


t = threading.Thread(target=run_sub, name="sub-runner")
t.daemon = True
t.start()
os.read(ready_r, 1)
print("READY")
print(json.dumps({"pid": os.getpid(), "code": CODE_PATH}))
sys.stdout.flush()
sys.stdin.readline()
# Leave without finalizing: the sub-interpreter is still blocked.
os._exit(0)
