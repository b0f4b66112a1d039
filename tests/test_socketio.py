"""The socketio family (peers/socketio.py): real python-socketio servers and clients under mutual
TLS, judged by the real runner. Cells pair peers of one family only."""

from __future__ import annotations

from mtls_matrix.plugin import build_selection
from tests.conftest import verdicts

ASYNC = "socketio-asyncclient"
SYNC = "socketio-client"


def test_cells_never_pair_a_ws_peer_with_a_socketio_peer():
    selection = build_selection(scenario_names=["mtls-ok"], profile="default")
    pairs = {(c.server.family, c.client.peer.family) for c in selection.cells}
    assert pairs == {("ws", "ws"), ("socketio", "socketio")}
    servers = {c.server.name for c in selection.cells if c.server.family == "socketio"}
    assert servers == {"socketio-aiohttp", "socketio-tornado", "socketio-uvicorn"}
    # asking for a ws server and a socketio client yields no cell at all
    assert build_selection(["aiohttp"], [SYNC], ["mtls-ok"], "default").cells == []


def test_a_working_socketio_pair_passes_on_each_transport_and_records_it(run_matrix):
    results, _ = run_matrix("-n", "0", "--servers", "socketio-aiohttp",
                            "--clients", f"{ASYNC}[http_session=connector+polling],"
                                         f"{ASYNC}[http_session=connector+websocket],"
                                         f"{ASYNC}[http_session=connector+upgrade]",
                            "--scenarios", "mtls-ok,io-binary", "--profile", "default")
    for cell in results.cells:
        if cell.client.endswith("+polling]"):
            # the I/O round-trips; disconnect() right after an exchange then waits for the next
            # server ping (engineio's write loop exits without flushing CLOSE): PASS or HANG
            assert cell.verdict.value in ("PASS", "HANG") and cell.steps and all(s.ok for s in cell.steps), cell.id
        else:
            assert cell.verdict.value == "PASS", (cell.id, cell.reason)
        expected = "polling" if cell.client.endswith("+polling]") else "websocket"
        assert cell.family == "socketio"
        assert cell.transport == expected, cell.id  # what the client's session ran on
        assert cell.server_saw.transport == expected, cell.id  # what the server's echo handler saw
        assert cell.server_saw.handler_peer_cn == "mtls-matrix-client"


def test_a_rejected_certificate_is_a_pass_for_the_right_side(run_matrix):
    results, _ = run_matrix("-n", "0", "--servers", "socketio-tornado",
                            "--clients", f"{SYNC}[http_session=requests+polling]",
                            "--scenarios", "client-untrusted-ca,server-expired")
    cells = {c.scenario: c for c in results.cells}
    assert {s: c.verdict.value for s, c in cells.items()} == {"client-untrusted-ca": "PASS", "server-expired": "PASS"}
    assert (cells["client-untrusted-ca"].rejection.by, cells["client-untrusted-ca"].rejection.canonical) == \
        ("server", "UNKNOWN_CA")
    assert (cells["server-expired"].rejection.by, cells["server-expired"].rejection.canonical) == \
        ("client", "CERT_EXPIRED")
    assert not any(c.server_saw.handler_ran for c in results.cells)


def test_tls_settings_for_one_transport_only_and_library_findings(run_matrix):
    """websocket_extra_options reaches the websocket transport only: polling (and so an upgrade,
    which starts with polling) does not trust the run's CA. Ping has no Socket.IO API. uvicorn
    cannot show the client certificate to the app."""
    results, _ = run_matrix("-n", "0", "--servers", "socketio-aiohttp,socketio-uvicorn",
                            "--clients", f"{ASYNC}[websocket_extra_options=ssl+websocket],"
                                         f"{ASYNC}[websocket_extra_options=ssl+polling]",
                            "--scenarios", "mtls-ok,io-ping", "--profile", "default")
    got = {c.id: (c.verdict.value, c.error.canonical) for c in results.cells}
    ws, polling = f"{ASYNC}[websocket_extra_options=ssl+websocket]", f"{ASYNC}[websocket_extra_options=ssl+polling]"
    assert got[f"socketio-aiohttp-{ws}-mtls-ok"] == ("PASS", None)
    assert got[f"socketio-aiohttp-{polling}-mtls-ok"] == ("FAIL", "UNKNOWN_CA")
    assert got[f"socketio-aiohttp-{ws}-io-ping"][0] == "UNSUPPORTED"
    uvicorn = next(c for c in results.cells if c.id == f"socketio-uvicorn-{ws}-mtls-ok")
    assert (uvicorn.verdict.value, uvicorn.phase) == ("FAIL", "handler")
    assert uvicorn.server_saw.handler_ran and uvicorn.server_saw.handler_peer_cn is None
    assert "tls" in uvicorn.server_saw.handler_identity_error
