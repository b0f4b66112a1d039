"""The `token` group (issue 3's hybrid model): TLS without client certificates, a bearer token in
the opening request. Real servers and clients, real handshakes, judged by the real runner."""

from __future__ import annotations

import subprocess
import sys

from mtls_matrix import scenarios
from mtls_matrix.peers import ClientTLS
from mtls_matrix.pki import CLIENT_CN
from mtls_matrix.selection import build_selection
from mtls_matrix.reports.text import md
from tests.conftest import mtls_matrix, verdicts

PLUGIN = ("--peer-plugin", "tests.selftest_peers")
WS_SERVERS = "websockets,aiohttp,tornado"
REFUSALS = "token-header-malformed,token-header-wrong,token-query-malformed,token-query-wrong,token-missing"


def test_token_servers_are_their_own_listeners_and_play_where_their_family_can():
    ok, mtls = scenarios.BY_NAME["token-header-ok"], scenarios.BY_NAME["mtls-ok"]
    assert ok.server_key != mtls.server_key  # a token-auth listener requests no client certificate
    assert ok.client_cert is None and ok.expect.outcome == "succeed"
    cells = build_selection(scenario_names=["token"], profile="default").cells
    # the Socket.IO auth payload only where Socket.IO runs; no foreign server or proxy plays the group
    assert {c.server.family for c in cells if c.scenario.token.carrier == "auth"} == {"socketio"}
    assert not [c for c in cells if c.server.foreign or c.server.out_of_process]
    # a refusal plays one variant per client library; the header success every variant
    aiohttp = {(c.client.variant, c.scenario.name) for c in cells
               if c.server.name == "websockets" and c.client.peer.name == "aiohttp"}
    assert {v for v, s in aiohttp if s == "token-missing"} == {"ssl=context"}
    assert {v for v, s in aiohttp if s == "token-header-ok"} == {"ssl=context", "ssl_context=context",
                                                                  "connector=context", "ssl=True", "ssl=default",
                                                                  "session=pooled", "ssl=True+env-at-run-time"}


def test_a_valid_token_passes_and_the_handler_sees_the_identity_it_names(run_matrix):
    results, _ = run_matrix("-n", "0", "--servers", WS_SERVERS, "--clients", "websockets,websocket-client",
                            "--scenarios", "token-header-ok,token-query-ok")
    assert len(results.cells) == 3 * (6 + 2)  # header: every variant (2 + 4); query: one per library
    for cell in results.cells:
        assert cell.verdict.value == "PASS", (cell.id, cell.reason)
        assert cell.server_saw.handler_peer_cn == CLIENT_CN  # from the token: no certificate was sent
        assert cell.server_saw.tls.handshake == "ok" and cell.server_saw.tls.peer_cn is None


def test_every_bad_token_is_refused_by_every_server_before_the_handler(run_matrix):
    results, _ = run_matrix("-n", "0", "--servers", WS_SERVERS, "--clients", "websockets,tornado,aiohttp",
                            "--scenarios", REFUSALS)
    assert len(results.cells) == 3 * 3 * 5
    for cell in results.cells:
        assert cell.verdict.value == "PASS", (cell.id, cell.reason)
        assert not cell.server_saw.handler_ran
        assert (cell.rejection.by, cell.rejection.canonical, cell.rejection.phase) == ("server", "UNAUTHORIZED",
                                                                                      "upgrade")
        assert "token" in cell.rejection.message  # the server's own reason, recorded
        # each of these clients shows its user the status of the refused upgrade
        assert (cell.error.canonical, cell.error.clarity.value) == ("HTTP_401", "CLEAR"), cell.id


def test_a_server_that_lets_a_missing_token_through_is_insecure(run_matrix):
    results, _ = run_matrix(*PLUGIN, "-n", "0", "--servers", "selftest-lax-token", "--clients", "websockets[ssl=context]",
                            "--scenarios", "token-missing,token-header-wrong,token-header-ok")
    assert verdicts(results) == {
        "selftest-lax-token-websockets[ssl=context]-token-missing": "INSECURE",
        "selftest-lax-token-websockets[ssl=context]-token-header-wrong": "PASS",
        "selftest-lax-token-websockets[ssl=context]-token-header-ok": "PASS",
    }


def test_a_client_without_headers_is_unsupported_and_one_that_drops_them_fails(run_matrix):
    results, _ = run_matrix(*PLUGIN, "-n", "0", "--servers", "websockets",
                            "--clients", "selftest-headerless,selftest-drops-headers",
                            "--scenarios", "token-header-ok,token-query-ok")
    got = {c.id: (c.verdict.value, c.reason) for c in results.cells}
    assert got["websockets-selftest-headerless[ssl=context]-token-header-ok"] == (
        "UNSUPPORTED", "this selftest client declares it cannot set request headers")
    assert got["websockets-selftest-headerless[ssl=context]-token-query-ok"][0] == "PASS"  # the URL carries it
    verdict, reason = got["websockets-selftest-drops-headers[ssl=context]-token-header-ok"]
    assert verdict == "FAIL" and "UNAUTHORIZED" in reason
    assert got["websockets-selftest-drops-headers[ssl=context]-token-query-ok"][0] == "PASS"


def test_socketio_refuses_in_the_connect_handler_and_the_client_hides_the_reason(run_matrix, tmp_path):
    client = "socketio-asyncclient[http_session=connector+websocket]"
    results, _ = run_matrix("-n", "0", "--all-pairs", "--servers", "socketio-aiohttp", "--clients", client,
                            "--scenarios", "token-auth-ok,token-header-ok,token-auth-wrong,token-missing")
    got = {c.scenario: c for c in results.cells}
    assert {s: c.verdict.value for s, c in got.items()} == dict.fromkeys(got, "PASS")
    assert set(got) == {"token-auth-ok", "token-header-ok", "token-auth-wrong", "token-missing"}
    assert got["token-auth-ok"].server_saw.handler_peer_cn == CLIENT_CN
    refused = got["token-auth-wrong"]
    assert refused.rejection.message == "token not valid" and not refused.server_saw.handler_ran
    # the reason went to the client in the CONNECT_ERROR packet, but connect() does not say it
    assert refused.error.message == "One or more namespaces failed to connect: /"
    assert refused.error.clarity.value == "OPAQUE"
    bugs = tmp_path / "BUGS.md"
    proc = mtls_matrix("report", str(tmp_path / "out" / "results.json"), "--out", str(bugs))
    assert proc.returncode == 0, proc.stderr
    text = bugs.read_text()
    section = text.split("### F-socketio-connect-error-hidden")[1].split("\n### ")[0]  # the curated mechanism
    assert "- " + md(f"{client} (TLS 1.3, token): its user was told why in 0 of 2 (OPAQUE)") in section
    assert "python-socketio/issues/344" in section  # the reason goes to connect_error only


def test_client_tls_headers_default_to_none():
    tls = ClientTLS(ca=None, cert=None, key=None, server_hostname="localhost")
    assert tls.headers == () and tls.auth == ()


def test_a_reproducer_sends_the_token_the_way_the_cell_does(tmp_path):
    for cell, observed in (("socketio-aiohttp-socketio-client[http_session=requests+polling]-token-auth-ok", "works: "),
                           ("socketio-aiohttp-socketio-asyncclient[http_session=connector+polling]-token-query-wrong",
                            "rejected by the server: UNAUTHORIZED"),
                           ("websockets-websocket-client[sslopt=dict]-token-header-ok", "works: "),
                           ("aiohttp-tornado[ssl_options=context]-token-query-wrong",
                            "rejected by the server: UNAUTHORIZED"),
                           ("tornado-aiohttp[ssl=context]-token-header-malformed",
                            "rejected by the server: UNAUTHORIZED")):
        out = tmp_path / cell
        proc = mtls_matrix("repro", cell, "--out", str(out))
        assert proc.returncode == 0, proc.stderr
        script = (out / "repro.py").read_text()
        assert "TOKENS = {TOKEN: CLIENT_CN}" in script  # its own random token: no value in the text
        run = subprocess.run([sys.executable, "-I", str(out / "repro.py")], capture_output=True, text=True,
                             timeout=60, cwd=tmp_path)
        assert f"OBSERVED: {observed}" in run.stdout, run.stdout + run.stderr
        assert "VERDICT: PASS" in run.stdout
