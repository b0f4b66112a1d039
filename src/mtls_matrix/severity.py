"""Severity: how much a cell's outcome matters (DESIGN.md section 5), beside its verdict, which says
what happened.

The catalogue declares it (`scenarios.Severities`: what each failing verdict of a scenario costs),
a client variant that disables verification on purpose declares itself (`ClientPeer.controls`), and
`weigh` applies both to one cell as it is built:

- INSECURE, FAIL, HANG: the scenario's declared severity for that verdict; a FAIL under a profile the
  scenario names in `fail_under` takes that profile's; a HANG whose deadline was the library's own
  documented timeout (`Cell.deadline.source == "library"`) takes `hang_past_own_timeout` when declared.
- a control variant, in a scenario whose `controls` is set: control, whatever it did (its INSECURE is
  the expected outcome); never a finding.
- PASS: advisory when the cell carries advisories, else none.
- ERROR, UNSUPPORTED, SKIPPED: none; the harness failed, or nothing about a library was observed.

`table` is the same rule as data, for results.json (`ScenarioInfo.severity`): keys are verdicts, or
VERDICT@condition where a condition refines it (FAIL@default: under the default profile,
HANG@own-timeout: past the library's own timeout, PASS@advisories, *@control: any verdict of a control
variant).
"""

from __future__ import annotations

from mtls_matrix.results import NOT_OBSERVED, Cell, Severity, Verdict
from mtls_matrix.scenarios import Scenario

FINDINGS = (Severity.CRITICAL, Severity.BROKEN, Severity.ADVISORY)  # what a report lists, worst first


def of(scenario: Scenario, cell: Cell, control: str | None = None) -> Severity | None:
    """The severity of this cell's outcome; `control`: why its client variant disables verification
    on purpose (ClientPeer.controls), if it does."""
    verdict, declared = cell.verdict, scenario.severities
    if verdict == Verdict.ERROR or verdict in NOT_OBSERVED:
        return None
    if control and declared.controls:
        return Severity.CONTROL
    if verdict == Verdict.PASS:
        return Severity.ADVISORY if cell.advisories else None
    if verdict == Verdict.INSECURE:
        return Severity(declared.insecure)
    if verdict == Verdict.FAIL:
        return Severity(dict(declared.fail_under).get(cell.profile, declared.fail))
    past_own = cell.deadline is not None and cell.deadline.source == "library"
    return Severity(declared.hang_past_own_timeout if past_own and declared.hang_past_own_timeout else declared.hang)


def weigh(cell: Cell, scenario: Scenario, control: str | None = None) -> Cell:
    """The cell, its severity set (see `of`)."""
    cell.severity = of(scenario, cell, control)
    return cell


def table(scenario: Scenario) -> dict[str, Severity]:
    """The scenario's severity rule: verdict (or VERDICT@condition) -> severity."""
    declared = scenario.severities
    rule = {"INSECURE": declared.insecure, "FAIL": declared.fail, "HANG": declared.hang,
            **{f"FAIL@{profile}": severity for profile, severity in declared.fail_under},
            "PASS@advisories": Severity.ADVISORY}
    if declared.hang_past_own_timeout:
        rule["HANG@own-timeout"] = declared.hang_past_own_timeout
    if declared.controls:
        rule["*@control"] = Severity.CONTROL
    return {key: Severity(value) for key, value in rule.items()}


def is_finding(cell: Cell) -> bool:
    """A failing verdict about a library: INSECURE, FAIL or HANG, not of a control. (ERROR is the
    harness's; FLAKY is judged on its runs, elsewhere.)"""
    return cell.verdict in (Verdict.INSECURE, Verdict.FAIL, Verdict.HANG) and cell.severity != Severity.CONTROL


def is_control(cell: Cell) -> bool:
    return cell.severity == Severity.CONTROL
