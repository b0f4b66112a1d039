"""Foreign peers broken on purpose (tests/foreign/shim.py around the real node-ws program):
loaded with `--peer-plugin tests.foreign.peers`; MTLS_TEST_MARKER names the shim's marker file."""

import os
import sys
from pathlib import Path

from mtls_matrix.peers import node_ws

SHIM = str(Path(__file__).with_name("shim.py"))


def _shimmed(mode: str) -> tuple[str, ...]:
    return (sys.executable, SHIM, mode, os.environ.get("MTLS_TEST_MARKER", "/nonexistent/marker"), "--",
            *node_ws.COMMAND)


class CrashingServer(node_ws.Server):
    name = "selftest-node-crash"
    command = _shimmed("crash-on-handler")


class HangingClient(node_ws.Client):
    name = "selftest-node-hang"
    variants = ("options",)
    command = _shimmed("hang-on-connect")


PEERS = [CrashingServer(), HangingClient()]
