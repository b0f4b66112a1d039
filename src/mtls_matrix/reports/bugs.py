"""BUGS.md: what a maintainer reads in five minutes, rendered from the findings engine.

`render(analysis, heatmap=None, reproducers=None) -> str`. The answer first (which pairs work), then
one table of every finding, then the findings by severity (what the user sees, why, the pairs, how
stable, how to reproduce), then the controls, resource hygiene, performance and what did not run.
Per-cell detail stays in results.json and report.html. Every piece of text from results.json goes
through reports/text.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from mtls_matrix import sections
from mtls_matrix.findings import (
    ADVISORY, BROKEN, FINDING_SEVERITIES, INSECURE, NOT_RUN, WORKS, Analysis, Finding, short,
)
from mtls_matrix.reports.text import code, curated, fenced, link, md, table
from mtls_matrix.reports.versions import render_table as versions_table
from mtls_matrix.results import Severity, rate_text

SYMBOL = {WORKS: "✅", ADVISORY: "⚠️", BROKEN: "❌", INSECURE: "🔓", NOT_RUN: "·"}
FAMILY_TITLE = {"ws": "WebSocket (RFC 6455)", "socketio": "Socket.IO"}
PAIR_ROWS = 5  # a finding's affected-pairs table: more rows fold into one line
SEEN = 2  # distinct errors quoted per finding
RUN_SYMBOL = {"PASS": "✅", "INSECURE": "🔓", "FAIL": "❌", "HANG": "⏳", "ERROR": "💥", "UNSUPPORTED": "➖",
              "SKIPPED": "⏭️"}


@dataclass
class Reproducer:
    """How to reproduce one cell of a finding: the command, and the lines of library code from its
    reproducer that configure the two sides (mtls-matrix repro); `lines` empty when the peers have none."""

    cell: str
    command: str
    server: list[str] = field(default_factory=list)
    client: list[str] = field(default_factory=list)
    server_name: str = ""
    client_name: str = ""


def reproducers(analysis: Analysis) -> dict[str, Reproducer]:
    """finding id -> how to reproduce it: `mtls-matrix repro` on its best cell whose two peers and scenario
    the run recorded as reproducible, with the library calls that configure each side (PeerInfo.configures)."""
    found = {}
    for finding in analysis.findings:
        for cell in finding.repro_cells:
            server, client = analysis.matrix.peer(cell.server), analysis.matrix.peer(cell.client)
            scenario = analysis.matrix.scenarios.get(cell.scenario)
            if server.reproducible and client.reproducible and scenario and scenario.reproducible:
                found[finding.id] = Reproducer(
                    cell.id, f"mtls-matrix repro '{cell.id}' --out repro/{finding.id}", server.configures,
                    client.configures, short(cell.server), short(cell.client))
                break
    return found


def render(analysis: Analysis, heatmap: Optional[str] = None,
           reproducers: Optional[dict[str, Reproducer]] = None) -> str:
    """BUGS.md for one analysed results file. `heatmap`: the SVG's path relative to BUGS.md;
    `reproducers`: finding id -> how to reproduce it (reproducers(analysis), from what the run recorded)."""
    reproducers = reproducers or {}
    lines = [
        *render_title(analysis),
        *render_answer(analysis, heatmap),
        *render_table(analysis),
    ]
    for severity in FINDING_SEVERITIES:
        found = analysis.by_severity(severity)
        if found:
            lines += [f"## {severity.value.capitalize()} findings", ""]
            for finding in found:
                lines += render_finding(finding, reproducers.get(finding.id), analysis)
    lines += [
        *render_controls(analysis),
        *render_hygiene(analysis),
        *render_performance(analysis),
        *render_not_run(analysis),
        *render_hostile(analysis),
        *render_proxy_identity(analysis),
        *render_reference(analysis),
        *render_repeatability(analysis),
        *render_versions(analysis),
        *render_environment(analysis),
    ]
    return "\n".join(lines).rstrip() + "\n"


# --------------------------------------------------------------------------- the answer

def render_title(analysis: Analysis) -> list[str]:
    matrix, run = analysis.matrix, analysis.run
    critical = analysis.by_severity(Severity.CRITICAL)
    if critical:
        headline = ("**Critical: " + "; ".join(f"{f.id} {md(f.title)}" for f in critical) + ".**")
    else:
        headline = "**No critical finding: no pair accepted a bad certificate under a correct configuration.**"
    counts = {s: len(analysis.by_severity(s)) for s in FINDING_SEVERITIES}
    pairs = {(c.server, c.client) for c in matrix.cells}
    summary = (f"{len(matrix.cells)} cells: {len(matrix.servers)} servers × {len(matrix.clients)} client variants "
               f"({len(pairs)} pairs) × {len(matrix.scenarios)} scenarios; {len(analysis.findings)} findings: "
               + ", ".join(f"{n} {s.value}" for s, n in counts.items()) + ".")
    if not run.complete:
        summary += " **The run did not complete: cells are missing.**"
    flaky = sum(c.flaky for c in matrix.cells)
    if flaky:
        summary += f" **{plural(flaky, 'FLAKY cell')}** (the verdict varied between runs)."
    return ["# BUGS.md: WebSocket libraries under mutual TLS", "", headline, "", summary, "",
            "_Generated by `mtls-matrix report` from results.json; do not edit by hand. Per-cell detail: "
            "results.json and report.html._", ""]


def render_answer(analysis: Analysis, heatmap: Optional[str]) -> list[str]:
    lines = ["## Which pairs work under mutual TLS", ""]
    if heatmap:
        lines += [f"![heatmap]({heatmap})", ""]
    lines += [" · ".join(f"{SYMBOL[s]} {s}" for s in (WORKS, ADVISORY, BROKEN, INSECURE, NOT_RUN))
              + ". A pair is as bad as its worst cell; variants that switch verification off on purpose "
              "(controls) count only in their own section.", ""]
    for answer in analysis.answers:
        servers = answer.servers
        lines += [f"### {FAMILY_TITLE.get(answer.family, md(answer.family))}", ""]
        rows = [[code(short(client), in_table=True)] + [SYMBOL[answer.state(s, client)] for s in servers]
                for client in answer.clients]
        lines += table(["client \\ server", *(code(short(s), in_table=True) for s in servers)], rows) + [""]
    return lines


def render_table(analysis: Analysis) -> list[str]:
    if not analysis.findings:
        return ["## Findings", "", "None: every cell that ran passed, was unsupported, or was a control.", ""]
    rows = [[f"[{f.id}](#{anchor(f)})", f.severity.value, md(f.title, 110), md(f.layer.short, 70),
             md(", ".join(f.libraries), 60), code(f.user_sees, 70, in_table=True) if f.user_sees else "—",
             curated(shorten_words(f.workaround, 80), in_table=True) or "—"]
            for f in analysis.findings]
    return ["## Findings", "", *table(["id", "severity", "title", "blamed layer", "libraries", "what the user sees",
                                        "workaround"], rows), ""]


def shorten_words(text: str, limit: int) -> str:
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    cut = text[:limit].rsplit(" ", 1)[0]
    if cut.count("`") % 2:  # never cut a code span in half
        cut = cut[: cut.rindex("`")].rstrip()
    return cut + " …"


def anchor(finding: Finding) -> str:
    """GitHub's anchor of the finding's heading (its id)."""
    return "".join(ch for ch in finding.id.lower() if ch.isalnum() or ch in "-_")


# --------------------------------------------------------------------------- one finding

def render_finding(finding: Finding, reproducer: Optional[Reproducer], analysis: Analysis) -> list[str]:
    cells = finding.cells
    verdicts = ", ".join(f"{n} {v}" for v, n in sorted(finding.verdicts.items()))
    pairs = len({(c.server, c.client) for c in cells})
    known = f" · {finding.baseline}" if finding.baseline else ""
    lines = [f"### {finding.id}", "",
             f"**{md(finding.title)}** ({finding.severity.value}) · blamed: {md(finding.layer.text, 300)} · "
             f"{len(cells)} cells ({verdicts}) in {pairs} pairs, {len(finding.scenarios)} scenarios{known}", ""]
    for seen in finding.seen[:SEEN]:
        lines.append(f"- **The user sees** {code(seen.text, 300)} ({seen.clarity or 'ungraded'}, {seen.count} of "
                     f"{len(cells)} cells)")
    if not finding.seen:
        lines.append(f"- **The user sees** no error: {md(cells[0].reason, 200)}")
    if finding.server_side:
        lines.append(f"- **The server recorded** {code(finding.server_side, 240)}")
    lines += [f"- {md(line, 300)}" for line in finding.detail[:4]]
    lines += render_why(finding)
    lines.append(f"- **Stability:** {md(finding.stability)}")
    lines += ["", *render_pairs(finding), "", *render_reproducer(finding, reproducer), ""]
    return lines


def render_why(finding: Finding) -> list[str]:
    mechanism = finding.mechanism
    if mechanism is None:
        known = sorted({c.baseline_reason for c in finding.cells if c.baseline_reason})
        lines = [f"- **Why:** {md(reason, 600)}" for reason in known[:1]]
        lines += [f"- **Workaround the matrix shows:** {md('; '.join(finding.workarounds[:2]))}"] \
            if finding.workarounds else []
        return lines or ["- **Why:** not known yet: no curated mechanism explains these cells "
                         "(matrix/mechanisms.toml, then a baseline entry naming it)"]
    lines = [f"- **Why:** {curated(mechanism.reason)}" + (f" {curated(mechanism.note)}" if mechanism.note else "")]
    if mechanism.links:
        lines.append("- **Upstream:** " + ", ".join(f"{link(_link_name(l.url), l.url)} ({md(l.status)})"
                                                     for l in mechanism.links))
    workaround = mechanism.workaround or "; ".join(finding.workarounds[:2])
    if workaround:
        lines.append(f"- **Workaround:** {curated(workaround)}")
    return lines


def _link_name(url: str) -> str:
    """`python/cpython#98078` for a GitHub issue or pull request, else the host and path, short."""
    parts = url.split("://", 1)[-1].split("/")
    if parts[0] == "github.com" and len(parts) >= 5 and parts[3] in ("issues", "pull"):
        return f"{parts[1]}/{parts[2]}#{parts[4]}"
    text = "/".join(parts)
    return text if len(text) <= 60 else text[:59] + "…"


def render_pairs(finding: Finding) -> list[str]:
    rows = []
    for row in finding.pairs[:PAIR_ROWS]:
        partners = ", ".join(short(p) for p in row.partners[:3]) + (f" +{len(row.partners) - 3}"
                                                                    if len(row.partners) > 3 else "")
        scenarios = ", ".join(row.scenarios[:3]) + (f" +{len(row.scenarios) - 3}" if len(row.scenarios) > 3 else "")
        verdicts = ", ".join(f"{n} {v}" for v, n in sorted(row.verdicts.items()))
        rows.append([md(row.blamed, 80), md(partners), md(scenarios), verdicts])
    lines = table(["blamed", "with", "scenarios", "cells"], rows)
    if len(finding.pairs) > PAIR_ROWS:
        rest = finding.pairs[PAIR_ROWS:]
        lines += ["", f"… and {len(rest)} more rows ({sum(sum(r.verdicts.values()) for r in rest)} cells): "
                      "report.html lists every pair."]
    return lines


def render_reproducer(finding: Finding, reproducer: Optional[Reproducer]) -> list[str]:
    if reproducer is None:
        sample = finding.repro_cells[0] if finding.repro_cells else finding.cells[0]
        return [f"**Reproduce** {code(sample.id)} (no standalone reproducer for these peers: rerun the cell): "
                f"{code(sample.repro)}"]
    lines = [f"**Reproduce** {code(reproducer.cell)}: {code(reproducer.command)}"]
    # the configuration of the side the finding blames (both for a pair, or when it blames both sides)
    blamed = {unit.side for unit in finding.layer.units} & {"server", "client"} or {"server", "client"}
    code_lines = []
    if reproducer.server and "server" in blamed:
        code_lines += [f"# server {reproducer.server_name}", *reproducer.server]
    if reproducer.client and "client" in blamed:
        code_lines += [f"# client {reproducer.client_name}", *reproducer.client]
    if code_lines:
        lines += ["", *fenced(code_lines, "python")]
    return lines


# --------------------------------------------------------------------------- the other sections

def render_controls(analysis: Analysis) -> list[str]:
    found = sections.controls(analysis.matrix)
    if not found:
        return []
    rows = [[code(short(c.peer), in_table=True), md(c.why, 160), f"{c.accepted} of {c.cells}",
             md(", ".join(f"{n} {v}" for v, n in sorted(c.other.items()))) or "—"] for c in found]
    return ["## Controls", "",
            "Variants that switch verification off on purpose: each must accept every bad certificate it is shown, "
            "which proves the scenarios' certificates are bad; their acceptances are not findings.", "",
            *table(["variant", "why", "accepted", "otherwise"], rows), ""]


def render_hygiene(analysis: Analysis) -> list[str]:
    rejections, rows, clean = sections.hygiene(analysis.matrix)
    total = len(rejections)
    if not total:
        return []
    lines = ["## Resource hygiene", "",
             "What the peers left behind once a rejected connection's cell settled (observed, not judged): open "
             "sockets of the connection (other processes' counted from outside), pending asyncio tasks, "
             "ResourceWarnings (which count for both peers of a cell).", ""]
    if not rows:
        return lines + [f"No peer left anything behind in {total} rejection {'cell' if total == 1 else 'cells'}.", ""]
    leaked = sum(1 for c in rejections if c.leaks and (sections.warnings_of(c) or any(
        getattr(c.leaks, f) for f in ("client_sockets", "client_tasks", "server_sockets", "server_tasks"))))
    lines += [f"{leaked} of {total} rejection cells left something behind.", ""]
    body = [[f"{r.role} {code(short(r.peer), in_table=True)}", f"{r.leaked} of {r.cells}", str(r.sockets),
             str(r.tasks), str(r.warned), f"{code(r.example, in_table=True)}: {md(r.left, 140)}"] for r in rows]
    lines += table(["peer", "cells that leaked", "open sockets", "pending tasks", "ResourceWarnings", "example"], body)
    if clean:
        lines += ["", "Clean in every rejection cell: " + ", ".join(code(short(p)) for p in clean) + "."]
    return lines + [""]


def render_performance(analysis: Analysis) -> list[str]:
    perf = sections.performance(analysis.matrix)
    working = [p for p in perf.pairs if p.handshakes_ms]
    if not working:
        return []
    lines = ["## Performance", "", md(sections.PERF_EXPLAINED), ""]
    floor = perf.floor
    if floor:
        lines += [f"Floor: handshake p50 {floor.handshake_p50_ms:.1f} ms, p95 {floor.handshake_p95_ms:.1f} ms; "
                  f"1 MiB echo {floor.echo_mib_s:.0f} MiB/s.", ""]
    p50s = sorted(p.p50 for p in working)
    lines += [f"{len(working)} pairs with a working handshake: median p50 {p50s[len(p50s) // 2]:.1f} ms. "
              "The slowest and the fastest five (every pair in report.html):", ""]
    ranked = sorted(working, key=lambda p: (-p.p50, p.server, p.client))
    shown = ranked[:5] + [p for p in ranked[-5:] if p not in ranked[:5]]
    rows = [[code(short(p.server), in_table=True), code(short(p.client), in_table=True), str(len(p.handshakes_ms)),
             f"{p.p50:.1f}", f"{p.p95:.1f}", f"{perf.ratio(p):.1f}×" if perf.ratio(p) else "—",
             f"{p.echo_mib_s:.0f}" + ("" if p.echo_profile == "default" else f" ({p.echo_profile})")
             if p.echo_mib_s else "—"] for p in shown]
    return lines + table(["server", "client", "handshakes", "p50 ms", "p95 ms", "p50 / floor", "1 MiB echo MiB/s"],
                         rows) + [""]


def render_not_run(analysis: Analysis) -> list[str]:
    lines = ["## Not run here", ""]
    lines += [f"- **{md(n.name)}**: {md(n.why)}" for n in analysis.run.not_run]
    for reason, count, peers in sections.skipped(analysis.matrix):
        lines.append(f"- {count} cells SKIPPED: {md(reason)}"
                     + (f" (peers that could not run: {', '.join(code(p) for p in peers)})" if peers else ""))
    if len(lines) == 2:
        lines.append("Every stack the matrix knows ran.")
    return lines + [""]


def render_hostile(analysis: Analysis) -> list[str]:
    tables = sections.hostile(analysis.matrix)
    if not tables:
        return []
    deadline = analysis.run.deadline_s
    lines = ["## Hostile peers", "",
             "The harness misbehaves on purpose on one side; the library on the other side gets no timeout from the "
             "harness, its defaults decide: the cell waits as long as the library's own timeout for that stall, plus "
             "a margin; where it has none (or one longer than the matrix waits), the harness's deadline. "
             "Times after a fault count from the fault.", ""]
    for t in tables:
        lines += [f"### {t.role.capitalize()}s facing a hostile {'server' if t.role == 'client' else 'client'}", ""]
        rows = [[code(short(peer), in_table=True)] + [md(sections.hostile_entry(c, deadline)) for c in cells]
                for peer, cells in t.rows]
        lines += table([t.role, *(code(b, in_table=True) for b in t.behaviours)], rows)
        if t.timeouts:
            lines += ["", "Default timeouts, read from each library: " + "; ".join(
                f"{code(library)}: " + md(", ".join(f"{k} {'none' if v is None else f'{v:g} s'}" for k, v in
                                                    values.items())) for library, values in t.timeouts.items()) + "."]
        lines.append("")
    return lines


def render_proxy_identity(analysis: Analysis) -> list[str]:
    rows, unverified, honoured = sections.proxy_identity(analysis.matrix)
    if not rows:
        return []
    lines = ["## Proxy-validated identity", "",
             "A proxy asks for the client certificate without verifying it (nginx `optional_no_ca`) and forwards it; "
             "the Socket.IO app accepts it only if it is a stored certificate whose CN is the claimed agent id.", "",
             *table(["server", "scenario", "expected", "outcome (verdicts; who refused)"],
                    [[code(short(r.server), in_table=True), code(r.scenario, in_table=True), md(r.expected),
                      md(r.outcome)] for r in rows]), ""]
    if unverified:
        lines += ["**optional_no_ca: nginx accepts a certificate from any CA; the app's store is the only check.** "
                  f"In {len(unverified)} cells the proxy could not verify the client certificate and passed the "
                  "request on: only the app's certificate store refused the ones it does not hold.", ""]
    forged = [c for c in analysis.matrix.cells if "forged-header" in c.tags]
    if forged:
        lines += [(f"**A forged `X-SSL-Client-Cert` was honoured** in {len(honoured)} of {len(forged)} cells: "
                   + ", ".join(code(c.id) for c in honoured[:5]) if honoured
                   else f"No forged `X-SSL-Client-Cert` was honoured ({len(forged)} cells)."), ""]
    return lines


def render_reference(analysis: Analysis) -> list[str]:
    statuses = sections.reference(analysis.matrix, analysis.knowledge)
    if not statuses:
        return []
    rows = []
    for s in statuses:
        count = f"{len(s.shown)} of {len(s.tested)}" if s.tested else "—"
        where = f"F-{s.finding.mechanism}" if s.finding.mechanism else "—"
        note = s.finding.untestable if s.status == "not testable here" else s.finding.claimed
        exists = where in {f.id for f in analysis.findings}
        rows.append([md(s.finding.id), curated(s.finding.title, in_table=True), f"**{s.status}**", count,
                     f"[{where}](#{where.lower()})" if exists else "—",
                     curated(shorten_words(note, 160), in_table=True)])
    return [f"## Reference findings ({md(analysis.knowledge.reference.source)})", "",
            *table(["#", "finding", "status", "cells", "finding here", "claim / why not"], rows), ""]


def render_repeatability(analysis: Analysis) -> list[str]:
    repeated, flaky = sections.flaky(analysis.matrix)
    if not repeated:
        return []
    lines = ["## Repeatability", "", f"{len(repeated)} of {len(analysis.matrix.cells)} cells ran more than once."]
    if not flaky:
        return lines + ["No cell is FLAKY: every repeated cell reached the same verdict each time.", ""]
    rows = [[code(c.id, in_table=True), f"{c.runs.pass_rate:.0%}", md(rate_text(c)),
             " ".join(RUN_SYMBOL.get(r.verdict.value, "?") for r in c.runs.each), c.baseline or "—"] for c in flaky]
    return lines + ["", f"**{plural(len(flaky), 'FLAKY cell')}**: the verdict shown elsewhere is the first run's; "
                        "they are findings only where a known mechanism explains them.", "",
                    *table(["cell", "pass rate", "runs", "in order", "baseline"], rows), ""]


def plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def render_versions(analysis: Analysis) -> list[str]:
    if len(analysis.run.environments) < 2:
        return []
    return [*versions_table(analysis.results, heading="##").splitlines(), ""]


def render_environment(analysis: Analysis) -> list[str]:
    run = analysis.run
    duration = f"{run.duration_s:g} s" if run.duration_s is not None else "unknown"
    versions = ", ".join(f"{md(name)} {md(version)}" for name, version in sorted(run.versions.items())) or "none"
    return ["## Environment", "",
            f"- **Run:** {md(run.started)} → {md(run.finished or 'unfinished')} ({duration}), {run.workers} workers, "
            f"deadline {run.deadline_s:g} s per cell, profiles {md(', '.join(run.profiles))}",
            f"- **Command:** {code(run.command or 'unknown')}",
            f"- **Python** {md(run.python)}; **OpenSSL** {md(run.openssl)}; **platform** {md(run.platform)}",
            f"- **Libraries:** {versions}",
            f"- **CA fingerprint (SHA-256, DER):** {code(run.ca_fingerprint)}", ""]
