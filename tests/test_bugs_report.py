"""The BUGS.md renderer, on small hand-built results: no TLS, no peers, only the schema."""

from __future__ import annotations

import json

from mtls_matrix import findings
from mtls_matrix.knowledge import Knowledge, Link, Mechanism
from mtls_matrix.reports import bugs
from mtls_matrix.results import NotRun, Results, Severity, Verdict
from tests.hand_built import CLIENTS, INSECURE, SERVERS, TOO_BIG, grid, results, run

CN = Mechanism(id="cn-fallback", title="The CN is matched when there is no SAN", reason="CPython's default.",
               note="RFC 6125 deprecates it.", workaround="hostname_checks_common_name = False",
               links=(Link(url="https://docs.python.org/3/library/ssl.html", status="documented"),))


def render(res: Results, knowledge: Knowledge = Knowledge(), **kwargs) -> str:
    return bugs.render(findings.analyse(res, knowledge), **kwargs)


def cn_cells() -> list:
    bad = {(s, "client:two[x=1]"): INSECURE for s in SERVERS}
    cells = grid("server-cn-only", bad) + grid("io-1mib", {("server:alpha", "client:one[a=1]"): TOO_BIG})
    return [c.model_copy(update={"mechanism": "cn-fallback", "baseline": "KNOWN"}) if c.verdict == Verdict.INSECURE
            else c for c in cells]


def test_sections_in_the_issues_order():
    text = render(results(*cn_cells(), *grid("client-expired")), Knowledge(mechanisms=(CN,)))
    headings = ["# BUGS.md", "## Which pairs work", "## Findings", "## Critical findings", "## Advisory findings",
                "## Resource hygiene", "## Performance", "## Not run here", "## Environment"]
    positions = [text.index(h) for h in headings if h in text]
    assert positions == sorted(positions) and len(positions) >= 6
    assert "do not edit by hand" in text


def test_the_headline_names_only_critical_findings():
    text = render(results(*cn_cells()), Knowledge(mechanisms=(CN,)))
    assert text.splitlines()[2] == "**Critical: F-cn-fallback The CN is matched when there is no SAN.**"
    calm = render(results(*grid("io-1mib", {("server:alpha", "client:one[a=1]"): TOO_BIG})))
    assert "**No critical finding" in calm and "Critical:" not in calm


def test_the_answer_has_one_symbol_per_pair():
    text = render(results(*cn_cells()))
    answer = text.split("## Which pairs work")[1].split("\n## ")[0]
    assert "| client \\ server | `alpha` | `beta` |" in answer
    assert "| `two[x=1]` | 🔓 | 🔓 |" in answer
    assert "| `one[a=1]` | ⚠️ | ✅ |" in answer  # io-1mib under the default limits: advisory
    assert "| `one[b=2]` | ✅ | ✅ |" in answer


def test_one_table_lists_every_finding_and_each_has_its_section():
    res = results(*cn_cells())
    text = render(res, Knowledge(mechanisms=(CN,)))
    table = text.split("## Findings")[1].split("\n## ")[0]
    rows = [line for line in table.splitlines() if line.startswith("| [F-")]
    assert len(rows) == 2
    assert rows[0].startswith("| [F-cn-fallback](#f-cn-fallback) | critical | The CN is matched when there is no SAN |"
                              " client two\\[x=1\\] | two |")
    assert "hostname\\_checks\\_common\\_name = False" in rows[0]
    section = text.split("### F-cn-fallback")[1].split("\n### ")[0]
    assert "**Why:** CPython's default. RFC 6125 deprecates it." in section
    assert "[docs.python.org/3/library/ssl.html](https://docs.python.org/3/library/ssl.html) (documented)" in section
    assert "**Stability:** 2 cells, each run once" in section
    assert "| client two\\[x=1\\] | alpha, beta | server-cn-only | 2 INSECURE |" in section
    assert "alpha-two[x=1]-server-cn-only" not in section.split("**Reproduce**")[0]  # no cell-id lists


def test_the_reproducer_quotes_the_blamed_sides_library_code_and_the_repro_command():
    res = results(*cn_cells())
    analysis = findings.analyse(res, Knowledge(mechanisms=(CN,)))
    repro = bugs.Reproducer("alpha-two[x=1]-server-cn-only", "mtls-matrix repro 'alpha-two[x=1]-server-cn-only' "
                            "--out repro/F-cn-fallback", ["serve(handler, ssl=context)"],
                            ["ctx = ssl.create_default_context(cafile=CA)", "connect(url, ssl=ctx)"], "alpha",
                            "two[x=1]")
    text = bugs.render(analysis, reproducers={"F-cn-fallback": repro})
    section = text.split("### F-cn-fallback")[1].split("\n### ")[0]
    assert ("**Reproduce** `alpha-two[x=1]-server-cn-only`: `mtls-matrix repro 'alpha-two[x=1]-server-cn-only' "
            "--out repro/F-cn-fallback`") in section
    # the finding blames the client variant: its configuration is quoted, not the server's
    assert "```python\n# client two[x=1]\nctx = ssl.create_default_context(cafile=CA)\nconnect(url, ssl=ctx)\n```" \
        in section and "# server alpha" not in section
    # without a reproducer for its peers, the cell's own rerun command
    other = text.split("### F-")[2]
    assert "no standalone reproducer" in other and "mtls-matrix run --servers alpha" in other


def test_what_the_user_sees_is_quoted_verbatim_and_alike_messages_are_one():
    def refused(port: int) -> dict:
        return dict(TOO_BIG, error=TOO_BIG["error"].model_copy(update={"message": f"wss://h:{port}/cell/1-{port}: x"}))
    cells = grid("io-text", {("server:beta", c): refused(40000 + i) for i, c in enumerate(CLIENTS)})
    text = render(results(*cells))
    assert "- **The user sees** `lib.Closed: wss://h:40000/cell/1-40000: x` (OPAQUE, 3 of 3 cells)" in text


def test_render_is_deterministic_whatever_the_cell_order():
    cells = cn_cells()
    assert render(results(*cells)) == render(results(*reversed(cells)))


def test_not_run_here_names_the_stacks_with_why():
    res = results(*grid("mtls-ok"))
    res.run.not_run = [NotRun(name=".NET (Kestrel)", why="no reachable registry provides it")]
    section = render(res).split("## Not run here", 1)[1].split("\n## ", 1)[0]
    assert "- **.NET (Kestrel)**: no reachable registry provides it" in section


def test_controls_have_their_own_section():
    cells = grid("server-expired", {(s, "client:one[b=2]"): INSECURE for s in SERVERS})
    text = render(results(*cells, peers={"client:one[b=2]": {"control": "verify off on purpose"}}))
    assert "| `one[b=2]` | verify off on purpose | 2 of 2 | — |" in text.split("## Controls")[1]
    assert "None: every cell that ran passed" in text


def test_renders_results_loaded_from_a_version_1_file():
    document = {
        "schema_version": 1,
        "run": json.loads(run().model_dump_json(exclude={"scenarios", "peers", "not_run"})),
        "cells": [json.loads(c.model_dump_json(exclude={"severity", "advisories", "mechanism"}))
                  for c in grid("io-text", {("server:beta", c): TOO_BIG for c in CLIENTS})],
    }
    text = render(Results.model_validate_json(json.dumps(document)))
    assert "server beta" in text and "ab" * 32 in text


def test_a_long_matrix_stays_short():
    """One finding per mechanism: 20 clients failing alike across 10 servers and 4 scenarios is one
    finding whose pairs table folds, not hundreds of lines."""
    servers = tuple(f"server:s{i}" for i in range(10))
    clients = tuple(f"client:c{i}[v]" for i in range(20)) + ("client:ok[v]",)
    bad = {(s, c): INSECURE for s in servers for c in clients[:-1]}
    cells = [x for name in ("server-expired", "server-expired-tls12", "server-cn-only", "server-cn-only-tls12")
             for x in grid(name, bad, servers=servers, clients=clients)]
    text = render(results(*cells))
    assert len(findings.analyse(results(*cells)).findings) == 1
    assert len(text.splitlines()) < 150


def test_version_environments_get_their_section():
    res = results(*grid("mtls-ok"))
    assert "Verdicts by library version" not in render(res)


def test_severity_recorded_by_the_run_wins():
    cells = [c.model_copy(update={"severity": Severity.ADVISORY}) if c.verdict == Verdict.INSECURE else c
             for c in cn_cells()]
    text = render(results(*cells))
    assert "**No critical finding" in text and "## Advisory findings" in text

