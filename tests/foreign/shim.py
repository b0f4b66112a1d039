"""A broken foreign peer for tests/test_foreign.py: the real node-ws program behind a shim that
breaks it once, in one way, then behaves (the marker file remembers that it broke).

    shim.py crash-on-handler MARKER -- ARGV...   server: exits the moment the first handler runs
    shim.py hang-on-connect MARKER -- ARGV...    client: stops reading and answering at the first connect

The shim forwards stdin to the program and the program's stdout to its own, line by line; it
and the program share the process group the harness gave them.
"""

import os
import subprocess
import sys
import threading
import time

mode, marker, _, *argv = sys.argv[1:]
child = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
broken_before = os.path.exists(marker)


def breaks() -> bool:
    global broken_before
    if broken_before:
        return False
    broken_before = True
    open(marker, "w").close()
    return True


def forward_stdout() -> None:
    for line in child.stdout:
        if mode == "crash-on-handler" and b'"event": "handler"' in line.replace(b'":"', b'": "') and breaks():
            child.kill()  # the server dies with the handler's connection open
            os._exit(3)
        sys.stdout.buffer.write(line)
        sys.stdout.buffer.flush()
    os._exit(0)


threading.Thread(target=forward_stdout, daemon=True).start()
for line in sys.stdin.buffer:
    if mode == "hang-on-connect" and b'"cmd": "connect"' in line and breaks():
        while True:
            time.sleep(60)  # hung: no more commands read, none answered
    child.stdin.write(line)
    child.stdin.flush()
child.stdin.close()
child.wait()
