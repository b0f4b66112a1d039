"""The per-scenario floor: bare asyncio + ssl doing each scenario's bytes and messages, no WebSocket library.

    python bench/floor.py [--reps N] [--scenarios NAMES]

For each scenario of the catalogue (mtls_matrix.scenarios), one connection on 127.0.0.1 set up as
the scenario sets its sides (the server's certificate, TLS cap and CRL, a required client
certificate or none for a token listener; the client's certificate, the run's CA and the URL's
host), with a fresh CA (mtls_matrix.pki), through asyncio.open_connection and a byte-echo server
on the same loop:

- the mutual handshake, which fails where the scenario's certificate is bad (under TLS 1.3 a
  client-side refusal by the server shows at the first read, as it does for the libraries);
- once connected, a round trip of an upgrade request's size (a WebSocket upgrade or an Engine.IO
  handshake); a scenario refused by the server's application (a token, a forwarded identity) ends here;
- the I/O script's messages, each written and read back whole: a text of its length, a binary of
  its size, a burst of N small messages written at once then read, a ping's payload, a close's
  code and reason; a `reconnect` step is a second connection (handshake, round trip);
- the close.

The floor of a scenario is the CPU time of one connection, both sides included (they share one
thread): the median over --reps connections (fewer for the large messages). CPU time, not wall time:
it is what the bytes cost, whatever else loads the machine, and on an idle machine the wall time is
about the same (loopback adds microseconds). The hostile scenarios have none: they wait by design.
The proxy-identity scenarios are approximate: nginx asks for a certificate it does not verify
(`optional_no_ca`), which Python's ssl cannot serve, so those whose client certificate is untrusted
end in the handshake here. bench/speed.py puts a run's wall time next to the floor of its cells (the
sum over its cells, divided by the cores). A benchmark: nothing here asserts.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import ssl
import statistics
import sys
import time
from dataclasses import dataclass

from mtls_matrix.cell import server_context  # what every server is configured with
from mtls_matrix.pki import LEAVES, PKI
from mtls_matrix.scenarios import CATALOGUE, HOSTILE_GROUPS, Scenario

UPGRADE_BYTES = 256  # an upgrade request (or an Engine.IO handshake) and its answer are about this size
SMALL = 32  # a ping's or a close's frame
LARGE = 1 << 20  # a script moving this much gets fewer repetitions
REFUSED = (ssl.SSLError, ConnectionError, asyncio.IncompleteReadError, EOFError)


def client_context(pki: PKI, scenario: Scenario) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(pki.root))
    if scenario.client_cert:
        ctx.load_cert_chain(str(pki[scenario.client_cert].chain), str(pki[scenario.client_cert].key))
    return ctx


def messages(op: str, args: tuple) -> list[bytes]:
    """The messages one I/O step sends (each echoed back whole)."""
    if op == "text":
        return [args[0].encode()]
    if op == "binary":
        return [os.urandom(args[0])]
    if op == "burst":
        return [f"message {i}".encode() for i in range(args[0])]
    return [bytes(SMALL)]  # ping, close, server-close, and anything newer: one small frame


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(1 << 16):
            writer.write(data)
            await writer.drain()
    except REFUSED:
        pass  # the handshake failed, or the client left without close_notify
    finally:
        writer.close()


async def _round_trip(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, sent: list[bytes]) -> None:
    writer.writelines(sent)
    expected = b"".join(sent)
    if await reader.readexactly(len(expected)) != expected:
        raise RuntimeError("the bare-ssl echo came back different: the floor measurement is broken")


async def _connection(port: int, scenario: Scenario, ctx: ssl.SSLContext, steps: list[list[bytes]]) -> bool:
    """One connection; whether its messages went through (False: refused in or right after the handshake)."""
    try:
        # the listener is on 127.0.0.1 whatever name the URL gives (a resolver need not know "localhost.")
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx, server_hostname=scenario.host)
    except REFUSED:
        return False  # refused in the handshake: the client's own verification, or the server's alert under TLS 1.2
    try:
        await _round_trip(reader, writer, [bytes(UPGRADE_BYTES)])
        for sent in steps:
            await _round_trip(reader, writer, sent)
        return True
    except REFUSED:
        return False  # the server's refusal of the client certificate, read after a TLS 1.3 handshake
    finally:
        writer.close()
        try:
            await writer.wait_closed()
        except REFUSED:
            pass


def refused_in_tls(scenario: Scenario) -> bool:
    return scenario.expect.outcome == "reject" and scenario.expect.latest_phase == "verification"


def script(scenario: Scenario) -> tuple[list[list[bytes]], int]:
    """The messages of each step of the first connection, and how many more connections follow (reconnects)."""
    if scenario.expect.outcome == "reject" and not refused_in_tls(scenario):
        return [], 0  # the server's application refuses at the upgrade: one round trip, no script
    steps, again = [], 0
    for op, *args in scenario.io:
        if op == "reconnect":
            again += 1
        else:
            steps.append(messages(op, tuple(args)))
    return steps, again


@dataclass(frozen=True)
class Floor:
    cpu_s: float
    through: bool  # the connection's messages went through (the stdlib's own verification decides)
    refused: bool  # the scenario expects TLS to refuse it

    @property
    def as_expected(self) -> bool:
        """Did TLS end as the scenario expects of a correct pair? Not always: the stdlib falls back to the
        CN (server-cn-only), and nginx's `optional_no_ca` is not what this server does (proxy-identity)."""
        return self.through != self.refused


async def _measure(pki: PKI, scenario: Scenario, reps: int) -> Floor:
    steps, again = script(scenario)
    client = client_context(pki, scenario)
    server = await asyncio.start_server(_echo, "127.0.0.1", 0, ssl=server_context(pki, scenario))
    port = server.sockets[0].getsockname()[1]
    try:
        through = await _connection(port, scenario, client, steps)  # warm-up: first-use costs are not the floor
        took = []
        for _ in range(reps):
            start = time.process_time()
            await _connection(port, scenario, client, steps)
            for _ in range(again):
                await _connection(port, scenario, client, [])
            took.append(time.process_time() - start)
        return Floor(statistics.median(took), through, refused_in_tls(scenario))
    finally:
        server.close()
        await server.wait_closed()


def measure(scenarios: list[Scenario] | None = None, reps: int = 7) -> dict[str, Floor]:
    """Scenario name -> its floor (hostile scenarios, and those whose client files are broken so that no
    connection is made: none). Runs its own event loop."""
    chosen = [s for s in scenarios or CATALOGUE if s.group not in HOSTILE_GROUPS
              and not (s.client_cert and LEAVES[s.client_cert].broken)]

    async def all_of(pki: PKI) -> dict[str, Floor]:
        floors = {}
        for scenario in chosen:
            moved = sum(len(m) for step in script(scenario)[0] for m in step)
            floors[scenario.name] = await _measure(pki, scenario, reps if moved < LARGE else max(1, reps // 3))
        return floors

    with PKI() as pki:
        return asyncio.run(all_of(pki))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=7, help="connections per scenario, the median counts (default 7)")
    parser.add_argument("--scenarios", help="comma-separated scenario names (default: the whole catalogue)")
    args = parser.parse_args()
    by_name = {s.name: s for s in CATALOGUE}
    names = [n.strip() for n in args.scenarios.split(",")] if args.scenarios else list(by_name)
    unknown = [n for n in names if n not in by_name]
    if unknown:
        parser.error(f"unknown scenario {', '.join(unknown)}; valid: {', '.join(by_name)}")
    print(f"load average {os.getloadavg()[0]:.2f}; floor per scenario (median of {args.reps}):")
    for name, floor in measure([by_name[n] for n in names], args.reps).items():
        how = "connected" if floor.through else "refused"
        print(f"  {name:36} {1000 * floor.cpu_s:8.2f} ms CPU  {how}{'' if floor.as_expected else ' (not as expected)'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
