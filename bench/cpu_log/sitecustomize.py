"""Imported at start-up by every Python process of a command bench/processes.py runs (this folder is
put on PYTHONPATH): at exit, the process appends its pid, parent, own CPU time and its reaped
children's to the file MTLS_MATRIX_CPU_LOG names. A process that ends with os._exit or a kill writes
nothing; its CPU shows in its parent's children figure."""

import atexit
import os
import sys

_LOG = os.environ.get("MTLS_MATRIX_CPU_LOG")


def _write() -> None:
    times = os.times()
    with open(_LOG, "a") as log:
        log.write(f"{os.getpid()}\t{os.getppid()}\t{times.user + times.system:.3f}\t"
                  f"{times.children_user + times.children_system:.3f}\t{' '.join(sys.argv)[:200]}\n")


if _LOG:
    atexit.register(_write)
