"""The HTML report: one self-contained page to explore results.json.

`render_html(results) -> str`. Inline CSS and JS, no external URL, so the file opens from disk,
offline, from a CI artifact. The page carries the cells as JSON and draws from them: the servers x
clients heatmap (worst verdict's colour, counts per verdict), filters by scenario group, TLS
version and profile that recompute it, the cells of a clicked pair, and a drill-down per cell
(expectation, phases, errors, both sides' TLS, what the server saw, I/O steps, versions, repro).

Like every renderer it reads only results.json; the page shows every field it embeds, so the
only stripping is of empty values (the script reads a missing value as empty or false).
"""

from __future__ import annotations

import json
from html import escape
from typing import Any

from mtls_matrix import scenarios
from mtls_matrix.reports.bugs import cell_order
from mtls_matrix.reports import perf
from mtls_matrix.reports.heatmap import COLOURS, NOT_RUN, WORST_FIRST
from mtls_matrix.reports.html_page import CSS, SCRIPT
from mtls_matrix.results import Results


def render_html(results: Results) -> str:
    run = results.run
    title = f"mtls-matrix: {len(results.cells)} cells, {run.started}"
    return "\n".join([
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        # The page loads nothing from anywhere: a policy makes that a guarantee, not a habit.
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
        "style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:\">",
        f"<title>{escape(title)}</title>",
        f"<style>{CSS}</style>",
        "</head><body>",
        f"<header><h1>{escape(title)}</h1>{run_summary(results)}</header>",
        "<noscript><p>This report draws its tables with JavaScript; enable it for this file.</p></noscript>",
        '<main><section id="filters"></section><section id="overview"><p id="totals"></p>',
        '<table id="heatmap"></table>',
        perf.render_html(results),  # static: the same figures as BUGS.md, filters do not apply
        '</section>',
        '<div id="detail"><section id="pair" hidden></section><section id="drill" hidden></section></div></main>',
        f'<script type="application/json" id="data">{embed_json(page_data(results))}</script>',
        f"<script>{SCRIPT}</script>",
        "</body></html>",
    ]) + "\n"


def run_summary(results: Results) -> str:
    run = results.run
    versions = ", ".join(f"{name} {version}" for name, version in sorted(run.versions.items()))
    rows = [
        ("command", run.command or "—"),
        ("finished", f"{run.finished or '—'} ({run.duration_s} s, {run.workers} workers)"),
        ("complete", "yes" if run.complete else "NO: the run was interrupted, cells are missing"),
        ("python / openssl", f"{run.python} / {run.openssl}"),
        ("platform", run.platform),
        ("libraries", versions or "—"),
        ("deadline / profiles", f"{run.deadline_s} s / {', '.join(run.profiles)}"),
        ("CA fingerprint (SHA-256)", run.ca_fingerprint),
    ]
    items = "".join(f"<dt>{escape(k)}</dt><dd>{escape(str(v))}</dd>" for k, v in rows)
    return f'<details id="run"><summary>run</summary><dl>{items}</dl></details>'


def page_data(results: Results) -> dict[str, Any]:
    """What the script needs, and nothing it would not show."""
    cells = sorted(results.cells, key=cell_order)
    return {
        "verdicts": [v.value for v in WORST_FIRST],
        "colours": {v.value: list(COLOURS[v]) for v in WORST_FIRST} | {"": list(NOT_RUN)},
        "phases": list(scenarios.PHASES),
        "groups": list(scenarios.GROUPS),
        "cells": [compact(c.model_dump(mode="json")) for c in cells],
    }


def compact(value: Any) -> Any:
    """Drop None, False, "" and empty containers, recursively: 1566 cells are mostly defaults."""
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
