"""The reference findings (matrix/reference.toml) on hand-built results: each finding's status is
computed from the cells that test it (sections.reference), never assumed."""

from __future__ import annotations

from mtls_matrix import findings, knowledge, sections
from mtls_matrix.reports import bugs
from mtls_matrix.results import ErrorInfo, Rejection, ServerSaw, TLSSide, Verdict
from tests.hand_built import cell, results

KNOWLEDGE = knowledge.load("matrix")

TYPE_ERROR = "TypeError: no implicit conversion of Puma::MiniSSL::Socket into Integer"
STALLED = dict(verdict=Verdict.HANG, phase="io",
               reason=f"no outcome within 5s (reached io) (the server said: {TYPE_ERROR})",
               error=ErrorInfo(canonical="TIMEOUT", message="no outcome within 5s"))
EPROTO = dict(verdict=Verdict.FAIL, phase="tls-handshake", reason="should connect but failed with HANDSHAKE_FAILURE",
              error=ErrorInfo(canonical="HANDSHAKE_FAILURE", message="unbind: Errno::EPROTO: Protocol error"))
ACCEPTED = dict(verdict=Verdict.INSECURE, phase="io",
                reason="accepted (the handler ran) although the client must reject with UNKNOWN_CA")
SERVER_REJECTED = dict(verdict=Verdict.PASS, phase="upgrade", reason="the server rejected with CERT_REQUIRED",
                       rejection=Rejection(by="server", canonical="CERT_REQUIRED", phase="verification",
                                           message="peer did not return a certificate - 199"))


def statuses(*cells) -> dict[str, tuple[str, int, int]]:
    matrix = findings.Matrix(results(*cells))
    return {s.finding.id: (s.status, len(s.tested), len(s.shown)) for s in sections.reference(matrix, KNOWLEDGE)}


def test_statuses_follow_the_cells():
    cells = [
        cell("server:puma-faye", "client:websockets[ssl=context]", "mtls-ok", **STALLED),
        cell("server:puma-faye", "client:em-websocket-driver[em-driver-verify-callback]", "io-text", **STALLED),
        cell("server:puma-faye", "client:em-websocket-driver[em-driver-no-callback]", "mtls-ok", **EPROTO),
        cell("server:websockets", "client:em-websocket-driver[em-driver-no-callback]", "mtls-ok", **EPROTO),
        cell("server:websockets", "client:em-websocket-driver[em-driver-verify-callback]", "mtls-ok"),
        cell("server:websockets", "client:em-websocket-driver[em-driver-noverify]", "server-untrusted-ca", **ACCEPTED),
        cell("server:puma-driver", "client:em-websocket-driver[em-driver-verify-callback]", "mtls-ok"),
        cell("server:puma-driver", "client:websockets[ssl=context]", "client-no-cert", **SERVER_REJECTED),
        cell("server:puma-faye", "client:websockets[ssl=context]", "client-expired",
             verdict=Verdict.FAIL, phase="io", reason="accepted"),
    ]
    found = statuses(*cells)
    assert found["2.3"] == ("reproduced", 2, 2)  # the em-driver-no-callback cell never reached the server
    assert found["3.1"] == ("reproduced", 2, 2)
    assert found["3.4"] == ("not reproduced", 1, 0)  # the upgrade reached the handler
    assert found["4.2"] == ("not reproduced", 1, 0)
    assert found["§3 puma"] == ("partly reproduced", 2, 1)
    assert found["2.1"] == ("not run", 0, 0)
    assert found["1.1"][0] == found["1.3"][0] == "not testable here"
    assert found["1.4"] == ("not run", 0, 0)


def test_the_async_finding_follows_the_async_http_cells():
    # the reference's observation: the 101 went out, the application never ran on the connection
    never_ran = dict(verdict=Verdict.HANG, phase="upgrade", reason="no outcome within 5s (reached upgrade)",
                     server_saw=ServerSaw(accepted_tcp=True, tls=TLSSide(handshake="ok"), handler_ran=False))
    stalled = cell("server:async-http-driver", "client:websockets[ssl=context]", "mtls-ok", **never_ran)
    echoed = cell("server:async-http-driver", "client:websockets[ssl=context]", "io-text")
    rejected = cell("server:async-http-driver", "client:websockets[ssl=context]", "client-no-cert", **SERVER_REJECTED)
    assert statuses(stalled, rejected)["1.4"] == ("reproduced", 1, 1)  # a rejection tests nothing here
    assert statuses(stalled, echoed)["1.4"] == ("partly reproduced", 2, 1)
    assert statuses(echoed)["1.4"] == ("not reproduced", 1, 0)


def test_skipped_and_unsupported_cells_are_no_evidence():
    skipped = dict(verdict=Verdict.SKIPPED, phase="tcp", reason="ruby not found; run `mtls-matrix setup-foreign`")
    found = statuses(cell("server:puma-faye", "client:websockets[ssl=context]", "mtls-ok", **skipped))
    assert found["2.3"] == ("not run", 0, 0)


def test_bugs_md_states_each_finding_with_its_cells():
    res = results(
        cell("server:puma-faye", "client:websockets[ssl=context]", "mtls-ok", **STALLED),
        cell("server:puma-driver", "client:websockets[ssl=context]", "mtls-ok"),
        cell("server:puma-driver", "client:em-websocket-driver[em-driver-verify-callback]", "mtls-ok"),
    )
    text = bugs.render(findings.analyse(res, KNOWLEDGE))
    section = text[text.index("## Reference findings"):]
    for finding in KNOWLEDGE.reference.finding:
        assert f"| {finding.id} |" in section
    row = next(line for line in section.splitlines() if line.startswith("| 2.3 | puma + faye-websocket server"))
    assert "| **reproduced** | 1 of 1 |" in row
    row = next(line for line in section.splitlines() if line.startswith("| 4.2 |"))
    assert "| **not reproduced** | 0 of 1 |" in row
    assert "async-websocket (and protocol-websocket, which it needs) is not packaged" in section  # why 1.2, 1.3 cannot
    assert "| 1.4 |" in section and "**not run**" in section  # no async-http-driver cell in these results


def test_no_section_without_the_ruby_peers():
    text = bugs.render(findings.analyse(results(cell("server:alpha", "client:one[a=1]", "mtls-ok")), KNOWLEDGE))
    assert "Reference findings" not in text


def test_every_reference_finding_names_a_known_mechanism_or_none():
    ids = {m.id for m in KNOWLEDGE.mechanisms}
    assert all(f.mechanism in ids for f in KNOWLEDGE.reference.finding if f.mechanism)
