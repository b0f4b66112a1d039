"""The proxy-validated identity pattern (peers/proxy_identity.py): the app alone over TLS, then
behind a real nginx with `ssl_verify_client optional_no_ca`; real runs, real handshakes."""

from __future__ import annotations

import shutil

import pytest

from mtls_matrix.selection import build_selection
from mtls_matrix.pki import CLIENT_CN
from mtls_matrix import findings
from mtls_matrix.reports import bugs as bugs_md

APP, NGINX = "socketio-aiohttp+proxy-identity", "nginx+socketio-aiohttp+proxy-identity"
WEBSOCKET = "socketio-asyncclient[http_session=connector+websocket]"  # refusals surface at once there
POLLING = "socketio-asyncclient[http_session=connector+polling]"
ATTACKS = {"proxy-id-header-forged": "FORWARD_UNTRUSTED", "proxy-id-header-not-stored": "CERT_NOT_STORED",
           "proxy-id-header-cn-mismatch": "AGENT_MISMATCH", "proxy-id-header-malformed": "BAD_FORWARDED_CERT"}
needs_nginx = pytest.mark.skipif(shutil.which("nginx") is None, reason="nginx not installed (mtls-matrix setup-foreign)")


def test_only_the_app_and_its_proxy_play_the_group_each_its_own_topology():
    cells = build_selection(scenario_names=["proxy-identity"], profile="default").cells
    by_server = {}
    for cell in cells:
        by_server.setdefault(cell.server.name, set()).add(cell.scenario.name)
    assert set(by_server) == {APP, NGINX}  # the other servers (groups None) do not opt in
    assert all(name.startswith("proxy-id-header-") for name in by_server[APP])
    assert all(name.startswith("proxy-id-cert-") for name in by_server[NGINX])
    assert {c.client.peer.family for c in cells} == {"socketio"}
    # not even --all-pairs makes a server without the app play it
    assert {c.server.name for c in build_selection(scenario_names=["proxy-identity"], profile="default",
                                                   all_pairs=True).cells} == {APP, NGINX}


def test_the_app_accepts_the_stored_certificate_and_refuses_each_attack_before_the_handler(run_matrix):
    results, _ = run_matrix("-n", "0", "--servers", APP, "--clients", f"{WEBSOCKET},{POLLING}",
                            "--scenarios", "proxy-identity")
    cells = {(c.client.split(":", 1)[1], c.scenario): c for c in results.cells}
    assert len(cells) == 10
    for client in (WEBSOCKET, POLLING):
        ok = cells[(client, "proxy-id-header-ok")]
        assert ok.verdict.value == "PASS", ok.reason
        assert ok.server_saw.handler_peer_cn == CLIENT_CN  # the agent id the app validated
    for scenario, reason in ATTACKS.items():
        for client in (WEBSOCKET, POLLING):
            cell = cells[(client, scenario)]
            assert not cell.server_saw.handler_ran, cell.id  # refused before the app took an identity
            assert (cell.rejection.by, cell.rejection.canonical, cell.rejection.phase) == ("server", reason, "handler")
        refused = cells[(WEBSOCKET, scenario)]
        assert refused.verdict.value == "PASS", refused.reason
        # connect() tells its user only "One or more namespaces failed to connect"; the reason reaches
        # the connect_error handler the adapter registers, and the report's error chain
        assert refused.error.canonical == "CONNECT_REFUSED" and refused.error.clarity.value == "OPAQUE"
        assert any("the server refused the connection: " in link for link in refused.error.chain)
    # python-socketio on polling: connect() calls disconnect() after the refusal, which waits out the long-poll
    # (30 s): on the library's own clock that is a correct refusal that costs its user the wait
    late = cells[(POLLING, "proxy-id-header-forged")]
    assert late.verdict.value == "PASS" and late.deadline.timeout == "long-poll GET", late.reason
    assert [a.kind for a in late.advisories] == ["late-refusal"] and late.timings["total"] > 25_000


def test_a_forged_header_the_app_trusted_would_be_insecure(run_matrix):
    """The same scenario against the app without the proxy's proof (tests/selftest_peers.py)."""
    results, _ = run_matrix("--peer-plugin", "tests.selftest_peers", "-n", "0", "--servers", "selftest-trusting-app",
                            "--clients", WEBSOCKET, "--scenarios", "proxy-id-header-forged,proxy-id-header-not-stored")
    cells = {c.scenario: c for c in results.cells}
    forged = cells["proxy-id-header-forged"]
    assert forged.verdict.value == "INSECURE" and forged.server_saw.handler_peer_cn == CLIENT_CN
    assert cells["proxy-id-header-not-stored"].verdict.value == "PASS"  # its store still holds
    assert "**A forged `X-SSL-Client-Cert` was honoured** in 1 of 1 cells" in render(results)


def render(results) -> str:
    return bugs_md.render(findings.analyse(results))


@needs_nginx
def test_nginx_optional_no_ca_forwards_any_certificate_and_replaces_forged_headers(run_matrix):
    results, _ = run_matrix("-n", "0", "--servers", NGINX, "--clients", WEBSOCKET, "--scenarios", "proxy-identity")
    cells = {c.scenario: c for c in results.cells}
    assert len(cells) == 6 and all(c.verdict.value == "PASS" for c in cells.values()), [
        (c.id, c.reason) for c in cells.values() if c.verdict.value != "PASS"]
    ok = cells["proxy-id-cert-ok"]
    assert ok.server_saw.handler_peer_cn == CLIENT_CN
    # nginx did not verify even the good certificate (no CA list), and passed it on
    assert ok.server_saw.proxy_verify.startswith("FAILED:") and ok.server_saw.proxy_status == 101
    stranger = cells["proxy-id-cert-not-stored"]
    assert stranger.server_saw.proxy_verify.startswith("FAILED:")  # nginx saw it fail, and proxied it anyway
    assert (stranger.rejection.canonical, stranger.rejection.phase) == ("CERT_NOT_STORED", "handler")  # the app
    assert cells["proxy-id-cert-none"].server_saw.proxy_verify == "NONE"
    # the client's forged headers never reached the app: it saw nginx's (the client's real certificate, or none)
    assert cells["proxy-id-cert-forged-header"].rejection.canonical == "CERT_NOT_STORED"
    assert cells["proxy-id-cert-none-forged-header"].rejection.canonical == "CERT_REQUIRED"
    assert not any(c.server_saw.handler_ran for name, c in cells.items() if name != "proxy-id-cert-ok")
    bugs = render(results)
    assert "**optional_no_ca: nginx accepts a certificate from any CA; the app's store is the only check.**" in bugs
    assert "No forged `X-SSL-Client-Cert` was honoured (2 cells" in bugs
