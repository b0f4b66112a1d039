"""BUGS.md: the compatibility report, rendered from results.json alone.

`render(results, notes=None) -> str`. The renderer never runs peers: every statement in the
report is derived from the cells, so the same results always give the same text (cells are
sorted here, because xdist writes them in completion order).

Findings group failing cells by signature (verdict, blamed peer, phase, canonical error). The
blamed peer comes from the matrix itself: a client variant that fails the same way with every
server is the culprit, and so is a server that fails the same way with every client; anything
narrower belongs to the pair.

Clarity findings come after them: a peer whose certificate rejections almost never reach the
client with the reason, where a comparable peer's mostly do (a server that drops the TLS alert,
a client that hides it); and a client that almost never shows why a server refused its token
(`token` group: neither the HTTP status nor the server's reason). Their cells all PASS, so no
verdict finding would show it.
"""

from __future__ import annotations

import os
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

from mtls_matrix import scenarios
from mtls_matrix.reports import flaky, hostile, leaks, perf, proxy_identity, reference
from mtls_matrix.results import NOT_OBSERVED, SEVERITY, Cell, Results, Verdict

SYMBOL = {
    Verdict.PASS: "✅", Verdict.INSECURE: "🔓", Verdict.FAIL: "❌",
    Verdict.HANG: "⏳", Verdict.UNSUPPORTED: "➖", Verdict.ERROR: "💥", Verdict.SKIPPED: "⏭️",
}
COUNT_ORDER = (Verdict.PASS, Verdict.INSECURE, Verdict.HANG, Verdict.FAIL, Verdict.ERROR, Verdict.UNSUPPORTED,
               Verdict.SKIPPED)
REJECTION_GROUPS = {"client-rejected": "server", "server-rejected": "client"}  # group -> side that must reject
UNDER_TEST = hostile.UNDER_TEST  # the harness plays the other side
LATE_PHASES = ("upgrade", "handler", "io")
NOT_RUN = "·"
INLINE_IDS = 6  # longer lists of cell ids fold into <details>


# --------------------------------------------------------------------------- notes

@dataclass(frozen=True)
class Note:
    """A curated explanation attached to the findings it matches.

    `match` is a callable taking a Finding (or a ClarityFinding, whose `verdict` is None), or a
    glob over the finding's signature text and its `note_ids`, in which only `*` and `?` are
    wildcards (cell ids contain `[variant]` brackets). Clarity findings match on their signature
    (`CLARITY peer group grade`) only: their cells span every partner of the peer.
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
    return bool(pattern.match(finding.signature_text)) or any(pattern.match(i) for i in finding.note_ids)


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


def cell_order(cell: Cell) -> tuple:
    return (cell.server, cell.client, scenario_rank(cell.scenario), cell.profile, cell.id)


class Matrix:
    """The cells, sorted, with the lookups the report needs."""

    def __init__(self, results: Results):
        self.run = results.run
        self.cells = sorted(results.cells, key=cell_order)
        self.servers = sorted({c.server for c in self.cells})
        self.clients = sorted({c.client for c in self.cells})
        self.by_key = {(c.server, c.client, c.scenario, c.profile): c for c in self.cells}
        self.by_situation: dict[tuple[str, str], list[Cell]] = defaultdict(list)
        for c in self.cells:
            if c.verdict not in NOT_OBSERVED:  # a pair that cannot express a scenario, or did not run, is no evidence
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
    def note_ids(self) -> list[str]:
        return [c.id for c in self.cells]

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
    under_test = UNDER_TEST.get(cell.group)
    if under_test:  # the other side is the harness's hostile peer: never to blame
        if len(situation) > 1 and all(raw_signature(c) == signature for c in situation):
            return f"every {under_test}", f"every {under_test}"
        return _client_or_library(cell, situation, signature) if under_test == "client" else ("server", cell.server)
    must_reject = REJECTION_GROUPS.get(cell.group)
    everyone = len(situation) > 1 and all(raw_signature(c) == signature for c in situation)
    if must_reject and cell.verdict == Verdict.INSECURE and not everyone:
        # it accepted what it had to refuse: that side is at fault, whatever the other side did (a
        # server that only meets clients sharing the flaw, a foreign one, would otherwise be blamed)
        return _client_or_library(cell, situation, signature) if must_reject == "client" else ("server", cell.server)
    with_client = [c for c in situation if c.client == cell.client]  # this client with every server
    with_server = [c for c in situation if c.server == cell.server]  # this server with every client
    client_always = all(raw_signature(c) == signature for c in with_client)
    server_always = all(raw_signature(c) == signature for c in with_server)
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
        if cell.verdict in (Verdict.PASS, *NOT_OBSERVED) or cell.flaky:  # FLAKY: its own section (flaky.py)
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


# --------------------------------------------------------------------------- clarity findings

GRADES = ("CLEAR", "VAGUE", "OPAQUE")
TLS_LABELS = ("TLS 1.3", "TLS 1.2", "TLS untagged")
FEW_CLEAR = 0.10  # a peer whose rejections are CLEAR less often than this ...
MOSTLY_CLEAR = 0.50  # ... where a comparable peer's are CLEAR at least this often, hides the reason
OTHER_ROLE = {"server": "client", "client": "server"}


def tls_label(cell: Cell) -> str:
    if "tls12" in cell.tags:
        return "TLS 1.2"
    return "TLS 1.3" if "tls13" in cell.tags else "TLS untagged"


def server_rejections(matrix: Matrix) -> list[Cell]:
    """client-rejected cells the server did reject, graded by how the client's user saw it."""
    return [c for c in matrix.cells if c.group == "client-rejected" and c.rejection and c.rejection.by == "server"
            and c.error.clarity]


def clear_share(cells: Sequence[Cell]) -> float:
    return sum(_is_clear(c) for c in cells) / len(cells) if cells else 0.0


def _is_clear(cell: Cell) -> bool:
    return cell.error.clarity is not None and cell.error.clarity.value == "CLEAR"


@dataclass
class ClarityFinding:
    """A peer of `role` whose server-side certificate rejections reach clients without the reason,
    where `rival` (a peer of the same role, against the same partners and scenarios) mostly gives it;
    or (group `token`) a client that hides why servers refused its token, rival or not."""

    role: str  # server: it drops the reason; client: it hides the reason the server sent
    peer: str
    cells: list[Cell]
    rival: str  # "" when no peer does better (token group)
    rival_cells: list[Cell]
    group: str = "client-rejected"
    number: int = 0
    notes: list[Any] = field(default_factory=list)
    verdict = None  # every cell passed: a clarity finding judges no verdict (callable notes may ask)

    @property
    def grade(self) -> str:
        """The commonest grade short of CLEAR, OPAQUE on a tie."""
        tally = Counter(c.error.clarity.value for c in self.cells if c.error.clarity and not _is_clear(c))
        return max(("OPAQUE", "VAGUE"), key=lambda g: tally[g])

    @property
    def signature_text(self) -> str:
        return f"CLARITY {self.peer} {self.group} {self.grade}"

    @property
    def note_ids(self) -> list[str]:
        return []

    @property
    def peers(self) -> set[str]:
        return {self.peer}

    @property
    def partners(self) -> list[str]:
        return sorted({getattr(c, OTHER_ROLE[self.role]) for c in self.cells})

    @property
    def tls_scope(self) -> list[str]:
        return [label for label in TLS_LABELS if any(tls_label(c) == label for c in self.cells)]

    @property
    def clear(self) -> int:
        return sum(_is_clear(c) for c in self.cells)

    @property
    def rival_clear(self) -> int:
        return sum(_is_clear(c) for c in self.rival_cells)


def find_clarity(matrix: Matrix, notes: Iterable[Any] = (), first_number: int = 1) -> list[ClarityFinding]:
    rejections = server_rejections(matrix)
    found = [*clarity_outliers(rejections, "server"), *clarity_outliers(rejections, "client"),
             *token_clarity(token_refusals(matrix))]
    notes = list(notes)
    for number, finding in enumerate(found, first_number):
        finding.number = number
        finding.notes = [n for n in notes if note_matches(n, finding)]
    return found


def token_refusals(matrix: Matrix) -> list[Cell]:
    """`token` cells a server refused before the upgrade, graded by how the client's user saw it."""
    return [c for c in matrix.cells if c.group == "token" and c.rejection and c.rejection.by == "server"
            and c.rejection.canonical == scenarios.TOKEN_REFUSED.reason and c.error.clarity]


def token_clarity(refusals: list[Cell]) -> list[ClarityFinding]:
    """Clients whose user almost never learns why a token was refused. Absolute, not against a rival:
    every server sends a 401 or a connect error with its reason, so hiding it is the client's doing
    even when a whole family's clients do it; the best other client is shown when there is one."""
    found = []
    for peer, own in _by_peer(refusals, "client").items():
        if clear_share(own) < FEW_CLEAR:
            rival, rival_cells = _best_rival(own, refusals, "client") or ("", [])
            if rival_cells and clear_share(rival_cells) < FEW_CLEAR:
                rival, rival_cells = "", []  # no better: nothing to compare with
            found.append(ClarityFinding("client", peer, sorted(own, key=cell_order), rival, rival_cells, "token"))
    return found


def clarity_outliers(rejections: list[Cell], role: str) -> list[ClarityFinding]:
    """Peers of `role` with almost no CLEAR rejection in a slice where a rival mostly has them; one
    finding per peer over the slices where that holds. A server is compared per TLS version, a
    client per TLS version and server (every client looks bad against a server that drops alerts)."""
    fired: dict[str, list[Cell]] = defaultdict(list)
    for pool in _clarity_slices(rejections, role):
        for peer, own in _by_peer(pool, role).items():
            rival = _best_rival(own, pool, role)
            if clear_share(own) < FEW_CLEAR and rival and clear_share(rival[1]) >= MOSTLY_CLEAR:
                fired[peer] += own
    found = []
    for peer, own in sorted(fired.items(), key=lambda item: (-len(item[1]), item[0])):
        rival, rival_cells = _best_rival(own, rejections, role) or ("", [])
        found.append(ClarityFinding(role, peer, sorted(own, key=cell_order), rival, rival_cells))
    return found


def _clarity_slices(cells: list[Cell], role: str) -> list[list[Cell]]:
    slices: dict[tuple[str, ...], list[Cell]] = defaultdict(list)
    for c in cells:
        slices[(tls_label(c),) + ((c.server,) if role == "client" else ())].append(c)
    return [slices[key] for key in sorted(slices)]


def _by_peer(cells: list[Cell], role: str) -> dict[str, list[Cell]]:
    grouped: dict[str, list[Cell]] = defaultdict(list)
    for c in cells:
        grouped[getattr(c, role)].append(c)
    return dict(sorted(grouped.items()))


def _best_rival(own: list[Cell], pool: list[Cell], role: str) -> tuple[str, list[Cell]] | None:
    """The other peer of `role` with the most CLEAR share over the same partners and scenarios."""
    partner = OTHER_ROLE[role]
    keys = {(getattr(c, partner), c.scenario, c.profile) for c in own}
    rivals = _by_peer([c for c in pool if getattr(c, role) != getattr(own[0], role)
                       and (getattr(c, partner), c.scenario, c.profile) in keys], role)
    return max(rivals.items(), key=lambda item: clear_share(item[1]), default=None)


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
    how = plain(reasons.pop()) if len(reasons) == 1 else f"{what_failed(finding)} at {finding.phase}"
    if finding.verdict == Verdict.INSECURE:
        return f"INSECURE: {who} accepts the connection {when}"
    if finding.verdict == Verdict.HANG and finding.group in UNDER_TEST:
        return f"HANG: {who} is still waiting at the deadline {when}"
    if finding.verdict == Verdict.HANG:
        return f"HANG: {who} gets no outcome before the deadline {when}"
    if finding.verdict == Verdict.ERROR:
        return f"ERROR: the harness failed at {finding.phase} ({listed})"
    if finding.group in REJECTION_GROUPS:
        return f"FAIL: {who}: {how} {when}"
    what = f" ({describe(names[0])})" if len(names) == 1 else ""
    return f"FAIL: {who} cannot pass {listed}{what}: {what_failed(finding)} at {finding.phase}"


def what_failed(finding: Finding) -> str:
    """The canonical error; without one, the gist of the cells' reasons (`-` only if none)."""
    if finding.canonical != "-":
        return finding.canonical
    return plain(reason_gist([c.reason for c in finding.cells])) or "-"


def reason_gist(reasons: Sequence[str]) -> str:
    """The reasons' common prefix in whole words, up to its first aside (`, ...` or ` (...`)."""
    ordered = sorted(" ".join(r.split()) for r in reasons)
    if not ordered:
        return ""
    prefix = os.path.commonprefix([ordered[0], ordered[-1]])
    if any(len(r) > len(prefix) and not r[len(prefix)].isspace() for r in (ordered[0], ordered[-1])):
        prefix = prefix.rsplit(" ", 1)[0] if " " in prefix else ""  # a word cut in half is no word
    return shorten(re.split(r",\s|\s\(", prefix, maxsplit=1)[0].strip(" ,:;"), 100)


def render_title(matrix: Matrix, findings: list[Finding], clarity: Sequence[ClarityFinding] = ()) -> list[str]:
    tally = counts(matrix.cells)
    pairs = {(c.server, c.client) for c in matrix.cells}
    worst = [f for f in findings if f.verdict != Verdict.ERROR][:3]
    lines = [
        "# BUGS.md: WebSocket libraries under mutual TLS",
        "",
        f"{plural(len(matrix.cells), 'cell')} ({plural(len(matrix.servers), 'server')} × "
        f"{plural(len(matrix.clients), 'client variant')}, {plural(len(pairs), 'pair')}, "
        f"{plural(len(matrix.scenario_names()), 'scenario')}): {spelled(tally)}; {plural(len(findings), 'finding')}"
        + (f" and {plural(len(clarity), 'clarity finding')}" if clarity else "") + ".",
    ]
    if worst:
        lines[-1] += " Worst: " + " ".join(f"**F{f.number}** {title_of(f)}." for f in worst)
    if not matrix.run.complete:
        lines[-1] += " **The run did not complete: cells are missing.**"
    lines[-1] += flaky.title_note(matrix.cells)
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
            ["SKIPPED", SYMBOL[Verdict.SKIPPED], "a foreign peer's toolchain is missing (`mtls-matrix setup-foreign` "
                                                 "installs it): the cell did not run; not a bug"],
        ]), "",
        "**Phases**, in order: `tcp` → `tls-handshake` → `verification` (certificate checks) → `upgrade` "
        "(HTTP 101) → `handler` (the server application ran and saw the client identity) → `io` (echo, ping, "
        "close). A cell's phase is where the outcome was decided as the client saw it. Under TLS 1.3 the "
        "client finishes its handshake before the server checks the client certificate, so a server-side "
        "rejection reaches the client only at `upgrade` or its first read.", "",
        "**Clarity** of the error the client's user sees: CLEAR names the certificate problem (for a refused "
        "token: the HTTP status or the server's reason); VAGUE says TLS failed without why; OPAQUE is a reset, "
        "EOF, empty message or generic connection error.", "",
        "**Blame** comes from the matrix: a client variant failing the same way with every server is blamed "
        "(the whole library when every variant does); a server failing the same way with every client is "
        "blamed; when every pair fails alike the finding says so; otherwise the pair is.", "",
    ]


def render_summary_table(matrix: Matrix, heatmap: str | None = None) -> list[str]:
    rows = []
    for client in matrix.clients:
        row = [f"`{client}`"]
        for server in matrix.servers:
            row.append(compact(counts(c for c in matrix.cells if c.client == client and c.server == server)))
        rows.append(row)
    rows.append(["**all clients**"] + [compact(counts(c for c in matrix.cells if c.server == s))
                                       for s in matrix.servers])
    legend = " · ".join(f"{SYMBOL[v]} {v.value}" for v in COUNT_ORDER)
    image = [f"![heatmap]({heatmap})", ""] if heatmap else []
    return ["## Servers × clients", "", *image, f"Legend: {legend}; {NOT_RUN} not run.", "",
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


def render_findings(findings: list[Finding], clarity: list[ClarityFinding]) -> list[str]:
    lines = ["## Findings", ""]
    if not findings:
        lines += [f"No {'verdict ' if clarity else ''}findings: every cell that ran passed or was unsupported.", ""]
    else:
        lines += ["Ordered by severity (INSECURE, HANG, FAIL, ERROR), then by the number of cells.", ""]
    for finding in findings:
        lines += render_finding(finding)
    if clarity:
        lines += ["Clarity findings follow: certificate rejections that PASS, but reach the client without the "
                  f"reason, where a comparable peer's CLEAR share is at least {MOSTLY_CLEAR:.0%} and this peer's "
                  f"is below {FEW_CLEAR:.0%}; and token refusals that PASS, but reach a client's user without "
                  f"the status or the server's reason in more than {1 - FEW_CLEAR:.0%} of its cells.", ""]
    for finding in clarity:
        lines += render_clarity_finding(finding)
    return lines


def render_finding(finding: Finding) -> list[str]:
    cells = finding.cells
    sample = cells[0]
    lines = [f"### F{finding.number}. {baseline_tag(finding)}{title_of(finding)}", ""]
    lines += known_issue(finding)
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
    return lines + render_notes(finding.notes)


def baseline_tag(finding: Finding) -> str:
    """`[KNOWN] `, `[NEW] ` or `[KNOWN+NEW] ` when the run was classified against a baseline."""
    marks = [m for m in ("KNOWN", "NEW") if any(c.baseline == m for c in finding.cells)]
    return f"[{'+'.join(marks)}] " if marks else ""


def known_issue(finding: Finding) -> list[str]:
    """The baseline's reason and upstream link, as recorded on the KNOWN cells."""
    known = sorted({(c.baseline_reason, c.upstream or "") for c in finding.cells if c.baseline == "KNOWN"})
    lines = []
    for reason, link in known:
        lines += [f"**Known issue (baseline):** {plain(reason or '')}" + (f" — {link}" if link else ""), ""]
    return lines


def render_notes(notes: Sequence[Any]) -> list[str]:
    lines = []
    for note in notes:
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
    # an opaque error may hide a clear cause (a browser's page sees close 1006; the browser knew why)
    hidden = Counter(shorten(c.error.chain[-1], 200) for c in cells
                     if c.error.clarity and c.error.clarity.value == "OPAQUE" and len(c.error.chain) > 1)
    for cause, n in sorted(hidden.items(), key=lambda e: (-e[1], e[0]))[:2]:
        lines.append(f"- Underneath, what the client library knew: {code(cause)} ({n} of {len(cells)} cells)")
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
    # a TLS-terminating proxy (peers/proxy.py): what it answered, and its verification result, from its log
    answered = Counter(f"HTTP {c.server_saw.proxy_status} (verify {c.server_saw.proxy_verify})" for c in cells
                       if c.server_saw.proxy_status is not None)
    if answered:
        text += "; the proxy answered " + ", ".join(f"{code(k)} ×{n}" for k, n in answered.most_common(3))
        text += f" (+{len(answered) - 3} more)" if len(answered) > 3 else ""
    return text


def clarity_title(finding: ClarityFinding) -> str:
    scope = f" under {finding.tls_scope[0]}" if len(finding.tls_scope) == 1 else ""
    counted = f"{finding.clear} CLEAR of {len(finding.cells)}"
    rival = f"{finding.rival_clear} of {len(finding.rival_cells)}"
    if finding.group == "token":
        how = "never shows" if not finding.clear else "rarely shows"
        compared = f"; {finding.rival} shows it in {rival}" if finding.rival else ""
        return (f"{finding.grade}: when {' or '.join(finding.partners)} refuses its token, {finding.peer} {how} the "
                f"status or the server's reason ({counted}{compared})")
    if finding.role == "server":
        who = "no client learns why" if not finding.clear else "clients rarely learn why"
        return (f"{finding.grade}: when {finding.peer} rejects a client certificate{scope}, {who} ({counted}; "
                f"the same clients get CLEAR from {finding.rival} in {rival})")
    servers = " or ".join(finding.partners)
    how = "never reports why" if not finding.clear else "rarely reports why"
    return (f"{finding.grade}: when {servers} rejects its certificate{scope}, {finding.peer} {how} ({counted}; "
            f"{finding.rival} gets CLEAR from the same servers in {rival})")


def render_clarity_finding(finding: ClarityFinding) -> list[str]:
    cells = finding.cells
    partners = "clients" if finding.role == "server" else "servers"
    # a rejection later than allowed (nginx's HTTP 400 after TLS) is FAIL: say so, not "PASS"
    verdicts = "every cell PASS" if all(c.verdict == Verdict.PASS for c in cells) else spelled(counts(cells))
    must = ("refuse the token before the upgrade (HTTP 401 or a Socket.IO connect error, with its reason)"
            if finding.group == "token" else "reject the client certificate")
    lines = [f"### F{finding.number}. {clarity_title(finding)}", "", "**Configuration**", "",
             f"- Scenarios: {', '.join(sorted({c.scenario for c in cells}, key=scenario_rank))}: the server must "
             f"{must}, and does ({verdicts})",
             f"- {partners.capitalize()}: {', '.join(f'`{p}`' for p in finding.partners)}",
             "", "**Observed**", ""]
    lines += [f"- The client's user saw {user_error(kind, message)} ({grade}; {n} of {len(cells)} cells)"
              for (kind, message, grade), n in _top_errors(cells)]
    lines.append("- Seen at: " + ", ".join(f"`{phase}` under {label} ({n} cells)"
                                          for (label, phase), n in _phases_seen(cells)))
    lines.append(_server_refused(cells) if finding.group == "token" else _server_knew(cells))
    example = _top_errors([c for c in finding.rival_cells if _is_clear(c)])
    if finding.rival:
        lines.append(f"- For comparison, `{finding.rival}` with the same {partners} and scenarios: "
                     f"{finding.rival_clear} CLEAR of {len(finding.rival_cells)}"
                     + (f", e.g. {user_error(*example[0][0][:2])}" if example else ""))
    else:
        lines.append(f"- No other client does better against the same {partners} and scenarios")
    lines += ["", f"**Affected cells ({len(cells)})**", "", *id_list([c.id for c in cells], f"{len(cells)} cells"), ""]
    return lines + render_notes(finding.notes)


def _top_errors(cells: list[Cell], limit: int = 3) -> list[tuple[tuple[str, str, str], int]]:
    tally = Counter((c.error.type or "", c.error.message or "",
                     c.error.clarity.value if c.error.clarity else "ungraded") for c in cells)
    return sorted(tally.items(), key=lambda e: (-e[1], e[0]))[:limit]


def _phases_seen(cells: list[Cell]) -> list[tuple[tuple[str, str], int]]:
    tally = Counter((tls_label(c), c.phase) for c in cells)
    return sorted(tally.items(), key=lambda e: (TLS_LABELS.index(e[0][0]), -e[1], e[0][1]))


def _server_refused(cells: list[Cell]) -> str:
    reasons = Counter(c.rejection.message for c in cells if c.rejection and c.rejection.message)
    said = "; ".join(f"{code(text)} ({n})" for text, n in sorted(reasons.items(), key=lambda e: (-e[1], e[0]))[:3])
    return f"- The server's reason, sent with its refusal: {said}" if said else "- The server recorded no reason"


def _server_knew(cells: list[Cell]) -> str:
    errors = Counter(f"{e.type or 'error'}: {shorten(e.message, 120)}"
                     for e in (c.server_saw.tls.error for c in cells) if e)
    if not errors:
        return "- The server recorded no TLS error of its own"
    known = "; ".join(f"{code(text)} ({n})" for text, n in sorted(errors.items(), key=lambda e: (-e[1], e[0]))[:3])
    return (f"- The server knew why: its own TLS error was {known}"
            f" (recorded in {sum(errors.values())} of {len(cells)} cells)")


def render_skipped(matrix: Matrix) -> list[str]:
    """SKIPPED cells are never left out silently: how many, why, and which peers could not run."""
    reasons: dict[str, list[Cell]] = defaultdict(list)
    for cell in matrix.cells:
        if cell.verdict == Verdict.SKIPPED:
            reasons[cell.reason].append(cell)
    if not reasons:
        return []
    lines = ["## Skipped", ""]
    for reason, cells in reasons.items():
        peers = sorted({p for c in cells for p in (c.server, c.client)
                        if all(o.verdict == Verdict.SKIPPED for o in matrix.cells if p in (o.server, o.client))})
        lines.append(f"- {len(cells)} {'cell' if len(cells) == 1 else 'cells'} SKIPPED: {reason}"
                     + (f" (peers that could not run: {', '.join(f'`{p}`' for p in peers)})" if peers else ""))
    return lines + [""]


def render_not_run() -> list[str]:
    """Stacks the issues name that could not be run here at all, and why (peers/foreign.py NOT_RUN)."""
    from mtls_matrix.peers.foreign import NOT_RUN

    lines = ["## Not run here", ""]
    lines += [f"- **{stack}**: {why}" for stack, why in NOT_RUN]
    return lines + [""]


def peer_libraries(matrix: Matrix) -> dict[str, str]:
    """peer -> its library. The peer's name says it for Python peers (`client:aiohttp[...]`); a
    foreign peer is named for its stack (`server:node-ws` runs the `ws` package): its library is
    the one version key all its cells share, when that is a single one."""
    found = {}
    for peer in matrix.servers + matrix.clients:
        keys = [set(c.versions) for c in matrix.cells if peer in (c.server, c.client) and c.versions]
        common = set.intersection(*keys) if keys else set()
        named = library_of(peer)
        found[peer] = named if named in common or len(common) != 1 else common.pop()
    return found


def render_libraries(matrix: Matrix, findings: list[Finding], clarity: Sequence[ClarityFinding] = ()) -> list[str]:
    library_of_peer = peer_libraries(matrix)
    libraries = sorted(set(matrix.run.versions) | set(library_of_peer.values()))
    rows = []
    for library in libraries:
        version = matrix.run.versions.get(library, "")
        for peer in [p for p in matrix.servers + matrix.clients if library_of_peer[p] == library]:
            role = "server" if peer in matrix.servers else "client"
            cells = [c for c in matrix.cells if getattr(c, role) == peer]
            blaming = [f for f in findings if _blames(f, peer)] + [f for f in clarity if f.peer == peer]
            involving = [f for f in findings if peer in f.peers]
            rows.append([f"{library} {version}".strip(), f"`{peer}`", compact(counts(cells)),
                         ", ".join(f"F{f.number}" for f in blaming) or "—",
                         conclusion(peer, role, cells, involving) + clarity_conclusion(peer, clarity)])
        if not any(library_of_peer[p] == library for p in matrix.servers + matrix.clients):
            rows.append([f"{library} {version}".strip(), "—", NOT_RUN, "—", "no peer of this library ran"])
    return ["## Per-library conclusions", "",
            "Only findings that blame the peer (alone, or with every peer of its role) count against it; "
            "pair findings are listed under both peers; clarity findings under the peer that loses the reason.", "",
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
    skipped = [c for c in cells if c.verdict == Verdict.SKIPPED]
    if skipped and len(skipped) == len(cells):
        return f"not run: {skipped[0].reason}"
    for group in sorted({c.group for c in cells if c.verdict != Verdict.SKIPPED}, key=_group_rank):
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


def clarity_conclusion(peer: str, clarity: Sequence[ClarityFinding]) -> str:
    """` Clarity: ...` for the clarity findings naming the peer; empty when there are none."""
    issues = []
    for f in (f for f in clarity if f.peer == peer):
        scope = f" under {f.tls_scope[0]}" if len(f.tls_scope) == 1 else ""
        if f.group == "token":
            what = "it does not show why a server refused its token"
        elif f.role == "server":
            what = "its rejections of client certificates reach no client with the reason"
        else:
            what = "it does not report why a server rejected its certificate"
        rival = f", {f.rival} {f.rival_clear} of {len(f.rival_cells)}" if f.rival else ""
        issues.append(f"{what}{scope} (F{f.number}, {f.grade}: {f.clear} CLEAR of {len(f.cells)}{rival})")
    return f". Clarity: {'; '.join(issues)}" if issues else ""


def _group_rank(group: str) -> tuple[int, str]:
    return (scenarios.GROUPS.index(group) if group in scenarios.GROUPS else len(scenarios.GROUPS), group)


def _issue(finding: Finding) -> str:
    text = f"{', '.join(finding.scenarios)} ({finding.verdict.value}"
    text += ", accepted" if finding.verdict == Verdict.INSECURE else f", {what_failed(finding)} at {finding.phase}"
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


def render_clarity(matrix: Matrix, clarity: Sequence[ClarityFinding] = ()) -> list[str]:
    """How certificate rejections reach the client's user, by server then by client: an OPAQUE
    error costs weeks."""
    return ["## Clarity of certificate rejections", "", *render_clarity_by_server(matrix, clarity),
            *render_clarity_by_client(matrix)]


def render_clarity_by_server(matrix: Matrix, clarity: Sequence[ClarityFinding]) -> list[str]:
    cells = server_rejections(matrix)
    labels = [label for label in TLS_LABELS if any(tls_label(c) == label for c in cells)]
    lines = ["### Clarity by server", "",
             "CLEAR / VAGUE / OPAQUE over the `client-rejected` cells the server rejected, as the client's user "
             "saw them: a server that drops the TLS alert leaves every client guessing.", ""]
    if not cells:
        return lines + ["No server rejected a client certificate in this run.", ""]
    rows = [[f"`{server}`"] + [_grades(Counter(c.error.clarity.value for c in cells
                                               if c.server == server and tls_label(c) == label)) for label in labels]
            for server in matrix.servers if any(c.server == server for c in cells)]
    lines += table(["server", *labels], rows) + [""]
    if clarity:
        lines += ["Clarity findings: " + ", ".join(f"F{f.number} (`{f.peer}`)" for f in clarity) + ".", ""]
    return lines


def render_clarity_by_client(matrix: Matrix) -> list[str]:
    rows = []
    refusals = token_refusals(matrix)  # a column of its own only when the run has any
    for client in matrix.clients:
        cells = [c for c in matrix.cells if c.client == client and c.group in REJECTION_GROUPS and c.error.clarity]
        refused = [c for c in refusals if c.client == client]
        if not cells and not refused:
            continue
        by_server = Counter(c.error.clarity.value for c in cells if c.group == "client-rejected")
        by_client = Counter(c.error.clarity.value for c in cells if c.group == "server-rejected")
        late = sum(1 for c in cells if seen_late(c))
        tokens = [_grades(Counter(c.error.clarity.value for c in refused))] if refusals else []
        rows.append([f"`{client}`", _grades(by_server), _grades(by_client), *tokens, f"{late} of {len(cells)}",
                     _least_clear(cells + refused)])
    lines = ["### Clarity by client", "",
             "Counts of CLEAR / VAGUE / OPAQUE over the rejection scenarios, as the client's user sees them. "
             "'Seen late' counts rejections that reached the client only after its handshake (TLS 1.3).", ""]
    if not rows:
        return lines + ["No rejection cells with a client-side error were recorded.", ""]
    return lines + table(["client", "server rejected the client's certificate", "client rejected the server's "
                          "certificate", *(["server refused its token"] if refusals else []), "seen late",
                          "least clear message"], rows) + [""]


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


def render_versions(results: Results) -> list[str]:
    """Verdicts by library version: only for `mtls-matrix versions` results (several environments)."""
    from mtls_matrix.versions import bugs_section

    section = bugs_section(results)
    return [*section.splitlines(), ""] if section else []


def render(results: Results, notes: Sequence[Any] | None = None, heatmap: str | None = None) -> str:
    """BUGS.md for one results file. `notes`: optional curated `Note`s (or objects with
    match/text/links) shown under the findings they match. `heatmap`: the path of the heatmap
    SVG relative to BUGS.md, embedded above the summary table when given."""
    matrix = Matrix(results)
    findings = find(matrix, notes or ())
    clarity = find_clarity(matrix, notes or (), len(findings) + 1)
    lines = [
        *render_title(matrix, findings, clarity),
        *render_environment(matrix),
        *render_versions(results),
        *render_how_to_read(),
        *render_summary_table(matrix, heatmap),
        *render_skipped(matrix),
        *render_not_run(),
        *render_groups(matrix),
        *flaky.render(matrix.cells),
        *render_findings(findings, clarity),
        *render_libraries(matrix, findings, clarity),
        *render_workarounds(findings),
        *render_clarity(matrix, clarity),
        *hostile.render(matrix.cells, results.run.deadline_s),
        *proxy_identity.render(matrix.cells),
        *leaks.render(matrix.cells),
        *reference.render(matrix.cells),
        *perf.render_markdown(results),
    ]
    return "\n".join(lines).rstrip() + "\n"
