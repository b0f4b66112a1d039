"""python-socketio's AsyncClient, given its TLS settings each documented way (see
usercode/socketio_client.py for the echo protocol and the variants)."""

from __future__ import annotations

import asyncio
import contextlib

import aiohttp
import socketio

from mtls_matrix.protocol import FINAL_CLOSE, Closed, Connection, NoOutcome, parse_close_command
from mtls_matrix.usercode.socketio_client_common import (  # noqa: F401 (TIMEOUTS, CLIENT_URL_SCHEME: see usercode)
    CLIENT_RECONNECTION, CLIENT_URL_SCHEME, TIMEOUTS, ClientConnection, _client_refusals, _client_wait_timeout,
    _client_with_refusal, client_check_upgrade, client_connect_args, client_context,
)


async def _client_shutdown_async(sio) -> None:
    """shutdown(); older 5.x releases lack it: the same by hand, no more attempts, then disconnect."""
    if hasattr(sio, "shutdown"):
        await sio.shutdown()
    else:
        sio.reconnection = False
        await sio.disconnect()


class ClientAsyncConnection(ClientConnection):
    def __init__(self, *args):
        super().__init__(*args)
        self.inbox: asyncio.Queue = asyncio.Queue()
        self.sio.on("disconnect", self._on_disconnect, namespace=self.namespace)

    def _on_disconnect(self, reason=None):
        if not self.sio.reconnection:  # else the reconnect step is watching: not an end of the connection
            self.inbox.put_nowait(self._disconnected(reason))

    async def send(self, message):
        command = parse_close_command(message)
        if command:
            self.asked = command
            await self.sio.emit("close", {"code": command[0], "reason": command[1]}, namespace=self.namespace)
        else:
            await self.sio.emit("echo", message, namespace=self.namespace, callback=self.inbox.put_nowait)

    async def reconnect(self, disrupt, refuse):
        before, connected = self.sio.transport(), asyncio.Event()
        self.sio.on("connect", connected.set, namespace=self.namespace)
        self.sio.reconnection = True
        try:
            await asyncio.to_thread(disrupt)
            # until it reconnects, or wait() returns: the connection ended and the reconnection gave up
            waits = [asyncio.ensure_future(connected.wait()), asyncio.ensure_future(self.sio.wait())]
            await asyncio.wait(waits, timeout=self.timeout, return_when=asyncio.FIRST_COMPLETED)
            for waiting in waits:
                waiting.cancel()
        finally:
            self.sio.reconnection = False
        return self._outcome(connected.is_set(), waits[1].done() and not waits[1].cancelled(), refuse, before)

    async def recv(self):
        try:
            got = await asyncio.wait_for(self.inbox.get(), self.timeout)
        except asyncio.TimeoutError:
            raise NoOutcome(f"no echo or disconnect within {self.timeout:g}s") from None
        if isinstance(got, Closed):
            await self.cleanup()
            raise got
        return got

    async def close(self, code, reason):
        try:
            if (code, reason) != FINAL_CLOSE:  # the final close of a script is cleanup only (see above)
                # call()'s own timeout: on a dropped connection it waits it out (documented), the user too
                await self.sio.call("bye", {"code": code, "reason": reason}, namespace=self.namespace)
                await self.sio.disconnect()
        finally:
            await self.cleanup()


async def _client_connect_async(way, transport, server, ca, cert, key, options, connect_args, timeout):
    # http_session: an aiohttp session whose connector holds the context (both transports use it);
    # websocket_extra_options: ws_connect(ssl=context) only, polling keeps the library's own session;
    # ssl_verify=False with that session: the library replaces the context by its own unverified one
    # (ssl=False on polling, a bare context on the websocket); ssl_verify=default: no settings at all.
    session = None
    if way.endswith("http_session=connector"):
        session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=client_context(ca, cert, key)))
        options["http_session"] = session
        if way.startswith("ssl_verify=false"):
            options["ssl_verify"] = False
    elif way == "websocket_extra_options=ssl":
        options["websocket_extra_options"] = {"ssl": client_context(ca, cert, key)}
    sio = socketio.AsyncClient(reconnection=False, **CLIENT_RECONNECTION, **options)

    async def cleanup():  # aborts, so a polling session costs no 30 s here
        sio.reconnection = False  # a drop from here on ends the session
        with contextlib.suppress(Exception):
            if not sio.connected:
                await _client_shutdown_async(sio)  # ends a reconnection in progress, and waits for it
            await sio.eio.disconnect(abort=True)
        if session is not None:  # the user's session: the library never closes it
            await session.close()

    refusals = _client_refusals(sio)
    try:
        await sio.connect(server, **connect_args, **_client_wait_timeout(sio, timeout))
        client_check_upgrade(sio, transport)
    except BaseException as exc:
        await cleanup()
        raise _client_with_refusal(sio, refusals, exc)
    return ClientAsyncConnection(sio, timeout, cleanup, connect_args["namespaces"][0], transport, session)


async def connect_client(variant: str, url: str, ca: str, cert: str | None, key: str | None, headers: list,
                         timeout: float | None, profile: str, auth: dict | None = None) -> Connection:
    """`url`: the server's, the namespace as its path; `auth`: the connect auth payload."""
    way, transport = variant.rsplit("+", 1)
    server, connect_args = client_connect_args(url, headers, auth, transport)
    return await _client_connect_async(way, transport, server, ca, cert, key, {"request_timeout": timeout},
                                       connect_args, timeout)
