"""The per-pair performance section and the bare-ssl floor it is read against.

No timing thresholds here: speed is measured by bench/, never asserted. These tests check the
arithmetic on hand-made cells, that the floor measures real handshakes and echoes (positive,
ordered numbers), and which pairs the section lists.
"""

from __future__ import annotations

import asyncio
import ssl

import pytest

from mtls_matrix import floor, scenarios
from mtls_matrix.pki import PKI
from mtls_matrix.reports import bugs, html, perf
from mtls_matrix.results import Cell, Floor, Results, Run, ServerSaw, Step, TLSSide, Verdict

S1, S2 = "server:alpha", "server:beta"
C1, C2 = "client:one", "client:two"
FLOOR = Floor(handshakes=30, tls_version="TLSv1.3", handshake_p50_ms=2.0, handshake_p95_ms=3.0,
              echo_bytes=1 << 20, echo_ms=10.0, echo_mib_s=200.0)


def cell(server: str, client: str, scenario: str, handshake: float = 3.0, profile: str = "default",
         verdict: Verdict = Verdict.PASS, version: str = "TLSv1.3", echo_ms: float | None = None) -> Cell:
    """A cell whose client finished its handshake `handshake` ms after the server accepted TCP."""
    known = scenarios.BY_NAME[scenario]
    steps = [Step(op="binary", ok=verdict == Verdict.PASS, ms=echo_ms)] if echo_ms else []
    return Cell(
        id=f"{server}-{client}-{scenario}-{profile}", server=server, client=client, scenario=scenario,
        group=known.group, profile=profile, tags=sorted(known.tags), expectation=known.expect.describe(),
        verdict=verdict, phase="io", repro="x", steps=steps,
        client_tls=TLSSide(handshake="ok", version=version),
        server_saw=ServerSaw(accepted_tcp=True, tls=TLSSide(handshake="ok", version=version)),
        timings={"tcp": 1.0, "tls-handshake": 1.0 + handshake, "total": 50.0},
    )


def results(*cells: Cell, measured: Floor | None = FLOOR) -> Results:
    return Results(run=Run(started="2030-01-01T00:00:00+00:00", python="3", openssl="OpenSSL 3", platform="Linux",
                           versions={}, ca_fingerprint="ab" * 32, deadline_s=5.0, profiles=["default", "tuned"],
                           floor=measured), cells=list(cells))


def pair(res: Results, server: str, client: str) -> perf.PairPerf:
    return next(p for p in perf.performance(res).pairs if (p.server, p.client) == (server, client))


def test_percentile_interpolates_between_ranks():
    assert floor.percentile([5, 1, 3, 2, 4], 50) == 3
    assert floor.percentile([1, 2, 3, 4, 5], 95) == pytest.approx(4.8)
    assert floor.percentile([7.5], 95) == 7.5
    with pytest.raises(ValueError):
        floor.percentile([], 50)


def test_handshakes_come_from_pass_cells_like_the_floor_only():
    res = results(
        cell(S1, C1, "mtls-ok", 2.0), cell(S1, C1, "tls13-only", 4.0), cell(S1, C1, "io-text", 6.0),
        cell(S1, C1, "mtls-rsa", 100.0),  # RSA keys: not the floor's kind of handshake
        cell(S1, C1, "tls12-only", 100.0, version="TLSv1.2"),  # another protocol version
        cell(S1, C1, "ip-url", 100.0, verdict=Verdict.FAIL),  # not a working cell
    )
    got = pair(res, S1, C1)
    assert sorted(got.handshakes_ms) == [2.0, 4.0, 6.0]
    assert got.p50 == 4.0 and got.p95 == pytest.approx(5.8)


def test_a_rejection_without_a_server_handshake_is_no_sample():
    rejected = cell(S1, C1, "client-expired", 2.0)
    rejected.server_saw.tls = TLSSide(handshake="error")  # TLS 1.3: the client finished, the server refused
    assert perf.handshake_ms(rejected) is None


def test_echo_throughput_prefers_default_and_falls_back_to_tuned():
    res = results(
        cell(S1, C1, "io-1mib", echo_ms=20.0), cell(S1, C1, "io-1mib", profile="tuned", echo_ms=10.0),
        cell(S1, C2, "io-1mib", verdict=Verdict.FAIL, echo_ms=5.0),
        cell(S1, C2, "io-1mib", profile="tuned", echo_ms=40.0),
    )
    default, tuned = pair(res, S1, C1), pair(res, S1, C2)
    assert (default.echo_mib_s, default.echo_profile) == (pytest.approx(100.0), "default")  # 2 MiB in 20 ms
    assert (tuned.echo_mib_s, tuned.echo_profile) == (pytest.approx(50.0), "tuned")


def test_section_lists_every_pair_and_marks_the_ones_with_no_working_cell():
    res = results(cell(S1, C1, "mtls-ok", 4.0), cell(S1, C1, "io-1mib", echo_ms=20.0),
                  cell(S2, C1, "mtls-ok", verdict=Verdict.FAIL), cell(S1, C2, "mtls-ok", 1.0))
    lines = perf.render_markdown(res)
    rows = [line for line in lines if line.startswith("| `server:")]
    assert [r.split(" | ")[:2] for r in rows] == [["| `server:alpha`", "`client:one`"],
                                                 ["| `server:alpha`", "`client:two`"],
                                                 ["| `server:beta`", "`client:one`"]]
    assert "no working cell" in rows[2] and "no working cell" not in rows[0] + rows[1]
    assert "| 2.0× |" in rows[0] and "| 100 |" in rows[0]  # p50 4 ms over a 2 ms floor; 2 MiB in 20 ms
    assert any(line.startswith("| bare asyncio + ssl (floor) |") for line in lines)


def test_both_reports_show_the_same_section():
    res = results(cell(S1, C1, "mtls-ok", 4.0), cell(S2, C2, "mtls-ok", verdict=Verdict.FAIL))
    assert "## Performance by pair" in bugs.render(res)
    page = html.render_html(res)
    section = page[page.index('<section id="perf">'):]
    for row in perf.rows(perf.performance(res)):
        assert "".join(f"<td>{c}</td>" for c in row) in section  # no markup in these cells: escape is identity


def test_without_a_floor_the_ratios_are_left_out():
    lines = perf.render_markdown(results(cell(S1, C1, "mtls-ok", 4.0), measured=None))
    assert any("No floor" in line for line in lines)
    assert not any("×" in line for line in lines if line.startswith("| `"))


def test_floor_measures_real_mutual_tls_handshakes_and_an_echo():
    got = floor.measure(handshakes=5)
    assert got.handshakes == 5 and got.tls_version == "TLSv1.3" and got.echo_bytes == 1 << 20
    assert 0 < got.handshake_p50_ms <= got.handshake_p95_ms
    assert got.echo_ms > 0 and got.echo_mib_s > 0


def test_floor_client_without_a_certificate_is_refused():
    """The floor is mutual TLS: the server must refuse a client that presents nothing."""
    async def connect_without_cert(pki: PKI) -> None:
        server_ctx, _ = floor.contexts(pki)
        bare = ssl.create_default_context(cafile=str(pki.root))
        async with floor.echo_server(server_ctx) as port:
            reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=bare, server_hostname="localhost")
            writer.write(b"x")
            await reader.readexactly(1)  # TLS 1.3: the server's refusal arrives at the first read

    with PKI() as pki, pytest.raises((ssl.SSLError, ConnectionError, asyncio.IncompleteReadError)):
        asyncio.run(connect_without_cert(pki))


def test_a_run_records_its_floor(run_matrix):
    res, _ = run_matrix("--servers", "websockets", "--clients", "websockets[ssl=context]", "--scenarios", "mtls-ok", "-n", "0")
    assert res.run.floor is not None and res.run.floor.handshake_p50_ms > 0
    [row] = perf.performance(res).pairs
    assert row.working and row.p50 > 0
