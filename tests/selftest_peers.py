"""Deliberately broken peers that prove the matrix detects what it claims to detect.

Loaded with `--peer-plugin tests.selftest_peers`. Each one is a real library (websockets, or
plain asyncio TLS) misconfigured in exactly one way; the harness must judge it accordingly.
"""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
import threading
from dataclasses import replace
from pathlib import Path

from websockets.asyncio.client import connect
from websockets.asyncio.server import serve
from websockets.sync.server import serve as sync_serve

from mtls_matrix import observe
from mtls_matrix.peers import PROXY_SECRET, ClientPeer, ServerPeer, cell_token, parse_close_command, query_token
from mtls_matrix.peers import hostile as hostile_peer
from mtls_matrix.peers import proxy_identity
from mtls_matrix.peers import socketio as sio_peer
from mtls_matrix.peers import websockets as ws_peer
from mtls_matrix.usercode import websockets_client, websockets_server


class WsServer(ws_peer.Server):
    """websockets with its handler as a method, so that a selftest server changes one thing about it."""

    async def start(self, context, profile, **options):
        self._hooks = self.hooks
        if self._hooks.tokens_required:
            options["process_request"] = self._authorize
        self._server = await serve(self._handler, "127.0.0.1", 0, ssl=context, **options)
        return self._server.sockets[0].getsockname()[1]

    async def stop(self):
        await websockets_server.stop_server(self._server)

    def _authorize(self, connection, request):
        return websockets_server.server_authorize(self._hooks)(connection, request)

    async def _handler(self, ws):
        await websockets_server.server_echo(ws, self._hooks)


class InsecureClient(ws_peer.Client):
    """Skips server verification: must be INSECURE wherever the client must reject the server."""

    name = "selftest-insecure"
    variants = ("ssl=context",)  # the asyncio client only (the websockets peer also has a sync variant)

    async def connect(self, variant, url, tls, profile, timeout):
        ctx = tls.context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        return websockets_client.ClientConnection(await connect(url, ssl=ctx, open_timeout=timeout))


class BrokenAdapterClient(ws_peer.Client):
    """An adapter bug outside any library call (its declarations raise): the harness's own failure."""

    name = "selftest-broken-adapter"
    variants = ("ssl=context",)

    def own_timeouts(self, variant):
        raise RuntimeError("the adapter cannot read its library's timeouts")


class LaxServer(WsServer):
    """Does not require a client certificate: must be INSECURE on client-no-cert."""

    name = "selftest-lax"

    async def start(self, context, profile):
        context.verify_mode = ssl.CERT_OPTIONAL
        return await super().start(context, profile)


class BlindServer(WsServer):
    """Requires the certificate but its handler cannot see who the client is."""

    name = "selftest-blind"

    async def _handler(self, ws):
        observe.server_event(cell_token(ws.request.path), "handler", peer_cn=None)
        async for message in ws:
            await ws.send(message)


class HangingServer(ServerPeer):
    """Completes TLS, then never answers the upgrade request."""

    name = "selftest-hang"
    library = "websockets"

    async def start(self, context, profile):
        self._held: list[asyncio.StreamWriter] = []

        async def hold(reader, writer):
            self._held.append(writer)
            await asyncio.Event().wait()

        self._server = await asyncio.start_server(hold, "127.0.0.1", 0, ssl=context)
        return self._server.sockets[0].getsockname()[1]

    async def stop(self):
        for writer in self._held:
            writer.close()
        self._server.close()


class BlockingClient(ClientPeer):
    """A sync client that blocks forever in its connect (no timeout): the harness must give up
    at the deadline and go on."""

    name = "selftest-blocking"
    library = "websockets"
    variants = ("forever",)
    blocking = True

    async def connect(self, variant, url, tls, profile, timeout):
        if os.environ.get("SELFTEST_BLOCKING_RECORD"):  # where it ran: tests check that process was killed
            Path(os.environ["SELFTEST_BLOCKING_RECORD"]).write_bytes(
                b"%d\n" % os.getpid() + Path("/proc/self/cmdline").read_bytes())
        threading.Event().wait()  # blocks this cell's own thread and loop, nobody else's


class StuckInRecvClient(ClientPeer):
    """A sync client blocked in a socket read with no timeout: the harness must stop it (shut
    its socket down so the thread ends), not just stop waiting for it."""

    name = "selftest-stuck-recv"
    library = "websockets"
    variants = ("no-timeout",)
    blocking = True

    async def connect(self, variant, url, tls, profile, timeout):
        host, port = url.split("/")[2].split(":")
        sock = tls.context().wrap_socket(socket.create_connection((host, int(port))), server_hostname=host)
        sock.recv(1)  # never sends its upgrade request, so nothing ever arrives
        raise ConnectionError("the socket was shut down under the blocked read")


LEAKED: list = []  # what LeakyClient keeps alive: its rejected sockets and its never-finishing tasks


class LeakyClient(ClientPeer):
    """A real TLS client that, when its connection is rejected, keeps the socket open (a reference
    in a module-level list) and leaves a task that never finishes on its loop: the harness must
    report both as leaks of the client, without changing the verdict."""

    name = "selftest-leaky"
    library = "websockets"
    variants = ("keeps-socket",)

    async def connect(self, variant, url, tls, profile, timeout):
        host, port = url.split("/")[2].split(":")
        raw = socket.create_connection((host, int(port)), timeout=timeout)
        LEAKED.append(raw)
        sock = tls.context().wrap_socket(raw, server_hostname=host)
        LEAKED.append(sock)
        try:
            path = "/" + url.split("/", 3)[3]
            sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
                         "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                         "Sec-WebSocket-Version: 13\r\n\r\n".encode())
            if not sock.recv(1):
                raise ConnectionError("the server closed the connection")
        except (OSError, ssl.SSLError):
            LEAKED.append(asyncio.get_running_loop().create_task(asyncio.Event().wait()))
            raise
        raise ConnectionError("this selftest client does not speak WebSocket past the upgrade")


class CrashingServer(WsServer):
    """Its event loop dies at the first connection it accepts (a crash or an exit), once per process."""

    name = "selftest-crash"
    crashed = False

    async def _handler(self, ws):
        if not CrashingServer.crashed:
            CrashingServer.crashed = True
            asyncio.get_running_loop().stop()
            return
        await super()._handler(ws)


class FlakyServer(WsServer):
    """Refuses every other connection at the application level (close 1013, try again later), the
    first one included: over real TLS, a cell that passes one run and fails the next, for --repeat
    and --confirm to label FLAKY. The count is per listener, so a one-cell slice is deterministic."""

    name = "selftest-flaky"

    async def start(self, context, profile):
        self._connections = 0
        return await super().start(context, profile)

    async def _handler(self, ws):
        self._connections += 1
        if self._connections % 2:
            await ws.close(1013, "every other connection is refused")
            return
        await super()._handler(ws)


QUICK_TIMEOUT_S = 0.5


class QuickTimeoutClient(ws_peer.Client):
    """websockets with its own short opening-handshake timeout, whatever the harness gives: a
    client that gives up by itself on a server that never answers (hostile-server PASS)."""

    name = "selftest-quick-timeout"
    variants = ("ssl=context",)  # the asyncio client only (the websockets peer also has a sync variant)

    async def connect(self, variant, url, tls, profile, timeout):
        return websockets_client.ClientConnection(await connect(url, ssl=tls.context(), open_timeout=QUICK_TIMEOUT_S))

    def own_timeouts(self, variant):
        return {"open_timeout": QUICK_TIMEOUT_S}


class HandshakeTimeoutServer(WsServer):
    """websockets with asyncio's TLS handshake timeout cut short: a server that drops a silent
    client by itself (hostile-client PASS)."""

    name = "selftest-handshake-timeout"

    async def start(self, context, profile):
        return await super().start(context, profile, ssl_handshake_timeout=QUICK_TIMEOUT_S)


DOCUMENTED_S = 10.0  # the open_timeout the clock selftest clients document


class EndsWithinItsTimeoutClient(ws_peer.Client):
    """websockets that documents an open_timeout of 10 s and gives up after 8 s: within its own clock,
    a user waits that long (hostile-server PASS, with an advisory)."""

    name = "selftest-ends-at-8s"

    async def connect(self, variant, url, tls, profile, timeout):
        return websockets_client.ClientConnection(await connect(url, ssl=tls.context(), open_timeout=8.0))

    def own_timeouts(self, variant):
        return {"open_timeout": DOCUMENTED_S}


OUTLIVED_S = 1.0


class OutlivesItsTimeoutClient(ClientPeer):
    """Documents a 1 s timeout for its opening handshake and never gives up: HANG, naming it."""

    name = "selftest-outlives-its-timeout"
    library = "websockets"
    variants = ("open_timeout=1",)
    clocks = {"handshake": ("open_timeout",), "upgrade": ("open_timeout",)}

    async def connect(self, variant, url, tls, profile, timeout):
        return websockets_client.ClientConnection(await connect(url, ssl=tls.context(), open_timeout=None))

    def own_timeouts(self, variant):
        return {"open_timeout": OUTLIVED_S}


class NoTimeoutClient(OutlivesItsTimeoutClient):
    """Has no timeout for its opening handshake, and says so: HANG on the harness's deadline."""

    name = "selftest-no-timeout"
    variants = ("open_timeout=None",)

    def own_timeouts(self, variant):
        return {"open_timeout": None}


SWAPPED = 10  # the burst message the swapping server sends after the one following it


class SwappingServer(ServerPeer):
    """Real TLS and RFC 6455 framing (the hostile peer's helpers): echoes, but sends burst message 11
    before message 10, and never answers the client's close (it closes only when the client lets go)."""

    name = "selftest-swapping"
    library = "websockets"

    async def start(self, context, profile):
        self._open: set[asyncio.Transport] = set()
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=context)
        return self._server.sockets[0].getsockname()[1]

    async def stop(self):
        self._server.close()
        for transport in list(self._open):
            transport.abort()

    async def _serve(self, reader, writer):
        self._open.add(writer.transport)
        head = await hostile_peer._upgrade(reader, writer)
        der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
        observe.server_event(cell_token(head.split(" ", 2)[1]), "handler", peer_cn=observe.subject_cn(der))
        held = None
        try:
            while True:
                opcode, data = await hostile_peer._read_frame(reader)
                if opcode == 0x8:
                    await asyncio.Event().wait()  # the close is never answered
                if data == f"message {SWAPPED}".encode():
                    held = data
                    continue
                writer.write(hostile_peer._frame(opcode, data))
                if held is not None:
                    writer.write(hostile_peer._frame(opcode, held))
                    held = None
        except (ConnectionError, asyncio.IncompleteReadError):
            writer.transport.abort()


DIES_AT = 3  # the connection the dying listener's thread dies on


class _DyingListener:
    """The listening socket of DyingListenerServer, as its serve loop sees it: its DIES_AT-th accept
    kills the loop's thread (recorded first, so the cell it dies in knows)."""

    def __init__(self, sock: socket.socket):
        self.sock, self.accepted, self.died = sock, 0, None

    def __getattr__(self, name):
        return getattr(self.sock, name)

    def fileno(self):
        return self.sock.fileno()

    def accept(self):
        conn, address = self.sock.accept()
        self.accepted += 1
        if self.accepted == DIES_AT:
            self.died = f"RuntimeError: the listener thread died on connection {DIES_AT}"
            conn.close()
            raise RuntimeError(f"the listener thread died on connection {DIES_AT}")
        return conn, address


class DyingListenerServer(ServerPeer):
    """websockets' threaded (sync) server, whose listener thread dies on its third connection."""

    name = "selftest-dying-listener"
    library = "websockets"

    async def start(self, context, profile):
        self._server = sync_serve(self._handle, "127.0.0.1", 0, ssl=context)
        self._listener = self._server.socket = _DyingListener(self._server.socket)
        threading.Thread(target=self._server.serve_forever, name="selftest-listener", daemon=True).start()
        return self._listener.getsockname()[1]

    @property
    def alive(self) -> bool:
        return self._listener.died is None

    def crash(self):
        return self._listener.died

    async def stop(self):
        await asyncio.to_thread(self._server.shutdown)

    def _handle(self, ws):
        token = cell_token(ws.request.path)
        observe.server_event(token, "handler", peer_cn=observe.subject_cn(ws.socket.getpeercert(binary_form=True)))
        for message in ws:
            command = parse_close_command(message)
            if command:
                ws.close(*command)
                break
            ws.send(message)
        observe.server_event(token, "handler-close", code=ws.close_code, reason=ws.close_reason)


class LaxTokenServer(WsServer):
    """A token-auth server that checks a token only when one is sent (`if token: check(token)`):
    must be INSECURE on token-missing, and still refuse a wrong token."""

    name = "selftest-lax-token"

    def _authorize(self, connection, request):
        if request.headers.get("Authorization") is None and query_token(request.path) is None:
            connection.username = None
            return None
        return super()._authorize(connection, request)


class HeaderlessClient(ws_peer.Client):
    """websockets, declaring that it cannot set request headers: its header cells are UNSUPPORTED."""

    name = "selftest-headerless"
    variants = ("ssl=context",)  # the asyncio client only (the websockets peer also has a sync variant)
    unsupported = {"headers": "this selftest client declares it cannot set request headers"}


class HeaderDroppingClient(ws_peer.Client):
    """websockets, silently leaving out the headers it was asked to send: the server refuses it."""

    name = "selftest-drops-headers"
    variants = ("ssl=context",)  # the asyncio client only (the websockets peer also has a sync variant)

    async def connect(self, variant, url, tls, profile, timeout):
        return await super().connect(variant, url, replace(tls, headers=()), profile, timeout)


class TrustingApp(proxy_identity.App):
    """The proxy-identity app without the proxy's proof (the reference's app, which relies on nobody but
    nginx reaching it): it trusts X-SSL-Client-Cert from whoever sends it. Must be INSECURE on
    proxy-id-header-forged."""

    name = "selftest-trusting-app"

    async def _on_connect(self, sid, environ, auth, namespace="/"):
        await super()._on_connect(sid, {**environ, "HTTP_X_PROXY_SECRET": PROXY_SECRET}, auth, namespace)
class ForgetfulSioClient(sio_peer.AsyncClient):
    """python-socketio whose settings lose server verification once connected (as a library that
    rebuilt its TLS settings for a reconnect would): it still presents its certificate, so a
    reconnect works; facing a restarted server with an untrusted certificate it must be INSECURE."""

    name = "selftest-sio-forgetful"
    variants = ("websocket_extra_options=ssl+websocket",)

    async def connect(self, variant, url, tls, profile, timeout):
        conn = await super().connect(variant, url, tls, profile, timeout)
        lax = tls.context()
        lax.check_hostname = False
        lax.verify_mode = ssl.CERT_NONE
        conn.sio.eio.websocket_extra_options["ssl"] = lax  # what the next connection (a reconnect) uses
        return conn


class CertlessReconnectClient(sio_peer.AsyncClient):
    """python-socketio whose settings lose the client certificate once connected: its reconnect is
    refused by the server (a FAIL, not a HANG: the library gives up after its attempts)."""

    name = "selftest-sio-certless"
    variants = ("websocket_extra_options=ssl+websocket",)

    async def connect(self, variant, url, tls, profile, timeout):
        conn = await super().connect(variant, url, tls, profile, timeout)
        conn.sio.eio.websocket_extra_options["ssl"] = replace(tls, cert=None, key=None).context()
        return conn


PEERS = [InsecureClient(), BrokenAdapterClient(), LaxServer(), BlindServer(), HangingServer(), BlockingClient(), StuckInRecvClient(),
         CrashingServer(), FlakyServer(), LeakyClient(), QuickTimeoutClient(), HandshakeTimeoutServer(),
         LaxTokenServer(), HeaderlessClient(), HeaderDroppingClient(), TrustingApp(), ForgetfulSioClient(),
         CertlessReconnectClient(), EndsWithinItsTimeoutClient(), OutlivesItsTimeoutClient(), NoTimeoutClient(),
         SwappingServer(), DyingListenerServer()]
