"""A broken foreign peer for tests/test_foreign.py: the real node-ws program behind a shim that
breaks it once, in one way, then behaves (the marker file remembers that it broke).

    shim.py crash-on-handler MARKER -- ARGV...   server: exits the moment the first handler runs
    shim.py hang-on-connect MARKER -- ARGV...    client: stops reading and answering at the first connect

And ways of breaking the output contract (tests/test_foreign_untrusted.py):

    long-line-before-listening   server: a 2 MiB line first, then its events
    bad-port                     server: `listening` with a port that is no number
    kind-in-accept               server: the first `accept` carries a `kind` key
    list-id-on-open              client: the first `open` names its connection [ID]
    long-line-for-open           client: the first `open` becomes a 33 MiB line
    close-stdout-on-connect      client: at the first connect, closes its stdout and keeps running

The shim forwards stdin to the program and the program's stdout to its own, line by line; it
and the program share the process group the harness gave them.
"""

import json
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


def event(line: bytes) -> str | None:
    try:
        return json.loads(line).get("event")
    except ValueError:
        return None


def broken(line: bytes) -> bytes:
    """The line as this mode breaks it (once), or unchanged."""
    kind = event(line)
    if mode == "long-line-before-listening" and kind == "listening" and breaks():
        return b'{"event": "note", "text": "' + b"x" * (2 << 20) + b'"}\n' + line
    if mode == "bad-port" and kind == "listening" and breaks():
        return json.dumps({"event": "listening", "port": "forty-two"}).encode() + b"\n"
    if mode == "kind-in-accept" and kind == "accept" and breaks():
        return json.dumps({**json.loads(line), "kind": "forged"}).encode() + b"\n"
    if mode == "list-id-on-open" and kind == "open" and breaks():
        message = json.loads(line)
        return json.dumps({**message, "id": [message["id"]]}).encode() + b"\n"
    if mode == "long-line-for-open" and kind == "open" and breaks():
        return json.dumps({**json.loads(line), "padding": "x" * (33 << 20)}).encode() + b"\n"
    return line


def forward_stdout() -> None:
    for line in child.stdout:
        if mode == "crash-on-handler" and b'"event": "handler"' in line.replace(b'":"', b'": "') and breaks():
            child.kill()  # the server dies with the handler's connection open
            os._exit(3)
        sys.stdout.buffer.write(broken(line))
        sys.stdout.buffer.flush()
    os._exit(0)


threading.Thread(target=forward_stdout, daemon=True).start()
for line in sys.stdin.buffer:
    if mode == "hang-on-connect" and b'"cmd": "connect"' in line and breaks():
        while True:
            time.sleep(60)  # hung: no more commands read, none answered
    if mode == "close-stdout-on-connect" and b'"cmd": "connect"' in line and breaks():
        os.close(1)  # its output ends; the process, and its program, go on
        while True:
            time.sleep(60)
    child.stdin.write(line)
    child.stdin.flush()
child.stdin.close()
child.wait()
