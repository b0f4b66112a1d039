"""Equal evidence (evidence.py, verdict.rejection): every server is judged on what it recorded itself
and on what it put on the wire, the same way whatever its language or process; phase labels are the
client's view for every client; the server's TLS handshakes are counted, and a client that repeats a
refused one gets an advisory. Real cells, plus the readers on the words each stack uses."""

from __future__ import annotations

import shutil

import pytest

from mtls_matrix import evidence
from mtls_matrix.observe import Event
from mtls_matrix.peers.gorilla import GO
from mtls_matrix.peers.node_ws import NODE
from mtls_matrix.peers.ruby import RUBY
from mtls_matrix.results import ErrorInfo, Rejection, Wire
from mtls_matrix.verdict import Observation, client_phase, passing_reason

needs_haproxy = pytest.mark.skipif(shutil.which("haproxy") is None, reason="haproxy not installed")
needs_foreign = pytest.mark.skipif(any(t.missing() for t in (GO, NODE, RUBY)),
                                   reason="Go, Node and Ruby toolchains: run mtls-matrix setup-foreign")
PLUGIN = ("--peer-plugin", "tests.evidence_peers")


@pytest.mark.parametrize("text, alert", [
    ("[SSL: SSLV3_ALERT_BAD_CERTIFICATE] sslv3 alert bad certificate (_ssl.c:2580)", "bad_certificate"),  # Python
    ("TLSV13_ALERT_CERTIFICATE_REQUIRED", "certificate_required"),  # Python's reason
    ("[SSL: TLSV1_ALERT_UNKNOWN_CA] tlsv1 alert unknown ca (_ssl.c:1006)", "unknown_ca"),
    ("remote error: tls: unknown certificate authority", "unknown_ca"),  # Go
    ("remote error: tls: unknown certificate", "certificate_unknown"),
    ("remote error: tls: bad certificate", "bad_certificate"),
    ("ERR_SSL_SSLV3_ALERT_CERTIFICATE_EXPIRED C0:ssl3_read_bytes:sslv3 alert certificate expired:"
     "../deps/openssl/openssl/ssl/record/rec_layer_s3.c:1605:SSL alert number 45", "certificate_expired"),  # Node
    ("SSL_connect returned=1 errno=0 peeraddr=127.0.0.1:4433 state=error: tlsv13 alert certificate required",
     "certificate_required"),  # Ruby
    # a side's own verification, or an alert it sent, is no alert received
    ("[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: unable to get local issuer certificate", None),
    ("tls: failed to verify certificate: x509: certificate signed by unknown authority", None),
    ("local error: tls: bad certificate", None),
    ("unexpected EOF", None),
])
def test_the_alert_a_client_received_is_read_from_every_stacks_words(text, alert):
    assert evidence.alert_in(text) == alert


def _event(kind: str, t: float = 0.01, side: str = "client", **data) -> Event:
    return Event(t, side, kind, data)


def test_the_wire_says_how_the_server_ended_the_attempt_as_the_client_saw_it():
    alert = _event("read-error", 0.02, message="[SSL: SSLV3_ALERT_BAD_CERTIFICATE] sslv3 alert bad certificate")
    received = Wire(alert="bad_certificate", ended="alert", after_ms=20.0)
    assert evidence.wire([alert], None, False, False, 30.0) == received
    eof = ErrorInfo(canonical="EOF", message="did not receive a valid HTTP response",
                    chain=["InvalidMessage: did not receive a valid HTTP response", "EOFError: connection closed"])
    assert evidence.wire([], eof, False, False, 12.5) == Wire(ended="fin", after_ms=12.5)
    reset = ErrorInfo(canonical="CONNECTION_RESET", message="", chain=["ConnectionResetError: "])
    assert evidence.wire([], reset, False, False, 3.0).ended == "reset"
    assert evidence.wire([], None, False, True, None) == Wire(ended="open")  # the deadline came first
    own = _event("handshake-error", verify_code=20, message="certificate verify failed")
    assert evidence.wire([own], None, False, False, 5.0) is None  # the client ended it: nothing from the server
    assert evidence.wire([], ErrorInfo(canonical="HTTP_401"), False, False, 5.0) is None  # an answer at the upgrade
    assert evidence.wire([alert], None, True, False, 5.0) is None  # it connected


def test_a_refusal_that_names_no_reason_fits_the_reason_tls_has_no_word_for():
    def fits(canonical, expected):
        return passing_reason(Rejection(by="server", canonical=canonical, phase="verification"), expected)

    assert fits("CERT_NOT_YET_VALID", "CERT_NOT_YET_VALID") == "the server rejected with CERT_NOT_YET_VALID"
    assert "TLS's word for CERT_NOT_YET_VALID" in fits("BAD_CERTIFICATE", "CERT_NOT_YET_VALID")
    assert "TLS's word for CERT_REQUIRED" in fits("HANDSHAKE_FAILURE", "CERT_REQUIRED")
    assert fits("UNKNOWN_CA", "CERT_EXPIRED") is None  # a reason named, and the wrong one
    assert fits("BAD_CERTIFICATE", "CERT_REQUIRED") is None  # a missing certificate has words of its own
    assert fits("HANDSHAKE_FAILURE", "UNKNOWN_CA") is None


def test_a_client_that_reports_no_tls_of_its_own_is_where_the_server_saw_it():
    """A browser's WebSocket reports no handshake: the server's record places it."""
    accept = _event("accept", side="server", connection=1)
    refused = {"connection": 1, "reason": "PEER_DID_NOT_RETURN_A_CERTIFICATE",
               "message": "peer did not return a certificate"}
    tls13 = _event("handshake-error", side="server", version="TLSv1.3", **refused)
    tls12 = _event("handshake-error", side="server", **refused)  # TLS 1.2 names no version before its handshake ends
    eof = ErrorInfo(canonical="EOF")
    assert client_phase(Observation(events=[accept, tls13], error=eof)) == "upgrade"
    assert client_phase(Observation(events=[accept, tls12], error=eof)) == "tls-handshake"
    assert client_phase(Observation(events=[accept, _event("auth-refused", side="server")], error=eof)) == "upgrade"
    assert client_phase(Observation(events=[accept], error=ErrorInfo(canonical="HTTP_401"))) == "upgrade"
    assert client_phase(Observation(events=[], error=ErrorInfo(canonical="CONNECTION_REFUSED"))) == "tcp"


@needs_haproxy
def test_haproxy_and_tornado_get_the_same_verdict_for_every_certificate_defect(run_matrix):
    """HAProxy logs no reason for a refused certificate and sends OpenSSL's alert; tornado records its
    verify code and sends the same alert: the same behaviour, the same verdict."""
    results, proc = run_matrix("--servers", "haproxy+websockets,tornado",
                               "--clients", "websockets[ssl=context],tornado[ssl_options=context]",
                               "--scenarios", "client-rejected", "-n", "2")
    by_server: dict[str, dict] = {}
    for cell in results.cells:
        found = cell.rejection
        by_server.setdefault(cell.server, {})[(cell.client, cell.scenario)] = (
            cell.verdict.value, found and found.by, found and found.phase)
    haproxy, tornado = by_server["server:haproxy+websockets"], by_server["server:tornado"]
    assert len(haproxy) == len(tornado) == 2 * 14, proc.stdout
    assert haproxy == tornado
    assert {verdict for verdict, *_ in haproxy.values()} == {"PASS"}
    cells = {(c.server, c.scenario, c.client): c for c in results.cells}
    # the proxy's own word is generic: the alert on the wire, as the client received it, is the evidence
    not_yet_valid = cells["server:haproxy+websockets", "client-not-yet-valid-tls12", "client:websockets[ssl=context]"]
    assert not_yet_valid.wire == Wire(alert="bad_certificate", ended="alert", after_ms=not_yet_valid.wire.after_ms)
    assert not_yet_valid.rejection.canonical == "BAD_CERTIFICATE"
    assert "TLS's word for CERT_NOT_YET_VALID" in not_yet_valid.reason


def test_an_alert_gets_the_same_verdict_from_a_python_server_and_an_external_process(run_matrix):
    servers = ("selftest-alert-expired,selftest-alert-expired-process,"
               "selftest-alert-bad-certificate,selftest-alert-bad-certificate-process")
    scenarios = "client-expired,client-untrusted-ca,client-not-yet-valid-tls12,client-no-cert"
    results, proc = run_matrix(*PLUGIN, "--all-pairs", "--servers", servers, "--scenarios", scenarios,
                               "--clients", "websockets[ssl=context],tornado[ssl_options=context]", "-n", "2")
    seen: dict[tuple, dict] = {}
    for cell in results.cells:
        server = cell.server.removeprefix("server:")
        form = "process" if server.endswith("-process") else "python"
        seen.setdefault((server.removesuffix("-process"), cell.client, cell.scenario), {})[form] = (
            cell.verdict.value, cell.phase, cell.rejection and cell.rejection.canonical, cell.wire and cell.wire.alert)
    assert len(seen) == 2 * 2 * 4, proc.stdout
    for key, forms in seen.items():
        assert forms["python"] == forms["process"], key
    verdicts = {(server, scenario): forms["python"][0] for (server, _, scenario), forms in seen.items()}
    assert verdicts == {
        ("selftest-alert-expired", "client-expired"): "PASS",  # the alert names the defect
        ("selftest-alert-expired", "client-untrusted-ca"): "FAIL",  # ... another one
        ("selftest-alert-expired", "client-not-yet-valid-tls12"): "FAIL",
        ("selftest-alert-expired", "client-no-cert"): "FAIL",
        ("selftest-alert-bad-certificate", "client-expired"): "PASS",  # names none: TLS's generic word fits
        ("selftest-alert-bad-certificate", "client-untrusted-ca"): "PASS",
        ("selftest-alert-bad-certificate", "client-not-yet-valid-tls12"): "PASS",
        ("selftest-alert-bad-certificate", "client-no-cert"): "FAIL",  # a missing certificate has its own
    }


@needs_foreign
def test_every_client_is_at_the_upgrade_when_its_own_handshake_completed_before_the_refusal(run_matrix):
    """TLS 1.3: the client finishes its handshake before the server verifies its certificate, so the
    refusal reaches it at the upgrade, in Go, Node, Ruby and Python alike; under TLS 1.2 it does not
    finish. An HTTP 401 is at the upgrade."""
    clients = ("websockets[ssl=context],gorilla[dialer-tlsconfig],gorilla[netdialtlscontext],node-ws[options],"
               "em-websocket-driver[em-driver-verify-callback],faye-websocket[faye-root-cert-file]")
    results, proc = run_matrix("--servers", "tornado,websockets", "--clients", clients, "--scenarios",
                               "client-untrusted-ca,client-untrusted-ca-tls12,token-missing", "-n", "2")
    phases = {c.id: c.phase for c in results.cells}
    assert {c.verdict.value for c in results.cells} == {"PASS"}, proc.stdout
    assert {c.client for c in results.cells if c.scenario == "client-untrusted-ca"} == {
        f"client:{name}" for name in clients.split(",")}
    for cell in results.cells:
        if cell.scenario == "client-untrusted-ca-tls12":
            assert cell.phase in ("tls-handshake", "verification"), (cell.id, phases)
        else:
            assert cell.phase == "upgrade", (cell.id, cell.reason)
            assert cell.client_tls.handshake == "ok", cell.id


def test_the_server_counts_its_handshakes_and_a_repeated_refusal_is_an_advisory(run_matrix):
    results, proc = run_matrix(*PLUGIN, "--servers", "tornado", "--clients",
                               "selftest-retrying[ssl=context],websockets[ssl=context]",
                               "--scenarios", "mtls-ok,client-no-cert,token-missing", "-n", "0")
    cells = {(c.client.removeprefix("client:"), c.scenario): c for c in results.cells}
    assert {c.verdict.value for c in cells.values()} == {"PASS"}, proc.stdout
    for scenario in ("mtls-ok", "client-no-cert", "token-missing"):
        plain = cells["websockets[ssl=context]", scenario]
        assert (plain.handshakes, plain.advisories) == (1, []), plain.id
    assert cells["selftest-retrying[ssl=context]", "mtls-ok"].handshakes == 1
    for scenario, what in (("client-no-cert", "refused 2 TLS handshakes"), ("token-missing", "refused 2 requests")):
        retried = cells["selftest-retrying[ssl=context]", scenario]
        assert retried.handshakes == 2, retried.id
        [advisory] = retried.advisories
        assert advisory.kind == "repeated-handshake" and what in advisory.text, advisory


def test_requests_an_attempt_makes_by_design_are_no_repeat():
    refused = [_event("handshake-error", side="server", connection=n, verify_code=20) for n in (1, 2)]
    assert evidence.repeated(refused, refused=True, requests=2) is None  # a page's fetch, then its WebSocket
    assert "refused 2 TLS handshakes" in evidence.repeated(refused, refused=True).text
    assert evidence.repeated(refused, refused=False) is None  # the cell was no refusal
