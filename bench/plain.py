"""A plain sequential harness: the yardstick for what the matrix's cells cost (issue 17).

    python bench/plain.py [--no-pin] [--json FILE]

What a straightforward harness does with the same libraries at the same versions, and nothing
more: one process pinned to one core, no pytest, every listener started once, the cells one after
another. 16 pairs (servers websockets, aiohttp, tornado and python-socketio on aiohttp; clients
websockets, aiohttp, tornado, websocket-client and python-socketio's AsyncClient and Client, each
on polling and on websocket) x 9 certificate scenarios x TLS 1.3 and the server capped at 1.2:
288 cells. Each is a real mutual TLS connection on 127.0.0.1 with the run's certificates
(mtls_matrix.pki): the server requires and verifies a client certificate, the client verifies the
server's; a working cell's handler reads the client's CN, and the client echoes a text, a binary
and a 1 MiB message; a cell whose certificate is bad must be refused (by the server or by the
client). Its own code throughout: it shares only the PKI with the matrix.

Prints the wall and CPU time of the cells, per cell, and their outcome counts; a cell that did not
behave as mutual TLS must (a bad certificate let through, a good one refused, a lost echo) is
listed, so the yardstick is known to have done the real work. `--json FILE` writes the figures for
bench/speed.py. A benchmark: it asserts nothing about speed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import ssl
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import requests
import socketio
import websocket
import websockets.asyncio.client
import websockets.asyncio.server
from aiohttp import web
from tornado.httpclient import HTTPRequest
from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets
from tornado.web import Application
from tornado.websocket import WebSocketHandler, websocket_connect

from mtls_matrix.pki import PKI

TIMEOUT = 5.0  # every connection attempt and every read: a cell that gets stuck costs this much, no more
MAX_MESSAGE = 64 * 1024 * 1024  # limits raised on both sides: the 1 MiB echo measures cost, not defaults
MESSAGES = ("plain text echo", b"plain binary echo", os.urandom(1 << 20))
# python-engineio on aiohttp reads a polling POST with one read() of its Content-Length, which returns
# what has arrived: a 1 MiB message comes in cut and is dropped (the matrix's io-1mib-tuned HANG on
# polling). There the echoes stop at the binary one: the yardstick does what the library can.
POLLING_MESSAGES = MESSAGES[:2]

# scenario -> (server certificate, client certificate or None, URL host, who must refuse: None, "server", "client")
SCENARIOS = {
    "ok": ("server", "client", "localhost", None),
    "ip-url": ("server", "client", "127.0.0.1", None),
    "client-untrusted-ca": ("server", "client-untrusted-ca", "localhost", "server"),
    "client-expired": ("server", "client-expired", "localhost", "server"),
    "client-wrong-eku": ("server", "client-wrong-eku", "localhost", "server"),
    "client-no-cert": ("server", None, "localhost", "server"),
    "server-untrusted-ca": ("server-untrusted-ca", "client", "localhost", "client"),
    "server-wrong-host": ("server-wrong-host", "client", "localhost", "client"),
    "server-expired": ("server-expired", "client", "localhost", "client"),
}
TLS = ("tls13", "tls12")  # tls12: the server capped at TLS 1.2
# environment variables that make libraries trust other CAs (requests' REQUESTS_CA_BUNDLE overrides a
# session's `verify`) or route through a proxy: removed, as the matrix removes them
SCRUBBED = ("SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "WEBSOCKET_CLIENT_CA_BUNDLE",
            "SSLKEYLOGFILE", "HTTP_PROXY", "HTTPS_PROXY", "WS_PROXY", "WSS_PROXY", "ALL_PROXY", "NO_PROXY",
            "http_proxy", "https_proxy", "ws_proxy", "wss_proxy", "all_proxy", "no_proxy")


def peer_cn(cert: dict | None) -> str | None:
    """The subject CN of a certificate as ssl.SSLSocket.getpeercert() returns it."""
    for rdn in (cert or {}).get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return value
    return None


# ---------------------------------------------------------------- servers (one event loop, its own thread)

class Seen:
    """What the servers' handlers saw, by cell: the client's CN."""

    def __init__(self) -> None:
        self.cn: dict[str, str | None] = {}


async def start_websockets(ctx: ssl.SSLContext, seen: Seen) -> int:
    async def handler(ws):
        cell = ws.request.path.rsplit("/", 1)[-1]
        seen.cn[cell] = peer_cn(ws.transport.get_extra_info("peercert"))
        async for message in ws:
            await ws.send(message)

    server = await websockets.asyncio.server.serve(handler, "127.0.0.1", 0, ssl=ctx, max_size=MAX_MESSAGE)
    return server.sockets[0].getsockname()[1]


async def start_aiohttp(ctx: ssl.SSLContext, seen: Seen) -> int:
    async def handler(request):
        seen.cn[request.match_info["cell"]] = peer_cn(request.transport.get_extra_info("peercert"))
        ws = web.WebSocketResponse(max_msg_size=MAX_MESSAGE)
        await ws.prepare(request)
        async for message in ws:
            if message.type == aiohttp.WSMsgType.TEXT:
                await ws.send_str(message.data)
            elif message.type == aiohttp.WSMsgType.BINARY:
                await ws.send_bytes(message.data)
        return ws

    app = web.Application()
    app.router.add_get("/cell/{cell}", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ctx)
    await site.start()
    return runner.addresses[0][1]


async def start_tornado(ctx: ssl.SSLContext, seen: Seen) -> int:
    class Echo(WebSocketHandler):
        def prepare(self):  # the certificate is readable before the upgrade only (tornado#2994)
            seen.cn[self.path_kwargs.get("cell") or self.path_args[0]] = peer_cn(self.request.get_ssl_certificate())

        def on_message(self, message):
            self.write_message(message, binary=isinstance(message, bytes))

    app = Application([(r"/cell/(.*)", Echo)], websocket_max_message_size=MAX_MESSAGE)
    server = HTTPServer(app, ssl_options=ctx)
    sockets = bind_sockets(0, "127.0.0.1")
    server.add_sockets(sockets)
    return sockets[0].getsockname()[1]


async def start_socketio(ctx: ssl.SSLContext, seen: Seen) -> int:
    # any origin: on aiohttp the server refuses its own sync client's websocket Origin (HTTP 400, a finding
    # the matrix reports); the yardstick needs the echo to happen
    sio = socketio.AsyncServer(async_mode="aiohttp", max_http_buffer_size=MAX_MESSAGE, cors_allowed_origins="*")

    @sio.on("connect")
    async def connect(sid, environ, auth):
        transport = environ["aiohttp.request"].transport
        seen.cn[auth["cell"]] = peer_cn(transport.get_extra_info("peercert"))

    @sio.on("echo")
    async def echo(sid, data):
        return data

    app = web.Application(client_max_size=2 * MAX_MESSAGE)  # a polling POST carries the 1 MiB echo in base64
    sio.attach(app)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ctx)
    await site.start()
    return runner.addresses[0][1]


SERVERS = {"websockets": start_websockets, "aiohttp": start_aiohttp, "tornado": start_tornado,
           "socketio-aiohttp": start_socketio}
FAMILY = {"socketio-aiohttp": "socketio"}  # the others speak RFC 6455


# ---------------------------------------------------------------- clients: connect, echo, close; raise when refused

@dataclass(frozen=True)
class Target:
    url: str  # wss://host:port/cell/ID (socket.io: the server's https URL)
    cell: str
    ctx: ssl.SSLContext
    ca: str
    cert: tuple[str, str] | None  # (chain, key) for the libraries configured by paths (requests)


def _check(sent, got) -> None:
    if got != sent:
        raise AssertionError(f"sent {type(sent).__name__} of {len(sent)}, got back {got!r:.60}")


async def client_websockets(t: Target) -> None:
    async with websockets.asyncio.client.connect(t.url, ssl=t.ctx, max_size=MAX_MESSAGE, open_timeout=TIMEOUT) as ws:
        for message in MESSAGES:
            await ws.send(message)
            _check(message, await asyncio.wait_for(ws.recv(), TIMEOUT))


async def client_aiohttp(t: Target) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(t.url, ssl=t.ctx, max_msg_size=MAX_MESSAGE, timeout=aiohttp.ClientWSTimeout(
                ws_receive=TIMEOUT, ws_close=TIMEOUT)) as ws:
            for message in MESSAGES:
                await (ws.send_str(message) if isinstance(message, str) else ws.send_bytes(message))
                _check(message, (await ws.receive(TIMEOUT)).data)


async def client_tornado(t: Target) -> None:
    ws = await websocket_connect(HTTPRequest(t.url, ssl_options=t.ctx, connect_timeout=TIMEOUT,
                                             request_timeout=TIMEOUT), max_message_size=MAX_MESSAGE)
    try:
        for message in MESSAGES:
            await ws.write_message(message, binary=isinstance(message, bytes))
            _check(message, await asyncio.wait_for(ws.read_message(), TIMEOUT))
    finally:
        ws.close()


def client_websocket_client(t: Target) -> None:
    ws = websocket.create_connection(t.url, sslopt={"context": t.ctx}, timeout=TIMEOUT)
    try:
        for message in MESSAGES:
            (ws.send if isinstance(message, str) else ws.send_binary)(message)
            _check(message, ws.recv())
    finally:
        ws.close()


def _socketio_url(t: Target) -> str:
    """The server's URL. The clients end with an aborted engine.io session, as the matrix's cleanup does:
    disconnect() on polling waits out the pending long-poll (30 s), which the server never answers."""
    return "https://" + t.url.split("://", 1)[1].split("/", 1)[0]


async def client_socketio_async(t: Target, transport: str) -> None:
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=t.ctx))
    sio = socketio.AsyncClient(reconnection=False, http_session=session, request_timeout=TIMEOUT)
    try:
        await sio.connect(_socketio_url(t), auth={"cell": t.cell}, transports=[transport], wait_timeout=TIMEOUT)
        for message in POLLING_MESSAGES if transport == "polling" else MESSAGES:
            _check(message, await sio.call("echo", message, timeout=TIMEOUT))
    finally:
        await sio.eio.disconnect(abort=True)  # see _socketio_url
        await session.close()


def client_socketio_sync(t: Target, transport: str) -> None:
    session = requests.Session()
    session.verify, session.cert = t.ca, t.cert
    sio = socketio.Client(reconnection=False, http_session=session, request_timeout=TIMEOUT)
    try:
        sio.connect(_socketio_url(t), auth={"cell": t.cell}, transports=[transport], wait_timeout=TIMEOUT)
        for message in POLLING_MESSAGES if transport == "polling" else MESSAGES:
            _check(message, sio.call("echo", message, timeout=TIMEOUT))
    finally:
        sio.eio.disconnect(abort=True)  # see _socketio_url
        session.close()


def _transport(client, transport):
    async def run(t: Target) -> None:
        await client(t, transport)

    def run_sync(t: Target) -> None:
        client(t, transport)

    return run if asyncio.iscoroutinefunction(client) else run_sync


CLIENTS = {
    "ws": {"websockets": client_websockets, "aiohttp": client_aiohttp, "tornado": client_tornado,
           "websocket-client": client_websocket_client},
    "socketio": {f"socketio-{kind}[{transport}]": _transport(client, transport)
                 for kind, client in (("asyncclient", client_socketio_async), ("client", client_socketio_sync))
                 for transport in ("polling", "websocket")},
}


# ---------------------------------------------------------------- the run

def server_context(pki: PKI, cert: str, tls: str) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(pki.root))
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_cert_chain(str(pki[cert].chain), str(pki[cert].key))
    if tls == "tls12":
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def client_context(pki: PKI, cert: str | None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(pki.root))
    if cert:
        ctx.load_cert_chain(str(pki[cert].chain), str(pki[cert].key))
    return ctx


@dataclass
class Outcome:
    cell: str
    seconds: float  # the client's run: connect (both handshakes), echoes, close; the server works meanwhile
    refused: bool
    error: str = ""
    problem: str = ""  # not what mutual TLS must do


def start_listeners(pki: PKI, loop: asyncio.AbstractEventLoop, seen: Seen) -> dict[tuple[str, str, str], int]:
    """Every listener the cells need, once: (server, server certificate, TLS) -> port."""
    ports = {}
    for server, start in SERVERS.items():
        for cert in sorted({s[0] for s in SCENARIOS.values()}):
            for tls in TLS:
                ctx = server_context(pki, cert, tls)
                ports[server, cert, tls] = asyncio.run_coroutine_threadsafe(start(ctx, seen), loop).result(30)
    return ports


def run_cell(pki: PKI, loop: asyncio.AbstractEventLoop, run, cell: str, port: int, scenario: tuple) -> Outcome:
    """One cell: the client's run (an async one on `loop`), timed from its TLS settings to its close."""
    _, client_cert, host, refuser = scenario
    start = time.perf_counter()  # the client's TLS settings are part of its run, as in the matrix
    chain_key = (str(pki[client_cert].chain), str(pki[client_cert].key)) if client_cert else None
    target = Target(f"wss://{host}:{port}/cell/{cell}", cell, client_context(pki, client_cert), str(pki.root),
                    chain_key)
    error = ""
    try:
        if asyncio.iscoroutinefunction(run):
            loop.run_until_complete(asyncio.wait_for(run(target), 3 * TIMEOUT))
        else:
            run(target)
    except Exception as exc:  # a refusal, as each library reports it
        error = f"{type(exc).__name__}: {exc}"[:160]
    return Outcome(cell, time.perf_counter() - start, refused=bool(error), error=error)


def run_cells(pki: PKI) -> list[Outcome]:
    server_loop, client_loop = asyncio.new_event_loop(), asyncio.new_event_loop()
    threading.Thread(target=server_loop.run_forever, name="servers", daemon=True).start()
    seen, outcomes = Seen(), []
    ports = start_listeners(pki, server_loop, seen)
    for server in SERVERS:
        for client, run in CLIENTS[FAMILY.get(server, "ws")].items():
            for name, scenario in SCENARIOS.items():
                for tls in TLS:
                    cell = str(len(outcomes))
                    outcome = run_cell(pki, client_loop, run, cell, ports[server, scenario[0], tls], scenario)
                    outcome.cell = f"{server} x {client} x {name} {tls}"
                    refuser, cn = scenario[3], seen.cn.get(cell)
                    if refuser is None and (outcome.error or cn != pki["client"].subject_cn):
                        outcome.problem = f"should work: {outcome.error or f'the handler saw CN {cn!r}'}"
                    elif refuser is not None and (not outcome.error or cell in seen.cn):
                        outcome.problem = f"a bad certificate let through (the {refuser} must refuse)"
                    outcomes.append(outcome)
    client_loop.close()
    return outcomes


def pin_one_core() -> str:
    """One core, as a plain harness runs: the first this process may use."""
    if not hasattr(os, "sched_setaffinity"):
        return "not pinned (no sched_setaffinity here)"
    core = min(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {core})
    return f"pinned to core {core}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-pin", action="store_true", help="do not pin the process to one core")
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON (bench/speed.py reads them)")
    parser.add_argument("--slowest", type=int, default=0, metavar="N", help="list the N slowest cells")
    args = parser.parse_args()
    pinned = "not pinned" if args.no_pin else pin_one_core()
    logging.getLogger().addHandler(logging.NullHandler())  # the servers log every refused handshake
    for name in SCRUBBED:
        os.environ.pop(name, None)
    with PKI() as pki:
        wall0, cpu0 = time.perf_counter(), time.process_time()  # the listeners' starts count, the imports not
        outcomes = run_cells(pki)
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    work = sum(o.seconds for o in outcomes)
    problems = [o for o in outcomes if o.problem]
    counts = Counter("refused" if o.refused else "worked" for o in outcomes)
    n = len(outcomes)
    print(f"plain harness ({pinned}; load average {os.getloadavg()[0]:.2f}): {n} cells "
          f"({counts['worked']} worked, {counts['refused']} refused, {len(problems)} not as mutual TLS must) "
          f"in {wall:.2f} s wall, {cpu:.2f} s CPU: {1000 * wall / n:.1f} ms wall, {1000 * cpu / n:.1f} ms CPU "
          f"per cell; the cells' own runs {work:.2f} s (wall / that: {wall / work:.2f})")
    for o in problems:
        print(f"  {o.cell}: {o.problem}")
    for o in sorted(outcomes, key=lambda o: -o.seconds)[:args.slowest]:
        print(f"  {1000 * o.seconds:7.1f} ms  {o.cell}  {o.error[:80]}")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "cells": n, "wall_s": wall, "cpu_s": cpu, "work_s": work, "problems": len(problems),
            "refused": counts["refused"], "pinned": pinned}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
