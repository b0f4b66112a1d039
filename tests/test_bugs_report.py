"""The BUGS.md renderer, on small hand-built results: no TLS, no peers, only the schema."""

from __future__ import annotations

import json

import pytest

from mtls_matrix import scenarios
from mtls_matrix.reports import bugs
from mtls_matrix.results import Cell, ErrorInfo, Rejection, Results, Run, ServerSaw, TLSSide, Verdict

SERVERS = ("server:alpha", "server:beta")
CLIENTS = ("client:one[a=1]", "client:one[b=2]", "client:two[x=1]")
OK = dict(verdict=Verdict.PASS, phase="io")
INSECURE = dict(verdict=Verdict.INSECURE, phase="io",
                reason="accepted (the handler ran) although the client must reject")
TOO_BIG = dict(verdict=Verdict.FAIL, phase="io", reason="binary: closed with 1009",
               error=ErrorInfo(canonical="MESSAGE_TOO_BIG", type="lib.Closed", message="1009 message too big",
                               clarity="OPAQUE"))
LATE_RESET = dict(verdict=Verdict.FAIL, phase="upgrade",
                  reason="rejected by the server (UNKNOWN_CA) instead of the client",
                  error=ErrorInfo(canonical="CONNECTION_RESET", type="ConnectionResetError", message="",
                                  clarity="OPAQUE"),
                  rejection=Rejection(by="server", canonical="UNKNOWN_CA", phase="verification", message="unknown ca"))


def cell(server: str, client: str, scenario: str, profile: str = "default", **outcome) -> Cell:
    known = scenarios.BY_NAME[scenario]
    suffix = "-tuned" if profile == "tuned" else ""
    short = lambda peer: peer.split(":", 1)[1]  # noqa: E731
    outcome = {
        "client_tls": TLSSide(handshake="ok", version="TLSv1.3", peer_cn="localhost"),
        "server_saw": ServerSaw(accepted_tcp=True, tls=TLSSide(handshake="ok"), handler_ran=True,
                                handler_peer_cn="mtls-matrix-client"),
        **OK, **outcome,
    }
    return Cell(
        id=f"{short(server)}-{short(client)}-{scenario}{suffix}", server=server, client=client, scenario=scenario,
        group=known.group, profile=profile, expectation=known.expect.describe(), tags=sorted(known.tags),
        repro=f"mtls-matrix run --servers {short(server)} --clients '{short(client)}' --scenarios {scenario}",
        **outcome,
    )


def run() -> Run:
    return Run(started="2030-01-01T00:00:00+00:00", finished="2030-01-01T00:01:00+00:00", duration_s=60.0,
               command="mtls-matrix run --out x", python="3.12.0", openssl="OpenSSL 3.0.0", platform="Linux",
               versions={"alpha": "1.0", "beta": "2.0", "one": "3.0", "two": "4.0"}, ca_fingerprint="ab" * 32,
               deadline_s=5.0, profiles=["default", "tuned"], workers=2)


def grid(scenario: str, outcomes: dict[tuple[str, str], dict] | None = None, profile: str = "default") -> list[Cell]:
    """Every server x client in one scenario; PASS unless `outcomes` says otherwise."""
    outcomes = outcomes or {}
    return [cell(s, c, scenario, profile, **outcomes.get((s, c), {})) for s in SERVERS for c in CLIENTS]


def results(*cells: Cell) -> Results:
    return Results(run=run(), cells=list(cells))


def findings(res: Results) -> list[bugs.Finding]:
    return bugs.find(bugs.Matrix(res))


def test_client_failing_with_every_server_is_blamed():
    bad = {(s, "client:two[x=1]"): INSECURE for s in SERVERS}
    [finding] = findings(results(*grid("server-cn-only", bad)))
    assert (finding.blame, finding.blamed) == ("client", "client:two[x=1]")
    assert len(finding.cells) == 2
    assert bugs.title_of(finding) == ("INSECURE: client:two[x=1] accepts the connection when the server certificate "
                                      "names localhost in its CN only, no SAN (server-cn-only)")


def test_server_failing_with_every_client_is_blamed():
    bad = {("server:beta", c): TOO_BIG for c in CLIENTS}
    [finding] = findings(results(*grid("io-1mib", bad)))
    assert (finding.blame, finding.blamed) == ("server", "server:beta")
    assert finding.canonical == "MESSAGE_TOO_BIG" and finding.phase == "io"


def test_one_pair_failing_blames_the_pair():
    bad = {("server:alpha", "client:one[b=2]"): TOO_BIG}
    [finding] = findings(results(*grid("io-1mib", bad)))
    assert (finding.blame, finding.blamed) == ("pair", "server:alpha × client:one[b=2]")


def test_every_variant_of_a_client_library_is_blamed_once():
    bad = {(s, c): TOO_BIG for s in SERVERS for c in CLIENTS if c.startswith("client:one")}
    [finding] = findings(results(*grid("io-1mib", bad)))
    assert (finding.blame, finding.blamed) == ("client library", "client:one (every variant)")
    assert len(finding.cells) == 4


def test_client_and_server_both_always_failing_is_not_every_pair():
    """client:two fails with every server and server:beta with every client: their shared cell goes
    to the side with more partners (beta, 3 clients) rather than to "every pair"."""
    bad = {(s, "client:two[x=1]"): TOO_BIG for s in SERVERS} | {("server:beta", c): TOO_BIG for c in CLIENTS}
    found = {f.blamed: f for f in findings(results(*grid("io-1mib", bad)))}
    assert sorted(found) == ["client:two[x=1]", "server:beta"]
    assert [c.server for c in found["client:two[x=1]"].cells] == ["server:alpha"]
    assert len(found["server:beta"].cells) == 3


def test_every_pair_failing_alike_is_one_finding():
    bad = {(s, c): INSECURE for s in SERVERS for c in CLIENTS}
    [finding] = findings(results(*grid("server-expired", bad)))
    assert (finding.blame, len(finding.cells)) == ("every client", 6)


def test_different_errors_are_different_signatures():
    bad = {("server:alpha", "client:two[x=1]"): TOO_BIG, ("server:beta", "client:two[x=1]"): LATE_RESET}
    found = findings(results(*grid("io-1mib", bad)))
    assert sorted(f.canonical for f in found) == ["CONNECTION_RESET", "MESSAGE_TOO_BIG"]
    assert all(f.blame == "pair" for f in found)  # neither failed the same way with both servers


def test_single_pair_blames_the_side_that_had_to_reject():
    one = [cell("server:alpha", "client:one[a=1]", "server-cn-only", **INSECURE)]
    [finding] = findings(results(*one))
    assert finding.blamed == "client:one[a=1]"


def test_same_signature_across_scenarios_is_one_finding_ordered_by_severity():
    bad = {(s, "client:two[x=1]"): INSECURE for s in SERVERS}
    cells = grid("server-cn-only", bad) + grid("server-cn-only-tls12", bad)
    cells += grid("io-1mib", {("server:alpha", "client:one[a=1]"): TOO_BIG})
    found = findings(results(*cells))
    assert [f.verdict for f in found] == [Verdict.INSECURE, Verdict.FAIL]
    assert found[0].scenarios == ["server-cn-only", "server-cn-only-tls12"]
    assert [f.number for f in found] == [1, 2]


def test_variant_workaround_names_the_passing_variant():
    bad = {(s, "client:one[a=1]"): INSECURE for s in SERVERS}
    [finding] = findings(results(*grid("server-cn-only", bad)))
    assert any("use `client:one[b=2]`" in w and "2 of these 2" in w for w in finding.workarounds)
    assert not any("client:two" in w for w in finding.workarounds)  # another library is no variant


def test_tuned_profile_workaround():
    bad = {("server:alpha", c): TOO_BIG for c in CLIENTS}
    res = results(*grid("io-1mib", bad), *grid("io-1mib", profile="tuned"))
    [finding] = findings(res)
    assert any("`tuned` profile" in w and "3 of 3" in w for w in finding.workarounds)
    assert "`tuned` profile" in bugs.render(res).split("## Workarounds shown by the matrix")[1]


def test_no_workaround_when_tuned_fails_too():
    bad = {("server:alpha", c): TOO_BIG for c in CLIENTS}
    res = results(*grid("io-1mib", bad), *grid("io-1mib", bad, profile="tuned"))
    assert all(not f.workarounds for f in findings(res))


def test_tls_version_workaround():
    bad = {(s, "client:two[x=1]"): LATE_RESET for s in SERVERS}
    res = results(*grid("server-expired", bad), *grid("server-expired-tls12"))
    [finding] = findings(res)
    assert any("TLS version matters" in w and "TLS 1.2-capped" in w for w in finding.workarounds)
    text = bugs.render(res)
    assert "Seen late" in text and "`upgrade`" in text


def test_summary_table_counts():
    cells = grid("mtls-ok", {("server:beta", "client:one[a=1]"): TOO_BIG}) + grid("io-text")
    text = bugs.render(results(*cells))
    table = text.split("## Servers × clients")[1].split("##")[0]
    row = next(line for line in table.splitlines() if line.startswith("| `client:one[a=1]`"))
    assert row == "| `client:one[a=1]` | 2 ✅ | 1 ✅ · 1 ❌ |"
    totals = next(line for line in table.splitlines() if line.startswith("| **all clients**"))
    assert totals == "| **all clients** | 6 ✅ | 5 ✅ · 1 ❌ |"


def test_group_table_has_one_symbol_per_server_and_names_green_rows():
    cells = grid("mtls-ok", {("server:beta", "client:one[a=1]"): TOO_BIG}) + grid("mtls-rsa")
    works = bugs.render(results(*cells)).split("### works")[1].split("###")[0]
    assert "| `mtls-ok` | ✅❌ | ✅✅ | ✅✅ |" in works
    assert "1 of 2: mtls-rsa" in works


def test_render_is_deterministic_whatever_the_cell_order():
    bad = {(s, "client:two[x=1]"): INSECURE for s in SERVERS}
    cells = grid("server-cn-only", bad) + grid("io-1mib", {("server:alpha", "client:one[a=1]"): TOO_BIG})
    first = bugs.render(results(*cells))
    assert first == bugs.render(results(*cells))
    assert first == bugs.render(results(*reversed(cells)))


def test_sections_in_order():
    text = bugs.render(results(*grid("mtls-ok")))
    headings = ["# BUGS.md", "## Environment", "## How to read", "## Servers × clients", "## By scenario group",
                "## Findings", "## Per-library conclusions", "## Workarounds", "## Clarity"]
    positions = [text.index(h) for h in headings]
    assert positions == sorted(positions)
    assert "do not edit by hand" in text
    assert "No findings" in text


def test_long_cell_lists_fold_into_details():
    bad = {(s, c): TOO_BIG for s in SERVERS for c in CLIENTS}
    cells = [c for name in ("io-1mib", "io-16mib") for c in grid(name, bad)]
    text = bugs.render(results(*cells))
    assert "<details><summary>12 cells</summary>" in text


def test_notes_attach_by_glob_and_by_function():
    bad = {(s, "client:two[x=1]"): INSECURE for s in SERVERS}
    res = results(*grid("server-cn-only", bad))
    notes = [bugs.Note("alpha-two[x=1]-*", "Python falls back to the CN.", ["https://example.org/cn"]),
             bugs.Note(lambda f: f.verdict == Verdict.FAIL, "never shown")]
    text = bugs.render(res, notes=notes)
    assert "> **Note:** Python falls back to the CN. [1](https://example.org/cn)" in text
    assert "never shown" not in text


def test_library_conclusion_names_its_own_findings():
    bad = {(s, "client:two[x=1]"): INSECURE for s in SERVERS}
    text = bugs.render(results(*grid("server-cn-only", bad)))
    libraries = text.split("## Per-library conclusions")[1].split("\n## ")[0]
    two = next(line for line in libraries.splitlines() if "`client:two[x=1]`" in line)
    assert "rejects bad server certificates except server-cn-only (INSECURE, accepted)" in two
    alpha = next(line for line in libraries.splitlines() if "`server:alpha`" in line)
    assert "| — | correct in every group" in alpha  # the partner's fault does not count against it


def test_clarity_table_counts_rejection_cells():
    bad = {("server:alpha", "client:one[a=1]"): LATE_RESET}
    text = bugs.render(results(*grid("client-expired", bad)))
    clarity = text.split("### Clarity by client")[1]
    row = next(line for line in clarity.splitlines() if line.startswith("| `client:one[a=1]`"))
    assert "| 1 / 0 / 0 |" not in row and "| 0 / 0 / 1 |" in row and "1 of 1" in row


def test_renders_results_loaded_from_json():
    document = {
        "schema_version": 1,
        "run": json.loads(run().model_dump_json()),
        "cells": [json.loads(cell("server:alpha", "client:one[a=1]", "io-16mib", **TOO_BIG).model_dump_json()),
                  json.loads(cell("server:alpha", "client:one[a=1]", "io-16mib", "tuned").model_dump_json())],
    }
    text = bugs.render(Results.model_validate_json(json.dumps(document)))
    assert "FAIL: client:one[a=1]" not in text  # one pair, no side had to reject: the pair is blamed
    assert "FAIL: the pair server:alpha × client:one[a=1]" in text
    assert "cannot pass io-16mib (a 16 MiB binary message echoes back): MESSAGE_TOO_BIG at io" in text
    assert "`tuned` profile" in text
    assert "ab" * 32 in text


@pytest.mark.parametrize("verdict", [Verdict.UNSUPPORTED, Verdict.PASS])
def test_pass_and_unsupported_are_not_findings(verdict):
    res = results(cell("server:alpha", "client:one[a=1]", "io-ping", verdict=verdict, phase="tcp"))
    assert findings(res) == []


# --------------------------------------------------------------------------- clarity findings

ALERT = ErrorInfo(canonical="CERT_EXPIRED", type="ssl.SSLError", clarity="CLEAR",
                  message="[SSL: SSLV3_ALERT_CERTIFICATE_EXPIRED] sslv3 alert certificate expired")
DROPPED = ErrorInfo(canonical="EOF", type="lib.Disconnected", message="Server disconnected", clarity="OPAQUE")
TLS_EOF = ErrorInfo(canonical="EOF", type="ssl.SSLEOFError", message="EOF occurred in violation of protocol",
                    clarity="VAGUE")


def server_rejected(error: ErrorInfo, phase: str = "upgrade") -> dict:
    """A client-rejected cell that PASSes: the server refused, the client's user saw `error`."""
    return dict(verdict=Verdict.PASS, phase=phase, reason="the server rejected with CERT_EXPIRED", error=error,
                rejection=Rejection(by="server", canonical="CERT_EXPIRED", phase="verification"),
                server_saw=ServerSaw(accepted_tcp=True, tls=TLSSide(handshake="error", error=ErrorInfo(
                    type="SSLCertVerificationError", message="certificate verify failed: certificate has expired"))))


def expired_grids(outcome) -> list[Cell]:
    """client-expired under TLS 1.3 and 1.2; `outcome(server, client, tls12)` -> the client's error."""
    return [cell(s, c, name, **server_rejected(outcome(s, c, tls12), "tls-handshake" if tls12 else "upgrade"))
            for name, tls12 in (("client-expired", False), ("client-expired-tls12", True))
            for s in SERVERS for c in CLIENTS]


def beta_drops_alerts(server: str, client: str, tls12: bool) -> ErrorInfo:
    if server == "server:beta":
        return TLS_EOF if tls12 else DROPPED
    return ALERT


def clarity_findings(res: Results) -> list[bugs.ClarityFinding]:
    return bugs.find_clarity(bugs.Matrix(res))


def test_clarity_by_server_table_splits_tls_versions():
    text = bugs.render(results(*expired_grids(beta_drops_alerts)))
    by_server = text.split("### Clarity by server")[1].split("###")[0]
    assert "| server | TLS 1.3 | TLS 1.2 |" in by_server
    assert "| `server:alpha` | 3 / 0 / 0 | 3 / 0 / 0 |" in by_server
    assert "| `server:beta` | 0 / 0 / 3 | 0 / 3 / 0 |" in by_server


def test_server_dropping_the_alert_is_a_clarity_finding_numbered_after_verdict_findings():
    res = results(*expired_grids(beta_drops_alerts), *grid("io-1mib", {("server:beta", c): TOO_BIG for c in CLIENTS}))
    [clarity] = clarity_findings(res)
    assert (clarity.role, clarity.peer, clarity.rival, clarity.grade) == ("server", "server:beta", "server:alpha",
                                                                         "OPAQUE")
    assert clarity.signature_text == "CLARITY server:beta client-rejected OPAQUE"
    text = bugs.render(res)
    assert ("### F2. OPAQUE: when server:beta rejects a client certificate, no client learns why (0 CLEAR of 6; "
            "the same clients get CLEAR from server:alpha in 6 of 6)") in text
    section = text.split("### F2.")[1].split("\n## ")[0]
    assert "`lib.Disconnected: Server disconnected` (OPAQUE; 3 of 6 cells)" in section
    assert "Seen at: `upgrade` under TLS 1.3 (3 cells), `tls-handshake` under TLS 1.2 (3 cells)" in section
    assert "The server knew why: its own TLS error was `SSLCertVerificationError: certificate verify failed: " \
           "certificate has expired` (6)" in section
    assert "e.g. `ssl.SSLError: [SSL: SSLV3_ALERT_CERTIFICATE_EXPIRED] sslv3 alert certificate expired`" in section
    assert "beta-two[x=1]-client-expired-tls12" in section


def test_no_clarity_finding_without_a_mostly_clear_rival():
    assert clarity_findings(results(*expired_grids(lambda s, c, tls12: DROPPED))) == []
    third = lambda s, c, tls12: ALERT if s == "server:alpha" and c == CLIENTS[0] else DROPPED  # noqa: E731
    found = clarity_findings(results(*expired_grids(third)))  # alpha: 1 CLEAR of 3 per TLS version, under 50%
    assert [f.role for f in found] == ["client", "client"]  # only one[a=1] learns why from alpha


def test_no_clarity_finding_when_the_server_is_sometimes_clear():
    some = lambda s, c, tls12: ALERT if s == "server:alpha" or c == CLIENTS[0] else DROPPED  # noqa: E731
    found = clarity_findings(results(*expired_grids(some)))  # beta: 1 CLEAR of 3 per TLS version
    assert [f.role for f in found] == ["client", "client"]


def test_a_server_opaque_under_one_tls_version_only_is_found_under_it():
    tls13_only = lambda s, c, tls12: ALERT if s == "server:alpha" or tls12 else DROPPED  # noqa: E731
    [finding] = clarity_findings(results(*expired_grids(tls13_only)))
    assert finding.tls_scope == ["TLS 1.3"] and len(finding.cells) == 3
    assert bugs.clarity_title(finding).startswith("OPAQUE: when server:beta rejects a client certificate under "
                                                  "TLS 1.3, no client learns why (0 CLEAR of 3;")


def test_client_hiding_the_alert_is_a_clarity_finding_against_the_servers_that_send_it():
    def two_hides_it(server: str, client: str, tls12: bool) -> ErrorInfo:
        if client == "client:two[x=1]" and not tls12:
            return DROPPED
        return beta_drops_alerts(server, client, tls12)
    found = {f.peer: f for f in clarity_findings(results(*expired_grids(two_hides_it)))}
    assert sorted(found) == ["client:two[x=1]", "server:beta"]
    two = found["client:two[x=1]"]
    assert [c.id for c in two.cells] == ["alpha-two[x=1]-client-expired"]  # beta hides it from everyone
    assert bugs.clarity_title(two) == (
        "OPAQUE: when server:alpha rejects its certificate under TLS 1.3, client:two[x=1] never reports why "
        "(0 CLEAR of 1; client:one[a=1] gets CLEAR from the same servers in 1 of 1)")


def test_notes_match_clarity_findings_by_signature_not_by_cell_id():
    notes = [bugs.Note("CLARITY server:beta *", "asyncio drops the alert."),
             bugs.Note("beta-*", "a note about another beta bug"),
             bugs.Note(lambda f: f.verdict == Verdict.FAIL, "callable notes see no verdict")]
    [clarity] = bugs.find_clarity(bugs.Matrix(results(*expired_grids(beta_drops_alerts))), notes)
    assert [n.text for n in clarity.notes] == ["asyncio drops the alert."]
    assert "> **Note:** asyncio drops the alert." in bugs.render(results(*expired_grids(beta_drops_alerts)), notes)


def test_library_conclusion_names_its_clarity_findings():
    text = bugs.render(results(*expired_grids(beta_drops_alerts)))
    libraries = text.split("## Per-library conclusions")[1].split("\n## ")[0]
    beta = next(line for line in libraries.splitlines() if "`server:beta`" in line)
    assert "| F1 |" in beta
    assert "Clarity: its rejections of client certificates reach no client with the reason (F1, OPAQUE: " \
           "0 CLEAR of 6, server:alpha 6 of 6)" in beta
    alpha = next(line for line in libraries.splitlines() if "`server:alpha`" in line)
    assert "Clarity" not in alpha and "| — |" in alpha


NO_IDENTITY = dict(verdict=Verdict.FAIL, phase="handler",
                   reason="the server handler saw client identity None, not 'mtls-matrix-client' (AttributeError: x)")


def test_title_without_a_canonical_error_uses_the_gist_of_the_reasons():
    res = results(*grid("mtls-ok", {("server:beta", c): NO_IDENTITY for c in CLIENTS}))
    [finding] = findings(res)
    assert finding.canonical == "-"
    assert bugs.title_of(finding).endswith(": the server handler saw client identity None at handler")
    assert "(FAIL, the server handler saw client identity None at handler)" in bugs.render(res)


@pytest.mark.parametrize("reasons, gist", [
    (["closed with 1009, not 1000", "closed with 1011, not 1000"], "closed with"),
    (["handler saw None (AttributeError)"], "handler saw None"),
    (["alpha beta", "gamma"], ""),
])
def test_reason_gist_is_a_common_prefix_of_whole_words(reasons, gist):
    assert bugs.reason_gist(reasons) == gist


def test_a_rival_clear_in_two_thirds_of_the_cells_is_enough():
    two_thirds = lambda s, c, tls12: ALERT if s == "server:alpha" and c != CLIENTS[2] else DROPPED  # noqa: E731
    found = {f.peer: f for f in clarity_findings(results(*expired_grids(two_thirds)))}
    assert (found["server:beta"].rival_clear, len(found["server:beta"].rival_cells)) == (4, 6)
    assert found["client:two[x=1]"].role == "client"  # and the client alpha's alert never reaches


def test_a_stack_that_cannot_run_here_is_named_with_why():
    text = bugs.render(results(*grid("mtls-ok", {})))
    section = text.split("## Not run here", 1)[1].split("\n## ", 1)[0]
    assert ".NET (Kestrel server, ClientWebSocket client)" in section and "registry" in section
