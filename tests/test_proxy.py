"""nginx and HAProxy terminating mutual TLS in front of a Python server: real proxy processes,
real handshakes, the identity forwarded in headers, the proxy's side read from its log."""

from __future__ import annotations

import asyncio
import os
import shutil
import ssl
import time

import pytest
from websockets.asyncio.client import connect

from mtls_matrix import leaks, observe
from mtls_matrix.cell import ServerHost, client_tls, server_context
from mtls_matrix.peers import FORWARDED_CN, FORWARDED_VERIFY, Registry
from mtls_matrix.pki import CLIENT_CN, PKI
from mtls_matrix.scenarios import BY_NAME

needs_nginx = pytest.mark.skipif(shutil.which("nginx") is None, reason="nginx not installed (apt-get install nginx)")
needs_haproxy = pytest.mark.skipif(shutil.which("haproxy") is None,
                                   reason="haproxy not installed (apt-get install haproxy)")
PROXIES = [pytest.param("nginx+websockets", marks=needs_nginx), pytest.param("haproxy+websockets", marks=needs_haproxy)]


@needs_nginx
def test_nginx_forwards_the_identity_and_refuses_a_bad_certificate_with_http_400_after_tls(run_matrix):
    results, _ = run_matrix("--servers", "nginx+websockets", "--clients", "websockets[ssl=context]", "-n", "0",
                            "--scenarios", "mtls-ok,client-no-cert,client-expired-tls12")
    cells = {c.scenario: c for c in results.cells}
    ok = cells["mtls-ok"]
    assert ok.verdict.value == "PASS"
    assert ok.server_saw.handler_peer_cn == CLIENT_CN  # through X-SSL-Client-CN
    assert (ok.server_saw.proxy_status, ok.server_saw.proxy_verify) == (101, "SUCCESS")
    for name, reason, verify in (("client-no-cert", "CERT_REQUIRED", "NONE"),
                                 ("client-expired-tls12", "CERT_EXPIRED", "FAILED:certificate has expired")):
        cell = cells[name]
        # the TLS handshake completed on both sides; the refusal is an HTTP 400, later than a correct rejection
        assert cell.client_tls.handshake == "ok" and cell.server_saw.tls.handshake == "ok"
        assert (cell.verdict.value, cell.phase) == ("FAIL", "upgrade")
        assert (cell.rejection.by, cell.rejection.canonical, cell.rejection.phase) == ("server", reason, "upgrade")
        assert (cell.server_saw.proxy_status, cell.server_saw.proxy_verify) == (400, verify)
        assert cell.error.canonical == "HTTP_400" and not cell.server_saw.handler_ran
        assert "rejected only at upgrade: nginx completed the TLS handshake" in cell.reason


@needs_haproxy
def test_haproxy_rejects_a_bad_certificate_in_the_tls_handshake(run_matrix):
    results, _ = run_matrix("--all-pairs", "--servers", "haproxy+aiohttp", "--clients", "websockets[ssl=context]", "-n", "0",
                            "--scenarios", "mtls-ok,client-expired-tls12")
    cells = {c.scenario: c for c in results.cells}
    assert cells["mtls-ok"].verdict.value == "PASS"
    assert cells["mtls-ok"].server_saw.handler_peer_cn == CLIENT_CN
    expired = cells["client-expired-tls12"]
    assert expired.verdict.value == "PASS"
    assert (expired.rejection.by, expired.rejection.canonical, expired.rejection.phase) == (
        "server", "CERT_EXPIRED", "verification")
    assert expired.server_saw.tls.error.message == "SSL client certificate not trusted"  # HAProxy's own log line
    assert expired.server_saw.proxy_status is None  # no HTTP at all


def test_a_missing_proxy_program_is_named_with_its_package(run_matrix):
    results, _ = run_matrix("--servers", "nginx+tornado", "--clients", "websockets[ssl=context]", "--scenarios", "mtls-ok",
                            "-n", "0", env={"PATH": "/nonexistent"})
    [cell] = results.cells
    assert cell.verdict.value == "SKIPPED"
    assert "nginx not found" in cell.reason and "setup-foreign" in cell.reason


@pytest.fixture(scope="module")
def pki():
    with PKI() as made:
        yield made


def _identity_seen(host: ServerHost, pki: PKI, headers: list[tuple[str, str]]) -> str | None:
    """Connect through `host` with a valid certificate and `headers`; what the handler saw."""
    recorder = observe.begin(f"{os.getpid()}-spoof-{time.monotonic_ns()}")
    tls = client_tls(pki, BY_NAME["mtls-ok"])

    async def talk():
        async with connect(f"wss://localhost:{host.port}/cell/{recorder.token}", ssl=tls.context(),
                           additional_headers=headers, open_timeout=5) as ws:
            await ws.send("hello")
            assert await ws.recv() == "hello"

    try:
        asyncio.run(talk())
        event = recorder.find("server", "handler")
        return event.data["peer_cn"] if event else "handler never ran"
    finally:
        observe.end(recorder)


@pytest.mark.parametrize("server", ["websockets", *PROXIES])
def test_identity_headers_sent_by_the_client_never_reach_the_handler(server, pki):
    """The real attack on a header-forwarded identity: a client with a valid certificate names
    someone else in the proxy's headers (duplicates, other spellings). The proxy must replace them;
    a server on its own TLS listener must not read them at all."""
    host = ServerHost(Registry().servers[server], server_context(pki, BY_NAME["mtls-ok"]), "default")
    try:
        forged = [(FORWARDED_CN, "admin"), (FORWARDED_VERIFY, "SUCCESS"),
                  (FORWARDED_CN.lower(), "root"), (FORWARDED_CN.upper(), "root")]
        assert _identity_seen(host, pki, forged) == CLIENT_CN
        assert _identity_seen(host, pki, []) == CLIENT_CN
    finally:
        host.close()


@pytest.mark.parametrize("server", PROXIES)
def test_the_proxy_and_its_backend_listen_on_loopback_and_leave_nothing_behind(server, pki):
    host = ServerHost(Registry().servers[server], server_context(pki, BY_NAME["client-revoked"]), "default")
    peer = host.peer
    process, workdir = peer.process, peer.workdir
    try:
        assert "ssl_crl" in (workdir / "proxy.conf").read_text() or "crl-file" in (workdir / "proxy.conf").read_text()
        listening = leaks.listening_addresses(process.pid)
        assert listening == {("127.0.0.1", host.port)}, listening
        assert ("127.0.0.1", peer.backend_port) in leaks.listening_addresses()  # the plain backend, in this process
        assert peer.backend.behind_proxy and not peer.backend_peer.behind_proxy  # only the proxy's copy
    finally:
        host.close()
    assert process.poll() is not None, "the proxy outlived its listener"
    assert not workdir.exists()



@pytest.mark.parametrize(("context_range", "expected"), [
    ((None, None), ["TLSv1.2", "TLSv1.3"]),
    ((None, ssl.TLSVersion.TLSv1_2), ["TLSv1.2"]),
    ((ssl.TLSVersion.TLSv1_3, None), ["TLSv1.3"]),
])
def test_the_proxy_gets_the_tls_range_of_the_context(context_range, expected):
    from mtls_matrix.peers.proxy import tls_versions

    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    low, high = context_range
    if low:
        ctx.minimum_version = low
    if high:
        ctx.maximum_version = high
    assert tls_versions(ctx) == expected


def test_a_forwarded_name_counts_only_with_the_proxys_success():
    from mtls_matrix.peers import forwarded_cn

    assert forwarded_cn({FORWARDED_CN: "alice", FORWARDED_VERIFY: "SUCCESS"}) == "alice"
    for verify in (None, "NONE", "FAILED:certificate has expired", "success"):
        headers = {FORWARDED_CN: "alice"} | ({FORWARDED_VERIFY: verify} if verify else {})
        assert forwarded_cn(headers) is None
