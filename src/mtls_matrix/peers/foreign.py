"""Foreign peers: programs in other languages, run as subprocesses that speak one contract
(docs/FOREIGN.md). This module is the harness side of it, written once. A stack is a small
program under fixtures/ plus a module that only declares it (peers/node_ws.py):

    NODE = Toolchain("node", executables=("node", "npm"), apt=("nodejs", "npm"),
                     steps=(("npm", "ci"),), built=("node_modules/ws",))

    class Server(ForeignServer):
        name, library, toolchain = "node-ws", "ws", NODE
        command = ("node", "{fixtures}/node/ws-peer.js")
        errors = (ErrorRule(r"peer did not return a certificate", "CERT_REQUIRED", own_check=True), ...)

A server process serves one listener (one TLS setting and profile: the ServerPool reuses it for
many cells). A client process serves many cells: one per client variant per worker process,
connections multiplexed by id. Every process runs in its own process group and exits when its
stdin reaches EOF, so it dies with the run even when the harness is killed.
"""

from __future__ import annotations

import asyncio
import atexit
import base64
import collections
import itertools
import json
import os
import re
import shutil
import signal
import ssl
import subprocess
import threading
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from string import Template
from typing import Any

from mtls_matrix import observe
from mtls_matrix.peers import TUNED_MAX_MESSAGE, ClientPeer, ClientTLS, Closed, Connection, ServerPeer, Unsupported
from mtls_matrix.scenarios import MTLS_GROUPS
from mtls_matrix.timing import FOREIGN_RESPONSIVE_S, FOREIGN_START_S, FOREIGN_STOP_GRACE_S
from mtls_matrix.canonical import canonical_from_text

def _fixtures_dir() -> Path:
    """The foreign peers' programs and the proxies' config templates: $MTLS_MATRIX_FIXTURES, else this
    checkout's fixtures/ (editable install), else ./fixtures (a non-editable install run from the
    checkout, as CI does)."""
    if os.environ.get("MTLS_MATRIX_FIXTURES"):
        return Path(os.environ["MTLS_MATRIX_FIXTURES"])
    checkout = Path(__file__).resolve().parents[3] / "fixtures"
    return checkout if checkout.is_dir() else Path.cwd() / "fixtures"


FIXTURES_DIR = _fixtures_dir()

# Stacks the issue names that this machine's registries (Debian, npm, PyPI) cannot provide: BUGS.md
# says so, with why, instead of leaving them out silently.
NOT_RUN = (
    (".NET (Kestrel server, ClientWebSocket client)",
     "no reachable registry provides a .NET runtime: Microsoft publishes the SDK and ASP.NET Core (Kestrel) "
     "only on its own package feed, Debian bookworm has no dotnet packages, and we found no runtime on npm or PyPI. "
     "Debian's Mono (mono-runtime 6.8) has a System.Net.WebSockets.ClientWebSocket, but Mono's own "
     "implementation, not .NET's, and no Kestrel: a finding about it would not be a finding about .NET."),
)
SETUP_HINT = "run `mtls-matrix setup-foreign`"
STDERR_LINES = 30  # the tail of a process's stderr kept for error messages
# What a program prints is untrusted input (docs/FOREIGN.md): lines are read up to a limit, and a
# line that breaks the contract is reported with its start and skipped.
SERVER_LINE_LIMIT = 1 << 20  # a server's events carry no data
CLIENT_LINE_LIMIT = 32 << 20  # a client's `message` events carry the echo, base64: io-16mib's fits
STDERR_LINE_LIMIT = 64 << 10  # a log line; only the tail of a few is ever shown
EXCERPT = 120  # bytes of a bad line quoted in its report
RESERVED_KEYS = ("side", "kind")  # the names of the harness's own event records (observe.CellRecorder.add)


@dataclass(frozen=True)
class Leftover:
    """Something an earlier mtls-matrix setup left outside the checkout: `setup-foreign` and its
    `--undo` remove it while it is as that setup left it: a file with exactly `content`, or (no
    content) a directory the user running them owns."""

    path: str
    content: str | None = None


@dataclass(frozen=True)
class Toolchain:
    """How a stack is installed, declaratively: `mtls-matrix setup-foreign` runs it (and `--undo`
    reverses it, apart from the packages), the peers ask `missing()` before every cell."""

    name: str  # as `setup-foreign --only` names it; its sources live in fixtures/<name>/
    executables: tuple[str, ...]  # must be on PATH
    apt: tuple[str, ...] = ()  # Debian packages that provide them
    steps: tuple[tuple[str, ...], ...] = ()  # commands run in fixtures/<name>/ after apt (npm ci, go build)
    built: tuple[str, ...] = ()  # files under fixtures/<name>/ the steps produce
    inputs: tuple[str, ...] = ()  # files under fixtures/<name>/ whose change makes the steps run again
    # absolute paths the apt packages provide besides executables (libraries: Go sources, Ruby gems)
    files: tuple[str, ...] = ()
    created: tuple[str, ...] = ()  # what the steps create under fixtures/<name>/, all of it: --undo removes it
    # system services the packages install enabled, which the matrix never runs as services (it
    # starts its own processes): not started at boot when setup-foreign installed the package
    services: tuple[str, ...] = ()
    leftovers: tuple[Leftover, ...] = ()

    @property
    def dir(self) -> Path:
        return FIXTURES_DIR / self.name

    def missing(self) -> str | None:
        for executable in self.executables:
            if shutil.which(executable) is None:
                return f"{executable} not found; {SETUP_HINT}"
        for path in self.files:
            if not Path(path).exists():
                return f"{path} not found; {SETUP_HINT}"
        for path in self.built:
            if not (self.dir / path).exists():
                return f"fixtures/{self.name}/{path} not found; {SETUP_HINT}"
        return None


@dataclass(frozen=True)
class ErrorRule:
    """One line of a peer's error table: the stack's own words -> a canonical error (canonical.py)."""

    pattern: str  # a regex searched (case-insensitively) in "type code verify_error message" of the error
    canonical: str
    own_check: bool = False  # this side's own verification refused the other (not an alert it received)


def map_error(rules: tuple[ErrorRule, ...], event: dict) -> dict[str, Any]:
    """The canonical error of a foreign error event: the peer's table first, then the generic
    reading of OpenSSL's words (canonical.TEXTS), which never claims an own check."""
    text = " ".join(str(event[k]) for k in ("type", "code", "verify_error", "message") if event.get(k))
    for rule in rules:
        if re.search(rule.pattern, text, re.I):
            return {"canonical": rule.canonical, "own_check": rule.own_check}
    return {"canonical": canonical_from_text(text), "own_check": False}


def _argv(command: tuple[str, ...]) -> list[str]:
    return [part.format(fixtures=FIXTURES_DIR) for part in command]


def kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)  # the process and anything it started
    except (ProcessLookupError, PermissionError):
        pass


def _tls_cap(context: ssl.SSLContext) -> str:
    if context.maximum_version == ssl.TLSVersion.TLSv1_2:
        return "tls12"
    if context.minimum_version == ssl.TLSVersion.TLSv1_3:
        return "tls13"
    return "any"


_package_versions: dict[str, str] = {}


def _package_version(package: str) -> str:
    if package not in _package_versions:
        try:
            found = subprocess.run(["dpkg-query", "-W", "-f=${Version}", package], capture_output=True,
                                   text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            found = ""
        _package_versions[package] = found or "unknown"
    return _package_versions[package]


def _tail(lines: collections.deque) -> str:
    return " | ".join(lines)[-1500:] or "(no stderr)"


class LineTooLong(Exception):
    """A line over the reader's limit, skipped: its start and its length."""

    def __init__(self, start: bytes, size: int, limit: int):
        super().__init__(f"a line of {size} bytes or more, over the limit of {limit}")
        self.start = start


def read_lines(stream, limit: int):
    """The lines of a blocking stream, each at most `limit` bytes; a longer one becomes a LineTooLong
    (skipped to its end, never held whole in memory)."""
    while line := stream.readline(limit):
        if line.endswith(b"\n") or len(line) < limit:  # a whole line, or the last one without its newline
            yield line
            continue
        start, size = line[:EXCERPT], len(line)
        while (line := stream.readline(limit)) and not line.endswith(b"\n"):
            size += len(line)
        yield LineTooLong(start, size + len(line), limit)


async def read_lines_async(reader: asyncio.StreamReader, limit: int):
    """read_lines for an asyncio stream made with this `limit`."""
    start, size = None, 0  # of a line over the limit, while it is skipped
    while True:
        ended = False
        try:
            line = await reader.readuntil(b"\n")
        except asyncio.IncompleteReadError as exc:  # the end: the last line may lack its newline
            line, ended = exc.partial, True
        except asyncio.LimitOverrunError as exc:  # no newline within the limit
            chunk = await reader.readexactly(exc.consumed)
            start, size = chunk[:EXCERPT] if start is None else start, size + len(chunk)
            continue
        if start is not None:
            yield LineTooLong(start, size + len(line), limit)
            start, size = None, 0
        elif line:
            yield line
        if ended:
            return


def parse_line(line: bytes | LineTooLong) -> tuple[dict | None, str | None]:
    """(event, None); (None, what is wrong, quoting the line) for a line that breaks the contract;
    (None, None) for no event at all: a log line on the wrong stream, kept with stderr."""
    if isinstance(line, LineTooLong):
        return None, f"{line}: {line.start!r}..."
    try:
        event = json.loads(line)
    except (ValueError, RecursionError):
        return None, None
    if not isinstance(event, dict):
        return None, None
    clash = [key for key in RESERVED_KEYS if key in event]
    if clash:
        return None, f"the key {clash[0]!r} is not part of the contract: {line[:EXCERPT]!r}"
    return event, None


def log_line(line: bytes) -> str:
    return line.decode(errors="replace").rstrip()


# -- reproducers (repro.py): the program, started as the run started it, from a standalone script --
# The snippets are built from what a peer declares (command, errors, fixed config), so every
# foreign stack, and a subclass that redeclares them, gets its own without writing any.

def _template(name: str) -> Template:
    """One of the reproducer's pieces, a template file of mtls_matrix/templates/ ($name placeholders)."""
    return Template(resources.files("mtls_matrix").joinpath(f"templates/{name}.py.tmpl").read_text())


_REPRO_PROGRAM = _template("foreign_program")  # the program, started with its JSON config, its events read
_REPRO_SERVER = _template("foreign_server")  # the reproducer's server side: the program as a server
_REPRO_CLIENT = _template("foreign_client")  # the reproducer's client side: the program as a client


class _ForeignPeer:
    foreign = True
    toolchain: Toolchain
    command: tuple[str, ...]  # argv; "{fixtures}" is the fixtures/ directory of this checkout
    errors: tuple[ErrorRule, ...] = ()
    version_file: str | None = None  # a package.json-like file under fixtures/<stack>/ whose "version" is the library's
    version_package: str | None = None  # else the Debian package whose installed version is the library's
    timeouts: dict[str, float | None] = {}  # the stack's default timeouts, from its documentation (None: none)

    # its reproducer snippets are built from its declarations (repro.py): a subclass that redeclares
    # the command or the errors gets its own
    repro_derived = True

    def missing(self) -> str | None:
        return self.toolchain.missing()

    def _repro_program(self, side: str) -> str:
        rules = "[\n" + "".join(f"    ({r.pattern!r}, {r.canonical!r}, {r.own_check!r}),\n" for r in self.errors) + "]"
        return _REPRO_PROGRAM.substitute(side=side, name=self.name, library=self.library, toolchain=self.toolchain.name,
                                         fixtures=repr(str(FIXTURES_DIR)), command=repr(list(self.command)),
                                         errors=rules if self.errors else "[]")

    def own_timeouts(self, *variant: str) -> dict[str, float | None]:
        return dict(self.timeouts)

    @property
    def version(self) -> str:
        if self.version_file:
            try:
                return json.loads((self.toolchain.dir / self.version_file).read_text())["version"]
            except (OSError, ValueError, KeyError):
                pass
        if self.version_package:
            return _package_version(self.version_package)
        return "unknown"


class ForeignServer(_ForeignPeer, ServerPeer):
    """One server process per listener. TLS events without a token are attributed by the
    connection's remote port to the cell that was current when the process reported `accept`.
    A program that cannot express the settings exits with an `error` event marked `unsupported`
    before `listening`: the cells of that listener are UNSUPPORTED with its message."""

    fixed_config: dict[str, Any] = {}  # added to every config line: a server variant of the program
    # the contract's server always requires a client certificate: no token-auth listener (group `token`)
    groups = MTLS_GROUPS

    out_of_process = piped = True

    async def start(self, context: ssl.SSLContext, profile: str) -> int:
        files = context.mtls_files
        config = {"role": "server", "port": 0, "chain": str(files.chain), "key": str(files.key), "ca": str(files.ca),
                  "crl": str(files.crl) if files.crl else None, "tls": _tls_cap(context), **self._config(profile)}
        self._stopping, self._exited = False, False
        self._by_port: dict[int, observe.CellRecorder | None] = {}
        self._stderr: collections.deque = collections.deque(maxlen=STDERR_LINES)
        self._listening = asyncio.get_running_loop().create_future()
        self._proc = await asyncio.create_subprocess_exec(
            *_argv(self.command), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            start_new_session=True, limit=SERVER_LINE_LIMIT)
        self._proc.stdin.write((json.dumps(config) + "\n").encode())
        self._tasks = [asyncio.ensure_future(self._read()), asyncio.ensure_future(self._read_stderr())]
        try:
            return await asyncio.wait_for(asyncio.shield(self._listening), FOREIGN_START_S)
        except BaseException as exc:
            await self.stop()
            if isinstance(exc, asyncio.TimeoutError):
                raise RuntimeError(f"{self.name} did not report listening within {FOREIGN_START_S:g} s; "
                                   f"stderr: {_tail(self._stderr)}") from None
            raise

    @property
    def alive(self) -> bool:
        return not self._exited

    @property
    def pid(self) -> int:
        """The server process (its sockets are not this process's: leaks.listening_addresses(pid))."""
        return self._proc.pid

    def _config(self, profile: str) -> dict[str, Any]:
        """What the program's config says besides the listener's files and TLS cap."""
        return {"family": self.family, "profile": profile,
                "max_message": TUNED_MAX_MESSAGE if profile == "tuned" else None, **self.fixed_config}

    def repro_server(self, profile: str) -> str:
        return self._repro_program("server") + "\n\n" + _REPRO_SERVER.substitute(config=repr(self._config(profile)))

    def processes(self) -> tuple[int, ...]:
        proc = getattr(self, "_proc", None)  # a listener's copy (cell.ServerHost) once started
        return (proc.pid,) if proc is not None and proc.returncode is None else ()

    async def stop(self) -> None:
        self._stopping = True
        proc = self._proc
        if proc.returncode is None:
            try:
                proc.stdin.close()  # the contract: exit on stdin EOF
                await asyncio.wait_for(proc.wait(), FOREIGN_STOP_GRACE_S)
            except (asyncio.TimeoutError, OSError):
                pass
        kill_group(proc.pid)
        try:
            await asyncio.wait_for(proc.wait(), FOREIGN_STOP_GRACE_S)
        except asyncio.TimeoutError:
            pass
        for task in self._tasks:
            task.cancel()

    async def _read(self) -> None:
        """Each line's event, in order. A line the harness cannot use is reported with the line
        (in the stderr tail every error message quotes, and to the cell it came in) and skipped;
        a bad `listening` fails the start with the reason. Whatever ends this reader ends the
        process: a process whose events nobody reads is a dead one."""
        number = 0
        try:
            async for line in read_lines_async(self._proc.stdout, SERVER_LINE_LIMIT):
                number += 1
                event, problem = parse_line(line)
                if event is None and problem is None:
                    self._stderr.append(f"(stdout) {log_line(line)}")
                    continue
                if event is not None:
                    try:
                        self._on_event(dict(event))
                    except Exception as exc:
                        problem = f"{type(exc).__name__}: {exc}: {line[:EXCERPT]!r}"
                if problem:
                    self._bad_line(number, event, problem)
        finally:
            self._exited = True
            kill_group(self._proc.pid)
        code = await self._proc.wait()
        why = f"{self.name} server process exited with code {code}; stderr: {_tail(self._stderr)}"
        if not self._listening.done():
            self._listening.set_exception(RuntimeError(why))
        elif not self._stopping:  # a crash: the cell it happened in says so
            recorder = observe.connection_recorder()
            if recorder is not None:
                recorder.add("server", "error", message=why)

    def _bad_line(self, number: int, event: dict | None, problem: str) -> None:
        report = f"{self.name} server process, stdout line {number}: {problem}"
        self._stderr.append(report)
        if event is not None and event.get("event") == "listening" and not self._listening.done():
            self._listening.set_exception(RuntimeError(f"bad `listening` event: {report}"))
            return
        recorder = observe.connection_recorder()
        if recorder is not None:
            recorder.add("server", "error", message=report)

    async def _read_stderr(self) -> None:
        async for line in read_lines_async(self._proc.stderr, SERVER_LINE_LIMIT):
            self._stderr.append(str(line) if isinstance(line, LineTooLong) else log_line(line))

    def _on_event(self, event: dict) -> None:
        kind = event.pop("event", None)
        token = event.pop("token", None)
        if kind == "listening":
            if not self._listening.done():
                self._listening.set_result(int(event["port"]))
            return
        if kind == "error" and event.get("unsupported") and not self._listening.done():
            self._listening.set_exception(Unsupported(f"{self.name}: {event.get('message')}"))
            return
        if kind in ("handshake-error", "error"):
            event.update(map_error(self.errors, event))
        if token:
            observe.server_event(token, kind, **event)
            return
        port = event.get("remote_port")
        if kind == "accept":
            if len(self._by_port) > 4096:
                self._by_port.clear()
            self._by_port[port] = observe.connection_recorder()
        recorder = self._by_port.get(port) if port in self._by_port else observe.connection_recorder()
        if recorder is not None:
            recorder.add("server", kind, **event)


class ForeignError(Exception):
    """An error a foreign client reported: the stack's own message, unedited, plus what the
    harness read from it. Subclassed per (stack, error type) so results show the stack's type."""

    def __init__(self, message: str, phase: str | None = None, status: int | None = None,
                 canonical: str | None = None, own_check: bool = False):
        super().__init__(message)
        self.phase, self.status, self.canonical, self.own_check = phase, status, canonical, own_check


_error_types: dict[tuple[str, str], type] = {}


def error_type(stack: str, name: str) -> type:
    key = (stack, name)
    if key not in _error_types:
        _error_types[key] = type(name, (ForeignError,), {"__module__": stack, "__qualname__": name})
    return _error_types[key]


class _ClientProcess:
    """One long-lived client process; a reader thread routes its replies by connection id."""

    def __init__(self, peer: ForeignClient, variant: str, environment: dict[str, str] | None = None):
        self.peer = peer
        self.popen = subprocess.Popen(_argv(peer.command), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, start_new_session=True,
                                      env={**os.environ, **environment} if environment else None)
        self.ids = itertools.count(1)
        self.routes: dict[int, _ForeignConnection] = {}
        self.abandoned: dict[int, float] = {}  # id -> when the harness gave up on it and sent `close`
        self.stderr: collections.deque = collections.deque(maxlen=STDERR_LINES)
        self.lock = threading.Lock()
        self.ended = False
        self.send({"role": "client", "family": peer.family, "variant": variant})
        for target in (self._read, self._read_stderr):
            threading.Thread(target=target, name=f"foreign:{peer.name}", daemon=True).start()

    @property
    def alive(self) -> bool:
        return not self.ended and self.popen.poll() is None

    def send(self, message: dict) -> None:
        line = (json.dumps(message) + "\n").encode()
        with self.lock:
            try:
                self.popen.stdin.write(line)
                self.popen.stdin.flush()
            except (OSError, ValueError) as exc:
                raise ForeignError(f"{self.peer.name} client process is gone ({exc}); "
                                   f"stderr: {_tail(self.stderr)}", phase="process") from None

    def _read(self) -> None:
        """Routes each line to its connection. A line the harness cannot use is reported with the
        line, to its connection or, when it names none, to every open one (each may be waiting
        for it), and skipped. Whatever ends this reader ends the process, and its connections
        fail at once with the reason: a process whose replies nobody reads is a dead one."""
        number, why = 0, None
        try:
            for line in read_lines(self.popen.stdout, CLIENT_LINE_LIMIT):
                number += 1
                message, problem = parse_line(line)
                if message is None and problem is None:
                    self.stderr.append(f"(stdout) {log_line(line)}")
                    continue
                ident = message.get("id") if message is not None else None
                if ident is not None and type(ident) is not int:
                    message, problem = None, f"`id` {ident!r:.40} is no connection id: {line[:EXCERPT]!r}"
                    ident = None
                if message is not None:
                    try:
                        self._route(ident, message)
                    except Exception as exc:
                        problem = f"{type(exc).__name__}: {exc}: {line[:EXCERPT]!r}"
                if problem:
                    self._bad_line(number, ident, problem)
        except Exception as exc:  # the pipe itself failed
            why = f"reading its output failed: {type(exc).__name__}: {exc}"
        finally:
            self.ended = True
            kill_group(self.popen.pid)
        code = self.popen.wait()
        gone = {"event": "error", "phase": "process",
                "message": f"{self.peer.name} client process {why or f'exited with code {code}'}; "
                           f"stderr: {_tail(self.stderr)}"}
        for conn in list(self.routes.values()):
            conn.deliver(gone)

    def _route(self, ident: int | None, message: dict) -> None:
        if ident in self.abandoned and message.get("event") == "closed":
            self.abandoned.pop(ident, None)
            self.routes.pop(ident, None)
        conn = self.routes.get(ident)
        if conn is not None:
            conn.deliver(message)

    def _bad_line(self, number: int, ident: int | None, problem: str) -> None:
        report = f"{self.peer.name} client process, stdout line {number}: {problem}"
        self.stderr.append(report)
        error = {"event": "error", "phase": "process", "message": report}
        routed = self.routes.get(ident)
        for conn in [routed] if routed is not None else list(self.routes.values()):
            conn.deliver(error)

    def _read_stderr(self) -> None:
        for line in read_lines(self.popen.stderr, STDERR_LINE_LIMIT):
            self.stderr.append(str(line) if isinstance(line, LineTooLong) else log_line(line))

    async def responsive(self) -> bool:
        """After a cell gave up on a connection: did the process answer the close the harness sent?
        A process that does not is hung, and would cost every later cell too."""
        while self.abandoned and self.alive:
            if any(time.perf_counter() - sent > FOREIGN_RESPONSIVE_S for sent in list(self.abandoned.values())):
                return False
            await asyncio.sleep(0.005)
        return self.alive

    def close(self, graceful: bool = True) -> None:
        """Close stdin and give it FOREIGN_STOP_GRACE_S to exit (not a hung one), then kill its group."""
        try:
            self.popen.stdin.close()
            if graceful:
                self.popen.wait(FOREIGN_STOP_GRACE_S)
        except (OSError, ValueError, subprocess.TimeoutExpired):
            pass
        kill_group(self.popen.pid)
        try:
            self.popen.wait(FOREIGN_STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            pass


_processes: dict[tuple[str, str, bool], _ClientProcess] = {}
_processes_lock = threading.Lock()


@atexit.register
def close_clients() -> None:
    """Stop every client process of this Python process (they would exit on stdin EOF anyway)."""
    with _processes_lock:
        procs = list(_processes.values())
        _processes.clear()
    for proc in procs:
        proc.close()


class ForeignClient(_ForeignPeer, ClientPeer):
    """One process per client variant per worker process, shared by the cells it serves."""

    # Every scenario but io-16mib: its 2 x 22 MB of base64 through the JSON pipe take seconds of the
    # harness's own time per cell, not the library's (docs/FOREIGN.md). Of the token group, what the
    # client adds: that it sends the header (`headers` in the connect command) and what its user sees
    # of a refusal; the other refusals are the server's business.
    scenarios: tuple[str, ...] = ("works", "client-rejected", "server-rejected", "hostile-server", "io-text*",
                                  "io-binary*", "io-1mib*", "io-1000-ordered*", "io-ping*", "io-close*",
                                  "io-server-close*", "token-header-ok", "token-missing",
                                  # explicit settings against an environment naming another CA (NODE_EXTRA_CA_CERTS,
                                  # SSL_CERT_FILE): the client process is started with it
                                  "environment")

    # the Python servers and the harness's hostile one; the proxies are judged with the Python clients
    servers: tuple[str, ...] | None = ("websockets", "aiohttp", "tornado", "tornado[[]identity=open[]]", "hostile")
    @property
    def variant_scenarios(self) -> dict[str, tuple[str, ...]]:
        return {variant: self.scenarios for variant in self.variants}

    async def connect(self, variant: str, url: str, tls: ClientTLS, profile: str,
                      timeout: float | None) -> Connection:
        proc = await self._process(variant, tls.environment)
        conn = _ForeignConnection(self, proc, observe.connection_recorder())
        await conn.open({"url": url, "ca": str(tls.ca), "cert": str(tls.cert) if tls.cert else None,
                         "key": str(tls.key) if tls.key else None, "server_hostname": tls.server_hostname,
                         "headers": dict(tls.headers), "auth": dict(tls.auth), "profile": profile,
                         "timeout": timeout})
        return conn

    async def _process(self, variant: str, environment: tuple[tuple[str, str], ...] = ()) -> _ClientProcess:
        # a cell that asks for a process environment (ClientTLS.environment) gets a process started with it;
        # the cells running side by side (hostile.Batch) share a process of their own: a later cell's finding
        # that an earlier one left the process hung must not kill it under a batched cell still waiting
        key = (self.name, variant, environment, observe.side_by_side())
        with _processes_lock:
            proc = _processes.get(key)
        if proc is not None and not (proc.alive and await proc.responsive()):
            proc.close(graceful=False)  # crashed, or hung on an earlier cell: that cell paid; start anew
            proc = None
        if proc is None:
            proc = _ClientProcess(self, variant, dict(environment))
            with _processes_lock:
                _processes[key] = proc
        return proc

    def repro_client(self, variant: str, profile: str) -> str:
        config = {"role": "client", "family": self.family, "variant": variant}  # as _ClientProcess starts it
        return (self._repro_program("client") + "\n\n"
                + _REPRO_CLIENT.substitute(config=repr(config)))

    def processes(self) -> tuple[int, ...]:
        """This worker's client processes of this peer (one per variant)."""
        with _processes_lock:
            return tuple(p.popen.pid for key, p in _processes.items() if key[0] == self.name and p.alive)

    def canonical(self, exc: BaseException) -> str | None:
        return exc.canonical if isinstance(exc, ForeignError) else None

    def error(self, message: dict) -> ForeignError:
        mapped = map_error(self.errors, message)
        status = message.get("status")
        if status:
            mapped["canonical"] = f"HTTP_{status}"
        cls = error_type(self.name, str(message.get("type") or "Error"))
        return cls(str(message.get("message") or ""), phase=message.get("phase"), status=status, **mapped)


class _ForeignConnection(Connection):
    """A connection of a client process, seen from the cell's own event loop."""

    def __init__(self, peer: ForeignClient, proc: _ClientProcess, recorder: observe.CellRecorder | None):
        self.peer, self.proc, self.recorder = peer, proc, recorder
        self.loop = asyncio.get_running_loop()
        self.inbox: asyncio.Queue = asyncio.Queue()
        self.messages: collections.deque = collections.deque()
        self.ended: BaseException | None = None  # Closed or ForeignError: what recv raises once drained
        self.handshake_done = False
        self.transport: str | None = None  # socketio family: the transport that carried the session
        self.id = next(proc.ids)
        proc.routes[self.id] = self

    def deliver(self, message: dict) -> None:
        """On the process's reader thread: record the TLS events now (their time is the cell's
        timing), and hand everything to the cell's loop."""
        kind = message.get("event")
        if self.recorder is not None and kind == "handshake-ok":
            self.handshake_done = True
            self.recorder.add("client", "handshake-ok", version=message.get("version"),
                              cipher=message.get("cipher"), peer_cn=message.get("peer_cn"))
        elif self.recorder is not None and kind == "error":
            mapped = map_error(self.peer.errors, message)
            # the client's own check of the server certificate is TLS's business even when the
            # stack cannot say where it happened (faye's verifier reports no phase)
            if message.get("phase") == "tls" or (mapped["own_check"] and not message.get("phase")):
                data = {k: message.get(k) for k in ("type", "code", "verify_error", "message")}
                self.recorder.add("client", "read-error" if self.handshake_done else "handshake-error",
                                  **data, **mapped)
        try:
            self.loop.call_soon_threadsafe(self.inbox.put_nowait, message)
        except RuntimeError:
            pass  # the cell's loop is closed: the cell is over

    async def _until(self, *replies: str) -> dict:
        """Wait for one of `replies`; data messages and ends that arrive meanwhile are kept."""
        try:
            while True:
                if self.ended is not None and "closed" not in replies:
                    raise self.ended
                message = await self.inbox.get()
                if message.get("event") in replies:
                    return message
                self._absorb(message)
        except asyncio.CancelledError:
            self._abandon()
            raise

    def _absorb(self, message: dict) -> None:
        """An unsolicited event: a data message is kept for recv(); a close or an error ends the connection."""
        kind = message.get("event")
        if kind == "message":
            self.messages.append(message)
        elif kind == "closed":  # the program's word for its library's close event or callback
            code, reason = message.get("code"), message.get("reason")
            self.ended = Closed(code, reason, (f"{self.peer.library} close", f"code {code}, reason {reason!r}"))
        elif kind == "error":
            self.ended = self.peer.error(message)

    def _abandon(self) -> None:
        """The cell gave up (its deadline): tell the process to drop the connection; the next cell
        checks that it answered (_ClientProcess.responsive)."""
        if self.proc.routes.get(self.id) is self and self.id not in self.proc.abandoned:
            self.proc.abandoned[self.id] = time.perf_counter()
            try:
                self.proc.send({"cmd": "close", "id": self.id, "code": 1000, "reason": "abandoned"})
            except ForeignError:
                pass

    async def _command(self, cmd: str, reply: str, **fields: Any) -> dict:
        self.proc.send({"cmd": cmd, "id": self.id, **fields})
        return await self._until(reply)

    async def open(self, fields: dict) -> None:
        try:
            opened = await self._command("connect", "open", **fields)
            self.transport = opened.get("transport")
        except (ForeignError, Closed):
            self.proc.routes.pop(self.id, None)
            raise

    async def send(self, message: str | bytes) -> None:
        """Pipelined: the command is written and the cell goes on, as a library's send returns once
        the frame is buffered; the `sent` reply is not awaited (1000 messages must not cost 1000 pipe
        round trips), and an `error` the send caused surfaces at the next call on the connection."""
        if self.ended is not None:
            raise self.ended
        if isinstance(message, bytes):
            self.proc.send({"cmd": "send", "id": self.id, "type": "binary", "data": base64.b64encode(message).decode()})
        else:
            self.proc.send({"cmd": "send", "id": self.id, "type": "text", "data": message})

    async def recv(self) -> str | bytes:
        try:
            while not self.messages:
                if self.ended is not None:
                    raise self.ended
                self._absorb(await self.inbox.get())
        except asyncio.CancelledError:
            self._abandon()
            raise
        message = self.messages.popleft()
        data = message.get("data") or ""
        return base64.b64decode(data) if message.get("type") == "binary" else data

    async def ping(self, payload: bytes) -> bytes:
        pong = await self._command("ping", "pong", data=base64.b64encode(payload).decode())
        return base64.b64decode(pong.get("data") or "")

    async def close(self, code: int, reason: str) -> None:
        try:
            if isinstance(self.ended, Closed) or self.proc.routes.get(self.id) is not self:
                self.proc.send({"cmd": "close", "id": self.id, "code": code, "reason": reason})  # frees the id
                return
            await self._command("close", "closed", code=code, reason=reason)
        finally:
            self.proc.routes.pop(self.id, None)
