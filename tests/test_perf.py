"""The per-pair performance section and the bare-ssl floor it is read against.

No timing thresholds here: speed is measured by bench/, never asserted. These tests check the
arithmetic on hand-made cells, that the floor measures real handshakes and echoes (positive,
ordered numbers), and which pairs the section lists.
"""

from __future__ import annotations

import asyncio
import ssl

import pytest

from mtls_matrix import findings, floor, scenarios, sections
from mtls_matrix.plugin import IN_PROCESS_CELLS
from mtls_matrix.pki import PKI
from mtls_matrix.reports import bugs, html
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


def performance(res: Results) -> sections.Performance:
    return sections.performance(findings.Matrix(res))


def pair(res: Results, server: str, client: str) -> sections.PairPerf:
    return next(p for p in performance(res).pairs if (p.server, p.client) == (server, client))


def test_percentile_interpolates_between_ranks():
    assert floor.percentile([5, 1, 3, 2, 4], 50) == 3
    assert floor.percentile([1, 2, 3, 4, 5], 95) == pytest.approx(4.8)
    assert floor.percentile([7.5], 95) == 7.5
    with pytest.raises(ValueError):
        floor.percentile([], 50)


@pytest.mark.parametrize("values", [[5, 1, 3, 2, 4], [1.5, 9.25], [7.5], [3, 3, 3, 10, 0.5, 2]])
def test_the_reports_percentile_is_the_floors(values):
    for q in (50, 95):
        assert sections.percentile(values, q) == pytest.approx(floor.percentile(values, q))


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
    assert sections.handshake_ms(rejected) is None


def test_echo_throughput_prefers_default_and_falls_back_to_tuned():
    res = results(
        cell(S1, C1, "io-1mib", echo_ms=20.0), cell(S1, C1, "io-1mib", profile="tuned", echo_ms=10.0),
        cell(S1, C2, "io-1mib", verdict=Verdict.FAIL, echo_ms=5.0),
        cell(S1, C2, "io-1mib", profile="tuned", echo_ms=40.0),
    )
    default, tuned = pair(res, S1, C1), pair(res, S1, C2)
    assert (default.echo_mib_s, default.echo_profile) == (pytest.approx(100.0), "default")  # 2 MiB in 20 ms
    assert (tuned.echo_mib_s, tuned.echo_profile) == (pytest.approx(50.0), "tuned")


def markdown(res: Results) -> list[str]:
    text = bugs.render(findings.analyse(res))
    return text.split("## Performance", 1)[1].split("\n## ", 1)[0].splitlines() if "## Performance" in text else []


def test_bugs_md_shows_the_slowest_and_fastest_working_pairs_against_the_floor():
    res = results(cell(S1, C1, "mtls-ok", 4.0), cell(S1, C1, "io-1mib", 4.0, echo_ms=20.0),
                  cell(S2, C1, "mtls-ok", verdict=Verdict.FAIL), cell(S1, C2, "mtls-ok", 1.0))
    lines = markdown(res)
    rows = [line for line in lines if line.startswith("| `")]
    assert [r.split(" | ")[:2] for r in rows] == [["| `alpha`", "`one`"], ["| `alpha`", "`two`"]]
    assert "| 2.0× | 100 |" in rows[0]  # p50 4 ms over a 2 ms floor; 2 MiB in 20 ms
    assert "Floor: handshake p50 2.0 ms, p95 3.0 ms; 1 MiB echo 200 MiB/s." in lines


def test_the_html_report_lists_every_pair_and_marks_the_ones_with_no_working_cell():
    res = results(cell(S1, C1, "mtls-ok", 4.0), cell(S2, C2, "mtls-ok", verdict=Verdict.FAIL))
    page = html.render_html(findings.analyse(res))
    section = page[page.index('<section id="perf">'):]
    assert "<td>server:alpha</td><td>client:one</td><td>1</td>" in section
    assert "<td>server:beta</td><td>client:two</td><td>0</td>\n<td>no working cell</td>" in section
    assert "<td>bare asyncio + ssl (floor)</td>" in section


def test_without_a_floor_the_ratios_are_left_out():
    lines = markdown(results(cell(S1, C1, "mtls-ok", 4.0), measured=None))
    assert lines and not any("Floor:" in line for line in lines)
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
    res, _ = run_matrix("--servers", "websockets", "--clients", "websockets[ssl=context]", "--scenarios",
                        "works,client-rejected", "-n", "0")
    assert len(res.cells) > IN_PROCESS_CELLS  # a smaller run measures none: it would cost more than its cells
    assert res.run.floor is not None and res.run.floor.handshake_p50_ms > 0
    [row] = performance(res).pairs
    assert row.handshakes_ms and row.p50 > 0


def test_a_run_of_a_few_cells_measures_no_floor(run_matrix):
    res, _ = run_matrix("--servers", "websockets", "--clients", "websockets[ssl=context]", "--scenarios", "mtls-ok",
                        "-n", "0")
    assert res.run.floor is None and [c.verdict.value for c in res.cells] == ["PASS"]
