#!/usr/bin/env python3
"""Runs a command and prints its CPU seconds (user + system, from wait4's rusage: the kernel's
nanosecond runtime, not /usr/bin/time's 10 ms steps) and peak RSS in kB. Its stdout and stderr go to
OUT.out and OUT.err.   measure.py OUT COMMAND [ARGS...]"""
import os
import sys

out = sys.argv[1]
with open(out + ".out", "wb") as stdout, open(out + ".err", "wb") as stderr:
    pid = os.fork()
    if pid == 0:
        os.dup2(stdout.fileno(), 1)
        os.dup2(stderr.fileno(), 2)
        try:
            os.execvp(sys.argv[2], sys.argv[2:])
        finally:
            os._exit(127)
    _, status, usage = os.wait4(pid, 0)
print(f"{usage.ru_utime + usage.ru_stime:.6f} {usage.ru_maxrss}")
