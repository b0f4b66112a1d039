"""The bare-ssl floor: what mutual TLS costs on this machine with no WebSocket library at all.

asyncio.start_server with a context that requires a client certificate, asyncio.open_connection
with one that presents it, both from a throwaway CA of the same kind the matrix uses (ECDSA
leaves, TLS 1.3 by default), over 127.0.0.1. The report puts each pair's handshake latency and
1 MiB echo throughput next to it, so a slow pair reads as "n times the floor", not as a bare
number that depends on the machine. bench/floor.py uses the same code for the wall-time floor.

Real handshakes only: the contexts are the stdlib's, verification on in both directions.
"""

from __future__ import annotations

import asyncio
import os
import ssl
import time
from contextlib import asynccontextmanager

from mtls_matrix.pki import PKI
from mtls_matrix.results import Floor

HANDSHAKES = 30
ECHO_BYTES = 1 << 20
ECHOES = 3  # the median of three: one echo alone swings 2x with the scheduler


def percentile(values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default), q in 0..100: stable for the
    ~20 samples a pair has, where nearest-rank p95 would just be the maximum."""
    if not values:
        raise ValueError("percentile of no values")
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def mib_per_s(moved_bytes: int, ms: float) -> float:
    return moved_bytes / (1 << 20) / (ms / 1000)


def contexts(pki: PKI) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """(server, client) contexts as a correct mTLS pair configures them."""
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(pki.root))
    server.verify_mode = ssl.CERT_REQUIRED
    server.load_cert_chain(str(pki["server"].chain), str(pki["server"].key))
    client = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(pki.root))
    client.load_cert_chain(str(pki["client"].chain), str(pki["client"].key))
    return server, client


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(1 << 16):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, ssl.SSLError):
        pass  # the client hung up without close_notify: nothing left to echo
    finally:
        writer.close()


@asynccontextmanager
async def echo_server(server_ctx: ssl.SSLContext):
    server = await asyncio.start_server(_echo, "127.0.0.1", 0, ssl=server_ctx)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


def stamp_accepts(server_ctx: ssl.SSLContext) -> list[float]:
    """Make the server context note when each TLS connection is created, i.e. when asyncio has
    accepted its TCP connection: the same start the matrix's probe gives a cell's `tcp` timing.
    `sslobject_class` is the documented hook; set on this context only."""
    accepted: list[float] = []

    class Stamped(ssl.SSLObject):
        @classmethod
        def _create(cls, *args, **kwargs):
            accepted.append(time.perf_counter())
            return super()._create(*args, **kwargs)

    server_ctx.sslobject_class = Stamped
    return accepted


async def handshake_ms(port: int, client_ctx: ssl.SSLContext, accepted: list[float]) -> tuple[float, str]:
    """From the server's accept to the client's completed mutual handshake (a cell's
    tls-handshake - tcp); and the TLS version agreed."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client_ctx, server_hostname="localhost")
    ms = (time.perf_counter() - accepted[-1]) * 1000
    version = writer.get_extra_info("ssl_object").version()
    writer.close()
    await writer.wait_closed()
    return ms, version


async def echo_ms(port: int, client_ctx: ssl.SSLContext, size: int = ECHO_BYTES, times: int = ECHOES) -> list[float]:
    """`times` messages of `size` bytes, each sent and read back whole, on one established
    connection: the matrix's io-1mib step does the same over WebSocket."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client_ctx, server_hostname="localhost")
    payload, took = os.urandom(size), []
    for _ in range(times):
        start = time.perf_counter()
        writer.write(payload)
        got = await reader.readexactly(size)
        took.append((time.perf_counter() - start) * 1000)
        if got != payload:
            raise RuntimeError("the bare-ssl echo came back different: the floor measurement is broken")
    writer.close()
    await writer.wait_closed()
    return took


async def _measure(pki: PKI, handshakes: int) -> Floor:
    server_ctx, client_ctx = contexts(pki)
    accepted = stamp_accepts(server_ctx)
    async with echo_server(server_ctx) as port:
        await handshake_ms(port, client_ctx, accepted)  # warm-up: first-use costs are not the floor
        samples = [await handshake_ms(port, client_ctx, accepted) for _ in range(handshakes)]
        echo = percentile(await echo_ms(port, client_ctx), 50)
    times = [ms for ms, _ in samples]
    return Floor(
        handshakes=handshakes, tls_version=samples[-1][1],
        handshake_p50_ms=round(percentile(times, 50), 3), handshake_p95_ms=round(percentile(times, 95), 3),
        echo_bytes=ECHO_BYTES, echo_ms=round(echo, 3), echo_mib_s=round(mib_per_s(2 * ECHO_BYTES, echo), 1),
    )


def measure(handshakes: int = HANDSHAKES) -> Floor:
    """Well under a second: a throwaway CA, `handshakes` handshakes, three 1 MiB echoes. Runs its own
    event loop, so call it where no loop is running (the pytest controller, a script)."""
    with PKI(leaves=("server", "client")) as pki:
        return asyncio.run(_measure(pki, handshakes))
