"""Severity (severity.py, scenarios.Severities): each rule on hand-built cells, the catalogue's
declarations, and real cells: a control variant is severity control, never a finding; with a
baseline a would-be NEW cell is confirmed, FLAKY when its runs disagree (exit 0), NEW when they
reproduce (exit 1)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import replace

import pytest

from mtls_matrix import baseline, repeat, scenarios, severity
from mtls_matrix.plugin import scenario_infos
from mtls_matrix.selection import build_selection
from mtls_matrix.results import Advisory, Cell, Deadline, Severity, Verdict
from mtls_matrix.scenarios import BY_NAME, Expect, Scenario
from tests.conftest import mtls_matrix

CRITICAL, BROKEN, ADVISORY, CONTROL = Severity.CRITICAL, Severity.BROKEN, Severity.ADVISORY, Severity.CONTROL
NO_VERIFY = "turns verification off on purpose"


def cell(scenario: str, verdict: str, profile: str = "default", **fields) -> Cell:
    known = BY_NAME[scenario]
    return Cell(id=f"alpha-one-{scenario}", server="server:alpha", client="client:one[a=1]", scenario=scenario,
                group=known.group, profile=profile, expectation=known.expect.describe(), verdict=Verdict(verdict),
                phase="io", repro="mtls-matrix run", **fields)


def weigh(scenario: str, verdict: str, profile: str = "default", control: str | None = None, **fields):
    return severity.of(BY_NAME[scenario], cell(scenario, verdict, profile, **fields), control)


REFUSALS = ("client-no-cert", "client-expired-tls12", "client-revoked", "server-untrusted-ca", "server-wrong-host",
            "server-self-signed-tls12", "token-missing", "token-header-wrong", "token-query-malformed",
            "proxy-id-header-forged", "proxy-id-cert-none-forged-header", "reconnect-restart-untrusted")
MUST_WORK = ("mtls-ok", "tls12-only", "io-text", "io-1000-ordered", "io-close", "io-namespace", "token-header-ok",
             "token-auth-ok", "proxy-id-header-ok", "proxy-id-cert-ok", "reconnect-drop", "reconnect-restart")


@pytest.mark.parametrize("scenario", REFUSALS)
def test_a_refusal_scenario_accepting_is_critical_failing_late_or_hanging_is_advisory(scenario):
    """A bad certificate accepted, a client without one let in, a forged identity or wrong token
    honoured: critical. Rejected, but later, by the other side, for another reason, or a hang: the
    chain of trust held."""
    assert (weigh(scenario, "INSECURE"), weigh(scenario, "FAIL"), weigh(scenario, "HANG")) == \
        (CRITICAL, ADVISORY, ADVISORY)


def test_the_cn_fallback_is_advisory_not_critical():
    """RFC 6125 section 6.4.4 / RFC 9525 deprecate it; the stacks still default to it; the certificate
    chains to the trusted CA."""
    for name in ("server-cn-only", "server-cn-only-tls12"):
        assert (weigh(name, "INSECURE"), weigh(name, "FAIL"), weigh(name, "HANG")) == (ADVISORY, ADVISORY, ADVISORY)


@pytest.mark.parametrize("scenario", ["server-untrusted-ca", "server-expired-tls12", "server-cn-only"])
@pytest.mark.parametrize("verdict", ["INSECURE", "FAIL", "HANG", "PASS"])
def test_a_control_variant_in_a_server_rejected_scenario_is_a_control_whatever_it_did(scenario, verdict):
    assert weigh(scenario, verdict, control=NO_VERIFY) == CONTROL


def test_a_control_variant_is_judged_as_any_client_where_its_scenario_declares_no_controls():
    assert weigh("client-expired", "INSECURE", control=NO_VERIFY) == CRITICAL
    assert weigh("mtls-ok", "FAIL", control=NO_VERIFY) == BROKEN
    assert weigh("server-untrusted-ca", "ERROR", control=NO_VERIFY) is None  # the harness's, not the control's


@pytest.mark.parametrize("scenario", MUST_WORK)
def test_a_configuration_that_must_work_and_does_not_is_broken(scenario):
    assert (weigh(scenario, "FAIL"), weigh(scenario, "HANG")) == (BROKEN, BROKEN)
    assert weigh(scenario, "FAIL", "tuned") == BROKEN


@pytest.mark.parametrize("scenario", ["io-1mib", "io-16mib"])
def test_a_large_message_over_a_documented_default_limit_is_advisory_under_default_and_broken_when_tuned(scenario):
    assert "large" in BY_NAME[scenario].tags
    assert (weigh(scenario, "FAIL", "default"), weigh(scenario, "FAIL", "tuned")) == (ADVISORY, BROKEN)
    assert weigh(scenario, "HANG", "default") == BROKEN  # a limit refuses; it does not hang


@pytest.mark.parametrize("scenario", [s.name for s in scenarios.CATALOGUE if s.group in scenarios.HOSTILE_GROUPS])
def test_facing_a_hostile_peer_a_hang_or_a_late_failure_is_advisory_past_its_own_timeout_broken(scenario):
    assert (weigh(scenario, "FAIL"), weigh(scenario, "HANG")) == (ADVISORY, ADVISORY)
    harness = Deadline(seconds=5, source="harness")
    own = Deadline(seconds=25, source="library", timeout="open_timeout", documented_s=20)
    assert weigh(scenario, "HANG", deadline=harness) == ADVISORY  # no timeout of its own, or not given its own
    assert weigh(scenario, "HANG", deadline=own) == BROKEN  # it outlived its own documented timeout


def test_a_pass_is_no_finding_unless_it_carries_advisories():
    slow = Advisory(kind="slow", text="the user waits 12 s")
    assert weigh("client-no-cert", "PASS") is None
    assert weigh("client-no-cert", "PASS", advisories=[slow]) == ADVISORY
    assert weigh("mtls-ok", "PASS", advisories=[slow]) == ADVISORY


@pytest.mark.parametrize("verdict", ["ERROR", "UNSUPPORTED", "SKIPPED"])
def test_the_harness_failing_or_nothing_observed_has_no_severity(verdict):
    assert weigh("server-untrusted-ca", verdict) is None and weigh("mtls-ok", verdict) is None


def test_a_scenario_without_a_declaration_takes_its_expectations():
    refuse = Scenario("x-refuse", "client-rejected", "made up", Expect("reject", "server", "UNKNOWN_CA"))
    succeed = Scenario("x-succeed", "works", "made up", Expect("succeed"))
    assert refuse.severities == scenarios.MUST_REFUSE and succeed.severities == scenarios.MUST_WORK
    assert replace(refuse, severity=scenarios.CN_FALLBACK).severities == scenarios.CN_FALLBACK


def test_every_scenario_declares_a_valid_severity_for_every_failing_verdict():
    for scenario in scenarios.CATALOGUE:
        table = severity.table(scenario)
        assert {"INSECURE", "FAIL", "HANG", "PASS@advisories"} <= table.keys(), scenario.name
        assert (table.get("*@control") == CONTROL) == (scenario.group == "server-rejected"), scenario.name
        assert (table["INSECURE"] == ADVISORY) == scenario.name.startswith("server-cn-only"), scenario.name


def test_results_record_each_scenarios_rule():
    infos = {i.name: i.severity for i in scenario_infos(build_selection(None, None, None, "default,tuned"))}
    assert infos["io-16mib"] == {"INSECURE": CRITICAL, "FAIL": BROKEN, "HANG": BROKEN, "FAIL@default": ADVISORY,
                                 "PASS@advisories": ADVISORY}
    assert infos["server-cn-only"] == {"INSECURE": ADVISORY, "FAIL": ADVISORY, "HANG": ADVISORY,
                                       "PASS@advisories": ADVISORY, "*@control": CONTROL}
    assert infos["hostile-server-silent"]["HANG@own-timeout"] == BROKEN
    assert infos["client-expired"] == {"INSECURE": CRITICAL, "FAIL": ADVISORY, "HANG": ADVISORY,
                                       "PASS@advisories": ADVISORY}


# --------------------------------------------------------------------------- real cells

SELFTEST = ("--peer-plugin", "tests.selftest_judgement")


def junit(out) -> dict[str, str]:
    """Each test case's outcome: passed, failure, skipped."""
    cases = {}
    for case in ET.parse(out / "junit.xml").iter("testcase"):
        outcome = next((child.tag for child in case if child.tag in ("failure", "skipped", "error")), "passed")
        cases[case.get("name").partition("[")[2][:-1]] = outcome
    return cases


def test_a_control_variant_accepting_a_bad_server_is_a_passing_control_never_a_finding(tmp_path, run_matrix):
    empty = tmp_path / "empty.toml"
    empty.write_text("")
    loaded, proc = run_matrix(*SELFTEST, "--servers", "websockets", "--clients", "selftest-control,websockets[ssl=context]",
                              "--scenarios", "server-untrusted-ca,server-wrong-host", "-n", "0", "--strict",
                              "--baseline", str(empty), out=tmp_path / "out")
    cells = {c.client: c for c in loaded.cells if c.scenario == "server-untrusted-ca"}
    control, verifying = cells["client:selftest-control[verify=none]"], cells["client:websockets[ssl=context]"]
    assert (control.verdict, control.severity, control.baseline) == (Verdict.INSECURE, CONTROL, None)
    assert (verifying.verdict, verifying.severity) == (Verdict.PASS, None)  # the certificate is bad: proved
    assert control.runs is None  # a control is no would-be NEW finding: not rerun
    assert proc.returncode == 0, proc.stdout  # neither --strict nor the baseline counts it
    assert set(junit(tmp_path / "out").values()) == {"passed"}
    assert "4 cells: 2 PASS; 2 controls" in proc.stdout
    assert "findings by severity: 0 critical, 0 broken, 0 advisory" in proc.stdout
    assert loaded.baseline.counts == {"KNOWN": 0, "NEW": 0, "XPASS": 0}
    peers = {p.name: p.control for p in loaded.run.peers}
    assert peers["client:selftest-control[verify=none]"] and peers["client:websockets[ssl=context]"] is None


def test_em_driver_noverify_is_a_control(run_matrix):
    loaded, proc = run_matrix("--servers", "websockets", "--clients", "em-websocket-driver[em-driver-noverify]",
                              "--scenarios", "server-untrusted-ca", "-n", "0", "--strict")
    [noverify] = loaded.cells
    if noverify.verdict == Verdict.SKIPPED:
        pytest.skip(f"the Ruby stack is missing: {noverify.reason}")
    assert (noverify.verdict, noverify.severity) == (Verdict.INSECURE, CONTROL), noverify.reason
    assert proc.returncode == 0, proc.stdout


def test_a_finding_that_reproduces_is_new_and_fails_the_run_one_that_does_not_is_flaky(tmp_path, run_matrix):
    """With a baseline, a cell that would be NEW runs twice more in its item: selftest-always-refused
    fails every run (NEW, exit 1); selftest-first-refused fails only its first (FLAKY, exit 0)."""
    empty = tmp_path / "empty.toml"
    empty.write_text("")
    common = (*SELFTEST, "--clients", "websockets[ssl=context]", "--scenarios", "mtls-ok", "-n", "0", "--baseline", str(empty))

    flaky, proc = run_matrix(*common, "--servers", "selftest-first-refused", out=tmp_path / "flaky")
    [cell] = flaky.cells
    assert (cell.verdict, cell.flaky, cell.baseline) == (Verdict.FAIL, True, None)
    assert (cell.runs.mode, [r.verdict.value for r in cell.runs.each]) == ("confirm", ["FAIL", "PASS", "PASS"])
    assert flaky.baseline.counts == {"KNOWN": 0, "NEW": 0, "XPASS": 0}
    assert proc.returncode == 0, proc.stdout
    assert "FLAKY  selftest-first-refused-websockets[ssl=context]-mtls-ok: PASS 2/3, FAIL 1/3" in proc.stdout
    assert "findings by severity: 0 critical, 0 broken, 0 advisory" in proc.stdout  # FLAKY is listed apart
    _, strict = run_matrix(*common, "--servers", "selftest-first-refused", "--strict", out=tmp_path / "strict")
    assert strict.returncode == 1

    new, proc = run_matrix(*common, "--servers", "selftest-always-refused", out=tmp_path / "new")
    [cell] = new.cells
    assert (cell.verdict, cell.flaky, cell.baseline, cell.severity) == (Verdict.FAIL, False, "NEW", BROKEN)
    assert cell.runs.verdicts == {"FAIL": 3}
    assert new.baseline.counts == {"KNOWN": 0, "NEW": 1, "XPASS": 0}
    assert proc.returncode == 1
    assert junit(tmp_path / "new") == {cell.id: "failure"}


def test_a_hang_only_the_harness_deadline_decided_is_confirmed_with_a_longer_one(tmp_path, run_matrix):
    """selftest-slow ends after 1.5 s, past --deadline 1 (a busy machine's slowness, not a library that never
    ends): its would-be NEW HANG is rerun with HARNESS_HANG_STRETCH times the deadline, passes, and is FLAKY."""
    empty = tmp_path / "empty.toml"
    empty.write_text("")
    loaded, proc = run_matrix(*SELFTEST, "--servers", "selftest-slow", "--clients", "websockets[ssl=context]",
                              "--scenarios", "io-text", "--profile", "default", "-n", "0", "--deadline", "1",
                              "--baseline", str(empty))
    [cell] = loaded.cells
    assert (cell.verdict, cell.deadline.source, cell.flaky, cell.baseline) == (Verdict.HANG, "harness", True, None)
    assert [r.verdict.value for r in cell.runs.each] == ["HANG", "PASS", "PASS"]
    assert proc.returncode == 0, proc.stdout


def test_without_a_baseline_nothing_is_rerun_unless_asked(run_matrix):
    loaded, proc = run_matrix(*SELFTEST, "--servers", "selftest-always-refused", "--clients", "websockets[ssl=context]",
                              "--scenarios", "mtls-ok", "-n", "0")
    assert loaded.cells[0].runs is None and proc.returncode == 0
    assert "broken FAIL at handler" in proc.stdout  # the item names the severity with the verdict


def test_the_baseline_counts_no_control_and_no_unreproduced_failure_but_every_harness_error(tmp_path):
    empty = tmp_path / "empty.toml"
    empty.write_text("")
    base = baseline.load(empty)
    control = cell("server-untrusted-ca", "INSECURE", severity=CONTROL)
    insecure = cell("server-untrusted-ca", "INSECURE", severity=CRITICAL)
    flaky = repeat.summarise([cell("mtls-ok", "FAIL"), cell("mtls-ok", "PASS"), cell("mtls-ok", "PASS")], "confirm")
    reproduced = repeat.summarise([cell("mtls-ok", "FAIL")] * 3, "confirm")
    error = repeat.summarise([cell("mtls-ok", "ERROR"), cell("mtls-ok", "PASS"), cell("mtls-ok", "PASS")], "confirm")
    assert [baseline.classify_cell(base, c)[0] for c in (control, insecure, flaky, reproduced, error)] == \
        [None, "NEW", None, "NEW", "NEW"]
