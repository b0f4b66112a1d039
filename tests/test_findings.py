"""The findings engine (findings.py) on hand-built results: one finding per root cause, blamed at the
narrowest layer that explains every cell, by comparison with the cells that behave differently."""

from __future__ import annotations

import pytest

from mtls_matrix import findings
from mtls_matrix.knowledge import Knowledge, Link, Mechanism
from mtls_matrix.results import Advisory, ErrorInfo, Rejection, RunOutcome, Runs, ServerSaw, Severity, TLSSide, Verdict
from tests.hand_built import CLIENTS, INSECURE, LATE_RESET, RESET, SERVERS, TOO_BIG, cell, grid, results

PYTHON = ("client:pa[v=1]", "client:pb[v=1]", "client:pc[v=1]")  # three libraries of one TLS stack
OTHERS = ("client:go[v=1]",)
STACKS = {"client:go[v=1]": {"stack": "Go crypto/tls"}}


def find(res, knowledge=Knowledge()) -> list[findings.Finding]:
    return findings.find(findings.Matrix(res), knowledge)


def test_one_mechanism_across_three_clients_of_a_stack_and_two_servers_is_one_finding_blamed_on_the_stack():
    bad = {(s, c): INSECURE for s in SERVERS for c in PYTHON}
    cells = grid("server-cn-only", bad, clients=PYTHON + OTHERS) + grid("server-cn-only-tls12", bad,
                                                                          clients=PYTHON + OTHERS)
    [finding] = find(results(*cells, peers=STACKS))
    assert [(u.side, u.level, u.name) for u in finding.layer.units] == [("client", "stack", "CPython ssl")]
    assert finding.layer.text == "client TLS stack CPython ssl (pa, pb, pc)"
    assert len(finding.cells) == 12 and finding.libraries == ["pa", "pb", "pc"]
    assert finding.severity == Severity.CRITICAL and finding.id == "F-client-cpython-ssl-server-cn-only-insecure"


def test_a_stack_is_not_blamed_when_one_of_its_libraries_passes():
    bad = {(s, c): INSECURE for s in SERVERS for c in PYTHON[:2]}
    [finding] = find(results(*grid("server-cn-only", bad, clients=PYTHON + OTHERS), peers=STACKS))
    assert [u.name for u in finding.layer.units] == ["client:pa[v=1]", "client:pb[v=1]"]
    assert finding.layer.text == "client pa[v=1]; client pb[v=1]"


def test_the_same_scenario_failing_with_two_canonical_errors_is_two_findings():
    bad = {(s, "client:two[x=1]"): TOO_BIG for s in SERVERS} | {(s, "client:one[a=1]"): RESET for s in SERVERS}
    found = find(results(*grid("io-1mib", bad)))
    assert sorted((f.cells[0].error.canonical, f.layer.text) for f in found) == [
        ("CONNECTION_RESET", "client one[a=1]"), ("MESSAGE_TOO_BIG", "client two[x=1]")]
    assert len({f.id for f in found}) == 2


def test_a_pair_specific_failure_is_blamed_on_the_pair():
    [finding] = find(results(*grid("io-1mib", {("server:alpha", "client:one[b=2]"): TOO_BIG})))
    [unit] = finding.layer.units
    assert (unit.side, unit.name, unit.compared) == ("pair", "server:alpha × client:one[b=2]", True)
    assert finding.layer.text == "the pair server:alpha × client:one[b=2]"


def test_a_server_failing_with_every_client_is_blamed():
    [finding] = find(results(*grid("io-1mib", {("server:beta", c): TOO_BIG for c in CLIENTS})))
    assert finding.layer.text == "server beta"


def test_every_variant_of_a_library_is_blamed_as_the_library():
    bad = {(s, c): TOO_BIG for s in SERVERS for c in CLIENTS if c.startswith("client:one")}
    [finding] = find(results(*grid("io-1mib", bad)))
    assert finding.layer.text == "client library one"


def test_a_client_failing_everywhere_for_several_reasons_is_not_blamed_for_what_the_servers_explain():
    """The servers' limits explain the EOF of both clients; `one` also fails elsewhere for its own
    reason, which does not make it the culprit of the EOF cells (fewest units)."""
    eof = dict(verdict=Verdict.FAIL, phase="io", reason="closed",
               error=ErrorInfo(canonical="EOF", type="lib.Closed", message="", clarity="OPAQUE"))
    servers = ("server:alpha", "server:beta", "server:gamma")
    bad = {(s, c): eof for s in servers[:2] for c in ("client:one[a=1]", "client:two[x=1]")}
    bad[("server:gamma", "client:one[a=1]")] = TOO_BIG
    found = {f.cells[0].error.canonical: f for f in find(results(*grid("io-16mib", bad, servers=servers,
                                                                      clients=("client:one[a=1]",
                                                                               "client:two[x=1]"))))}
    assert found["EOF"].layer.text == "server alpha; server beta"


def test_ids_are_stable_when_cells_are_added():
    knowledge = Knowledge(mechanisms=(Mechanism(id="limit", title="t", reason="r"),))
    bad = {("server:beta", c): TOO_BIG for c in CLIENTS}
    known = [c.model_copy(update={"mechanism": "limit", "baseline": "KNOWN"}) for c in grid("io-1mib", {
        ("server:alpha", "client:two[x=1]"): TOO_BIG})]
    before = {f.id for f in find(results(*grid("io-16mib", bad), *known), knowledge)}
    more = grid("io-text") + grid("io-16mib", bad, servers=("server:gamma",)) + grid(
        "server-cn-only", {(s, "client:two[x=1]"): INSECURE for s in SERVERS})
    after = {f.id for f in find(results(*grid("io-16mib", bad), *known, *more), knowledge)}
    assert before == {"F-limit", "F-server-beta-io-16mib-fail-message-too-big"}
    assert before < after


def test_cells_of_one_known_mechanism_are_one_finding_across_scenarios_pairs_and_verdicts():
    mechanism = Mechanism(id="origin", title="The origin check refuses https", reason="url_scheme is http",
                          links=(Link(url="https://example.org/977", status="open"),))
    hang = dict(verdict=Verdict.HANG, phase="upgrade", reason="no outcome within 5s")
    cells = grid("io-text", {("server:alpha", "client:two[x=1]"): TOO_BIG}) + grid(
        "mtls-ok", {("server:beta", "client:two[x=1]"): hang})
    cells = [c.model_copy(update={"mechanism": "origin", "baseline": "KNOWN"}) if c.verdict != Verdict.PASS else c
             for c in cells]
    [finding] = find(results(*cells), Knowledge(mechanisms=(mechanism,)))
    assert (finding.id, finding.title, finding.mechanism) == ("F-origin", mechanism.title, mechanism)
    assert finding.verdicts == {"FAIL": 1, "HANG": 1} and finding.baseline == "KNOWN"


def test_a_server_variant_and_pairs_of_its_framework_share_the_library_they_run_on():
    """tornado's open(): the tornado[open] server fails with every client; python-socketio on tornado
    only with the clients of one transport. One finding, blamed on tornado."""
    nobody = dict(verdict=Verdict.FAIL, phase="handler", reason="the server handler saw client identity None")
    ws = grid("mtls-ok", {("server:tornado[open]", c): nobody for c in CLIENTS},
              servers=("server:tornado", "server:tornado[open]"))
    sio_clients = ("client:sio[polling]", "client:sio[websocket]", "client:sio2[websocket]")
    sio = [cell(s, c, "mtls-ok", **(nobody if s == "server:sio-tornado" and "websocket" in c else {}))
           for s in ("server:sio-tornado", "server:sio-aiohttp") for c in sio_clients]
    sio = [c.model_copy(update={"family": "socketio"}) for c in sio]
    cells = [c.model_copy(update={"mechanism": "open"}) if c.verdict == Verdict.FAIL else c for c in ws + sio]
    peers = {"server:tornado[open]": {"library": "tornado"}, "server:sio-tornado": {"framework": "tornado"},
             "server:sio-aiohttp": {"framework": "aiohttp"}}
    [finding] = find(results(*cells, peers=peers))
    assert finding.layer.common == "server library tornado"
    assert len(finding.cells) == 5


def test_a_plugin_peer_run_against_one_partner_does_not_inherit_the_partners_default_limits():
    """A third party runs its plugin client against websockets alone: the 1 MiB io fails because of
    websockets' max_size. Nothing in the run tells whose limit it is: the plugin is not blamed."""
    plugin = "client:myplug[default]"
    alone = results(cell("server:websockets", plugin, "io-1mib", **TOO_BIG),
                    cell("server:websockets", plugin, "io-text"))
    [finding] = find(alone)
    assert not finding.layer.blames(plugin)
    assert finding.layer.undetermined and "nothing ran to compare it with" in finding.layer.text
    # with a built-in client beside it failing the same way, the server's limit is what the run shows
    both = results(*[cell("server:websockets", c, "io-1mib", **TOO_BIG) for c in (plugin, "client:websockets[x]")])
    [finding] = find(both)
    assert finding.layer.text == "server websockets" and not finding.layer.blames(plugin)


def test_an_acceptance_is_the_refusing_side_s_even_against_one_partner():
    [finding] = find(results(cell("server:alpha", "client:one[a=1]", "server-cn-only", **INSECURE)))
    assert finding.layer.text == "client one[a=1]"


def test_against_the_harness_hostile_peer_the_peer_under_test_is_blamed():
    hang = dict(verdict=Verdict.HANG, phase="tls-handshake", reason="no outcome within 5s")
    cells = [cell("server:hostile", c, "hostile-server-silent", **(hang if c != CLIENTS[2] else {})) for c in CLIENTS]
    [finding] = find(results(*cells, peers={"server:hostile": {"harness": True}}))
    assert finding.layer.text == "client library one"
    matrix = findings.Matrix(results(*cells, peers={"server:hostile": {"harness": True}}))
    assert all(a.servers == [] or "server:hostile" not in a.servers for a in findings.answers(matrix))


def test_a_control_variant_is_never_a_finding():
    cells = grid("server-expired", {(s, "client:one[b=2]"): INSECURE for s in SERVERS})
    peers = {"client:one[b=2]": {"control": "verify off on purpose"}}
    assert find(results(*cells, peers=peers)) == []
    answer = findings.answers(findings.Matrix(results(*cells, peers=peers)))[0]
    assert "client:one[b=2]" not in answer.clients  # the Controls section shows it
    assert answer.state("server:beta", "client:one[a=1]") == findings.WORKS


@pytest.mark.parametrize("verdict, group_scenario, severity", [
    (Verdict.INSECURE, "server-expired", Severity.CRITICAL),
    (Verdict.FAIL, "mtls-ok", Severity.BROKEN),
    (Verdict.FAIL, "client-expired", Severity.ADVISORY),  # refused, late or for another reason: trust holds
    (Verdict.FAIL, "io-16mib", Severity.ADVISORY),  # a documented default limit
    (Verdict.HANG, "io-text", Severity.BROKEN),
])
def test_severity_falls_back_on_verdict_and_group_for_older_files(verdict, group_scenario, severity):
    c = cell("server:alpha", "client:one[a=1]", group_scenario, verdict=verdict, phase="io")
    matrix = findings.Matrix(results(c, record_run=False))
    assert findings.severity_of(c, matrix) == severity
    recorded = c.model_copy(update={"severity": Severity.ADVISORY})
    assert findings.severity_of(recorded, findings.Matrix(results(recorded))) == Severity.ADVISORY


def test_an_older_file_without_peers_or_scenarios_still_analyses():
    res = results(*grid("io-text", {("server:beta", c): TOO_BIG for c in CLIENTS}), record_run=False)
    analysis = findings.analyse(res)
    [finding] = analysis.findings
    assert finding.layer.text == "server beta" and analysis.answers[0].state("server:beta", CLIENTS[0]) == "broken"


def test_the_answer_is_the_worst_severity_per_pair():
    advisory = dict(verdict=Verdict.PASS, phase="io", advisories=[Advisory(kind="late-refusal", text="took 30 s")])
    cells = grid("mtls-ok", {("server:alpha", "client:one[a=1]"): TOO_BIG,
                             ("server:beta", "client:one[a=1]"): advisory}) + grid(
        "server-expired", {("server:alpha", "client:two[x=1]"): INSECURE})
    [answer] = findings.answers(findings.Matrix(results(*cells)))
    assert answer.state("server:alpha", "client:one[a=1]") == findings.BROKEN
    assert answer.state("server:beta", "client:one[a=1]") == findings.ADVISORY
    assert answer.state("server:alpha", "client:two[x=1]") == findings.INSECURE
    assert answer.state("server:beta", "client:two[x=1]") == findings.WORKS
    assert answer.state("server:gamma", "client:two[x=1]") == findings.NOT_RUN


def test_advisories_of_one_kind_are_one_finding():
    advisory = dict(verdict=Verdict.PASS, phase="io", advisories=[Advisory(kind="late-refusal", text="took 30 s")])
    cells = grid("client-expired", {("server:beta", c): advisory for c in CLIENTS})
    [finding] = find(results(*cells))
    assert (finding.kind, finding.severity, finding.layer.text) == ("advisory", Severity.ADVISORY, "server beta")
    assert finding.id == "F-late-refusal-server-beta"


def test_a_flaky_cell_joins_its_known_mechanism_and_is_left_out_otherwise():
    runs = Runs(mode="repeat", count=2, verdicts={"FAIL": 1, "PASS": 1}, pass_rate=0.5,
                each=[RunOutcome(verdict=Verdict.FAIL, phase="io"), RunOutcome(verdict=Verdict.PASS, phase="io")])
    flaky = dict(TOO_BIG, runs=runs, flaky=True)
    cells = grid("io-1mib", {("server:alpha", CLIENTS[0]): flaky})
    assert find(results(*cells)) == []
    known = [c.model_copy(update={"mechanism": "m"}) if c.flaky else c for c in cells]
    [finding] = find(results(*known))
    assert "1 FLAKY" in finding.stability and "pass rate 50%" in finding.stability


# --------------------------------------------------------------------------- clarity

ALERT = ErrorInfo(canonical="CERT_EXPIRED", type="ssl.SSLError", clarity="CLEAR",
                  message="[SSL: SSLV3_ALERT_CERTIFICATE_EXPIRED] sslv3 alert certificate expired")
DROPPED = ErrorInfo(canonical="EOF", type="lib.Disconnected", message="Server disconnected", clarity="OPAQUE")


def refused(error: ErrorInfo) -> dict:
    """A client-rejected cell that PASSes: the server refused, the client's user saw `error`."""
    return dict(verdict=Verdict.PASS, phase="upgrade", reason="the server rejected with CERT_EXPIRED", error=error,
                rejection=Rejection(by="server", canonical="CERT_EXPIRED", phase="verification"),
                server_saw=ServerSaw(accepted_tcp=True, tls=TLSSide(handshake="error")))


def test_a_server_dropping_the_reason_is_a_clarity_finding_the_curated_mechanism_names():
    cells = grid("client-expired", {(s, c): refused(DROPPED if s == "server:beta" else ALERT)
                                    for s in SERVERS for c in CLIENTS})
    [finding] = find(results(*cells))
    assert (finding.kind, finding.severity, finding.id) == ("clarity", Severity.ADVISORY,
                                                            "F-clarity-server-beta-client-rejected")
    assert "0 of 3 (OPAQUE); alpha gets CLEAR in 3 of 3" in finding.detail[0]
    asyncio = Mechanism(id="asyncio-drops-alert", title="asyncio drops the alert", reason="r",
                        clarity=("client-rejected server:beta",))
    [finding] = find(results(*cells), Knowledge(mechanisms=(asyncio,)))
    assert finding.id == "F-asyncio-drops-alert"


def test_a_client_hiding_the_reason_is_compared_with_clients_of_its_stack():
    clients = ("client:pa[v=1]", "client:pb[v=1]", "client:go[v=1]")
    hides = {("server:alpha", "client:pa[v=1]"): refused(DROPPED)}
    others = {("server:alpha", c): refused(ALERT) for c in clients[1:]}
    cells = grid("client-expired", hides | others, servers=("server:alpha",), clients=clients)
    [finding] = find(results(*cells, peers={"client:go[v=1]": {"stack": "Go crypto/tls"}}))
    assert finding.title == "client pa[v=1] hides why a server refused its certificate"
    # only a client of another stack shows it: no finding
    cells = grid("client-expired", hides | {("server:alpha", "client:go[v=1]"): refused(ALERT),
                                            ("server:alpha", "client:pb[v=1]"): refused(DROPPED)},
                 servers=("server:alpha",), clients=clients)
    assert find(results(*cells, peers={"client:go[v=1]": {"stack": "Go crypto/tls"}})) == []


def test_findings_are_ordered_by_severity_then_size():
    cells = grid("io-text", {("server:alpha", "client:one[a=1]"): TOO_BIG}) + grid(
        "server-expired", {(s, "client:two[x=1]"): INSECURE for s in SERVERS}) + grid(
        "client-expired", {("server:beta", c): LATE_RESET for c in CLIENTS}) + grid(
        "io-1mib", {(s, "client:one[b=2]"): TOO_BIG for s in SERVERS})
    found = find(results(*cells))
    assert [(f.severity, len(f.cells)) for f in found] == [
        (Severity.CRITICAL, 2), (Severity.BROKEN, 1), (Severity.ADVISORY, 3), (Severity.ADVISORY, 2)]


def test_advisories_a_known_mechanism_explains_join_its_finding():
    advisory = dict(verdict=Verdict.PASS, phase="io", advisories=[Advisory(kind="late-refusal", text="took 30 s")])
    cells = grid("client-expired", {("server:beta", c): advisory for c in CLIENTS})
    wait = Mechanism(id="long-poll-wait", title="disconnect() waits out the long-poll", reason="r",
                     advisories=("late-refusal server:beta",))
    [finding] = find(results(*cells), Knowledge(mechanisms=(wait,)))
    assert (finding.id, finding.title, finding.detail) == ("F-long-poll-wait", wait.title, ["took 30 s (3 cells)"])


def test_a_cell_without_severity_takes_the_rule_its_scenario_recorded():
    c = cell("server:alpha", "client:one[a=1]", "io-1mib", **TOO_BIG)
    res = results(c)
    res.run.scenarios[0].severity = {"FAIL": Severity.BROKEN, "FAIL@default": Severity.ADVISORY}
    assert findings.severity_of(c, findings.Matrix(res)) == Severity.ADVISORY
    tuned = cell("server:alpha", "client:one[a=1]", "io-1mib", "tuned", **TOO_BIG)
    res = results(tuned)
    res.run.scenarios[0].severity = {"FAIL": Severity.BROKEN, "FAIL@default": Severity.ADVISORY}
    assert findings.severity_of(tuned, findings.Matrix(res)) == Severity.BROKEN
