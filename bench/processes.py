"""Where a command's CPU goes, by process: the controller, each pytest-xdist worker, what they start.

    python bench/processes.py -- mtls-matrix run --out DIR [selection arguments]

Runs the command with bench/cpu_log on PYTHONPATH (its sitecustomize makes every Python process log
its CPU time at exit) and prints, per Python process, its own CPU time and that of the children it
reaped: a worker's client process (isolate.py), the foreign peers and proxies it started; then the
whole tree's CPU as the kernel counts it, orphans included (bench/orphans.py), and what of it no
Python process reaped. A benchmark: it asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

import orphans  # bench/orphans.py, next to this script

CPU_LOG = Path(__file__).resolve().parent / "cpu_log"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", nargs=argparse.REMAINDER, help="the command, after --")
    args = parser.parse_args()
    command = orphans.command(parser, args.command)
    orphans.adopt()
    with tempfile.TemporaryDirectory(prefix="mtls-matrix-cpu-") as tmp:
        log = Path(tmp) / "cpu.log"
        path = os.pathsep.join(p for p in (str(CPU_LOG), os.environ.get("PYTHONPATH", "")) if p)
        proc = subprocess.run(command, env={**os.environ, "PYTHONPATH": path, "MTLS_MATRIX_CPU_LOG": str(log)},
                              capture_output=True, text=True)
        left = orphans.reap()
        rows = [line.split("\t") for line in log.read_text().splitlines()] if log.exists() else []
    print(f"exit {proc.returncode}; {len(rows)} Python processes logged their CPU (seconds):")
    top = str(os.getpid())  # the command's process is this one's child; the others are its descendants
    total = 0.0
    for pid, parent, own, children, argv in sorted(rows, key=lambda r: (r[1] != top, -float(r[2]))):
        role = "" if parent == top else "worker" if argv.strip() == "-c" else "started by " + parent
        print(f"  {pid:>8} {float(own):8.2f} own {float(children):8.2f} children  {role:18} {argv[:70]}")
        total += float(own) + float(children) if parent == top else 0.0  # its children include the others
    print(f"  total {total:.2f} s (the top process and all it reaped)")
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    tree = usage.ru_utime + usage.ru_stime
    print(f"  the whole tree: {tree:.2f} s, of which {tree - total:.2f} s in processes no Python process reaped "
          f"(orphans, such as a browser's renderers)")
    for command_line in left:
        print(f"  left running after the command, killed: {command_line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
