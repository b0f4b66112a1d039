"""What the proxy topologies share (peers/nginx.py, peers/haproxy.py): a reverse proxy terminates
mutual TLS on 127.0.0.1 in front of a Python WebSocket server, which listens without TLS on another
loopback port and takes the client identity from the headers the proxy sets (peers.forwarded_cn).

One proxy process per listener (the harness starts one per server TLS settings and profile, and
reuses it for many cells), configured from the context's files (`context.mtls_files`) and its TLS
version range, in its own temporary directory. It dies with the run: its own process group,
killed at stop(), and a parent-death signal if this process dies first.

The proxy's side of a cell is read from its logs, which it writes to a pipe this listener's event
loop reads as lines arrive (and copies to proxy.log in the temporary directory). A line that names
the request (/cell/<token>) goes to that cell; a line about a connection that never sent a request
(a failed handshake) to the current cell (observe.cell_event), which is exact because the cells of
one process run one at a time and the runner waits for the proxy's last word on a connection
("proxy-done") before it judges the cell.
"""

from __future__ import annotations

import asyncio
import copy
import ctypes
import functools
import os
import shutil
import signal
import socket
import ssl
import subprocess
from abc import abstractmethod
from pathlib import Path

import jinja2

from mtls_matrix import observe
from mtls_matrix.peers import ServerFiles, ServerPeer
from mtls_matrix.peers.foreign import Toolchain
from mtls_matrix.pki import private_dir
from mtls_matrix.scenarios import MTLS_GROUPS
from mtls_matrix.timing import PROXY_START_S, PROXY_STOP_GRACE_S

PORT_ATTEMPTS = 3  # a proxy that cannot inherit its listener binds a port we chose: another process may take it first
_TLS = ((ssl.TLSVersion.TLSv1_2, "TLSv1.2"), (ssl.TLSVersion.TLSv1_3, "TLSv1.3"))
_libc = ctypes.CDLL(None, use_errno=True)
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child before exec: the kernel kills it when the thread that started it ends."""
    _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def tls_versions(context: ssl.SSLContext) -> list[str]:
    """The protocol versions the context allows, by their proxy-config names. The harness never
    goes below TLS 1.2 (the default context's floor), so neither does the list."""
    low, high = context.minimum_version, context.maximum_version
    return [name for version, name in _TLS
            if (low == ssl.TLSVersion.MINIMUM_SUPPORTED or version >= low)
            and (high == ssl.TLSVersion.MAXIMUM_SUPPORTED or version <= high)]


@functools.cache
def program_version(program: str, argv: tuple[str, ...], prefix: str) -> str:
    """The version the program reports (`nginx -v`), or why there is none."""
    if not shutil.which(program):
        return "not installed"
    try:
        done = subprocess.run([program, *argv], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unknown ({exc})"
    text = done.stdout + done.stderr
    start = text.find(prefix)
    return text[start + len(prefix):].split()[0] if start >= 0 else "unknown"


class ProxiedServer(ServerPeer):
    """A proxy program in front of a Python server peer; each proxy module says how to configure
    it, how to start it, and what its log lines mean."""

    program: str  # the executable
    package: str  # the Debian package that provides it
    version_args: tuple[str, ...] = ("-v",)
    version_prefix: str
    template: str  # its configuration's Jinja2 template, in fixtures/<program>/
    inherits_listener = False  # True: the proxy takes the listening socket we bound (no port race)
    out_of_process = True
    story_end = "proxy-done"  # the last line the proxy logs about a connection
    # it terminates mutual TLS: a client without a certificate is refused before any token reaches the
    # app, so a token-auth listener (group `token`) is not a proxy topology
    groups = MTLS_GROUPS

    def __init__(self, backend: ServerPeer, scenarios: tuple[str, ...]):
        self.backend_peer = backend
        self.name = f"{self.program}+{backend.name}"
        self.library = self.proxy = self.stack = self.program
        self.framework = backend.name
        self.scenarios = scenarios

    @property
    def version(self) -> str:
        return program_version(self.program, self.version_args, self.version_prefix)

    @property
    def pid(self) -> int:
        return self.process.pid

    def processes(self) -> tuple[int, ...]:
        process = getattr(self, "process", None)  # a listener's copy once started; workers are its children
        return (process.pid,) if process is not None and process.poll() is None else ()

    @property
    def toolchain(self) -> Toolchain:
        """`mtls-matrix setup-foreign` installs the proxy's Debian package; without it, SKIPPED."""
        return Toolchain(self.program, executables=(self.program,), apt=(self.package,), services=(self.package,))

    def missing(self) -> str | None:
        if not (self.toolchain.dir / self.template).exists():
            return f"{self.toolchain.dir / self.template} not found: the checkout's fixtures/ ($MTLS_MATRIX_FIXTURES)"
        return self.toolchain.missing()

    def render(self, **values: object) -> str:
        """The proxy's configuration: its template filled with `values`."""
        environment = jinja2.Environment(loader=jinja2.FileSystemLoader(self.toolchain.dir), autoescape=False,
                                         undefined=jinja2.StrictUndefined, keep_trailing_newline=True,
                                         trim_blocks=True, lstrip_blocks=True)
        return environment.get_template(self.template).render(**values)

    @abstractmethod
    def config(self, files: ServerFiles, versions: list[str], listen: str, backend_port: int, workdir: Path) -> str:
        """The proxy's configuration. `listen` is `127.0.0.1:PORT`, or `fd@N` for a proxy that
        inherits its listener."""

    @abstractmethod
    def command(self, config: Path) -> list[str]: ...

    @abstractmethod
    def parse(self, line: str) -> list[tuple[str | None, str, dict]]:
        """One log line -> events as (cell token or None for the current cell, kind, data).
        Kinds: handshake-ok, handshake-error, upgrade-refused, proxy-response; a connection's
        last line also yields proxy-done."""

    def backend_for(self, context: ssl.SSLContext) -> ServerPeer:
        """The copy of the backend this listener runs behind the proxy (one per listener)."""
        backend = copy.copy(self.backend_peer)
        backend.behind_proxy = True
        return backend

    def ready(self) -> bool:
        """The proxy listens (an inheriting proxy is ready as soon as it runs: the kernel queues)."""
        return True

    async def start(self, context: ssl.SSLContext, profile: str) -> int:
        self.process = None
        self.backend = self.backend_for(context)
        self.backend_port = backend_port = await self.backend.start(None, profile)
        self.workdir = private_dir(self.program)
        self.log = open(self.workdir / "proxy.log", "a", encoding="utf-8")
        try:
            for attempt in range(PORT_ATTEMPTS):
                listener = socket.socket()
                listener.bind(("127.0.0.1", 0))
                listener.listen(128)
                port = listener.getsockname()[1]
                listen = f"fd@{listener.fileno()}" if self.inherits_listener else f"127.0.0.1:{port}"
                config = self.workdir / "proxy.conf"
                config.write_text(self.config(context.mtls_files, tls_versions(context), listen, backend_port,
                                              self.workdir))
                if not self.inherits_listener:
                    listener.close()
                try:
                    self._spawn(config, listener)
                finally:
                    listener.close()
                if await self._started():
                    return port
                if "Address already in use" not in self.tail():
                    break
            raise RuntimeError(f"{self.name} did not start; its log ends: {self.tail()}")
        except BaseException:
            await self.stop()
            raise

    def _spawn(self, config: Path, listener: socket.socket) -> None:
        self.process = subprocess.Popen(
            self.command(config), cwd=self.workdir, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, pass_fds=(listener.fileno(),) if self.inherits_listener else (),
            start_new_session=True, preexec_fn=_die_with_parent)
        self._lines: dict[int, bytes] = {}
        loop = asyncio.get_running_loop()
        for stream in (self.process.stdout, self.process.stderr):
            os.set_blocking(stream.fileno(), False)
            self._lines[stream.fileno()] = b""
            loop.add_reader(stream.fileno(), self._read, stream.fileno())

    async def _started(self) -> bool:
        for _ in range(int(PROXY_START_S / 0.01)):
            if self.process.poll() is not None:
                await asyncio.sleep(0.05)  # its last words
                self._drain()
                return False
            if self.ready():
                return True
            await asyncio.sleep(0.01)
        return False

    def _read(self, fd: int) -> None:
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            return
        if not chunk:
            asyncio.get_running_loop().remove_reader(fd)
            return
        *lines, self._lines[fd] = (self._lines[fd] + chunk).split(b"\n")
        for raw in lines:
            line = raw.decode("utf-8", "replace").rstrip("\r")
            self.log.write(line + "\n")
            for token, kind, data in self.parse(line):
                data = {"proxy": self.program, **data}
                if token is None:
                    observe.cell_event("server", kind, **data)
                else:
                    observe.server_event(token, kind, **data)
        self.log.flush()

    def _drain(self) -> None:
        for fd in list(getattr(self, "_lines", {})):
            try:
                self._read(fd)
            except OSError:
                pass

    def tail(self, lines: int = 8) -> str:
        try:
            text = (self.workdir / "proxy.log").read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return " | ".join(text[-lines:]) or "(nothing)"

    async def stop(self) -> None:
        loop = asyncio.get_running_loop()
        if self.process is not None:
            for fd in getattr(self, "_lines", {}):
                loop.remove_reader(fd)
            if self.process.poll() is None:
                try:
                    os.killpg(self.process.pid, signal.SIGTERM)
                    await asyncio.to_thread(self.process.wait, PROXY_STOP_GRACE_S)
                except (ProcessLookupError, subprocess.TimeoutExpired):
                    pass
            if self.process.poll() is None:
                try:
                    os.killpg(self.process.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.process.wait()
            self.process.stdout.close()
            self.process.stderr.close()
            self.process = None
        self.log.close()
        shutil.rmtree(self.workdir, ignore_errors=True)
        await self.backend.stop()


# What a proxy adds to the matrix, played where it adds information (ServerPeer.scenarios): the
# proxy terminates TLS, so its handling of client certificates (and how each client reports it)
# is the proxy's whatever the backend; behind it, each backend shows the forwarded identity and
# the proxied I/O. The server-side certificate checks are the client's own, covered by the direct
# servers, but for the chain the proxy sends.
_PROXIED_IO = ("io-text", "io-1mib", "io-close", "io-server-close")
FRONT = ("works", "client-rejected", "server-missing-intermediate*", "hostile-client") + _PROXIED_IO  # one backend
BEHIND = ("works", "client-no-cert", "client-no-cert-tls12") + _PROXIED_IO  # behind the others

