"""Headless Chromium as a WebSocket client (peers/chromium.py): real browser, real handshakes.

Skipped, with the reason, where the browser or NSS's tools are not installed (`mtls-matrix
setup-foreign`)."""

from __future__ import annotations

import asyncio

import pytest

from mtls_matrix import observe
from mtls_matrix.cell import ServerHost, client_tls, server_context
from mtls_matrix.peers import chromium
from mtls_matrix.peers.websockets import Server as WebsocketsServer
from mtls_matrix.pki import CLIENT_CN, PKI
from mtls_matrix.scenarios import BY_NAME
from tests.conftest import verdicts

pytestmark = pytest.mark.skipif(chromium.availability() is not None, reason=str(chromium.availability()))

PLUGIN = ("--peer-plugin", "mtls_matrix.peers.chromium", "-n", "0")
FETCH = "chromium[page=same-origin+fetch]"
PLAIN = "chromium[page=same-origin]"


def test_chromium_with_the_websockets_server(run_matrix):
    results, _ = run_matrix(*PLUGIN, "--all-pairs", "--servers", "websockets", "--clients", "chromium",
                            "--scenarios", "mtls-ok,client-no-cert,server-untrusted-ca")
    cells = {c.id: c for c in results.cells}
    assert verdicts(results) == {
        f"websockets-{FETCH}-mtls-ok": "PASS",
        f"websockets-{FETCH}-client-no-cert": "PASS",
        f"websockets-{FETCH}-server-untrusted-ca": "PASS",
        # a WebSocket alone never asks for a certificate: Chromium cancels at the CertificateRequest
        f"websockets-{PLAIN}-mtls-ok": "FAIL",
        f"websockets-{PLAIN}-client-no-cert": "FAIL",
        f"websockets-{PLAIN}-server-untrusted-ca": "PASS",
    }
    ok = cells[f"websockets-{FETCH}-mtls-ok"]
    assert ok.server_saw.handler_ran and ok.server_saw.handler_peer_cn == CLIENT_CN

    no_cert = cells[f"websockets-{FETCH}-client-no-cert"]
    assert (no_cert.rejection.by, no_cert.rejection.canonical) == ("server", "CERT_REQUIRED")
    assert not no_cert.server_saw.handler_ran

    untrusted = cells[f"websockets-{FETCH}-server-untrusted-ca"]
    assert (untrusted.rejection.by, untrusted.rejection.canonical) == ("client", "UNKNOWN_CA")
    # the page saw an opaque error and close 1006; the browser knew the certificate error
    assert "close 1006" in untrusted.error.message and "ERR_CERT" not in untrusted.error.message
    assert untrusted.error.clarity.value == "OPAQUE"
    assert any("net::ERR_CERT_AUTHORITY_INVALID" in link for link in untrusted.error.chain)
    assert untrusted.client_tls.error.message.startswith("certificate error ERR_CERT_AUTHORITY_INVALID")

    canceled = cells[f"websockets-{PLAIN}-mtls-ok"]
    assert canceled.error.canonical == "CANCELED"
    assert any("WebSocket opening handshake was canceled" in link for link in canceled.error.chain)


def _connect(client, variant, port, tls, token):
    """One cell's connection and echo, in this thread, attributed to its own recorder."""
    recorder = observe.begin(token)
    observe.bind_thread(recorder)

    async def attempt():
        try:
            conn = await client.connect(variant, f"wss://localhost:{port}/cell/{token}", tls, "default", 20)
        except chromium.PageSaw as exc:
            return f"failed: {exc.__cause__}"
        await conn.send("hello")
        echoed = await conn.recv()
        await conn.close(1000, "done")
        return f"echoed {echoed}"

    try:
        return asyncio.run(attempt()), recorder
    finally:
        observe.end(recorder)


def test_cells_are_independent_on_one_server_and_one_browser():
    """Client-certificate decisions are cached per host:port for a browser context: a fresh context
    per cell means a decision made in one cell does not carry into the next."""
    observe.install()
    with PKI() as pki:
        host = ServerHost(WebsocketsServer(), server_context(pki, BY_NAME["mtls-ok"]), "default")
        try:
            client = chromium.Client()
            with_cert = client_tls(pki, BY_NAME["mtls-ok"])
            without = client_tls(pki, BY_NAME["client-no-cert"])
            first, rec1 = _connect(client, "page=same-origin+fetch", host.port, with_cert, "independent-1")
            # same browser, same server: the certificate chosen for the fetch just before is not reused
            second, _ = _connect(client, "page=same-origin", host.port, with_cert, "independent-2")
            # a no-certificate cell right after a certificate cell on the same server
            third, rec3 = _connect(client, "page=same-origin+fetch", host.port, without, "independent-3")
            assert first == "echoed hello"
            assert rec1.find("server", "handler").data["peer_cn"] == CLIENT_CN
            assert second.startswith("failed") and "WebSocket opening handshake was canceled" in second
            assert third.startswith("failed")
            refused = [e.data["reason"] for e in rec3.events if e.kind == "handshake-error"]
            assert refused and set(refused) == {"PEER_DID_NOT_RETURN_A_CERTIFICATE"}
            assert rec3.find("server", "handler") is None
            assert len(chromium._browsers) == 2  # one browser per client certificate, reused
        finally:
            chromium.close_browsers()
            host.close()


def test_availability_names_what_is_missing(monkeypatch, tmp_path):
    assert chromium.availability() is None  # the browser and NSS's tools: no machine-wide policy
    monkeypatch.setattr(chromium, "CHROMIUM", str(tmp_path / "no-chromium"))
    assert "chromium" in chromium.availability() and "setup-foreign" in chromium.availability()


def test_the_profile_selects_only_the_browsers_own_client_certificate():
    """The content setting AutoSelectCertificateForUrls would set machine-wide, in the browser's own
    profile, filtered on the issuer and subject of the one certificate its NSS database holds."""
    with PKI() as pki:
        for name, issuer in (("client", "mtls-matrix root CA"), ("client-chain", "mtls-matrix intermediate CA"),
                             ("client-untrusted-ca", "unrelated CA")):
            tls = client_tls(pki, BY_NAME["mtls-ok"])
            tls = type(tls)(ca=tls.ca, cert=pki[name].chain, key=pki[name].key, server_hostname="localhost")
            exceptions = chromium.preferences(tls)["profile"]["content_settings"]["exceptions"]
            assert set(exceptions) == {"auto_select_certificate"}
            settings = exceptions["auto_select_certificate"]
            assert set(settings) == {"https://localhost:*,*", "https://127.0.0.1:*,*"}
            for setting in settings.values():
                assert setting["setting"]["filters"] == [
                    {"ISSUER": {"CN": issuer}, "SUBJECT": {"CN": CLIENT_CN, "OU": name}}]
        assert chromium.preferences(client_tls(pki, BY_NAME["client-no-cert"])) == {}  # nothing to select


def test_chromium_sends_a_token_in_the_url_and_cannot_set_a_header(run_matrix):
    results, _ = run_matrix(*PLUGIN, "--servers", "websockets", "--clients", PLAIN,
                            "--scenarios", "token-query-ok,token-header-ok")
    cells = {c.scenario: c for c in results.cells}
    assert cells["token-query-ok"].verdict.value == "PASS", cells["token-query-ok"].reason
    assert cells["token-query-ok"].server_saw.handler_peer_cn == CLIENT_CN  # the identity the token names
    assert cells["token-header-ok"].verdict.value == "UNSUPPORTED"
    assert "cannot set request headers" in cells["token-header-ok"].reason


SIO = "chromium-socketio[page=same-origin+{}]"


@pytest.mark.skipif(not chromium.SOCKETIO_BUNDLE.exists(), reason=f"{chromium.SOCKETIO_BUNDLE} not installed")
def test_chromium_as_a_socketio_client(run_matrix):
    """Chromium presents the certificate for socket.io's polling XHRs (the HTTP path, where the policy
    applies), and the upgrade reuses that choice; a bare websocket transport is canceled (crbug
    993907). Node's socket.io server serves the page's origin; python-socketio refuses its POST
    (Origin https:// against wsgi.url_scheme 'http', python-socketio#977)."""
    results, _ = run_matrix(*PLUGIN, "--all-pairs", "--servers", "node-socketio,socketio-aiohttp",
                            "--clients", "chromium-socketio", "--scenarios", "mtls-ok", "--profile", "default",
                            "--deadline", "20")  # the server scales it by 0.5; polling costs two handshakes: 3 s, under load more
    cells = {c.id: c for c in results.cells}
    assert verdicts(results) == {
        f"node-socketio-{SIO.format('polling')}-mtls-ok": "PASS",
        f"node-socketio-{SIO.format('upgrade')}-mtls-ok": "PASS",
        f"node-socketio-{SIO.format('websocket')}-mtls-ok": "FAIL",
        f"socketio-aiohttp-{SIO.format('polling')}-mtls-ok": "FAIL",
        f"socketio-aiohttp-{SIO.format('upgrade')}-mtls-ok": "FAIL",
        f"socketio-aiohttp-{SIO.format('websocket')}-mtls-ok": "FAIL",
    }
    for transport in ("polling", "upgrade"):
        ok = cells[f"node-socketio-{SIO.format(transport)}-mtls-ok"]
        assert ok.server_saw.handler_peer_cn == CLIENT_CN
        assert ok.transport == ("websocket" if transport == "upgrade" else "polling")
    assert cells[f"node-socketio-{SIO.format('websocket')}-mtls-ok"].error.canonical == "CANCELED"
    refused = cells[f"socketio-aiohttp-{SIO.format('polling')}-mtls-ok"]
    assert refused.error.canonical == "HTTP_400" and "xhr post error: 400" in refused.error.message
    assert refused.server_saw.tls.peer_cn == CLIENT_CN  # the certificate went out with the polling XHR
