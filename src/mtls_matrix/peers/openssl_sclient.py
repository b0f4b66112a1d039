"""`openssl s_client`: the TLS-only reference client every debugging session falls back to.

A Python-side adapter drives one `openssl s_client -brief` per cell and turns its words into the
same client events as the foreign-peer contract (docs/FOREIGN.md): `handshake-ok` from the
brief summary, `handshake-error` with OpenSSL's own verify code from "verify error:num=N", and a
`read-error` for an alert that arrives after the handshake. After the handshake it writes a
plain WebSocket upgrade request by hand and reads the status line: the server's handler sees
the client identity and the server's TLS 1.3 rejection of the client certificate, which only
arrives after the client's handshake finished, is read (s_client must read to see the alert).
Anything beyond the upgrade (messages, ping, close) it cannot speak: those cells are UNSUPPORTED.

Variant `verify_return_error`: the flag that makes s_client stop at a verification error;
without it s_client reports the error and carries on, which is no verification at all.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import inspect
import ipaddress
import os
import re
import subprocess
import tempfile
from importlib import resources
from pathlib import Path
from string import Template
from urllib.parse import urlsplit

from mtls_matrix import observe
from mtls_matrix.peers import ClientPeer, ClientTLS, Connection
from mtls_matrix.peers.foreign import ErrorRule, ForeignError, Toolchain, error_type, kill_group, map_error
from mtls_matrix.canonical import VERIFY_CODES

OPENSSL = Toolchain("openssl", executables=("openssl",), apt=("openssl",))
TLS_ONLY = "openssl s_client speaks TLS only: no WebSocket frames after the upgrade"
ERRORS = (
    # s_client's own verification prints OpenSSL's X509 code: the table Python's peers use
    *(ErrorRule(rf"verify error:num={code}:", canonical, own_check=True) for code, canonical in VERIFY_CODES.items()),
    ErrorRule(r"Connection refused", "CONNECTION_REFUSED"),
    ErrorRule(r"errno=(104|32)\b", "CONNECTION_RESET"),  # read:errno=104: the peer reset the connection
)
_VERIFY = re.compile(r"verify error:num=(\d+):(.*)")
_OPENSSL_ERROR = re.compile(r":error:[0-9A-F]+:|^(read|write):errno=\d+")


@functools.lru_cache(maxsize=1)
def _openssl_version() -> str:
    try:
        out = subprocess.run(["openssl", "version"], capture_output=True, text=True, timeout=5).stdout
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.split()[1] if len(out.split()) > 1 else "unknown"


def _pem_blocks(path: Path) -> list[str]:
    return re.findall(r"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----\n?", path.read_text(), re.S)


def s_client_argv(port: int, ca, server_hostname: str, cert, key) -> tuple[list[str], Path | None]:
    """s_client's command line for a connection, and the temp file of the client chain's
    intermediates it needs (None: none), which the caller removes."""
    argv = ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-brief", "-no_ign_eof",
            "-CAfile", str(ca), "-verify_return_error"]
    try:
        ipaddress.ip_address(server_hostname)
        argv += ["-verify_ip", server_hostname]
    except ValueError:
        argv += ["-servername", server_hostname, "-verify_hostname", server_hostname]
    extra = None
    if cert:
        argv += ["-cert", str(cert), "-key", str(key)]
        intermediates = _pem_blocks(Path(cert))[1:]
        if intermediates:  # -cert takes the leaf only; the rest of the chain goes in -cert_chain
            fd, name = tempfile.mkstemp(prefix="mtls-matrix-chain-", suffix=".pem")
            with os.fdopen(fd, "w") as f:
                f.write("".join(intermediates))
            extra = Path(name)
            argv += ["-cert_chain", name]
    return argv, extra


def upgrade_request(parts, headers=()) -> bytes:
    """The WebSocket upgrade request s_client writes by hand: the URL's path and query, and the
    headers a scenario asks for (a bearer token)."""
    target = f"{parts.path}?{parts.query}" if parts.query else parts.path
    sent = "".join(f"{name}: {value}\r\n" for name, value in headers)
    return (f"GET {target} HTTP/1.1\r\nHost: {parts.netloc}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {base64.b64encode(os.urandom(16)).decode()}"
            f"\r\nSec-WebSocket-Version: 13\r\n{sent}\r\n").encode()


# The reproducer's client (repro.py): the same command line and upgrade request (their source is
# copied in), s_client's output shown line by line; its own verification's error carries OpenSSL's
# X509 code (`verify_code`), which the reproducer reads as the cell's own check.
_REPRO_CLIENT = Template(resources.files("mtls_matrix").joinpath("templates/openssl_client.py.tmpl").read_text())


class _Upgraded(Connection):
    """The upgraded connection: s_client can only close it."""

    def __init__(self, proc: asyncio.subprocess.Process, extra: Path | None):
        self.proc, self.extra = proc, extra

    async def send(self, message):
        raise NotImplementedError(TLS_ONLY)

    async def recv(self):
        raise NotImplementedError(TLS_ONLY)

    async def ping(self, payload):
        raise NotImplementedError(TLS_ONLY)

    async def close(self, code, reason):
        await _end(self.proc, self.extra)


async def _end(proc: asyncio.subprocess.Process, extra: Path | None) -> None:
    """s_client sends close_notify and exits on stdin EOF; its group is killed if it does not."""
    try:
        if proc.returncode is None:
            proc.stdin.close()
            await asyncio.wait_for(proc.wait(), 1.0)
    except (asyncio.TimeoutError, OSError):
        pass
    finally:
        kill_group(proc.pid)
        if extra:
            extra.unlink(missing_ok=True)


class Client(ClientPeer):
    name = "openssl-s_client"
    stack = "OpenSSL"
    foreign = True
    library = "openssl"
    variants = ("verify_return_error",)
    handshake_only = TLS_ONLY
    toolchain = OPENSSL

    def missing(self) -> str | None:
        return self.toolchain.missing()

    @property
    def version(self) -> str:
        return _openssl_version()

    def canonical(self, exc):
        return exc.canonical if isinstance(exc, ForeignError) else None

    repro_derived = True  # its reproducer's client: the template, with this module's command line and request

    def repro_client(self, variant: str, profile: str) -> str:
        return _REPRO_CLIENT.substitute(
            verify=repr(_VERIFY.pattern), openssl_error=repr(_OPENSSL_ERROR.pattern),
            **{name: inspect.getsource(fn).rstrip() for name, fn in (
                ("pem_blocks", _pem_blocks), ("argv", s_client_argv), ("request", upgrade_request))})

    async def connect(self, variant, url, tls: ClientTLS, profile, timeout):
        parts = urlsplit(url)
        argv, extra = s_client_argv(parts.port, tls.ca, tls.server_hostname, tls.cert, tls.key)
        proc = await asyncio.create_subprocess_exec(*argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                                    stderr=subprocess.STDOUT, start_new_session=True)
        try:
            await asyncio.wait_for(self._upgrade(proc, parts, tls.headers, observe.connection_recorder()), timeout)
        except BaseException:
            await _end(proc, extra)
            raise
        return _Upgraded(proc, extra)

    async def _upgrade(self, proc: asyncio.subprocess.Process, parts, headers, recorder) -> None:
        """Read s_client's output line by line (its summary on stderr and the server's bytes on
        stdout share one pipe, in the order written) and record what each line says."""
        summary: dict = {}
        handshake_done = False
        first_error = None
        closed_by_server = False
        while True:
            raw = await proc.stdout.readline()
            if not raw:
                break
            line = raw.decode(errors="replace").strip()
            if line == "CONNECTION ESTABLISHED":
                summary = {}
            elif line.startswith(("Protocol version:", "Ciphersuite:", "Peer certificate:")):
                key, _, value = line.partition(": ")
                summary[key] = value
            elif line.startswith("Verification") and not handshake_done:
                handshake_done = True
                cn = re.search(r"CN = ([^,]+)", summary.get("Peer certificate", ""))
                self._record(recorder, "handshake-ok", version=summary.get("Protocol version"),
                             cipher=summary.get("Ciphersuite"), peer_cn=cn.group(1) if cn else None)
                try:
                    proc.stdin.write(upgrade_request(parts, headers))
                    await proc.stdin.drain()
                except (ConnectionError, OSError):
                    pass  # s_client is gone already: what it printed says why
            elif _VERIFY.search(line) or _OPENSSL_ERROR.search(line):
                verify = _VERIFY.search(line)
                event = {"message": line, "type": "s_client", "code": None}
                if verify:
                    event["verify_code"] = int(verify.group(1))
                self._record(recorder, "read-error" if handshake_done else "handshake-error",
                             **event, **map_error(ERRORS, event))
                first_error = first_error or event
            elif line == "CONNECTION CLOSED BY SERVER":
                closed_by_server = True
            elif line.startswith("HTTP/1.1 "):
                status = int(line.split()[1])
                if status == 101:
                    return
                raise self._error({"message": line, "type": "s_client", "phase": "upgrade", "status": status})
        await proc.wait()
        raise self._error(first_error or self._exit_event(proc.returncode, closed_by_server))

    @staticmethod
    def _exit_event(returncode: int | None, closed_by_server: bool) -> dict:
        """With -brief, s_client reports a failed read only as "CONNECTION CLOSED BY SERVER" and
        exits with the socket's errno (104: reset, 32: broken pipe), 0 for an orderly EOF."""
        if closed_by_server:
            if returncode in (104, 32):
                return {"message": f"connection closed by server: errno={returncode}", "type": "s_client",
                        "canonical": "CONNECTION_RESET"}
            if returncode == 0:
                return {"message": "connection closed by server", "type": "s_client", "canonical": "EOF"}
        return {"message": f"s_client exited with code {returncode} before the upgrade", "type": "s_client"}

    @staticmethod
    def _record(recorder, kind: str, **data) -> None:
        if recorder is not None:
            recorder.add("client", kind, **data)

    def _error(self, event: dict) -> ForeignError:
        mapped = map_error(ERRORS, event)
        if event.get("canonical"):
            mapped["canonical"] = event["canonical"]
        if event.get("status"):
            mapped["canonical"] = f"HTTP_{event['status']}"
        return error_type("openssl", "s_client")(event["message"], phase=event.get("phase"),
                                                  status=event.get("status"), **mapped)


PEERS = [Client()]
