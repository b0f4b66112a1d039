"""websocket-client (`import websocket`) as a client: synchronous, client only. TLS settings go in
`sslopt` (docs: FAQ "What else can I do with sslopt?", examples "Connecting with Custom SSL Options"),
each documented way a variant; the same sslopt goes to the callback-style
`WebSocketApp(...).run_forever(sslopt=...)` (examples "Long-lived Connection"), a variant of its own:
- "sslopt=context": {"context": SSLContext}, used as given (check_hostname etc. are the context's).
- "sslopt=dict": the file keys ca_certs / certfile / keyfile; the library builds its own context
  (websocket/_http.py _wrap_sni_socket: a bare SSLContext(PROTOCOL_TLS_CLIENT), not
  create_default_context; identical on Python 3.11-3.12, but from 3.13 create_default_context
  adds VERIFY_X509_STRICT and VERIFY_X509_PARTIAL_CHAIN, which this variant then lacks).
- "sslopt=cert_reqs": the same file keys with cert_reqs=ssl.CERT_REQUIRED spelled out, as the FAQ writes it.
- "app+sslopt=context": WebSocketApp with callbacks, run_forever(sslopt={"context": SSLContext}) on a
  thread of its own; the callbacks feed the connection (messages, pongs, the close, errors).

Its calls block, which is fine here: the client runs on a thread of its own. The socket timeout
(create_connection(timeout=)) makes a stuck call return by itself. It has no message size limit, so
the profile changes nothing.
"""

from __future__ import annotations

import queue
import ssl
import struct
import threading

import websocket
from websocket import ABNF

from mtls_matrix.protocol import Closed, Connection

TIMEOUTS = (websocket.WebSocketTimeoutException,)


def client_closed(frame) -> Closed:
    """A close frame's payload: a 2-byte code then a UTF-8 reason; empty means no code (RFC 6455). The
    library hands its user the frame itself (recv_data_frame), no exception."""
    shown = (f"{type(frame).__module__}.{type(frame).__qualname__}", f"recv_data_frame() returned {frame!r}")
    if len(frame.data) < 2:
        return Closed(None, None, shown)
    return Closed(struct.unpack("!H", frame.data[:2])[0], frame.data[2:].decode("utf-8", "replace"), shown)


class ClientConnection(Connection):
    def __init__(self, ws: websocket.WebSocket):
        self.ws = ws

    async def send(self, message):
        self.ws.send(message, ABNF.OPCODE_TEXT if isinstance(message, str) else ABNF.OPCODE_BINARY)

    def _next(self, *wanted: int):
        """Frames until one whose opcode is wanted. The library answers pings itself, and replies
        to a close (recv_data_frame sends the close reply before returning the close frame)."""
        while True:
            opcode, frame = self.ws.recv_data_frame(control_frame=True)
            if opcode == ABNF.OPCODE_CLOSE:
                self.ws.shutdown()  # the close handshake is done: release the socket
                raise client_closed(frame)
            if opcode in wanted:
                return opcode, frame.data

    async def recv(self):
        # recv() would turn a close into "", so read frames to see the close code and reason.
        opcode, data = self._next(ABNF.OPCODE_TEXT, ABNF.OPCODE_BINARY)
        return data.decode("utf-8") if opcode == ABNF.OPCODE_TEXT and isinstance(data, bytes) else data

    async def ping(self, payload):
        self.ws.ping(payload)
        return self._next(ABNF.OPCODE_PONG)[1]

    async def close(self, code, reason):
        self.ws.close(status=code, reason=reason.encode())


class ClientAppConnection(Connection):
    """WebSocketApp's callbacks as a connection: run_forever runs on a thread of its own and hands
    every message, pong, close and error to one queue the calls read."""

    def __init__(self, url: str, sslopt: dict, header: list[str] | None):
        self.inbox: queue.Queue = queue.Queue()
        self.pongs: queue.Queue = queue.Queue()
        self.opened = threading.Event()
        self.app = websocket.WebSocketApp(
            url, header=header, on_open=lambda ws: self.opened.set(),
            on_message=lambda ws, message: self.inbox.put(message),
            on_pong=lambda ws, data: self.pongs.put(data),
            on_error=self._on_error,
            on_close=lambda ws, code, reason: self.inbox.put(Closed(code, reason)))

        def run() -> None:
            self.app.run_forever(sslopt=sslopt)
            self.inbox.put(Closed(None, "run_forever returned"))  # whatever ended it, nothing more comes

        self.thread = threading.Thread(target=run, name="websocket-client-app", daemon=True)
        self.thread.start()

    def _on_error(self, ws, error) -> None:
        # a close frame the server sent also reaches on_error (as a closed-connection exception) before
        # on_close, which carries its code and reason: the close is on_close's to tell
        if not isinstance(error, websocket.WebSocketConnectionClosedException):
            self.inbox.put(error)

    def wait_open(self) -> "ClientAppConnection":
        """Until on_open, or the error that ended run_forever before it (raised here, as connect fails)."""
        while not self.opened.wait(0.01):
            if not self.inbox.empty() or not self.thread.is_alive():
                got = self.inbox.get() if not self.inbox.empty() else Closed(None, "run_forever returned")
                raise got
        return self

    async def send(self, message):
        self.app.send(message, ABNF.OPCODE_TEXT if isinstance(message, str) else ABNF.OPCODE_BINARY)

    async def recv(self):
        got = self.inbox.get()
        if isinstance(got, BaseException):
            raise got
        return got

    async def ping(self, payload):
        self.app.sock.ping(payload)
        return self.pongs.get()

    async def close(self, code, reason):
        # returns once the close handshake is done; run_forever's loop notices on its next wake-up (its
        # select waits up to 10 s), its socket already closed
        self.app.close(status=code, reason=reason.encode())


async def connect_client(variant: str, url: str, ca: str, cert: str | None, key: str | None, headers: list,
                         timeout: float | None, profile: str) -> Connection:
    if variant.endswith("sslopt=context"):
        context = ssl.create_default_context(cafile=ca)
        if cert:
            context.load_cert_chain(cert, key)
        sslopt = {"context": context}
    else:
        sslopt = {"ca_certs": ca}
        if variant == "sslopt=cert_reqs":
            sslopt["cert_reqs"] = ssl.CERT_REQUIRED
        if cert:
            sslopt.update(certfile=cert, keyfile=key)
    header = [f"{name}: {value}" for name, value in headers] or None
    if variant.startswith("app+"):  # run_forever takes no timeout: the socket's default (none) applies
        return ClientAppConnection(url, sslopt, header).wait_open()
    options = {"timeout": timeout} if timeout else {}  # unset: websocket.getdefaulttimeout()
    if header:
        options["header"] = header
    return ClientConnection(websocket.create_connection(url, sslopt=sslopt, **options))
