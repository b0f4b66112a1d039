"""The socketio family (peers/socketio.py): real python-socketio servers and clients under mutual
TLS, judged by the real runner. Cells pair peers of one family only."""

from __future__ import annotations

import asyncio
import socket
import threading
import time

import pytest

from mtls_matrix import observe
from mtls_matrix.cell import ServerControl, ServerHost, client_tls, run_step, server_context
from mtls_matrix.peers import ClientTLS
from mtls_matrix.peers import socketio as sio_peers
from mtls_matrix.pki import CLIENT_CN, PKI
from mtls_matrix.selection import SCRUBBED, build_selection
from mtls_matrix.scenarios import BY_NAME

ASYNC = "socketio-asyncclient"
SYNC = "socketio-client"


def test_cells_never_pair_a_ws_peer_with_a_socketio_peer():
    selection = build_selection(scenario_names=["mtls-ok"], profile="default")
    pairs = {(c.server.family, c.client.peer.family) for c in selection.cells}
    assert pairs == {("ws", "ws"), ("socketio", "socketio")}
    servers = {c.server.name for c in selection.cells if c.server.family == "socketio"}
    assert servers == {"socketio-aiohttp", "socketio-tornado", "socketio-uvicorn", "socketio-werkzeug", "node-socketio"}
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
    assert by_server["socketio-tornado"] == by_server["socketio-uvicorn"] == by_server["socketio-werkzeug"] == {
        "mtls-ok", "client-no-cert", "io-close", "token-header-ok", "token-missing"}
    assert {"io-namespace", "reconnect-drop", "reconnect-restart", "reconnect-restart-untrusted"} <= \
        by_server["socketio-aiohttp"]
    assert "io-1mib-tuned" in by_server["socketio-aiohttp"] and "io-text-tuned" not in by_server["socketio-aiohttp"]
    variants = {c.client.name for c in cells if c.client.peer.library == "python-socketio"}
    # every TLS way x transport (4 ways x 3 per client); websocket_extra_options not on polling alone, where it
    # cannot apply
    assert len(variants) == 22
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
    assert "within 2s" in next(c.reason for c in results.cells if c.id == f"socketio-tornado-{sync_ws}-mtls-ok")
    # the family's cells get half the run's deadline; disconnect() on polling, the library's own clock
    polling_close = next(c for c in results.cells if c.id == f"socketio-aiohttp-{polling}-io-close")
    assert polling_close.verdict.value == "PASS" and polling_close.deadline.source == "library", polling_close.reason
    assert [a.kind for a in polling_close.advisories] == ["slow"] and polling_close.timings["total"] > 25_000
    # websocket: disconnect() closes the WebSocket before the write loop flushed DISCONNECT/CLOSE
    close = next(c for c in results.cells if c.id == f"socketio-aiohttp-{ws}-io-close")
    assert close.verdict.value == "FAIL" and close.server_saw.close_reason == "transport close", close.reason


def test_family_scenarios_never_reach_the_ws_family():
    """A namespace or a reconnect is Socket.IO's: no ws peer plays it, even with every pairing."""
    selection = build_selection(scenario_names=["io-namespace", "reconnect-*"], all_pairs=True)
    assert selection.cells and {c.server.family for c in selection.cells} == {"socketio"}


def test_a_namespace_echo_passes_with_the_identity_seen_in_that_namespace(run_matrix):
    results, _ = run_matrix("-n", "0", "--servers", "socketio-aiohttp",
                            "--clients",
                            f"{ASYNC}[http_session=connector+websocket],{SYNC}[http_session=requests+polling]",
                            "--scenarios", "io-namespace", "--profile", "default")
    assert len(results.cells) == 2
    for c in results.cells:
        assert (c.verdict.value, c.server_saw.handler_peer_cn) == ("PASS", CLIENT_CN), (c.id, c.reason)
        assert [s.op for s in c.steps] == ["text"] and c.steps[0].ok


def _reconnect_after_drop(monkeypatch, variant: str):
    """One real client of the family against a private aiohttp server: connect, the server drops the
    connection, echo; returns what the client held and what the cell recorded."""
    for name in SCRUBBED:  # as the runner does: requests prefers REQUESTS_CA_BUNDLE to Session.verify
        monkeypatch.delenv(name, raising=False)
    observe.install()
    scenario = BY_NAME["reconnect-drop"]
    with PKI() as pki:
        host = ServerHost(sio_peers.AiohttpServer(), server_context(pki, scenario), "default")
        recorder = observe.begin(f"reconnect-test-drop-{variant}")
        control = ServerControl(host, pki, scenario, recorder)
        peer = sio_peers.AsyncClient() if variant.startswith("http_session=connector") else sio_peers.Client()

        async def drive():
            conn = await peer.connect(variant, f"wss://localhost:{host.port}/cell/{recorder.token}",
                                      client_tls(pki, scenario), "default", 5)
            try:
                session = conn.session
                problem = await peer.reconnect_step(conn, control, "drop")
                after = await run_step(conn, "text", "after")
                closed = getattr(session, "closed", False)  # requests.Session has no such flag
                return problem, after, session, conn.sio.eio.http, conn.sio.connected, closed
            finally:
                await conn.close(1000, "done")

        try:
            return asyncio.run(drive()), recorder
        finally:
            observe.end(recorder)
            host.close()


def test_a_reconnect_after_a_drop_shows_the_identity_twice_and_keeps_the_session(monkeypatch):
    for variant in ("http_session=connector+websocket", "http_session=requests+polling"):
        (problem, after, session, http, connected, closed), recorder = _reconnect_after_drop(monkeypatch, variant)
        assert (problem, after, connected) == (None, None, True), variant
        identities = [e.data["peer_cn"] for e in recorder.events if e.side == "server" and e.kind == "handler"]
        assert identities == [CLIENT_CN, CLIENT_CN], variant  # the certificate presented again
        handshakes = [e for e in recorder.events if e.side == "server" and e.kind == "handshake-ok"]
        assert len(handshakes) >= 2, variant  # a new handshake, not a resumed connection
        assert http is session, variant  # the user's session, not a replacement
        assert not closed, variant


def test_a_restarted_server_with_an_untrusted_certificate_is_refused(run_matrix):
    """The client must refuse the server that came back (UNKNOWN_CA) and give up. The checks can
    fail (tests/selftest_peers.py): a client whose reconnect skips verification is INSECURE there;
    one whose reconnect drops its certificate FAILs a plain drop, promptly, naming the refusal."""
    # judged by the real runner (an in-process variant of this check, beside the other tests on a loaded
    # CI machine, sometimes recorded none of the client's refused handshakes: not investigated yet)
    results, _ = run_matrix("-n", "0", "--peer-plugin", "tests.selftest_peers", "--servers", "socketio-aiohttp",
                            "--clients",
                            f"{SYNC}[http_session=requests+polling],selftest-sio-forgetful,selftest-sio-certless",
                            "--scenarios", "reconnect-restart-untrusted,reconnect-drop", "--profile", "default")
    got = {(c.client.split("[")[0], c.scenario): (c.verdict.value, c.reason) for c in results.cells}
    assert got[f"client:{SYNC}", "reconnect-restart-untrusted"][0] == "PASS"
    verdict, reason = got["client:selftest-sio-forgetful", "reconnect-restart-untrusted"]
    assert verdict == "INSECURE" and "reconnected" in reason and "UNKNOWN_CA" in reason
    verdict, reason = got["client:selftest-sio-certless", "reconnect-drop"]
    assert verdict == "FAIL" and "gave up" in reason and "server CERT_REQUIRED" in reason, reason


def test_the_sync_server_under_werkzeug_shows_the_certificate_on_both_transports(run_matrix):
    """werkzeug copies the certificate into each request's environ (SSL_CLIENT_CERT): on polling
    the connect handler gets the handshake request's environ, whose connection is closed by then,
    and the copy still names the client."""
    results, _ = run_matrix("-n", "0", "--servers", "socketio-werkzeug",
                            "--clients",
                            f"{ASYNC}[http_session=connector+websocket],{ASYNC}[http_session=connector+polling]",
                            "--scenarios", "mtls-ok,client-no-cert", "--profile", "default")
    got = {(c.client.split("+")[-1].rstrip("]"), c.scenario): c for c in results.cells}
    for transport in ("websocket", "polling"):
        ok = got[transport, "mtls-ok"]
        assert (ok.verdict.value, ok.server_saw.handler_peer_cn, ok.transport) == ("PASS", CLIENT_CN, transport), \
            (ok.id, ok.reason)
    # the polling client's refusal can wait behind a half-open connection of an earlier cell (the
    # accept loop's handshake: the next test), so the refusal is asserted where it comes first
    rejected = got["websocket", "client-no-cert"]
    assert (rejected.verdict.value, rejected.rejection.by) == ("PASS", "server"), rejected.reason


def test_werkzeug_accepts_no_one_while_a_connection_has_not_finished_its_tls_handshake():
    """werkzeug's serve loop does each TLS handshake in its accepting thread, without a timeout: a
    connection that never sends its ClientHello blocks every client after it (the baseline's reason
    for socketio-werkzeug's HANGs)."""
    pki = PKI()
    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, daemon=True).start()
    server = sio_peers.WerkzeugServer()
    port = asyncio.run_coroutine_threadsafe(server.start(server_context(pki, BY_NAME["mtls-ok"]), "default"),
                                            loop).result(10)
    client = ClientTLS(pki.root, pki["client"].chain, pki["client"].key, "localhost").context()
    try:
        with client.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=2),
                                server_hostname="localhost"):
            pass  # nothing holds the accept loop: a handshake completes at once
        with socket.create_connection(("127.0.0.1", port)):  # TCP, and never a ClientHello
            time.sleep(0.2)
            with socket.create_connection(("127.0.0.1", port), timeout=2) as second:
                with pytest.raises(TimeoutError):
                    client.wrap_socket(second, server_hostname="localhost")
    finally:
        asyncio.run_coroutine_threadsafe(server.stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        pki.close()
