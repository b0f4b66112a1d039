"""Foreign peers broken on purpose (tests/foreign/shim.py around the real node-ws program, and
tests/foreign/leaky.py): loaded with `--peer-plugin tests.foreign.peers`; MTLS_TEST_MARKER names
the shim's marker file."""

import os
import sys
from pathlib import Path

from mtls_matrix.peers import node_ws
from mtls_matrix.peers.foreign import ErrorRule, ForeignServer, Toolchain

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


class LeakyServer(ForeignServer):
    """Keeps every connection it rejected open (tests/foreign/leaky.py)."""

    name, library = "selftest-leaky-foreign", "mtls-matrix"
    toolchain = Toolchain("python", executables=(sys.executable,))
    command = (sys.executable, str(Path(__file__).with_name("leaky.py")))
    groups = ("client-rejected",)
    errors = (ErrorRule(r"certificate has expired", "CERT_EXPIRED", own_check=True),)  # Python's ssl words


def untrusted_server(mode: str) -> node_ws.Server:
    return type("UntrustedServer", (node_ws.Server,), {"name": f"selftest-node-{mode}", "command": _shimmed(mode)})()


def untrusted_client(mode: str) -> node_ws.Client:
    return type("UntrustedClient", (node_ws.Client,), {"name": f"selftest-node-{mode}", "variants": ("options",),
                                                       "command": _shimmed(mode)})()


# Programs that break the output contract once (tests/foreign/shim.py): tests/test_foreign_untrusted.py
UNTRUSTED = [untrusted_server(m) for m in ("long-line-before-listening", "bad-port", "kind-in-accept")] + [
    untrusted_client(m) for m in ("list-id-on-open", "long-line-for-open", "close-stdout-on-connect")]

PEERS = [CrashingServer(), HangingClient(), LeakyServer(), *UNTRUSTED]
