"""The client process of isolate.py: `python -m mtls_matrix.isolated_client`. Each request is one
cell's client (cell.client_in_child), run on a thread of its own; the reply goes back over stdout.

Its own module, above cell, so that isolate (which cell uses to reach this process) imports no cell.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
from typing import Any

from mtls_matrix.isolate import READY, receive, send


def _die_with_parent() -> None:
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass  # not Linux: stdin EOF still ends the process once the parent is gone
    if os.getppid() == 1:
        os._exit(0)  # the parent died before the line above took effect


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)  # a Ctrl-C to the process group ends it quietly
    _die_with_parent()
    # Only now the libraries (seconds of imports): until here a Ctrl-C or the parent's death ends this process.
    from mtls_matrix import cell, observe

    observe.install()
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # nothing a library prints may corrupt the replies
    lock = threading.Lock()

    def reply(cell_id: int, answer: Any) -> None:
        with lock:
            send(stdout, (cell_id, answer))

    def serve(cell_id: int, request: dict) -> None:
        reply(cell_id, cell.client_in_child(**request))

    reply(-1, READY)
    while True:
        try:
            cell_id, request = receive(stdin)
        except EOFError:
            os._exit(0)
        threading.Thread(target=serve, args=(cell_id, request), daemon=True).start()


if __name__ == "__main__":
    main()
