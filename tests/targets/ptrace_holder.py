# Holds every thread of process PID (argv[1]) under ptrace with PTRACE_SEIZE, which does not
# stop them, as a debugger or another profiler attached to it would: strobe's own ptrace is
# then refused. Prints "READY <pid>" once all are held; closing stdin ends it (the kernel
# releases the threads when their tracer exits). Python 3, root.
import ctypes
import os
import sys

libc = ctypes.CDLL(None, use_errno=True)
libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
libc.ptrace.restype = ctypes.c_long
PTRACE_SEIZE = 0x4206

pid = int(sys.argv[1])
for tid in os.listdir("/proc/%d/task" % pid):
    if libc.ptrace(PTRACE_SEIZE, int(tid), None, None) != 0:
        err = ctypes.get_errno()
        raise OSError(err, "PTRACE_SEIZE of thread %s: %s" % (tid, os.strerror(err)))
sys.stdout.write("READY %d\n" % os.getpid())
sys.stdout.flush()
sys.stdin.read()
