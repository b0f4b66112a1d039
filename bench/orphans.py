"""Count the CPU of every process a command starts, also the ones its tree orphans.

The kernel adds a process's CPU time to its parent's children's account only when the parent reaps
it. A process whose parent exits first is reaped by the nearest child subreaper above it, else by
init, and then nobody we ask counts it: Chromium's zygote leaves its renderers that way, about half
of a browser's CPU. A benchmark that calls `adopt()` first becomes that subreaper, and `reap()`
after each command collects what came to it, so RUSAGE_CHILDREN counts the whole tree.

    python bench/orphans.py -- COMMAND...    the command's wall time and its whole tree's CPU
"""

from __future__ import annotations

import argparse
import ctypes
import os
import resource
import subprocess
import sys
import time

import psutil

PR_SET_CHILD_SUBREAPER = 36  # <linux/prctl.h>


def adopt() -> None:
    """Make this process the subreaper of every process it starts, and theirs."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER) failed")


def reap(grace_s: float = 10.0) -> list[str]:
    """Reap the orphans that came to this process once the command is done; those still running
    after `grace_s` are killed and reaped too (the harness should have ended them). Their command
    lines, for the benchmark to report as left behind."""
    deadline, left = time.monotonic() + grace_s, []
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return left
        if pid:
            continue
        if time.monotonic() < deadline:
            time.sleep(0.05)
            continue
        for child in psutil.Process().children():
            try:
                left.append(" ".join(child.cmdline())[:120] or f"pid {child.pid}")
                child.kill()
            except psutil.NoSuchProcess:
                pass
        deadline = float("inf")  # killed: now wait for them


def command(parser: argparse.ArgumentParser, words: list[str]) -> list[str]:
    """The command given after `--` (argparse.REMAINDER keeps the `--`)."""
    run = words[1:] if words[:1] == ["--"] else words
    if not run:
        parser.error("give the command to run after --")
    return run


def main() -> int:
    parser = argparse.ArgumentParser(description="a command's wall time and the CPU of its whole process tree")
    parser.add_argument("--grace", type=float, default=10.0, help="seconds orphans get to end (default 10)")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="the command, after --")
    args = parser.parse_args()
    run = command(parser, args.command)
    adopt()
    start = time.perf_counter()
    code = subprocess.run(run).returncode
    wall = time.perf_counter() - start
    for command_line in reap(args.grace):
        print(f"left running after the command, killed: {command_line}")
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    print(f"exit {code}: {wall:.2f} s wall, {usage.ru_utime + usage.ru_stime:.2f} s CPU")
    return 0


if __name__ == "__main__":
    sys.exit(main())
