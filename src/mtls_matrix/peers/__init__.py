"""The peer contract and the registry of peers.

A peer module exports `PEERS`, a list of `ServerPeer` and `ClientPeer` instances. Built-in
modules, modules named by the `mtls_matrix.peers` entry-point group, and modules given with
`--peer-plugin module.path` are all loaded the same way (docs/PEERS.md).

Everything library-specific lives in the peer's module: how TLS settings are given (each way a
separate named variant), how the handler reads the client identity, and how the library's own
exceptions map to canonical errors.
"""

from __future__ import annotations

import functools
import importlib
import importlib.metadata
import secrets
import ssl
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from mtls_matrix import observe
from mtls_matrix.pki import CLIENT_CN
from mtls_matrix.protocol import (  # noqa: F401 (the peer contract's names, re-exported for peer modules)
    CLOSE_COMMAND, FINAL_CLOSE, TOKEN_SHAPE, TUNED_MAX_MESSAGE, Closed, Connection, NoOutcome, ServerHooks,
    TokenRefused, check_token, parse_close_command, query_token, subject_cn,
)
from mtls_matrix.scenarios import Scenario

BUILTIN = (
    "mtls_matrix.peers.websockets",
    "mtls_matrix.peers.aiohttp",
    "mtls_matrix.peers.tornado",
    "mtls_matrix.peers.websocket_client",
    "mtls_matrix.peers.hostile",
    "mtls_matrix.peers.nginx",
    "mtls_matrix.peers.haproxy",
    "mtls_matrix.peers.socketio",
    "mtls_matrix.peers.proxy_identity",
    "mtls_matrix.peers.node_ws",
    "mtls_matrix.peers.node_socketio",
    "mtls_matrix.peers.gorilla",
    "mtls_matrix.peers.ruby",
    "mtls_matrix.peers.openssl_sclient",
    "mtls_matrix.peers.chromium",
)
ENTRY_POINT_GROUP = "mtls_matrix.peers"

# the groups a TLS-only client (ClientPeer.handshake_only) plays without I/O steps; `token` is judged
# at the upgrade, which it writes by hand
HANDSHAKE_GROUPS = ("works", "client-rejected", "server-rejected", "token")
# The headers a TLS-terminating proxy (peers/proxy.py) sets on every request it forwards, replacing
# any the client sent: the verified client's subject CN, and its verification result.
FORWARDED_CN = "X-SSL-Client-CN"
FORWARDED_VERIFY = "X-SSL-Client-Verify"


def forwarded_cn(headers: Any) -> str | None:
    """The client identity a proxy vouches for; only for a server with `behind_proxy` set, whose
    plain listener nobody but the proxy reaches. A TLS listener never reads these headers."""
    return headers.get(FORWARDED_CN) if headers.get(FORWARDED_VERIFY) == "SUCCESS" else None


# The `token` group (issue 3's hybrid model: TLS without client certificates, a bearer token in the
# opening request). One valid token per process, random: both sides of a cell live in the process that
# runs it (a client process gets it in ClientTLS), and no constant in the project looks like a credential.
TOKEN = secrets.token_urlsafe(24)
# The identity the token names. A token-auth handler reports it where an mTLS handler reports the
# certificate's CN, so the same "the server saw the client identity" check judges both.
TOKEN_SUBJECT = CLIENT_CN
@dataclass(frozen=True)
class TokenAuth:
    """A token-auth listener's check (`ServerPeer.token_auth`): the tokens it accepts, each with the
    identity it names. Library-neutral: each server hands it what its library shows of the request."""

    tokens: tuple[tuple[str, str], ...] = ((TOKEN, TOKEN_SUBJECT),)

    def identity(self, cell: str | None, authorization: str | None, query: str | None,
                 payload: Any = None) -> str:
        """check_token for this listener; a refusal is recorded for the cell as `auth-refused`."""
        try:
            return check_token(dict(self.tokens), authorization, query, payload)
        except TokenRefused as refused:
            observe.server_event(cell, "auth-refused", canonical="UNAUTHORIZED", reason=refused.reason)
            raise


# The proxy-validated identity pattern (peers/proxy_identity.py): a proxy that does not verify the
# client certificate forwards it (URL-escaped PEM, nginx's $ssl_client_escaped_cert) for the app to
# check, with its proof that it set the headers itself: a secret only the proxy and the app know. One
# per process: a cell's server, proxy and client are started by one process (a client process gets
# the headers already made, in ClientTLS). A real deployment also binds the app where only the proxy
# reaches it (a unix socket).
FORWARDED_CERT = "X-SSL-Client-Cert"
PROXY_PROOF = "X-Proxy-Secret"
PROXY_SECRET = secrets.token_urlsafe(32)


def cell_token(path: str) -> str:
    """The cell token clients put in the URL path: /cell/<token>."""
    return path.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1]


@functools.cache  # reading package metadata costs milliseconds, and every cell asks
def version_of(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


@dataclass(frozen=True)
class ClientTLS:
    """What a scenario asks the client to use. Each variant turns it into its library's settings."""

    ca: Path  # the trust anchor (the run's root CA)
    cert: Path | None  # the chain to present (leaf + intermediates), None for no certificate
    key: Path | None
    server_hostname: str
    # headers the scenario asks the client to send on its opening request (the HTTP upgrade, or every
    # Engine.IO request); each client passes them its library's documented way, or declares in
    # `unsupported["headers"]` why it cannot
    headers: tuple[tuple[str, str], ...] = ()
    # fields the scenario asks a Socket.IO client to add to its connect `auth` payload
    auth: tuple[tuple[str, str], ...] = ()
    # the process environment the client runs under (name, value): a variant that takes its trust anchors
    # from the environment (ClientPeer.environment), or an `environment` scenario's other CA. The runner
    # gives such a client a process of its own with it (isolate.py; a foreign client's process): it never
    # reaches the run's environment, where other cells run
    environment: tuple[tuple[str, str], ...] = ()

    def context(self) -> ssl.SSLContext:
        """The documented stdlib way: a default client context plus our CA and certificate."""
        ctx = ssl.create_default_context(cafile=str(self.ca))
        if self.cert:
            ctx.load_cert_chain(str(self.cert), str(self.key))
        return ctx


@dataclass(frozen=True)
class ServerFiles:
    """The server's TLS settings as files (`ssl_context.mtls_files`), for stacks that are configured
    by paths instead of an SSLContext (uvicorn, and the foreign peers: peers/foreign.py)."""

    chain: Path
    key: Path
    ca: Path
    crl: Path | None
    # the run's good client certificate (leaf PEM), for an app that keeps its own store of agent
    # certificates and registers it (peers/proxy_identity.py)
    agent_cert: Path | None = None


@dataclass(frozen=True)
class Clock:
    """A library's own timeout for one wait (Peer.clock): its name as the library documents it (a
    sum names its parts) and its default in seconds; seconds None: the library sets none."""

    timeout: str
    seconds: float | None


class Unsupported(Exception):
    """The peer cannot express a setting the cell asks for (puma has no TLS version cap): the
    cell is UNSUPPORTED with this message as its reason, not a failure of the library."""


class Peer(ABC):
    name: str
    family: str = "ws"
    library: str  # distribution name, for its version
    harness = False  # the harness's own hostile peers (peers/hostile.py): they only play hostile scenarios
    # not a Python library (peers/foreign.py, openssl s_client, Chromium): it pairs with the Python
    # peers (and the proxies in front of them), not with another foreign peer
    foreign = False
    # the TLS implementation that verifies the other side: a behaviour every library on one stack
    # shares is the stack's default, not one library's choice (findings blame the narrowest layer)
    stack = "CPython ssl"
    # other distributions whose release decides how this peer behaves (python-socketio's python-engineio):
    # recorded beside `library` in each cell's versions
    companions: tuple[str, ...] = ()

    @property
    def version(self) -> str:
        return version_of(self.library)

    def versions(self) -> dict[str, str]:
        """`library` and its companions, as installed."""
        return {name: version_of(name) for name in (self.library, *self.companions)}

    def missing(self) -> str | None:
        """Why this peer cannot run on this machine (a foreign peer's toolchain is absent), or None.
        Its cells are then SKIPPED with this reason, never left out and never blamed on the library."""
        return None

    def processes(self) -> tuple[int, ...]:
        """The processes outside this one that hold this peer's connections (a foreign server or
        client process, a proxy, a browser; their children count too): resource hygiene after a
        rejection counts the sockets they keep (leaks.py). Empty for an in-process peer."""
        return ()

    # The library's own timeouts that end each wait it can be left in (peers/hostile.py STAGES names
    # the wait of each hostile behaviour; a client's `waits` names others): stage -> names of
    # own_timeouts() entries, any of which ends it ("a+b": a sum, a keepalive's interval plus its
    # timeout). A stage not named here: the library has no timeout of its own for that wait.
    clocks: dict[str, tuple[str, ...]] = {}

    def clock(self, stage: str, timeouts: dict[str, float | None]) -> Clock | None:
        """The library's own timeout for a wait at `stage`, from its own_timeouts(): the first of the
        declared ones to fire; Clock(names, None) when each is unset; None when none is declared."""
        declared = self.clocks.get(stage)
        if not declared:
            return None
        bounded = []
        for names in declared:
            parts = [timeouts.get(name) for name in names.split("+")]
            if None not in parts:
                bounded.append(Clock(names.replace("+", " + "), float(sum(parts))))
        if not bounded:
            return Clock(", ".join(declared), None)
        return min(bounded, key=lambda clock: clock.seconds)


class ServerPeer(Peer):
    role = "server"
    groups: tuple[str, ...] | None = None  # scenario groups this peer is meant for (None: all)
    # scenario names (globs) or groups this peer plays within its groups (None: all); a stack whose TLS
    # runs through stacks the matrix already covers plays the subset where it adds information
    scenarios: tuple[str, ...] | None = None
    # client variants (`name[variant]`) it plays with (None: all of its family): where a variant's
    # known failure (its TLS settings missing on one transport) would only hide what this server tests
    clients: tuple[str, ...] | None = None
    # this server's cells get the run's deadline times this: a stack whose cells finish in
    # milliseconds but whose library timeouts run to tens of seconds need not wait the full one
    deadline_scale: float = 1.0
    # its cells mostly wait on library timers (long-polls, refusals that sit one out) rather than
    # compute: `-n auto` adds workers that take them (plugin.pytest_xdist_auto_num_workers)
    waits = False
    # every cell gets a listener of its own, started and stopped with it: a server whose one listener
    # something an earlier cell left half-done can hold (werkzeug: see peers/socketio.py), so that no
    # verdict depends on the cell before
    private_listener = False
    # Set by peers/proxy.py on the copy it runs behind a proxy: start() then gets context None (a
    # plain listener on 127.0.0.1) and the handler takes the identity from forwarded_cn(headers).
    behind_proxy = False
    # A server in another process (a proxy, a foreign server): it listens there (`pid`), its sockets
    # are not this process's, and its side of a cell arrives later than the client's.
    out_of_process = False
    # its events come through a pipe (a foreign server): the runner waits for its side of the
    # handshake even before its `accept` arrived
    piped = False
    # the event that ends its side of each connection's story (a proxy's log: "proxy-done"), if any
    story_end: str | None = None
    # the HTTP server this library runs on (python-socketio on aiohttp), or a proxy's backend server
    framework: str | None = None
    # the TLS-terminating proxy in front of it (peers/proxy.py sets it)
    proxy: str | None = None
    # Set by the harness on the copy serving a `token`-group listener, whose context requests no client
    # certificate: the server must refuse a request without a valid token before the upgrade
    # (TokenAuth.identity, TokenRefused) and its handler reports the identity the token names.
    token_auth: TokenAuth | None = None

    # the library code as its user writes it (mtls_matrix.usercode): start_server(context, hooks, profile)
    # -> (server, port) and stop_server(server); run live by start()/stop() and copied by the reproducer
    usercode: ModuleType | None = None
    # keyword arguments of its usercode's start_server beyond (context, hooks, profile), given by start() and
    # by the reproducer: one module serving several peers (tornado reads the certificate in prepare() or open())
    usercode_options: dict[str, Any] = {}

    @property
    def hooks(self) -> RecordingHooks:
        """What the library code reports, recorded for the cell (made per call: the harness copies peers)."""
        return RecordingHooks(self)

    async def start(self, context: ssl.SSLContext, profile: str) -> int:
        """Listen on 127.0.0.1 (port 0) with this context; return the port. Runs on the
        server's own event loop thread. The handler reports to `self.hooks` (protocol.ServerHooks)
        the client identity it can see, echoes, obeys CLOSE_COMMAND, and reports the close it received."""
        if self.usercode is None:
            raise NotImplementedError(f"server {self.name} defines neither start() nor usercode")
        self._server, port = await self.usercode.start_server(context, self.hooks, profile, **self.usercode_options)
        return port

    async def stop(self) -> None:
        await self.usercode.stop_server(self._server)

    async def drop(self) -> None:
        """Abort every connection this server holds (a `reconnect` step on its private server)."""
        raise Unsupported(f"server {self.name} cannot drop its connections")

    async def restart(self, context: ssl.SSLContext, gap: float) -> None:
        """Stop listening and drop every connection, then after `gap` seconds listen again on the
        same port with `context` (a `reconnect` step on its private server)."""
        raise Unsupported(f"server {self.name} cannot restart")

    @property
    def alive(self) -> bool:
        """False once the listener died by itself (a foreign server's process exited): the pool
        starts a new one for the next cell."""
        return True

    def crash(self) -> str | None:
        """Once `alive` is False: what ended the listener ('Type: message' of the exception that killed
        its thread, a process's exit), if the peer knows; the cell it died in is recorded as a server crash."""
        return None

    def own_timeouts(self) -> dict[str, float | None]:
        """The library's default timeouts, read from the library (see ClientPeer.own_timeouts)."""
        return {}


class ClientPeer(Peer):
    role = "client"
    variants: tuple[str, ...] = ("ssl=context",)
    # I/O op, or "headers" (ClientTLS.headers), -> why this library cannot express it
    unsupported: dict[str, str] = {}
    # Where it plays, as data (absent: wherever its server plays): per variant, scenario names,
    # globs or groups (profiled cells as NAME-tuned); and server name globs. A slow client (a
    # browser) plays where it adds information; a variant that fails by design, where that is the point.
    variant_scenarios: dict[str, tuple[str, ...]] = {}
    servers: tuple[str, ...] | None = None
    # variant -> the only scenarios it ever plays (even with --all-pairs): a variant that disables
    # verification on purpose plays only where that is what the cell exposes (server-rejected:
    # INSECURE); one that refuses every server by design, only where that shows (works)
    only: dict[str, tuple[str, ...]] = {}
    # variant -> why it disables verification on purpose: a control, whose INSECURE is the expected
    # outcome and proves the scenario's certificate is bad; never a finding
    controls: dict[str, str] = {}
    # variant -> the environment variables it takes its trust anchors from (the library's default store,
    # as a user points it at a private CA): the runner sets each to the run's CA, for that client only
    environment: dict[str, tuple[str, ...]] = {}
    # variants that change process-wide state themselves (the program sets SSL_CERT_FILE after importing the
    # library): the runner gives them a client process of their own, which no other variant's cells share
    own_process: tuple[str, ...] = ()
    # variants that present no client certificate (the default-store styles): their cells run on a listener
    # that requests none (server-authenticated TLS, as the token group's), so a client that does not verify
    # the server shows as INSECURE, not as the server's refusal of a missing certificate
    server_auth_only: tuple[str, ...] = ()
    # variant -> how many requests one connection attempt makes by design (a page's fetch before its
    # WebSocket): a server that refuses each of them saw no repeat (evidence.repeated); absent: one
    requests: dict[str, int] = {}
    # a sync library: its cells run in a client process (isolate.py), so a hung one can be killed
    blocking = False
    # its cells' deadline times this (with the server's): a client whose every connection costs
    # seconds of its own (a browser context) gets them back where a server shortens the deadline
    deadline_scale: float = 1.0
    # hostile cells run all at once (hostile.Batch); False: one at a time, for a client whose cells
    # share a heavy process (a browser starting a dozen contexts at once would time its own start-up)
    side_by_side = True
    # A TLS-only client (openssl s_client): why it speaks nothing after the upgrade. Its cells of
    # HANDSHAKE_GROUPS run without their I/O steps (judged on the handshake, the verification and
    # the identity the handler saw); every other group is UNSUPPORTED with this reason.
    handshake_only: str | None = None

    # the library code as its user writes it (mtls_matrix.usercode): connect_client(variant, url, ca, cert,
    # key, headers, timeout, profile) -> Connection; run live by connect() and copied by the reproducer
    usercode: ModuleType | None = None

    async def connect(self, variant: str, url: str, tls: ClientTLS, profile: str,
                      timeout: float | None) -> Connection:
        """`timeout`: give it to the library as its opening-handshake timeout; None: set no
        timeout at all, the library's own defaults apply (fault scenarios measure them)."""
        if self.usercode is None:
            raise NotImplementedError(f"client {self.name} defines neither connect() nor usercode")
        return await self.usercode.connect_client(variant, url, str(tls.ca), tls.cert and str(tls.cert),
                                                  tls.key and str(tls.key), list(tls.headers), timeout, profile)

    async def reconnect_step(self, conn: Connection, control: Any, how: str,
                             server_cert: str | None = None) -> str | None:
        """A `reconnect` step (scenarios of a family whose clients reconnect by themselves): `control`, the
        harness's hand on the cell's private server (cell.ServerControl), drops or restarts it; returns None
        if the client behaved, else what went wrong. The family's peer module judges it (peers/socketio.py)."""
        raise Unsupported(f"client {self.name} does not reconnect by itself")

    def missing_for(self, variant: str) -> str | None:
        """missing(), for one variant: an adapter that cannot drive the installed release in this variant
        (a keyword argument it lacks) says "cannot run: <what is missing>"; its cells are SKIPPED with it."""
        return self.missing()

    def prepare(self, variant: str, tls: ClientTLS) -> None:
        """Called before each cell's clock starts: start what a cell's connection needs and is
        reused across cells (a browser process), so the cell's deadline measures the connection.
        Must not raise: a failure here shows again in `connect`, where it costs its cell."""

    def resident(self, variant: str, scenario: Scenario) -> tuple | None:
        """The long-lived process of a worker's that this cell's connection goes through (a browser),
        or None. The scheduler gives the cells that share one to the worker that started it while
        there is other work for the rest, as it does a listener's."""
        return None

    def own_timeouts(self, variant: str) -> dict[str, float | None]:
        """The library's default timeouts, read from the library itself (signatures, module
        defaults): what fault scenarios report next to what they measured. None: no timeout."""
        return {}

    def waits(self, variant: str, scenario: Scenario) -> tuple[str, ...]:
        """The stages (keys of `clocks`) at which this cell may wait on a timer of the library's own,
        one the harness does not hand it (a long-poll a refused connect sits out, an acknowledgement's
        timeout): the cell's deadline is then the library's clock (cell.cell_deadline)."""
        return ()

    def canonical(self, exc: BaseException) -> str | None:
        """The canonical error for a library-specific exception (HTTP status, close, ...), or None
        to let the generic mapping of the exception chain decide."""
        return None

    def error_attributes(self, exc: BaseException) -> dict[str, str]:
        """The exception's documented attributes a user reads (aiohttp's ClientConnectorError.os_error,
        host, ssl), as text, for the record beside its message."""
        return {}


class RecordingHooks(ServerHooks):
    """A server's reports, recorded for the cell its request path names (observe.server_event)."""

    def __init__(self, peer: ServerPeer):
        self.tokens_required = peer.token_auth is not None
        self._token_auth, self._behind_proxy = peer.token_auth, peer.behind_proxy

    def authorize(self, path: str, authorization: str | None, payload: Any = None) -> str:
        return self._token_auth.identity(cell_token(path), authorization, query_token(path), payload)

    def opened(self, path, headers, peer_cert, identity=None, error=None, **details) -> None:
        if identity is None:
            # behind a TLS-terminating proxy only the proxy reaches the plain listener (peers/proxy.py)
            identity = forwarded_cn(headers) if self._behind_proxy else subject_cn(peer_cert)
        observe.server_event(cell_token(path), "handler", peer_cn=identity,
                             **({"identity_error": error} if error else {}), **details)

    def transport(self, path, transport) -> None:
        observe.server_event(cell_token(path), "transport", transport=transport)

    def closed(self, path, code, reason) -> None:
        observe.server_event(cell_token(path), "handler-close", code=code, reason=reason)


@dataclass(frozen=True)
class ClientVariant:
    peer: ClientPeer
    variant: str

    @property
    def name(self) -> str:
        return f"{self.peer.name}[{self.variant}]"


class Registry:
    """The peers by name. Plugin modules (the entry-point group's, and `modules`) load at once; the
    built-in modules on first need, in BUILTIN order and only as far as the names a selection asks
    for, so a run of one library imports that library alone. Every built-in peer has its own name;
    a plugin's peer of the same name replaces it. `servers`, `clients` and `sources` load them all."""

    def __init__(self, modules: list[str] | None = None):
        self._builtin = _Loaded()
        self._plugins = _Loaded()
        self._pending = list(BUILTIN)  # built-in modules not loaded yet
        names = [ep.value for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)] + list(modules or [])
        for module in dict.fromkeys(names):
            if module not in BUILTIN:
                self.load(module)

    def load(self, module_name: str) -> None:
        """Load a plugin module: its peers replace any of the same name."""
        self._plugins.add(module_name)

    def _load_builtin_until(self, found) -> None:
        """Built-in modules, in order, until `found()` (a name looked up by exact key) or none is left."""
        while self._pending and not found():
            self._builtin.add(self._pending.pop(0))

    def _merged(self, attr: str) -> dict:
        # the order of a full load: built-in peers in BUILTIN order, a plugin's replacing one in its place
        return {**getattr(self._builtin, attr), **getattr(self._plugins, attr)}

    @property
    def servers(self) -> dict[str, ServerPeer]:
        self._load_builtin_until(lambda: False)
        return self._merged("servers")

    @property
    def clients(self) -> dict[str, ClientVariant]:
        self._load_builtin_until(lambda: False)
        return self._merged("clients")

    @property
    def sources(self) -> dict[str, str]:
        self._load_builtin_until(lambda: False)
        return self._merged("sources")

    def select_servers(self, names: list[str] | None) -> list[ServerPeer]:
        self._load_builtin_until(lambda: bool(names) and all(n in self._merged("servers") for n in names))
        servers = self._merged("servers")
        return [servers[n] for n in _select("server", names, list(servers))]

    def select_clients(self, names: list[str] | None) -> list[ClientVariant]:
        def found() -> bool:
            loaded = {key for name in self._merged("clients") for key in (name, name.split("[", 1)[0])}
            return bool(names) and all(n in loaded for n in names)

        self._load_builtin_until(found)
        clients = self._merged("clients")
        return [clients[n] for n in _select("client", names, list(clients), bare=True)]


class _Loaded:
    """The peers of some modules, by name (a later module's peer replaces an earlier one's)."""

    def __init__(self) -> None:
        self.servers: dict[str, ServerPeer] = {}
        self.clients: dict[str, ClientVariant] = {}
        self.sources: dict[str, str] = {}

    def add(self, module_name: str) -> None:
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise ValueError(f"cannot import peer plugin {module_name!r}: {exc}") from exc
        peers = getattr(module, "PEERS", None)
        if not isinstance(peers, (list, tuple)):
            raise ValueError(f"peer plugin {module_name!r} has no PEERS list (see docs/PEERS.md)")
        for peer in peers:
            if isinstance(peer, ServerPeer):
                self.servers[peer.name] = peer
            elif isinstance(peer, ClientPeer):
                for variant in peer.variants:
                    self.clients[f"{peer.name}[{variant}]"] = ClientVariant(peer, variant)
            else:
                raise ValueError(f"{module_name}.PEERS holds {peer!r}, neither a ServerPeer nor a ClientPeer")
            self.sources[peer.name] = module_name


def _select(role: str, names: list[str] | None, valid: list[str], bare: bool = False) -> list[str]:
    """Names as given; a client name without [variant] means all its variants."""
    if not names:
        return valid
    chosen: list[str] = []
    for name in names:
        hits = [v for v in valid if v == name or (bare and v.split("[", 1)[0] == name)]
        if not hits:
            raise ValueError(f"unknown {role} peer {name!r}; valid: {', '.join(valid)}")
        chosen += [h for h in hits if h not in chosen]
    return chosen
