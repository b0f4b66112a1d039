"""The harness's own hostile peers: a server and a client that break the protocol on purpose.

They are not libraries under test: each plays the other side of a `hostile-server` or
`hostile-client` scenario (scenarios.py names the behaviour in `Scenario.hostile`), so that the
library on the other end shows whether it has a timeout of its own, how long it is, what its
user sees, and whether it closes its socket afterwards (hostile.py next to cell.py runs them).

The server speaks just enough RFC 6455 to get a real client past the upgrade: a 101 with the
right Sec-WebSocket-Accept, masked client frames read, unmasked frames written.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import socket
import ssl
import struct
import time

from mtls_matrix import observe
from mtls_matrix.peers import ClientPeer, ServerPeer

WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
NOT_TLS = b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nContent-Length: 12\r\n\r\nthis is not TLS\r\n"
# behaviour -> does the server complete TLS (with the scenario's certificate, verifying the client)?
SERVER_BEHAVIOURS = {
    "silent": False,  # accepts TCP, never says a word
    "close-after-hello": False,  # reads the ClientHello, closes
    "garbage": False,  # answers the ClientHello with plain HTTP, keeps the connection open
    "no-upgrade": True,  # completes TLS, never answers the upgrade request
    "stall-after-upgrade": True,  # answers 101, then never answers a message
    "reset-mid-message": True,  # answers the first message with half a frame, then resets TCP
    "no-close-reply": True,  # echoes, but never answers the close frame and never closes
    # echoes, answers the close frame, then never sends its close_notify nor closes TCP (its TLS runs over
    # memory BIOs, MANUAL_TLS: asyncio's own TLS would answer the client's close_notify by itself)
    "close-no-notify": True,
}
MANUAL_TLS = ("close-no-notify",)
CLIENT_BEHAVIOURS = ("silent", "mid-handshake")
# behaviour -> the wait it leaves the peer under test in, whose own timeouts end it (Peer.clocks):
# handshake (TCP and TLS), upgrade (the HTTP request), read (a message), close (the close handshake)
STAGES = {
    "silent": "handshake", "close-after-hello": "handshake", "garbage": "handshake", "mid-handshake": "handshake",
    "no-upgrade": "upgrade", "stall-after-upgrade": "read", "reset-mid-message": "read", "no-close-reply": "close",
    "close-no-notify": "close",
}


class Server(ServerPeer):
    name = "hostile"
    library = "mtls-matrix"
    harness = True
    groups = ("hostile-server",)
    behaviour = ""  # set on each listener's copy from its scenario (hostile.py)

    async def start(self, context: ssl.SSLContext, profile: str) -> int:
        if self.behaviour not in SERVER_BEHAVIOURS:
            raise ValueError(f"unknown hostile server behaviour {self.behaviour!r}; valid: {', '.join(SERVER_BEHAVIOURS)}")
        self.context = context
        tls = context if SERVER_BEHAVIOURS[self.behaviour] and self.behaviour not in MANUAL_TLS else None
        self.open: set[asyncio.Transport] = set()
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=tls)
        return self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        self.server.close()
        for transport in list(self.open):
            transport.abort()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.open.add(writer.transport)
        try:
            await getattr(self, "_" + self.behaviour.replace("-", "_"))(reader, writer)
            await _drain_until_eof(reader)  # keep the connection open until the client lets go
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            pass
        finally:
            writer.transport.abort()
            self.open.discard(writer.transport)

    async def _silent(self, reader, writer):
        pass

    async def _close_after_hello(self, reader, writer):
        await reader.read(1)
        _fault()
        writer.close()

    async def _garbage(self, reader, writer):
        await reader.read(1)
        _fault()
        writer.write(NOT_TLS)

    async def _no_upgrade(self, reader, writer):
        pass

    async def _stall_after_upgrade(self, reader, writer):
        await _upgrade(reader, writer)

    async def _reset_mid_message(self, reader, writer):
        await _upgrade(reader, writer)
        await _read_frame(reader)
        writer.write(b"\x82\x7e" + struct.pack("!H", 60000) + b"\x00" * 1000)  # 1000 of 60000 bytes
        await writer.drain()
        await asyncio.sleep(0.05)  # let the half frame leave before the reset overtakes it
        writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        _fault()
        writer.transport.abort()  # SO_LINGER 0: the close is a TCP RST

    async def _no_close_reply(self, reader, writer):
        await _upgrade(reader, writer)
        while True:
            opcode, data = await _read_frame(reader)
            if opcode == 0x8:
                return  # silence: no close frame, no close_notify, the TCP connection stays open
            if opcode in (0x1, 0x2):
                writer.write(_frame(opcode, data))


    async def _close_no_notify(self, reader, writer):
        tls = _ManualTLS(self.context, reader, writer)
        await tls.handshake()
        plain = asyncio.StreamReader()
        pump = asyncio.ensure_future(tls.pump(plain))
        try:
            await _upgrade(plain, tls)
            while True:
                opcode, data = await _read_frame(plain)
                if opcode == 0x8:
                    _fault()
                    tls.write(_frame(0x8, data[:2]))  # the WebSocket close handshake completes ...
                    await tls.drain()
                    break
                if opcode in (0x1, 0x2):
                    tls.write(_frame(opcode, data))
                    await tls.drain()
            await pump  # ... then silence: the client's close_notify is read, never answered
        finally:
            pump.cancel()


class _ManualTLS:
    """Server-side TLS over memory BIOs on a plain connection: this side decides when (here: never) it
    sends its close_notify. Its handshake runs through the probe like any other (sslobject_class)."""

    def __init__(self, context: ssl.SSLContext, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.tls = context.wrap_bio(self.incoming, self.outgoing, server_side=True)
        self.reader, self.writer = reader, writer

    async def _receive(self) -> bool:
        data = await self.reader.read(65536)
        if data:
            self.incoming.write(data)
        return bool(data)

    async def handshake(self) -> None:
        while True:
            try:
                self.tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                await self.drain()
                if not await self._receive():
                    raise ConnectionResetError("the client closed during the handshake") from None
        await self.drain()

    async def pump(self, plain: asyncio.StreamReader) -> None:
        """Decrypted bytes into `plain` until the client's close_notify (or TCP EOF); then wait on TCP EOF."""
        while True:
            try:
                data = self.tls.read(65536)
            except ssl.SSLWantReadError:
                data = b""
            except ssl.SSLZeroReturnError:  # the client's close_notify: read, and left unanswered
                await _drain_until_eof(self.reader)
                return
            if data:
                plain.feed_data(data)
            # nothing decrypted (a want-read, or a record with no application data, which returns b""
            # rather than raising): wait for more bytes, or reading again would spin on this loop
            elif not await self._receive():
                return

    def write(self, data: bytes) -> None:
        self.tls.write(data)

    async def drain(self) -> None:
        pending = self.outgoing.read()
        if pending:
            self.writer.write(pending)
            await self.writer.drain()


def _fault() -> None:
    """When the fault happens: a client's reaction time is measured from here (timing.PROMPT_S).
    Recorded right before the fault, never after: a client that notices at once may otherwise
    finish, and its cell be judged, before this thread gets to record it."""
    observe.thread_event("server", "fault")


async def _drain_until_eof(reader: asyncio.StreamReader) -> None:
    while await reader.read(65536):
        pass


async def _upgrade(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> str:
    """Answers the upgrade request with a 101; returns the request's head."""
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
    key = next(line.split(":", 1)[1].strip() for line in head.split("\r\n")
               if line.lower().startswith("sec-websocket-key:"))
    accept = base64.b64encode(hashlib.sha1(key.encode() + WS_GUID).digest()).decode()
    writer.write(f"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 f"Sec-WebSocket-Accept: {accept}\r\n\r\n".encode())
    await writer.drain()
    return head


async def _read_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    first, second = await reader.readexactly(2)
    length = second & 0x7F
    if length == 126:
        length = struct.unpack("!H", await reader.readexactly(2))[0]
    elif length == 127:
        length = struct.unpack("!Q", await reader.readexactly(8))[0]
    mask = await reader.readexactly(4) if second & 0x80 else b"\x00" * 4
    data = await reader.readexactly(length)
    return first & 0x0F, bytes(b ^ mask[i % 4] for i, b in enumerate(data))


def _frame(opcode: int, data: bytes) -> bytes:
    if len(data) < 126:
        head = struct.pack("!BB", 0x80 | opcode, len(data))
    elif len(data) < 65536:
        head = struct.pack("!BBH", 0x80 | opcode, 126, len(data))
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 127, len(data))
    return head + data


def client_hello() -> bytes:
    """A real ClientHello, as OpenSSL writes it (never completed: it only has to look right)."""
    ctx = ssl.create_default_context()
    ctx.sslobject_class = ssl.SSLObject  # not the probe: this is no cell's connection
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(incoming, outgoing, server_hostname="localhost")
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return outgoing.read()


class Client(ClientPeer):
    name = "hostile"
    library = "mtls-matrix"
    harness = True
    variants = ("tcp",)

    async def connect(self, variant, url, tls, profile, timeout):
        raise NotImplementedError("the hostile client is run by the harness (misbehave), not connected")

    @staticmethod
    def misbehave(behaviour: str, port: int, deadline: float) -> tuple[socket.socket, str | None, float]:
        """Open TCP to the server, misbehave, and wait (up to the deadline) for the server to end
        the connection: (the still open socket, how it ended: EOF | CONNECTION_RESET | None if it
        did not, seconds until then). Whatever the server sends (an alert) is read and ignored."""
        t0 = time.perf_counter()
        sock = socket.create_connection(("127.0.0.1", port), timeout=deadline)
        if behaviour == "mid-handshake":
            hello = client_hello()
            sock.sendall(hello[: len(hello) // 2])
        elif behaviour != "silent":
            raise ValueError(f"unknown hostile client behaviour {behaviour!r}; valid: {', '.join(CLIENT_BEHAVIOURS)}")
        while True:
            left = deadline - (time.perf_counter() - t0)
            if left <= 0:
                return sock, None, time.perf_counter() - t0
            sock.settimeout(left)
            try:
                if not sock.recv(65536):
                    return sock, "EOF", time.perf_counter() - t0
            except TimeoutError:
                continue
            except ConnectionResetError:
                return sock, "CONNECTION_RESET", time.perf_counter() - t0


PEERS = [Server(), Client()]
