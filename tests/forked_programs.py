"""Programs tests/test_forkserver.py runs through the fork server's launcher or beside it.

    python -m tests.forked_programs report
        prints what a forked child got: the preloaded module if it is there, its working directory,
        $MARK, its parent's pid, and whether its garbage collector leaves the objects it was forked
        with alone (frozen)
    python -m tests.forked_programs ask-and-die SOCKET
        asks the fork server at SOCKET for a client process, prints its pid and dies at once
    python -m tests.forked_programs fork-of-this-process
        imports the preloaded module, puts a stand-in for sys.stdin (as pytest does), starts a fork
        server in this one-thread process (a fork of it, told to import nothing) in a private dir of
        this process and launches `report` through it; prints that report, the server's pid,
        whether the dir outlived the child, and after the server's close its exit code and whether
        the dir is gone
    python -m tests.forked_programs orphan SECONDS
        leaves a child behind that spends SECONDS of CPU (or, with "linger", sleeps ten minutes:
        long enough to outlive any grace, short if a failed test leaves it), and exits
        (tests/test_bench.py: bench/orphans.py counts or ends it)
"""

import gc
import io
import os
import shlex
import subprocess
import sys
import time

from mtls_matrix import forkserver, isolate, pki

PRELOADED = "xml.dom.minidom"  # nothing else in these tests imports it


def report() -> None:
    preloaded = [name for name in sys.modules if name == PRELOADED]
    print(preloaded, os.getcwd(), os.environ.get("MARK"), os.getppid(), gc.get_freeze_count() > 0)


def ask_and_die(server: str) -> None:
    child = forkserver.Forked.start(server, isolate.CLIENT_MODULE, dict(os.environ))
    print(child.pid, flush=True)
    os._exit(0)


def fork_of_this_process() -> None:
    __import__(PRELOADED)
    sys.stdin = io.StringIO()  # a stand-in with no descriptor, as pytest's capture leaves it
    server = forkserver.Server(str(pki.private_dir("forkserver")), [], dict(os.environ))
    launcher = [*shlex.split(forkserver.launcher_command()), "-u", "-m", "tests.forked_programs", "report"]
    try:
        # a forked child runs its exit handlers when it ends
        report = subprocess.run(launcher, env=dict(os.environ, **{forkserver.ENV: server.path}),
                                capture_output=True, text=True, timeout=60).stdout.strip()
        outlived = os.path.isdir(server.dir)
    finally:
        server.close(10)
    print(report, server.proc.pid, outlived, server.proc.returncode, not os.path.exists(server.dir))


def orphan(seconds: str) -> None:
    if os.fork() == 0:
        if seconds == "linger":
            time.sleep(600)
        else:
            until = time.process_time() + float(seconds)
            while time.process_time() < until:
                pass
    os._exit(0)


if __name__ == "__main__":
    {"report": report, "ask-and-die": ask_and_die, "fork-of-this-process": fork_of_this_process,
     "orphan": orphan}[sys.argv[1]](*sys.argv[2:])
