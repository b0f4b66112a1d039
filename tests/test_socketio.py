"""The socketio family (peers/socketio.py): real python-socketio servers and clients under mutual
TLS, judged by the real runner. Cells pair peers of one family only."""

from __future__ import annotations

from mtls_matrix.plugin import build_selection

ASYNC = "socketio-asyncclient"
SYNC = "socketio-client"


def test_cells_never_pair_a_ws_peer_with_a_socketio_peer():
    selection = build_selection(scenario_names=["mtls-ok"], profile="default")
    pairs = {(c.server.family, c.client.peer.family) for c in selection.cells}
    assert pairs == {("ws", "ws"), ("socketio", "socketio")}
    servers = {c.server.name for c in selection.cells if c.server.family == "socketio"}
    assert servers == {"socketio-aiohttp", "socketio-tornado", "socketio-uvicorn", "node-socketio"}
    # asking for a ws server and a socketio client yields no cell at all
    assert build_selection(["aiohttp"], [SYNC], ["mtls-ok"], "default").cells == []


def test_a_working_socketio_pair_passes_on_each_transport_and_records_it(run_matrix):
    results, _ = run_matrix("-n", "0", "--servers", "socketio-aiohttp",
                            "--clients", f"{ASYNC}[http_session=connector+polling],"
                                         f"{ASYNC}[http_session=connector+websocket],"
                                         f"{ASYNC}[http_session=connector+upgrade]",
                            "--scenarios", "mtls-ok,io-binary", "--profile", "default")
    assert len(results.cells) == 6
    for cell in results.cells:
        # polling too: the harness's own close aborts the session instead of waiting out the long-poll
        assert cell.verdict.value == "PASS", (cell.id, cell.reason)
        expected = "polling" if cell.client.endswith("+polling]") else "websocket"
        assert cell.family == "socketio"
        assert cell.transport == expected, cell.id  # what the client's session ran on
        assert cell.server_saw.transport == expected, cell.id  # what the server's echo handler saw
        assert cell.server_saw.handler_peer_cn == "mtls-matrix-client"


def test_a_rejected_certificate_is_a_pass_for_the_right_side(run_matrix):
    results, _ = run_matrix("-n", "0", "--servers", "socketio-aiohttp",
                            "--clients", f"{SYNC}[http_session=requests+polling]",
                            "--scenarios", "client-untrusted-ca,server-untrusted-ca")
    cells = {c.scenario: c for c in results.cells}
    assert {s: c.verdict.value for s, c in cells.items()} == {"client-untrusted-ca": "PASS",
                                                              "server-untrusted-ca": "PASS"}
    assert (cells["client-untrusted-ca"].rejection.by, cells["client-untrusted-ca"].rejection.canonical) == \
        ("server", "UNKNOWN_CA")
    assert (cells["server-untrusted-ca"].rejection.by, cells["server-untrusted-ca"].rejection.canonical) == \
        ("client", "UNKNOWN_CA")
    assert not any(c.server_saw.handler_ran for c in results.cells)


def test_tls_settings_for_one_transport_only_and_library_findings(run_matrix):
    """websocket_extra_options reaches the websocket transport only: an upgrade, which starts
    with polling, does not trust the run's CA. Ping has no Socket.IO API. uvicorn
    cannot show the client certificate to the app."""
    results, _ = run_matrix("-n", "0", "--servers", "socketio-aiohttp,socketio-uvicorn",
                            "--clients", f"{ASYNC}[websocket_extra_options=ssl+websocket],"
                                         f"{ASYNC}[websocket_extra_options=ssl+upgrade]",
                            "--scenarios", "mtls-ok,io-ping", "--profile", "default")
    got = {c.id: (c.verdict.value, c.error.canonical) for c in results.cells}
    ws, upgrade = f"{ASYNC}[websocket_extra_options=ssl+websocket]", f"{ASYNC}[websocket_extra_options=ssl+upgrade]"
    assert got[f"socketio-aiohttp-{ws}-mtls-ok"] == ("PASS", None)
    assert got[f"socketio-aiohttp-{upgrade}-mtls-ok"] == ("FAIL", "UNKNOWN_CA")
    assert got[f"socketio-aiohttp-{ws}-io-ping"][0] == "UNSUPPORTED"
    uvicorn = next(c for c in results.cells if c.id == f"socketio-uvicorn-{ws}-mtls-ok")
    assert (uvicorn.verdict.value, uvicorn.phase) == ("FAIL", "handler")
    assert uvicorn.server_saw.handler_ran and uvicorn.server_saw.handler_peer_cn is None
    assert "tls" in uvicorn.server_saw.handler_identity_error


def test_the_family_plays_the_scenarios_where_it_adds_information():
    cells = [c for c in build_selection().cells if c.server.family == "socketio"]
    by_server = {}
    for c in cells:
        by_server.setdefault(c.server.name, set()).add(c.id.split("]-", 1)[1])
    assert by_server["socketio-tornado"] == by_server["socketio-uvicorn"] == {"mtls-ok", "client-no-cert", "io-close"}
    assert "io-1mib-tuned" in by_server["socketio-aiohttp"] and "io-text-tuned" not in by_server["socketio-aiohttp"]
    variants = {c.client.name for c in cells if c.client.peer.library == "python-socketio"}
    assert len(variants) == 10  # every TLS way; websocket_extra_options not on polling alone, where it cannot apply
    assert not any("websocket_extra_options" in v and v.endswith("+polling]") for v in variants)


def test_origin_refusal_and_the_slow_polling_disconnect(run_matrix):
    """Library findings, each with its own symptom: websocket-client's https Origin against
    engine.io's http-only same-origin check (aiohttp: 400; tornado: an open, silent WebSocket);
    disconnect() on polling waits out the long-poll (30 s); on websocket it returns at once but
    the server never gets the client's DISCONNECT."""
    results, _ = run_matrix("-n", "2", "--servers", "socketio-aiohttp,socketio-tornado",
                            "--clients", f"{SYNC}[websocket_extra_options=sslopt+websocket],"
                                         f"{ASYNC}[http_session=connector+polling],{ASYNC}[http_session=connector+websocket]",
                            "--scenarios", "mtls-ok,io-close", "--profile", "default", "--deadline", "4")
    got = {c.id: (c.verdict.value, c.error.canonical) for c in results.cells}
    sync_ws, polling, ws = (f"{SYNC}[websocket_extra_options=sslopt+websocket]", f"{ASYNC}[http_session=connector+polling]",
                            f"{ASYNC}[http_session=connector+websocket]")
    assert got[f"socketio-aiohttp-{sync_ws}-mtls-ok"] == ("FAIL", "HTTP_400")
    assert got[f"socketio-tornado-{sync_ws}-mtls-ok"][0] == "HANG"
    assert got[f"socketio-aiohttp-{polling}-mtls-ok"] == ("PASS", None)
    polling_close = next(c for c in results.cells if c.id == f"socketio-aiohttp-{polling}-io-close")
    assert polling_close.verdict.value == "HANG"
    assert "within 2s" in polling_close.reason  # the family's cells get half the run's deadline
    # websocket: disconnect() closes the WebSocket before the write loop flushed DISCONNECT/CLOSE
    close = next(c for c in results.cells if c.id == f"socketio-aiohttp-{ws}-io-close")
    assert close.verdict.value == "FAIL" and close.server_saw.close_reason == "transport close", close.reason
