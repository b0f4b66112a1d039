"""The Go (gorilla/websocket) and Ruby (puma, async-http, EventMachine websocket-driver,
faye-websocket) peers, real slices against the Python peers: mtls-ok passes both ways and a client
without a certificate is refused by the server; puma's missing TLS version cap makes UNSUPPORTED
cells; the variant that disables verification plays only the scenarios that test it; BUGS.md says
which reference findings the cells reproduce."""

from __future__ import annotations

import pytest

from mtls_matrix.peers.gorilla import GO
from mtls_matrix.peers.ruby import RUBY
from mtls_matrix.selection import build_selection

needs_go = pytest.mark.skipif(GO.missing() is not None, reason=f"Go toolchain: {GO.missing()}")
needs_ruby = pytest.mark.skipif(RUBY.missing() is not None, reason=f"Ruby toolchain: {RUBY.missing()}")


def check_pass_and_rejection(cells) -> None:
    for cell in cells:
        assert cell.verdict.value == "PASS", (cell.id, cell.reason)
        if cell.scenario == "client-no-cert":
            assert (cell.rejection.by, cell.rejection.canonical) == ("server", "CERT_REQUIRED"), cell.id
        else:
            assert cell.server_saw.handler_peer_cn == "mtls-matrix-client", cell.id


@needs_go
def test_gorilla_both_ways(run_matrix):
    results, proc = run_matrix("--all-pairs", "--servers", "gorilla,websockets", "--clients", "gorilla,websockets[ssl=context]",
                               "--scenarios", "mtls-ok,client-no-cert", "--profile", "default", "-n", "2")
    cells = [c for c in results.cells if "gorilla" in c.id]
    assert len(cells) == (1 + 3 + 3) * 2, proc.stdout  # gorilla server x 4 clients, websockets x 3 gorilla variants
    check_pass_and_rejection(cells)
    server_side = next(c for c in cells if c.id == "gorilla-websockets[ssl=context]-client-no-cert")
    assert "didn't provide a certificate" in server_side.rejection.message  # Go's own words, mapped by its table


@needs_ruby
def test_ruby_peers_with_python_peers(run_matrix):
    results, proc = run_matrix(
        "--all-pairs",
        "--servers", "puma-driver,websockets",
        "--clients", "websockets,em-websocket-driver[em-driver-verify-callback],faye-websocket[faye-root-cert-file]",
        "--scenarios", "mtls-ok,client-no-cert,tls12-only", "--profile", "default", "-n", "2")
    ruby = [c for c in results.cells if c.id.startswith("puma-driver") or c.client.startswith("client:em-")
            or c.client.startswith("client:faye")]
    check_pass_and_rejection([c for c in ruby if c.scenario != "tls12-only"])
    capped = [c for c in ruby if c.scenario == "tls12-only" and c.server == "server:puma-driver"]
    assert capped and all(c.verdict.value == "UNSUPPORTED" for c in capped), [(c.id, c.verdict) for c in capped]
    assert "has no option to cap or floor the TLS version" in capped[0].reason
    assert proc.returncode == 0, proc.stdout[-2000:]


def test_the_insecure_variant_plays_only_server_rejected():
    selection = build_selection(servers=["websockets"], clients=["em-websocket-driver[em-driver-noverify]"],
                                profile="default")
    assert selection.cells and {c.scenario.group for c in selection.cells} == {"server-rejected"}


@needs_ruby
def test_bugs_md_reports_the_reference_findings(run_matrix, tmp_path):
    bugs_md = tmp_path / "BUGS.md"
    results, _ = run_matrix("--all-pairs", "--servers", "puma-faye,puma-driver", "--scenarios", "mtls-ok,server-untrusted-ca",
                            "--clients", "websockets,em-websocket-driver,faye-websocket", "--profile", "default",
                            "--deadline", "3", "-n", "2", "--bugs", str(bugs_md))
    section = bugs_md.read_text()
    section = section[section.index("## Reference findings"):]
    for expected in ("| 2.1 | faye-websocket client", "| 2.3 | puma + faye-websocket server", "| 3.1 | EventMachine"):
        row = next(line for line in section.splitlines() if line.startswith(expected))
        assert "**reproduced**" in row, row
    for expected in ("| 3.4 | EventMachine `send_data`", "| 4.2 | puma + websocket-driver"):
        row = next(line for line in section.splitlines() if line.startswith(expected))
        assert "**not reproduced**" in row, row


@needs_ruby
def test_async_http_server_runs_the_application_after_the_upgrade(run_matrix, tmp_path):
    # reference finding 1.4 (the app never runs after the 101) does not hold with Debian's async-http
    # 0.59.5: the hijacked connection reaches websocket-driver, which sees the client certificate
    bugs_md = tmp_path / "BUGS.md"
    results, proc = run_matrix("--servers", "async-http-driver",
                               "--clients", "websockets[ssl=context],aiohttp[ssl=context],aiohttp[ssl_context=context],"
                                            "aiohttp[connector=context]",
                               "--scenarios", "mtls-ok,client-no-cert,tls12-only", "--profile", "default", "-n", "2",
                               "--bugs", str(bugs_md))
    cells = results.cells
    assert len(cells) == 4 * 3, proc.stdout  # websockets: 1 variant, aiohttp: 3
    check_pass_and_rejection(cells)  # tls12-only too: the SSLContext caps the version, unlike puma
    no_cert = next(c for c in cells if c.scenario == "client-no-cert")
    assert "peer did not return a certificate" in no_cert.rejection.message  # OpenSSL's words, as Ruby gives them
    assert all(c.server_saw.handler_ran for c in cells if c.scenario != "client-no-cert")
    section = bugs_md.read_text()
    section = section[section.index("## Reference findings"):]
    row = next(line for line in section.splitlines() if line.startswith("| 1.4 |"))
    assert "**not reproduced**" in row and "| 0 of 8 |" in row, row
    assert proc.returncode == 0, proc.stdout[-2000:]
