"""The report's other sections, as data: what the controls showed, resource hygiene, performance,
the hostile peers' timeouts, the proxy-validated identity pattern, the reference findings, the
cells whose runs disagreed, and what did not run.

Like findings.py it reads results.json alone (and the curated reference findings): each function
takes the `findings.Matrix` and returns plain data the renderers lay out.
"""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Optional

from mtls_matrix.findings import REJECTION_GROUPS, Matrix, short
from mtls_matrix.knowledge import Knowledge, ReferenceFinding
from mtls_matrix.results import EARLIER_CELL, NOT_OBSERVED, Cell, Floor, Severity, Verdict


# --------------------------------------------------------------------------- controls

@dataclass
class Control:
    """A variant that disables verification on purpose, and whether it accepted what it was shown."""

    peer: str
    why: str
    accepted: int  # cells it accepted (INSECURE): the scenario's certificate is bad, as the control proves
    cells: int  # observed cells in the groups where it must accept everything
    other: Counter  # its other verdicts there


def controls(matrix: Matrix) -> list[Control]:
    found = []
    for name, info in sorted(matrix.peers.items()):
        if not info.control:
            continue
        cells = [c for c in matrix.cells if c.client == name and c.verdict not in NOT_OBSERVED
                 and c.group in REJECTION_GROUPS]
        accepted = sum(c.verdict == Verdict.INSECURE for c in cells)
        found.append(Control(name, info.control, accepted, len(cells),
                             Counter(c.verdict.value for c in cells if c.verdict != Verdict.INSECURE)))
    # files from before peers recorded their controls: the cells' own severity says it
    marked = sorted({c.client for c in matrix.cells if c.severity == Severity.CONTROL} - {c.peer for c in found})
    for name in marked:
        cells = [c for c in matrix.cells if c.client == name and c.severity == Severity.CONTROL]
        found.append(Control(name, "a control variant", len(cells), len(cells), Counter()))
    return found


# --------------------------------------------------------------------------- resource hygiene

@dataclass
class LeakRow:
    role: str
    peer: str
    leaked: int  # rejection cells that left something of this side behind
    cells: int
    sockets: int
    tasks: int
    warned: int
    example: str  # the id of a cell that leaked
    left: str  # what that cell left, in words


def warnings_of(cell: Cell) -> list[str]:
    """The cell's ResourceWarnings, less those about a socket of another listener (an earlier
    cell's object, collected during this one)."""
    return [m for m in cell.leaks.resource_warnings if not m.startswith(EARLIER_CELL)] if cell.leaks else []


def _left(cell: Cell, role: str) -> list[str]:
    leaks = cell.leaks
    if leaks is None:
        return []
    sockets, tasks = getattr(leaks, f"{role}_sockets"), getattr(leaks, f"{role}_tasks")
    found = [f"{sockets} open socket{'s' if sockets != 1 else ''}"] if sockets else []
    found += [f"{tasks} pending task{'s' if tasks != 1 else ''}"] if tasks else []
    return found + ([f"ResourceWarning: {warnings_of(cell)[0]}"] if warnings_of(cell) else [])


def hygiene(matrix: Matrix) -> tuple[list[Cell], list[LeakRow], list[str]]:
    """(the rejection cells, a row per peer that left something behind, the peers that never did)."""
    rejections = [c for c in matrix.cells if c.group in REJECTION_GROUPS and c.verdict not in NOT_OBSERVED]
    rows, clean = [], []
    for role in ("server", "client"):
        by_peer: dict[str, list[Cell]] = defaultdict(list)
        for c in rejections:
            by_peer[getattr(c, role)].append(c)
        for peer, cells in sorted(by_peer.items()):
            leaky = [c for c in cells if _left(c, role)]
            if not leaky:
                clean.append(peer)
                continue
            own = next((c for c in leaky if getattr(c.leaks, f"{role}_sockets") or getattr(c.leaks, f"{role}_tasks")),
                       leaky[0])
            rows.append(LeakRow(role, peer, len(leaky), len(cells),
                                sum(bool(getattr(c.leaks, f"{role}_sockets")) for c in leaky),
                                sum(bool(getattr(c.leaks, f"{role}_tasks")) for c in leaky),
                                sum(bool(warnings_of(c)) for c in leaky), own.id, "; ".join(_left(own, role))))
    return rejections, rows, sorted(set(clean) - {r.peer for r in rows})


# --------------------------------------------------------------------------- performance

ECHO_SCENARIO = "io-1mib"
ECHO_MOVED = 2 * (1 << 20)  # 1 MiB there and back
UNLIKE_FLOOR = {"rsa", "ed25519", "chain"}  # other certificates than the floor's ECDSA leaves
PERF_EXPLAINED = (
    "TLS handshake latency from the server's accept to the client's completed mutual handshake, over the PASS "
    "cells of each pair with a TLS 1.3 handshake on the default ECDSA certificates (the floor's kind); 1 MiB echo "
    "throughput from the io-1mib cell's binary step (2 MiB moved; the tuned profile when the default fails). The "
    "floor is bare asyncio + ssl on the same machine, measured at the start of the run. Cells run in parallel: "
    "read the ratios between pairs, not the figures as benchmarks.")


@dataclass
class PairPerf:
    server: str
    client: str
    handshakes_ms: list[float] = field(default_factory=list)
    echo_mib_s: Optional[float] = None
    echo_profile: Optional[str] = None

    @property
    def p50(self) -> Optional[float]:
        return percentile(self.handshakes_ms, 50) if self.handshakes_ms else None

    @property
    def p95(self) -> Optional[float]:
        return percentile(self.handshakes_ms, 95) if self.handshakes_ms else None


@dataclass
class Performance:
    pairs: list[PairPerf]
    floor: Optional[Floor]

    def ratio(self, pair: PairPerf) -> Optional[float]:
        return pair.p50 / self.floor.handshake_p50_ms if pair.p50 is not None and self.floor else None


def percentile(values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks, as the floor's own figures are computed."""
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1] if q < 100 else max(values)


def handshake_ms(cell: Cell) -> Optional[float]:
    """This cell's handshake latency if it is a completed mutual handshake like the floor's."""
    t = cell.timings
    like_floor = cell.client_tls.version == "TLSv1.3" and not UNLIKE_FLOOR & set(cell.tags)
    completed = cell.client_tls.handshake == "ok" and cell.server_saw.tls.handshake == "ok"
    if cell.verdict != Verdict.PASS or not (like_floor and completed) or "tcp" not in t or "tls-handshake" not in t:
        return None
    return max(t["tls-handshake"] - t["tcp"], 0.0)


def echo_ms(cell: Cell) -> Optional[float]:
    step = next((s for s in cell.steps if s.op == "binary"), None)
    if cell.verdict != Verdict.PASS or step is None or not step.ok or not step.ms:
        return None
    return step.ms


def performance(matrix: Matrix) -> Performance:
    pairs: dict[tuple[str, str], PairPerf] = {}
    echoes: dict[tuple[str, str], dict[str, float]] = defaultdict(dict)
    for cell in matrix.cells:
        if matrix.harness_side(cell):
            continue
        key = (cell.server, f"{cell.client}@{cell.environment}" if cell.environment else cell.client)
        pair = pairs.setdefault(key, PairPerf(*key))
        if (ms := handshake_ms(cell)) is not None:
            pair.handshakes_ms.append(ms)
        if cell.scenario == ECHO_SCENARIO and (ms := echo_ms(cell)) is not None:
            echoes[key][cell.profile] = ms
    for key, by_profile in echoes.items():
        profile = "default" if "default" in by_profile else min(by_profile)
        pairs[key].echo_mib_s = ECHO_MOVED / (1 << 20) / (by_profile[profile] / 1000)
        pairs[key].echo_profile = profile
    return Performance(sorted(pairs.values(), key=lambda p: (p.server, p.client)), matrix.run.floor)


# --------------------------------------------------------------------------- hostile peers

@dataclass
class HostileTable:
    role: str  # the role under test
    behaviours: list[str]
    rows: list[tuple[str, list[Optional[Cell]]]]  # peer, its cell per behaviour
    timeouts: dict[str, dict[str, Optional[float]]]  # library -> its default timeouts


def hostile(matrix: Matrix) -> list[HostileTable]:
    tables = []
    for role in ("client", "server"):
        cells = [c for c in matrix.cells if c.hostile and c.hostile.under_test == role]
        if not cells:
            continue
        behaviours = list(dict.fromkeys(c.hostile.behaviour for c in sorted(
            cells, key=lambda c: matrix.scenario_rank(c.scenario))))
        by_key = {(getattr(c, role), c.hostile.behaviour): c for c in cells}
        peers = sorted({getattr(c, role) for c in cells})
        timeouts = {}
        for c in cells:
            if c.hostile.own_timeouts:
                timeouts.setdefault(matrix.peer(getattr(c, role)).library, c.hostile.own_timeouts)
        tables.append(HostileTable(role, behaviours, [(p, [by_key.get((p, b)) for b in behaviours]) for p in peers],
                                   dict(sorted(timeouts.items()))))
    return tables


def hostile_entry(cell: Optional[Cell], deadline: float) -> str:
    """One table entry: the outcome in a few characters."""
    if cell is None:
        return "·"
    outcome = cell.hostile
    if outcome is None:
        return cell.verdict.value
    if not outcome.ended:  # the cell's own deadline: the library's timeout plus a margin, or the harness's
        text = f"waits > {cell.deadline.seconds if cell.deadline else deadline:g} s"
        if cell.deadline and cell.deadline.source == "library":
            text += f" (outlived its {cell.deadline.timeout})"
    else:
        seconds = outcome.after_fault_s if outcome.after_fault_s is not None else (outcome.after_s or 0.0)
        took = f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.1f} s"
        text = f"{'✓' if cell.verdict == Verdict.PASS else '✗'} {outcome.how} {took}"
    return text + (", socket left open" if outcome.left_open else "")


# --------------------------------------------------------------------------- proxy-validated identity

@dataclass
class IdentityRow:
    server: str
    scenario: str
    expected: str
    outcome: str


def _who(cell: Cell) -> str:
    if cell.rejection is None:
        return "accepted" if cell.server_saw.handler_ran else cell.verdict.value
    who = "app" if cell.rejection.phase == "handler" else short(cell.server).split("+", 1)[0]
    return f"{who}: {cell.rejection.canonical}"


def proxy_identity(matrix: Matrix) -> tuple[list[IdentityRow], list[Cell], list[Cell]]:
    """(a row per server and scenario, the cells where the proxy could not verify and passed the
    request on anyway, the forged-header cells that were honoured)."""
    ours = [c for c in matrix.cells if c.group == "proxy-identity" and c.verdict not in NOT_OBSERVED]
    rows = []
    for server in sorted({c.server for c in ours}):
        for name in sorted({c.scenario for c in ours if c.server == server}, key=matrix.scenario_rank):
            group = [c for c in ours if c.server == server and c.scenario == name]
            verdicts = Counter(c.verdict.value for c in group)
            whos = Counter(_who(c) for c in group)
            outcome = (", ".join(f"{n} {v}" for v, n in sorted(verdicts.items())) + "; "
                       + ", ".join(w + (f" ×{n}" if n > 1 else "") for w, n in sorted(whos.items())))
            rows.append(IdentityRow(server, name, group[0].expectation, outcome))
    unverified = [c for c in ours if (c.server_saw.proxy_verify or "").startswith("FAILED")
                  and (c.server_saw.handler_ran or (c.rejection is not None and c.rejection.phase == "handler"))]
    honoured = [c for c in ours if "forged-header" in c.tags
                and (c.verdict == Verdict.INSECURE or c.server_saw.handler_ran)]
    return rows, unverified, honoured


# --------------------------------------------------------------------------- reference findings

@dataclass
class ReferenceStatus:
    finding: ReferenceFinding
    status: str  # reproduced | partly reproduced | not reproduced | not run | not testable here
    tested: list[Cell]
    shown: list[Cell]
    contrast: list[Cell]
    contrast_holds: int


def reference(matrix: Matrix, knowledge: Knowledge) -> list[ReferenceStatus]:
    """Each reference finding against the cells that test it; nothing when no cell of the run
    involves the peers the reference is about."""
    found = knowledge.reference.finding
    if not any(f.evidence and f.evidence.selects(c) for f in found for c in matrix.cells):
        return []
    statuses = []
    for finding in found:
        tested = finding.evidence.tested(matrix.cells) if finding.evidence else []
        shown = [c for c in tested if finding.evidence.seen_in(c)]
        if finding.evidence is None:
            status = "not testable here"
        elif not tested:
            status = "not run"
        elif len(shown) == len(tested):
            status = "reproduced"
        else:
            status = "partly reproduced" if shown else "not reproduced"
        contrast = finding.contrast.tested(matrix.cells) if finding.contrast else []
        holds = sum(finding.contrast.seen_in(c) for c in contrast) if finding.contrast else 0
        statuses.append(ReferenceStatus(finding, status, tested, shown, contrast, holds))
    return statuses


# --------------------------------------------------------------------------- repeatability, skipped

def flaky(matrix: Matrix) -> tuple[list[Cell], list[Cell]]:
    """(cells that ran more than once, those whose verdict varied)."""
    return [c for c in matrix.cells if c.runs], [c for c in matrix.cells if c.flaky]




def skipped(matrix: Matrix) -> list[tuple[str, int, list[str]]]:
    """(why, how many cells, the peers that could not run at all) per reason a cell was SKIPPED."""
    reasons: dict[str, list[Cell]] = defaultdict(list)
    for cell in matrix.cells:
        if cell.verdict == Verdict.SKIPPED:
            reasons[cell.reason].append(cell)
    found = []
    for reason, cells in reasons.items():
        peers = sorted({p for c in cells for p in (c.server, c.client)
                        if all(o.verdict == Verdict.SKIPPED for o in matrix.cells if p in (o.server, o.client))})
        found.append((reason, len(cells), peers))
    return found
