"""BUGS.md: the compatibility report, rendered from results.json alone.

`render(results, notes=None) -> str`. The renderer never runs peers: every statement in the
report is derived from the cells, so the same results always give the same text (cells are
sorted here, because xdist writes them in completion order).

Findings group failing cells by signature (verdict, blamed peer, phase, canonical error). The
blamed peer comes from the matrix itself: a client variant that fails the same way with every
server is the culprit, and so is a server that fails the same way with every client; anything
narrower belongs to the pair.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

from mtls_matrix import scenarios
from mtls_matrix.results import SEVERITY, Cell, Results, Verdict

SYMBOL = {
    Verdict.PASS: "✅", Verdict.INSECURE: "🔓", Verdict.FAIL: "❌",
    Verdict.HANG: "⏳", Verdict.UNSUPPORTED: "➖", Verdict.ERROR: "💥",
}
COUNT_ORDER = (Verdict.PASS, Verdict.INSECURE, Verdict.HANG, Verdict.FAIL, Verdict.ERROR, Verdict.UNSUPPORTED)
REJECTION_GROUPS = {"client-rejected": "server", "server-rejected": "client"}  # group -> side that must reject
LATE_PHASES = ("upgrade", "handler", "io")
NOT_RUN = "·"
INLINE_IDS = 6  # longer lists of cell ids fold into <details>


# --------------------------------------------------------------------------- notes

@dataclass(frozen=True)
class Note:
    """A curated explanation attached to the findings it matches.

    `match` is a callable taking a Finding, or a glob over cell ids and the finding's signature
    text, in which only `*` and `?` are wildcards (cell ids contain `[variant]` brackets).
    """

    match: str | Callable[[Finding], bool]
    text: str
    links: Sequence[str] = ()


def _glob(pattern: str) -> re.Pattern[str]:
    return re.compile(re.escape(pattern).replace(r"\*", ".*").replace(r"\?", ".") + r"\Z")


def note_matches(note: Any, finding: Finding) -> bool:
    if callable(note.match):
        return bool(note.match(finding))
    pattern = _glob(note.match)
    return bool(pattern.match(finding.signature_text)) or any(pattern.match(c.id) for c in finding.cells)


# --------------------------------------------------------------------------- the matrix

def library_of(peer: str) -> str:
    """`client:aiohttp[ssl=context]` -> `aiohttp`."""
    return peer.split(":", 1)[-1].split("[", 1)[0]


def base_scenario(name: str) -> str:
    return name[: -len("-tls12")] if name.endswith("-tls12") else name


def scenario_rank(name: str) -> tuple[int, str]:
    """Catalogue order; scenarios the catalogue no longer knows go last, alphabetically."""
    names = list(scenarios.BY_NAME)
    return (names.index(name) if name in names else len(names), name)


def describe(name: str) -> str:
    scenario = scenarios.BY_NAME.get(name)
    return scenario.description if scenario else name


def raw_signature(cell: Cell) -> tuple[str, str, str]:
    return (cell.verdict.value, cell.phase, canonical(cell))


def canonical(cell: Cell) -> str:
    """What the user saw, falling back to the rejecting side's reason; `-` when nothing failed."""
    if cell.error.canonical:
        return cell.error.canonical
    if cell.rejection and cell.rejection.canonical:
        return cell.rejection.canonical
    return "-"


class Matrix:
    """The cells, sorted, with the lookups the report needs."""

    def __init__(self, results: Results):
        self.run = results.run
        self.cells = sorted(results.cells, key=lambda c: (c.server, c.client, scenario_rank(c.scenario), c.profile, c.id))
        self.servers = sorted({c.server for c in self.cells})
        self.clients = sorted({c.client for c in self.cells})
        self.by_key = {(c.server, c.client, c.scenario, c.profile): c for c in self.cells}
        self.by_situation: dict[tuple[str, str], list[Cell]] = defaultdict(list)
        for c in self.cells:
            if c.verdict != Verdict.UNSUPPORTED:  # a pair that cannot express a scenario is no evidence
                self.by_situation[(c.scenario, c.profile)].append(c)

    def get(self, server: str, client: str, scenario: str, profile: str) -> Cell | None:
        return self.by_key.get((server, client, scenario, profile))

    def scenario_names(self) -> list[str]:
        return sorted({c.scenario for c in self.cells}, key=scenario_rank)

    def rows(self, group: str) -> list[tuple[str, str]]:
        return sorted({(c.scenario, c.profile) for c in self.cells if c.group == group},
                      key=lambda row: (scenario_rank(row[0]), row[1]))


# --------------------------------------------------------------------------- findings

@dataclass
class Finding:
    verdict: Verdict
    blame: str  # client | client library | server | pair | every client | every server | every pair | harness
    blamed: str  # the peer (or pair, or "every ...") named in the title
    phase: str
    canonical: str
    cells: list[Cell] = field(default_factory=list)
    workarounds: list[str] = field(default_factory=list)
    notes: list[Any] = field(default_factory=list)
    number: int = 0
    all_servers: Sequence[str] = ()  # the run's peers, so "every server" can be said
    all_clients: Sequence[str] = ()

    @property
    def signature_text(self) -> str:
        return f"{self.verdict.value} {self.blamed} {self.phase} {self.canonical}"

    @property
    def scenarios(self) -> list[str]:
        return sorted({c.scenario for c in self.cells}, key=scenario_rank)

    @property
    def group(self) -> str:
        return self.cells[0].group

    @property
    def peers(self) -> set[str]:
        return {c.server for c in self.cells} | {c.client for c in self.cells}


def blame(cell: Cell, matrix: Matrix) -> tuple[str, str]:
    """(kind, name) of who is at fault for this cell, from how its neighbours in the matrix fared."""
    if cell.verdict == Verdict.ERROR:
        return "harness", "the harness"  # never blamed on a library
    situation = matrix.by_situation[(cell.scenario, cell.profile)]
    signature = raw_signature(cell)
    with_client = [c for c in situation if c.client == cell.client]  # this client with every server
    with_server = [c for c in situation if c.server == cell.server]  # this server with every client
    client_always = all(raw_signature(c) == signature for c in with_client)
    server_always = all(raw_signature(c) == signature for c in with_server)
    must_reject = REJECTION_GROUPS.get(cell.group)
    if client_always and server_always:
        if len(with_client) == 1 and len(with_server) == 1:  # a single pair: nothing to compare against
            return (must_reject, getattr(cell, must_reject)) if must_reject else ("pair", _pair(cell))
        if len(with_client) > 1 and len(with_server) > 1 and all(raw_signature(c) == signature for c in situation):
            return f"every {must_reject or 'pair'}", f"every {must_reject or 'pair'}"
        # Both peers fail everywhere: the one with more partners is the stronger evidence; on a
        # tie, the side that had to reject.
        if len(with_client) != len(with_server):
            client_always = len(with_client) > len(with_server)
        else:
            client_always = must_reject == "client"
        server_always = not client_always
    if client_always:
        return _client_or_library(cell, situation, signature)
    if server_always:
        return "server", cell.server
    return "pair", _pair(cell)


def _pair(cell: Cell) -> str:
    return f"{cell.server} × {cell.client}"


def _client_or_library(cell: Cell, situation: list[Cell], signature: tuple[str, str, str]) -> tuple[str, str]:
    """A fault every variant of a client library shares is the library's, not one variant's."""
    library = library_of(cell.client)
    variants = {c.client for c in situation if library_of(c.client) == library}
    if len(variants) > 1 and all(raw_signature(c) == signature for c in situation if c.client in variants):
        return "client library", f"client:{library} (every variant)"
    return "client", cell.client


def find(matrix: Matrix, notes: Iterable[Any] = ()) -> list[Finding]:
    findings: dict[tuple, Finding] = {}
    for cell in matrix.cells:
        if cell.verdict in (Verdict.PASS, Verdict.UNSUPPORTED):
            continue
        kind, name = blame(cell, matrix)
        key = (cell.verdict, name, cell.phase, canonical(cell))
        if key not in findings:
            findings[key] = Finding(cell.verdict, kind, name, cell.phase, canonical(cell),
                                    all_servers=matrix.servers, all_clients=matrix.clients)
        findings[key].cells.append(cell)
    ordered = sorted(findings.values(), key=lambda f: (SEVERITY[f.verdict], -len(f.cells), f.blamed, f.canonical,
                                                       f.phase))
    notes = list(notes)
    for number, finding in enumerate(ordered, 1):
        finding.number = number
        finding.workarounds = workarounds(finding, matrix)
        finding.notes = [n for n in notes if note_matches(n, finding)]
    return ordered


# --------------------------------------------------------------------------- workarounds

def workarounds(finding: Finding, matrix: Matrix) -> list[str]:
    """What the matrix itself shows working instead: another variant, the tuned profile, the
    other TLS version, or (for a pair) another server."""
    if finding.verdict == Verdict.ERROR:
        return []
    total = len(finding.cells)
    found: list[str] = []
    variants: Counter[str] = Counter()
    servers: Counter[str] = Counter()
    tuned = tls = 0
    for cell in finding.cells:
        for other in matrix.clients:
            if other != cell.client and library_of(other) == library_of(cell.client) and _passes(
                    matrix.get(cell.server, other, cell.scenario, cell.profile)):
                variants[other] += 1
        if cell.profile != "tuned" and _passes(matrix.get(cell.server, cell.client, cell.scenario, "tuned")):
            tuned += 1
        if _passes(matrix.get(cell.server, cell.client, _tls_counterpart(cell.scenario), cell.profile)):
            tls += 1
        if finding.blame == "pair":
            for other in matrix.servers:
                if other != cell.server and _passes(matrix.get(other, cell.client, cell.scenario, cell.profile)):
                    servers[other] += 1
    for variant, n in sorted(variants.items()):
        found.append(f"use `{variant}`: the same library passes {n} of these {total} cells configured that way")
    if tuned:
        found.append(f"raise the library's documented limits (what the `tuned` profile does): {tuned} of {total} "
                     "cells pass with it")
    if tls:
        found.append(f"the TLS version matters: {tls} of {total} cells pass in the "
                     f"{'TLS 1.3' if all(c.scenario.endswith('-tls12') for c in finding.cells) else 'TLS 1.2-capped'}"
                     " variant of the same scenario")
    for server, n in sorted(servers.items()):
        found.append(f"the same client works with `{server}` in {n} of these {total} cells")
    return found


def _passes(cell: Cell | None) -> bool:
    return cell is not None and cell.verdict == Verdict.PASS


def _tls_counterpart(name: str) -> str:
    if name.endswith("-tls12"):
        return base_scenario(name)
    return f"{name}-tls12" if f"{name}-tls12" in scenarios.BY_NAME else ""


# --------------------------------------------------------------------------- markdown helpers

def counts(cells: Iterable[Cell]) -> Counter[Verdict]:
    return Counter(c.verdict for c in cells)


def compact(tally: Counter[Verdict]) -> str:
    """`48 ✅ · 2 🔓 · 1 ❌`."""
    parts = [f"{tally[v]} {SYMBOL[v]}" for v in COUNT_ORDER if tally[v]]
    return " · ".join(parts) or NOT_RUN


def spelled(tally: Counter[Verdict]) -> str:
    return ", ".join(f"{tally[v]} {v.value}" for v in COUNT_ORDER if tally[v]) or "no cells"


def plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    return lines


def code(text: str | None) -> str:
    """Inline code that survives backticks and newlines in library messages."""
    text = " ".join((text or "").split())
    return f"`` {text} ``" if "`" in text else f"`{text}`"


def plain(text: str) -> str:
    """Library text outside code spans: keep `<...>` (e.g. `<class ...>`) from vanishing as HTML."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def shorten(text: str | None, limit: int = 160) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def id_list(ids: Sequence[str], summary: str) -> list[str]:
    if len(ids) <= INLINE_IDS:
        return [", ".join(code(i) for i in ids)]
    return ["<details><summary>" + summary + "</summary>", "", "```", *ids, "```", "", "</details>"]


def header_name(peer: str) -> str:
    """Narrow table headers: `aiohttp<br>ssl=context` instead of `client:aiohttp[ssl=context]`."""
    name = peer.split(":", 1)[-1]
    return name.replace("[", "<br>").rstrip("]") if "[" in name else name


# --------------------------------------------------------------------------- sections

def title_of(finding: Finding) -> str:
    """What happened, in words: who, did what, in which situation."""
    names = finding.scenarios
    bases = sorted({base_scenario(n) for n in names}, key=scenario_rank)
    listed = ", ".join(names)
    when = f"when {describe(bases[0])} ({listed})" if len(bases) == 1 else f"in {len(names)} scenarios ({listed})"
    who = finding.blamed if finding.blame != "pair" else f"the pair {finding.blamed}"
    reasons = {c.reason for c in finding.cells}
    how = plain(reasons.pop()) if len(reasons) == 1 else f"{finding.canonical} at {finding.phase}"
    if finding.verdict == Verdict.INSECURE:
        return f"INSECURE: {who} accepts the connection {when}"
    if finding.verdict == Verdict.HANG:
        return f"HANG: {who} gets no outcome before the deadline {when}"
    if finding.verdict == Verdict.ERROR:
        return f"ERROR: the harness failed at {finding.phase} ({listed})"
    if finding.group in REJECTION_GROUPS:
        return f"FAIL: {who}: {how} {when}"
    what = f" ({describe(names[0])})" if len(names) == 1 else ""
    return f"FAIL: {who} cannot pass {listed}{what}: {finding.canonical} at {finding.phase}"


def render_title(matrix: Matrix, findings: list[Finding]) -> list[str]:
    tally = counts(matrix.cells)
    pairs = {(c.server, c.client) for c in matrix.cells}
    worst = [f for f in findings if f.verdict != Verdict.ERROR][:3]
    lines = [
        "# BUGS.md: WebSocket libraries under mutual TLS",
        "",
        f"{plural(len(matrix.cells), 'cell')} ({plural(len(matrix.servers), 'server')} × "
        f"{plural(len(matrix.clients), 'client variant')}, {plural(len(pairs), 'pair')}, "
        f"{plural(len(matrix.scenario_names()), 'scenario')}): {spelled(tally)}; {plural(len(findings), 'finding')}.",
    ]
    if worst:
        lines[-1] += " Worst: " + " ".join(f"**F{f.number}** {title_of(f)}." for f in worst)
    if not matrix.run.complete:
        lines[-1] += " **The run did not complete: cells are missing.**"
    lines += ["", "_Generated by `mtls-matrix report` from results.json; do not edit by hand._", ""]
    return lines


def render_environment(matrix: Matrix) -> list[str]:
    run = matrix.run
    duration = f"{run.duration_s:g} s" if run.duration_s is not None else "unknown"
    versions = ", ".join(f"{name} {version}" for name, version in sorted(run.versions.items())) or "none recorded"
    return [
        "## Environment", "",
        f"- **Run:** {run.started} → {run.finished or 'unfinished'} ({duration})",
        f"- **Command:** {code(run.command or 'unknown')}",
        f"- **Python:** {run.python}; **OpenSSL:** {run.openssl}; **platform:** {run.platform}",
        f"- **Libraries:** {versions}",
        f"- **CA fingerprint (SHA-256, DER):** {code(run.ca_fingerprint)}",
        f"- **Scrubbed environment:** {', '.join(code(v) for v in sorted(run.scrubbed_env)) or 'none'}",
        f"- **Deadline per cell:** {run.deadline_s:g} s; **profiles:** {', '.join(run.profiles)}; "
        f"**workers:** {run.workers}",
        "",
    ]


def render_how_to_read() -> list[str]:
    return [
        "## How to read this report", "",
        "A **cell** is one server peer × one client variant × one scenario (× profile for I/O), run over a real "
        "TLS connection on loopback and judged against the scenario's expectation.", "",
        *table(["verdict", "", "meaning"], [
            ["PASS", SYMBOL[Verdict.PASS], "behaved as a correct pair must (worked, or was rejected by the right "
                                           "side for the right reason)"],
            ["INSECURE", SYMBOL[Verdict.INSECURE], "a connection that must be rejected was accepted: critical"],
            ["FAIL", SYMBOL[Verdict.FAIL], "should have worked and did not, or was rejected by the wrong side or "
                                           "for the wrong reason"],
            ["HANG", SYMBOL[Verdict.HANG], "no outcome before the deadline"],
            ["UNSUPPORTED", SYMBOL[Verdict.UNSUPPORTED], "the library cannot express the scenario (not a bug)"],
            ["ERROR", SYMBOL[Verdict.ERROR], "the harness itself failed; never blamed on a library"],
        ]), "",
        "**Phases**, in order: `tcp` → `tls-handshake` → `verification` (certificate checks) → `upgrade` "
        "(HTTP 101) → `handler` (the server application ran and saw the client identity) → `io` (echo, ping, "
        "close). A cell's phase is where the outcome was decided as the client saw it. Under TLS 1.3 the "
        "client finishes its handshake before the server checks the client certificate, so a server-side "
        "rejection reaches the client only at `upgrade` or its first read.", "",
        "**Clarity** of the error the client's user sees: CLEAR names the certificate problem; VAGUE says TLS "
        "failed without why; OPAQUE is a reset, EOF, empty message or generic connection error.", "",
        "**Blame** comes from the matrix: a client variant failing the same way with every server is blamed "
        "(the whole library when every variant does); a server failing the same way with every client is "
        "blamed; when every pair fails alike the finding says so; otherwise the pair is.", "",
    ]


def render_summary_table(matrix: Matrix) -> list[str]:
    rows = []
    for client in matrix.clients:
        row = [f"`{client}`"]
        for server in matrix.servers:
            row.append(compact(counts(c for c in matrix.cells if c.client == client and c.server == server)))
        rows.append(row)
    rows.append(["**all clients**"] + [compact(counts(c for c in matrix.cells if c.server == s))
                                       for s in matrix.servers])
    legend = " · ".join(f"{SYMBOL[v]} {v.value}" for v in COUNT_ORDER)
    return ["## Servers × clients", "", f"Legend: {legend}; {NOT_RUN} not run.", "",
            *table(["client \\ server"] + [f"`{s}`" for s in matrix.servers], rows), ""]


def render_groups(matrix: Matrix) -> list[str]:
    order = ", ".join(f"`{s}`" for s in matrix.servers)
    lines = ["## By scenario group", "",
             f"Each entry has one symbol per server, in this order: {order}. {NOT_RUN} means not run.", ""]
    for group in [*scenarios.GROUPS, *sorted({c.group for c in matrix.cells} - set(scenarios.GROUPS))]:
        rows = matrix.rows(group)
        if rows:
            lines += render_group(matrix, group, rows)
    return lines


def render_group(matrix: Matrix, group: str, rows: list[tuple[str, str]]) -> list[str]:
    profiled = any(profile != "default" for _, profile in rows)
    header = ["scenario"] + (["profile"] if profiled else []) + [header_name(c) for c in matrix.clients]
    body, green = [], []
    for scenario, profile in rows:
        entries = []
        for client in matrix.clients:
            symbols = [matrix.get(server, client, scenario, profile) for server in matrix.servers]
            entries.append("".join(SYMBOL[c.verdict] if c else NOT_RUN for c in symbols))
        ran = [c for c in matrix.cells if c.scenario == scenario and c.profile == profile]
        if all(c.verdict == Verdict.PASS for c in ran):
            green.append(f"{scenario} ({profile})" if profiled else scenario)
        body.append([f"`{scenario}`"] + ([profile] if profiled else []) + entries)
    return [f"### {group}", "", *table(header, body), "", green_line(green, rows, profiled), ""]


def green_line(green: list[str], rows: list[tuple[str, str]], profiled: bool) -> str:
    """Name the shorter side: the green rows, or the rows that are not."""
    names = [f"{s} ({p})" if profiled else s for s, p in rows]
    if len(green) == len(names):
        return f"Fully green (every pair PASS): all {len(names)}."
    if len(green) * 2 > len(names):
        rest = [n for n in names if n not in green]
        return f"Fully green (every pair PASS): {len(green)} of {len(names)}, all except {', '.join(rest)}."
    return f"Fully green (every pair PASS): {len(green)} of {len(names)}{': ' if green else ''}{', '.join(green)}."


def render_findings(matrix: Matrix, findings: list[Finding]) -> list[str]:
    lines = ["## Findings", ""]
    if not findings:
        return lines + ["No findings: every cell that ran passed or was unsupported.", ""]
    lines += ["Ordered by severity (INSECURE, HANG, FAIL, ERROR), then by the number of cells.", ""]
    for finding in findings:
        lines += render_finding(finding)
    return lines


def render_finding(finding: Finding) -> list[str]:
    cells = finding.cells
    sample = cells[0]
    lines = [f"### F{finding.number}. {title_of(finding)}", ""]
    lines += ["**Configuration**", ""]
    for name in finding.scenarios:
        lines.append(f"- `{name}`: {describe(name)}. Expected: {_first(cells, name).expectation}.")
    lines += [
        f"- Servers: {_peers({c.server for c in cells}, finding.all_servers, 'server')}; "
        f"clients: {_peers({c.client for c in cells}, finding.all_clients, 'client variant')}",
        f"- Profile: {', '.join(sorted({c.profile for c in cells}))}; TLS: {', '.join(_tls_versions(cells))}",
        "", "**Observed**", "",
    ]
    lines += render_observed(cells)
    lines += ["", f"**Affected cells ({len(cells)})**", ""]
    lines += id_list([c.id for c in cells], f"{len(cells)} cells")
    lines += ["", "**Repro** (the first cell)", "", "```sh", sample.repro, "```", ""]
    if finding.workarounds:
        lines += ["**Workaround shown by the matrix**", ""] + [f"- {w}" for w in finding.workarounds] + [""]
    for note in finding.notes:
        links = " ".join(f"[{i}]({link})" for i, link in enumerate(note.links, 1))
        lines += [f"> **Note:** {note.text}" + (f" {links}" if links else ""), ""]
    return lines


def _peers(named: set[str], every: Sequence[str], what: str) -> str:
    if len(named) > 1 and named == set(every):
        return f"every {what} ({len(named)})"
    return ", ".join(f"`{p}`" for p in sorted(named))


def _first(cells: list[Cell], scenario: str) -> Cell:
    return next(c for c in cells if c.scenario == scenario)


def _tls_versions(cells: list[Cell]) -> list[str]:
    seen = {c.client_tls.version or c.server_saw.tls.version for c in cells}
    named = sorted(v for v in seen if v)
    return named + (["not negotiated"] if None in seen else [])


def render_observed(cells: list[Cell]) -> list[str]:
    lines = []
    errors = Counter((c.error.type, c.error.message, c.error.clarity.value if c.error.clarity else None)
                     for c in cells if c.error.type or c.error.message)
    for (kind, message, clarity), n in sorted(errors.items(), key=lambda e: (-e[1], str(e[0])))[:3]:
        lines.append(f"- The client's user sees {user_error(kind, message)}"
                     f" ({clarity or 'ungraded'}; {n} of {len(cells)} cells)")
    if not errors:
        lines.append("- The client's user sees no error: " + plain(shorten(cells[0].reason)))
    else:
        lines.append(f"- Verdict reason: {plain(shorten(cells[0].reason))}")
    rejections = Counter((r.by, r.canonical, r.phase, shorten(r.message, 120))
                         for r in (c.rejection for c in cells) if r)
    for (by, canonical_name, phase, message), n in sorted(rejections.items(), key=lambda e: (-e[1], str(e[0])))[:2]:
        lines.append(f"- Rejected by the **{by}** with {canonical_name} at {phase}"
                     + (f": {code(message)}" if message else "") + f" ({n} cells)")
    lines += [_client_tls(cells), _server_saw(cells)]
    late = [c for c in cells if seen_late(c)]
    if late:
        lines.append(f"- Seen late: in {len(late)} of {len(cells)} cells the server refused the client certificate "
                     f"during its TLS handshake, but the client learned it only at `{late[0].phase}`: under TLS 1.3 "
                     "the client finishes its side of the handshake before the server checks the client "
                     "certificate, so the rejection arrives at the client's first read")
    return lines


def seen_late(cell: Cell) -> bool:
    """The server rejected at verification, the client only noticed at upgrade or later (TLS 1.3)."""
    r = cell.rejection
    return bool(r and r.by == "server" and r.phase == "verification" and cell.phase in LATE_PHASES)


def _client_tls(cells: list[Cell]) -> str:
    outcomes = Counter((c.client_tls.handshake or "none", c.client_tls.version, c.client_tls.peer_cn) for c in cells)
    described = [f"{shake}" + (f" ({version})" if version else "") + (f" with a server certificate CN {code(cn)}"
                                                                     if cn else "") + f" ×{n}"
                 for (shake, version, cn), n in sorted(outcomes.items(), key=lambda o: (-o[1], str(o[0])))]
    return f"- The client's TLS handshake: {'; '.join(described)}"


def _server_saw(cells: list[Cell]) -> str:
    handshakes = Counter(c.server_saw.tls.handshake or "none" for c in cells)
    ran = sum(c.server_saw.handler_ran for c in cells)
    identities = sorted({c.server_saw.handler_peer_cn for c in cells if c.server_saw.handler_peer_cn})
    errors = sorted({f"{e.type}: {shorten(e.message, 100)}" for e in (c.server_saw.tls.error for c in cells) if e})
    text = (f"- The server saw: TLS handshake {', '.join(f'{k} ×{n}' for k, n in sorted(handshakes.items()))}; "
            f"handler ran in {ran} of {len(cells)} cells")
    if identities:
        text += f", seeing client identity {', '.join(code(i) for i in identities)}"
    if errors:
        text += f"; server TLS error {code(errors[0])}" + (f" (+{len(errors) - 1} more)" if len(errors) > 1 else "")
    return text


def render_libraries(matrix: Matrix, findings: list[Finding]) -> list[str]:
    libraries = sorted(set(matrix.run.versions) | {library_of(p) for p in matrix.servers + matrix.clients})
    rows = []
    for library in libraries:
        version = matrix.run.versions.get(library, "")
        for peer in [p for p in matrix.servers + matrix.clients if library_of(p) == library]:
            role = "server" if peer in matrix.servers else "client"
            cells = [c for c in matrix.cells if getattr(c, role) == peer]
            blaming = [f for f in findings if _blames(f, peer)]
            involving = [f for f in findings if peer in f.peers]
            rows.append([f"{library} {version}".strip(), f"`{peer}`", compact(counts(cells)),
                         ", ".join(f"F{f.number}" for f in blaming) or "—", conclusion(peer, role, cells, involving)])
        if not any(library_of(p) == library for p in matrix.servers + matrix.clients):
            rows.append([f"{library} {version}".strip(), "—", NOT_RUN, "—", "no peer of this library ran"])
    return ["## Per-library conclusions", "",
            "Only findings that blame the peer (alone, or with every peer of its role) count against it; "
            "pair findings are listed under both peers.", "",
            *table(["library", "peer", "cells", "findings", "conclusion"], rows), ""]


def _blames(finding: Finding, peer: str) -> bool:
    """Does this finding count against the peer? Pair and every-peer findings count for each peer in them."""
    role = peer.split(":", 1)[0]
    if finding.blame in ("client", "server"):
        return finding.blamed == peer
    if finding.blame in ("pair", "every pair", f"every {role}") or (finding.blame == "client library"
                                                                    and role == "client"):
        return peer in finding.peers
    return False


GROUP_PHRASES = {
    "client": {"works": "connects with valid certificates", "server-rejected": "rejects bad server certificates",
               "client-rejected": "is refused when its own certificate is bad", "io": "passes the I/O scripts"},
    "server": {"works": "accepts valid clients and shows the handler their identity",
               "client-rejected": "rejects bad client certificates",
               "server-rejected": "is refused when its own certificate is bad", "io": "passes the I/O scripts"},
}


def conclusion(peer: str, role: str, cells: list[Cell], involving: list[Finding]) -> str:
    """One line: the findings that blame the peer as exceptions to what it does right, per group.
    Failures blamed on its partners do not count against it."""
    faults, correct = [], []
    for group in sorted({c.group for c in cells}, key=_group_rank):
        here = [f for f in involving if f.group == group]
        own = list(dict.fromkeys(_issue(f) for f in here if _blames(f, peer) and f.blame != "pair"))
        pairs = [f"F{f.number}" for f in here if f.blame == "pair"]
        phrase = GROUP_PHRASES[role].get(group, f"passes {group}")
        if own:
            phrase += f" except {'; '.join(own)}"
        if pairs:
            phrase += f"{' and' if own else ' except'} with some partners ({', '.join(pairs)})"
        (faults if own or pairs else correct).append(phrase)
    if not faults:
        return "correct in every group: " + ", ".join(correct) if correct else "no cells judged"
    return "; ".join(faults) + (f". Otherwise correct: {', '.join(correct)}" if correct else "")


def _group_rank(group: str) -> tuple[int, str]:
    return (scenarios.GROUPS.index(group) if group in scenarios.GROUPS else len(scenarios.GROUPS), group)


def _issue(finding: Finding) -> str:
    text = f"{', '.join(finding.scenarios)} ({finding.verdict.value}"
    text += ", accepted" if finding.verdict == Verdict.INSECURE else f", {finding.canonical} at {finding.phase}"
    if any("tuned" in w for w in finding.workarounds):
        text += "; tuned passes"
    return text + ")"


def render_workarounds(findings: list[Finding]) -> list[str]:
    lines = ["## Workarounds shown by the matrix", ""]
    with_some = [f for f in findings if f.workarounds]
    if not with_some:
        return lines + ["None: no failing cell passes with another variant, profile, TLS version or server.", ""]
    for finding in with_some:
        lines.append(f"- **F{finding.number}** ({finding.verdict.value}, {finding.blamed}, "
                     f"{', '.join(finding.scenarios)}):")
        lines += [f"  - {w}" for w in finding.workarounds]
    return lines + [""]


def render_clarity(matrix: Matrix) -> list[str]:
    """How each client variant reports certificate rejections: an OPAQUE error costs weeks."""
    rows = []
    for client in matrix.clients:
        cells = [c for c in matrix.cells if c.client == client and c.group in REJECTION_GROUPS and c.error.clarity]
        if not cells:
            continue
        by_server = Counter(c.error.clarity.value for c in cells if c.group == "client-rejected")
        by_client = Counter(c.error.clarity.value for c in cells if c.group == "server-rejected")
        late = sum(1 for c in cells if seen_late(c))
        rows.append([f"`{client}`", _grades(by_server), _grades(by_client), f"{late} of {len(cells)}",
                     _least_clear(cells)])
    lines = ["## Clarity of certificate rejections", "",
             "Counts of CLEAR / VAGUE / OPAQUE over the rejection scenarios, as the client's user sees them. "
             "'Seen late' counts rejections that reached the client only after its handshake (TLS 1.3).", ""]
    if not rows:
        return lines + ["No rejection cells with a client-side error were recorded.", ""]
    return lines + table(["client", "server rejected the client's certificate", "client rejected the server's "
                          "certificate", "seen late", "least clear message"], rows) + [""]


def _grades(tally: Counter[str]) -> str:
    return " / ".join(str(tally[g]) for g in ("CLEAR", "VAGUE", "OPAQUE")) if tally else "—"


def _least_clear(cells: list[Cell]) -> str:
    rank = {"OPAQUE": 0, "VAGUE": 1, "CLEAR": 2}
    messages = Counter((rank[c.error.clarity.value], c.error.type or "", shorten(c.error.message, 80)) for c in cells)
    (_, kind, message), _ = min(messages.items(), key=lambda m: (m[0][0], -m[1], m[0][1:]))
    return user_error(kind.rsplit(".", 1)[-1], message)


def user_error(kind: str | None, message: str | None) -> str:
    """`Type: message`, saying so when the message is empty: that emptiness is the finding."""
    return code(f"{kind or 'no exception type'}: {shorten(message)}") + ("" if message else " (empty message)")


def render(results: Results, notes: Sequence[Any] | None = None) -> str:
    """BUGS.md for one results file. `notes`: optional curated `Note`s (or objects with
    match/text/links) shown under the findings they match."""
    matrix = Matrix(results)
    findings = find(matrix, notes or ())
    lines = [
        *render_title(matrix, findings),
        *render_environment(matrix),
        *render_how_to_read(),
        *render_summary_table(matrix),
        *render_groups(matrix),
        *render_findings(matrix, findings),
        *render_libraries(matrix, findings),
        *render_workarounds(findings),
        *render_clarity(matrix),
    ]
    return "\n".join(lines).rstrip() + "\n"
