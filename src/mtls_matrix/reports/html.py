"""The HTML report: one self-contained page to explore an analysed results.json.

`render_html(analysis) -> str`, from the Jinja2 template templates/report.html.j2 with the stylesheet
and script in static/ (package data, read with importlib.resources). Nothing is loaded from
anywhere: the file opens from disk, offline, from a CI artifact.

The page shows the findings first (the table of BUGS.md; a row opens its pairs and cells), then the
servers x clients heatmap coloured by the worst severity per pair, whose filters recount it, then
the cells of a clicked pair, and a drill-down per cell. The heatmap and the lists read a compact
index (strings interned, one row per cell); a cell's full record is in a gzip'd JSON block the
script decompresses (DecompressionStream) the first time a drill-down asks for it.
"""

from __future__ import annotations

import base64
import gzip
import json
from functools import cache
from importlib import resources
from typing import Any

import jinja2

from mtls_matrix import sections
from mtls_matrix.findings import FINDING_SEVERITIES, PAIR_STATES, Analysis, short
from mtls_matrix.reports.heatmap import COLOURS
from mtls_matrix.reports.text import web_url
from mtls_matrix.results import Cell, Severity, Verdict

PACKAGE = "mtls_matrix.reports"
WORST_FIRST = [Verdict.INSECURE, Verdict.HANG, Verdict.FAIL, Verdict.ERROR, Verdict.UNSUPPORTED, Verdict.SKIPPED,
               Verdict.PASS]
# the index's columns, one row per cell (see page_data); the script reads them by these names
COLUMNS = ("id", "server", "client", "scenario", "profile", "group", "tags", "verdict", "severity", "phase",
           "canonical", "clarity", "reason", "finding")


@cache
def _environment() -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.PackageLoader(PACKAGE, "templates"), autoescape=True,
                              undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)


def _static(name: str) -> str:
    return resources.files(PACKAGE).joinpath("static", name).read_text()


def render_html(analysis: Analysis) -> str:
    run = analysis.run
    perf = sections.performance(analysis.matrix)
    return _environment().get_template("report.html.j2").render(
        title=f"mtls-matrix: {len(analysis.matrix.cells)} cells, {run.started}",
        analysis=analysis, run=run, critical=analysis.by_severity(Severity.CRITICAL),
        counts=[(s.value, len(analysis.by_severity(s))) for s in FINDING_SEVERITIES],
        run_rows=run_rows(analysis), perf=perf, perf_explained=sections.PERF_EXPLAINED,
        css=_static("report.css"), script=_static("report.js"),
        data=embed_json(page_data(analysis)), details=details_block(analysis),
    )


def run_rows(analysis: Analysis) -> list[tuple[str, str]]:
    run = analysis.run
    versions = ", ".join(f"{name} {version}" for name, version in sorted(run.versions.items()))
    return [
        ("command", run.command or "—"),
        ("finished", f"{run.finished or '—'} ({run.duration_s} s, {run.workers} workers)"),
        ("complete", "yes" if run.complete else "NO: the run was interrupted, cells are missing"),
        ("python / openssl", f"{run.python} / {run.openssl}"),
        ("platform", run.platform),
        ("libraries", versions or "—"),
        ("deadline / profiles", f"{run.deadline_s} s / {', '.join(run.profiles)}"),
        ("CA fingerprint (SHA-256)", run.ca_fingerprint),
    ]


class Strings:
    """Interned strings: the index names each repeated value by its position in one list."""

    def __init__(self) -> None:
        self.values: list[str] = []
        self.index: dict[str, int] = {}

    def __call__(self, value: Any) -> int:
        text = "" if value is None else str(value)
        if text not in self.index:
            self.index[text] = len(self.values)
            self.values.append(text)
        return self.index[text]


def default_id(cell: Cell) -> str:
    """The id the script rebuilds from a cell's peers, scenario and profile (then stored as "")."""
    return f"{short(cell.server)}-{short(cell.client)}-{cell.scenario}{'-tuned' if cell.profile == 'tuned' else ''}"


def page_data(analysis: Analysis) -> dict[str, Any]:
    """What the script needs for everything but a cell's drill-down."""
    matrix = analysis.matrix
    strings = Strings()
    finding_of = analysis.finding_of()
    position = {f.id: i for i, f in enumerate(analysis.findings)}
    rows = []
    for c in matrix.cells:
        severity = matrix.severity(c)
        values = ("" if c.id == default_id(c) else c.id, c.server, c.client, c.scenario, c.profile, c.group,
                  " ".join(c.tags), c.verdict.value, severity.value if severity else "", c.phase,
                  c.error.canonical or "", c.error.clarity.value if c.error.clarity else "", c.reason)
        rows.append([values[0], *(strings(v) for v in values[1:]), position.get(finding_of.get(c.id, ""), -1)])
    return {
        "columns": list(COLUMNS),
        "strings": strings.values,
        "cells": rows,
        "verdicts": [v.value for v in WORST_FIRST],
        "states": list(PAIR_STATES),
        "colours": {state: list(colour) for state, colour in COLOURS.items()},
        "severities": [s.value for s in (*FINDING_SEVERITIES, Severity.CONTROL)],
        "groups": analysis.matrix.groups,
        "findings": [finding_data(f) for f in analysis.findings],
        "families": [{"family": a.family, "servers": a.servers, "clients": a.clients} for a in analysis.answers],
    }


def finding_data(finding) -> dict[str, Any]:
    mechanism = finding.mechanism
    links = [{"url": web_url(link.url) or "", "text": link.url, "status": link.status}
             for link in (mechanism.links if mechanism else ())]
    return {
        "id": finding.id, "severity": finding.severity.value, "title": finding.title, "layer": finding.layer.text,
        "libraries": finding.libraries, "sees": finding.user_sees, "workaround": finding.workaround,
        "why": " ".join(p for p in ((mechanism.reason, mechanism.note) if mechanism else ()) if p),
        "links": links, "detail": finding.detail, "stability": finding.stability,
        "pairs": [[row.blamed, [short(p) for p in row.partners], row.scenarios, dict(row.verdicts)]
                  for row in finding.pairs],
    }


def details_block(analysis: Analysis) -> str:
    """Every cell's record (empty values dropped), in index order: gzip'd JSON, base64."""
    records = [compact(c.model_dump(mode="json")) for c in analysis.matrix.cells]
    raw = json.dumps(records, ensure_ascii=False, separators=(",", ":")).encode()
    return base64.b64encode(gzip.compress(raw, compresslevel=9, mtime=0)).decode()


def compact(value: Any) -> Any:
    """Drop None, False, "" and empty containers, recursively: most cells are mostly defaults."""
    if isinstance(value, dict):
        items = ((k, compact(v)) for k, v in value.items())
        return {k: v for k, v in items if not _empty(v)}
    if isinstance(value, list):
        return [compact(v) for v in value]
    return value


def _empty(value: Any) -> bool:
    return value is None or value is False or (isinstance(value, (str, list, dict)) and not value)


def embed_json(data: Any) -> str:
    """JSON that is safe inside <script>: no `</script>`, `<!--` or `&` can survive as text.

    Every `<`, `>` and `&` becomes a \\u escape, which JSON.parse reads back unchanged; these
    characters occur only inside JSON strings, so the escape is always valid JSON. U+2028/2029
    are escaped too, for any reader that treats the text as a JS literal.
    """
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    for char, code in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"),
                       ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(char, code)
    return text
