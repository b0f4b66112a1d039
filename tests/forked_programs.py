"""Programs tests/test_forkserver.py runs through the fork server's launcher or beside it.

    python -m tests.forked_programs report
        prints what a forked child got: the preloaded module if it is there, its working directory,
        $MARK and its parent's pid
    python -m tests.forked_programs ask-and-die SOCKET
        asks the fork server at SOCKET for a client process, prints its pid and dies at once
"""

import os
import sys

from mtls_matrix import forkserver, isolate

PRELOADED = "xml.dom.minidom"  # nothing else in these tests imports it


def report() -> None:
    preloaded = [name for name in sys.modules if name == PRELOADED]
    print(preloaded, os.getcwd(), os.environ.get("MARK"), os.getppid())


def ask_and_die(server: str) -> None:
    child = forkserver.Forked.start(server, isolate.CLIENT_MODULE, dict(os.environ))
    print(child.pid, flush=True)
    os._exit(0)


if __name__ == "__main__":
    if sys.argv[1] == "report":
        report()
    else:
        ask_and_die(sys.argv[2])
