"""Findings: results.json -> one finding per root cause, blamed at the narrowest layer that explains it.

`analyse(results, knowledge) -> Analysis`. Input is results.json alone (the run records its scenarios
and peers) plus the curated knowledge (matrix/mechanisms.toml); nothing here runs a peer or reads
today's catalogue, and nothing renders: reports/ does.

- **Severity** of a cell: the run's (`Cell.severity`); for an older file, derived from its verdict and
  group (`severity_of`). Control variants (a client that disables verification on purpose) are
  never findings.
- **Grouping.** A cell the baseline explained carries its mechanism id: every cell of one mechanism
  is one finding, `F-<mechanism>`, whatever pairs, variants and scenarios it spans. The other
  failing cells are grouped by what failed and how (verdict, canonical error), then by the layer
  that explains them, then merged when they fail the same scenarios: one finding per mechanism
  the matrix shows, `F-<layer>-<scenario family>-<verdict>-<canonical>`.
- **Blame** is comparative. A unit (a client variant, a library with all its variants, a TLS stack
  several libraries share, a server framework, a proxy, every peer of a role) may explain a set of
  cells when none of its cells passes in any situation (scenario x profile) where it has some,
  and it failed with at least two partners somewhere; the fewest, largest units that explain every
  cell win (the narrower on a tie). A cell no unit explains is the pair's, and a pair with nothing
  to compare against (a peer run against a single partner) is left undetermined rather than blamed
  on either peer. The side that must refuse a bad certificate owns an acceptance (INSECURE);
  against the harness's hostile peer the peer under test owns the outcome.
- **Clarity** findings: cells that pass, but whose user is not told why (a server that drops the
  reason where others send it; a client that hides it where clients of its stack show it).
- **Advisories** (a PASS that cost the user something) group by their kind.
"""

from __future__ import annotations

import functools
import os
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Callable, Iterable, Optional, Sequence

from mtls_matrix.knowledge import Knowledge, Mechanism
from mtls_matrix.results import (
    NOT_OBSERVED, SEVERITY_RANK, Cell, PeerInfo, Results, ScenarioInfo, Severity, Verdict, canonical,
)

FAILING = (Verdict.INSECURE, Verdict.FAIL, Verdict.HANG, Verdict.ERROR)
REJECTION_GROUPS = {"client-rejected": "server", "server-rejected": "client"}  # group -> the side that must refuse
TLS_PHASES = ("tls-handshake", "verification")
OTHER = {"server": "client", "client": "server"}
LEVELS = ("variant", "library", "framework", "proxy", "stack", "every")  # narrow to broad
FINDING_SEVERITIES = (Severity.CRITICAL, Severity.BROKEN, Severity.ADVISORY)
FEW_CLEAR = 0.10  # a peer whose rejections are CLEAR less often than this ...
MOSTLY_CLEAR = 0.50  # ... where a comparable peer's are CLEAR at least this often, hides the reason
TLS_LABELS = ("TLS 1.3", "TLS 1.2", "TLS untagged")


def library_of(peer: str) -> str:
    """`client:aiohttp[ssl=context]` -> `aiohttp`."""
    return peer.split(":", 1)[-1].split("[", 1)[0]


def short(peer: str) -> str:
    """`client:aiohttp[ssl=context]` -> `aiohttp[ssl=context]`: the role is the axis."""
    return peer.split(":", 1)[-1]


def base_scenario(name: str) -> str:
    return name[: -len("-tls12")] if name.endswith("-tls12") else name


def slug(*parts: str) -> str:
    text = "-".join(p for p in parts if p)
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def tls_label(cell: Cell) -> str:
    if "tls12" in cell.tags:
        return "TLS 1.2"
    return "TLS 1.3" if "tls13" in cell.tags else "TLS untagged"


def is_clear(cell: Cell) -> bool:
    return cell.error.clarity is not None and cell.error.clarity.value == "CLEAR"


def clear_share(cells: Sequence[Cell]) -> float:
    return sum(is_clear(c) for c in cells) / len(cells) if cells else 0.0


# --------------------------------------------------------------------------- the matrix

class Matrix:
    """The cells in a stable order, the run's scenarios and peers, and the lookups analysis needs.
    A file written before the run recorded its scenarios and peers gets them from its cells."""

    def __init__(self, results: Results):
        self.results = results
        self.run = results.run
        self.scenarios = _scenarios(results)
        self.scenario_order = {name: i for i, name in enumerate(self.scenarios)}
        self.groups = list(dict.fromkeys(s.group for s in self.scenarios.values()))
        self.peers = _peers(results)
        self.cells = sorted(results.cells, key=self.order)
        self.by_key = {(c.server, c.client, c.scenario, c.profile): c for c in self.cells}
        self.situations: dict[tuple[str, str], list[Cell]] = defaultdict(list)
        for c in self.cells:
            if c.verdict not in NOT_OBSERVED and not self.is_control(c):
                self.situations[(c.scenario, c.profile)].append(c)
        self.servers = sorted({c.server for c in self.cells})
        self.clients = sorted({c.client for c in self.cells})
        self._severity = {c.id: severity_of(c, self) for c in self.cells}

    def order(self, cell: Cell) -> tuple:
        return (cell.server, cell.client, self.scenario_order.get(cell.scenario, len(self.scenario_order)),
                cell.scenario, cell.profile, cell.id)

    def scenario_rank(self, name: str) -> tuple[int, str]:
        return (self.scenario_order.get(name, len(self.scenario_order)), name)

    def get(self, server: str, client: str, scenario: str, profile: str) -> Optional[Cell]:
        return self.by_key.get((server, client, scenario, profile))

    def severity(self, cell: Cell) -> Optional[Severity]:
        return self._severity[cell.id]

    def peer(self, name: str) -> PeerInfo:
        return self.peers[name]

    def is_control(self, cell: Cell) -> bool:
        return bool(self.peers[cell.client].control) or cell.severity == Severity.CONTROL

    def harness_side(self, cell: Cell) -> Optional[str]:
        """The role the harness's own (hostile) peer plays in this cell, if any."""
        for role in ("server", "client"):
            if self.peers[getattr(cell, role)].harness:
                return role
        return None

    def describe(self, scenario: str) -> str:
        info = self.scenarios.get(scenario)
        return info.description if info and info.description != scenario else ""


def _scenarios(results: Results) -> dict[str, ScenarioInfo]:
    found = {s.name: s for s in results.run.scenarios}
    for c in results.cells:
        found.setdefault(c.scenario, ScenarioInfo(name=c.scenario, group=c.group, description=c.scenario,
                                                  expectation=c.expectation, tags=c.tags))
    return found


def _peers(results: Results) -> dict[str, PeerInfo]:
    """The run's peers; for a file that does not record them, what its cells tell: the library from the
    name, no stack, and the harness's hostile peer from the hostile cells' `under_test`."""
    found = {p.name: p for p in results.run.peers}
    judged: dict[str, set[bool]] = defaultdict(set)
    for c in results.cells:
        if c.hostile:
            judged[c.server].add(c.hostile.under_test == "server")
            judged[c.client].add(c.hostile.under_test == "client")
    for c in results.cells:
        for role in ("server", "client"):
            name = getattr(c, role)
            if name not in found:
                library = library_of(name)
                found[name] = PeerInfo(name=name, role=role, family=c.family, library=library,
                                       version=results.run.versions.get(library, ""), stack="",
                                       harness=judged.get(name) == {False})
    return found


def severity_of(cell: Cell, matrix: Matrix) -> Optional[Severity]:
    """How much the cell's outcome matters: the run's judgement, else the scenario's rule as the run
    recorded it, else derived from verdict and group (files from before severity was recorded)."""
    if cell.severity is not None:
        return cell.severity
    if cell.verdict in NOT_OBSERVED:
        return None
    if cell.verdict == Verdict.PASS:
        return Severity.ADVISORY if cell.advisories else None
    declared = matrix.scenarios.get(cell.scenario)
    rule = declared.severity if declared else {}
    if matrix.peers[cell.client].control and (cell.verdict == Verdict.INSECURE or "*@control" in rule):
        return Severity.CONTROL
    verdict = cell.verdict.value
    own_timeout = cell.deadline is not None and cell.deadline.source == "library"
    for key in (f"{verdict}@{cell.profile}", f"{verdict}@own-timeout" if own_timeout else "", verdict):
        if key in rule:  # the scenario's rule as the run recorded it (severity.table)
            return rule[key]
    if cell.verdict == Verdict.INSECURE:
        return Severity.CRITICAL
    if cell.verdict == Verdict.ERROR:
        return Severity.BROKEN
    if cell.group in REJECTION_GROUPS or matrix.harness_side(cell):
        return Severity.ADVISORY  # refused, or a hostile peer's fault: trust holds, the user pays
    if "large" in cell.tags and cell.profile == "default":
        return Severity.ADVISORY  # a documented default limit; the tuned profile is the check
    return Severity.BROKEN


# --------------------------------------------------------------------------- blame

@dataclass(frozen=True)
class Unit:
    """What a finding blames: a peer, or a layer several peers share, on one side; or a pair."""

    side: str  # client | server | pair | harness
    level: str  # variant | library | framework | proxy | stack | every | pair | harness
    name: str
    peers: frozenset[str] = frozenset()
    compared: bool = True  # a pair: other cells of its situation behave differently

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.side, self.level, self.name)

    @property
    def text(self) -> str:
        if self.side == "harness":
            return "the harness"
        if self.side == "pair":
            return f"the pair {self.name}" + ("" if self.compared else " (nothing ran to compare it with)")
        if self.level == "every":
            return self.name
        what = {"variant": f"{self.side} ", "library": f"{self.side} library ", "framework": "server library ",
                "proxy": "proxy ", "stack": f"{self.side} TLS stack "}[self.level]
        return f"{what}{short(self.name)}"


@dataclass(frozen=True)
class Layer:
    """The blame of a finding: its units, and the component they all share when there is one."""

    units: tuple[Unit, ...]
    common: str = ""  # "server library tornado": what every unit's peers share
    libraries: dict = field(default_factory=dict, hash=False, compare=False)  # unit key -> libraries it reaches

    @property
    def text(self) -> str:
        """The whole blame, for a finding's section: stacks with the libraries they reach."""
        if self.common:
            return f"{self.common} ({self._describe(limit=3)})"
        return self._describe(detail=True)

    @property
    def short(self) -> str:
        """The blame in a few words, for the table of findings."""
        return self.common or self._describe(limit=2)

    def _describe(self, detail: bool = False, limit: int = 0) -> str:
        sided = [u for u in self.units if u.side != "pair"]
        pairs = [u for u in self.units if u.side == "pair"]

        def named(unit: Unit) -> str:
            reaches = detail and unit.level in ("stack", "every", "framework")
            return unit.text + (f" ({', '.join(self.reaches(unit))})" if reaches else "")

        if len(sided) > 1 and {(u.side, u.level) for u in sided} == {(sided[0].side, "stack")}:
            parts = [f"{sided[0].side} TLS stacks " + ", ".join(named(u).split(" TLS stack ", 1)[1] for u in sided)]
        else:
            parts = [named(u) for u in sided]
        if pairs:
            parts.append(pairs[0].text if len(pairs) == 1 else _pairs_text(pairs))
        if limit and len(parts) > limit:
            parts = parts[:limit] + [f"{len(parts) - limit} more"]
        return "; ".join(parts) or "nobody"

    def reaches(self, unit: Unit) -> list[str]:
        return sorted(self.libraries.get(unit.key, ()))

    @property
    def peers(self) -> set[str]:
        return {p for u in self.units for p in u.peers}

    @property
    def undetermined(self) -> bool:
        return any(u.side == "pair" and not u.compared for u in self.units)

    def blames(self, peer: str) -> bool:
        """Does this layer count against the peer (alone, or as one of the peers of a layer it is in)?"""
        return any(peer in u.peers for u in self.units if u.side in ("client", "server"))


def layer_of(units: Iterable[Unit], matrix: Matrix) -> Layer:
    """The units in a stable order (broad first), with the component all their peers share on the
    blamed side: tornado's open() on server:tornado[identity=open] and under python-socketio is one
    server library's behaviour."""
    units = sorted(units, key=lambda u: (u.side == "pair", u.side, -LEVELS.index(u.level) if u.level in LEVELS
                                         else 0, u.name))
    reaches = {u.key: {matrix.peer(p).library for p in u.peers if p.startswith(f"{u.side}:")} for u in units}
    return Layer(tuple(units), _common_component(units, matrix), reaches)


def _pairs_text(pairs: Sequence[Unit]) -> str:
    """`server:a with 3 clients`, or `3 pairs`: pairs read best by the peer they share."""
    for role in ("server", "client"):
        shared = {p for u in pairs for p in u.peers if p.startswith(f"{role}:")}
        if len(shared) == 1:
            return f"{len(pairs)} pairs of {short(next(iter(shared)))}"
    servers = sorted({short(p) for u in pairs for p in u.peers if p.startswith("server:")})
    return f"{len(pairs)} pairs (servers {', '.join(servers[:3])}{' …' if len(servers) > 3 else ''})"


def _common_component(units: Sequence[Unit], matrix: Matrix) -> str:
    if len(units) < 2:
        return ""
    for side in ("server", "client"):
        sided = [u for u in units if u.side == side]
        if not sided or any(u.side not in (side, "pair") for u in units):
            continue
        peers = {p for u in units for p in u.peers if p.startswith(f"{side}:")}
        infos = [matrix.peer(p) for p in peers]
        shared = set.intersection(*({i.library, i.framework} - {None, ""} for i in infos)) if infos else set()
        if shared:
            return f"{side} library {min(shared)}"
    return ""


@dataclass
class _Option:
    """A candidate unit across the situations of a set of cells: the cells it could explain; whether
    one of its cells passes in a situation where it has some (a unit contradicted in one scenario
    explains none); whether it failed with two partners somewhere (comparative evidence)."""

    unit: Unit
    cells: dict[str, Cell] = field(default_factory=dict)
    contradicted: bool = False
    compared: bool = False
    order: int = 0

    @property
    def valid(self) -> bool:
        return self.compared and not self.contradicted


class Blamer:
    """The units that explain a set of cells (see the module docstring)."""

    def __init__(self, matrix: Matrix, contradicts: Callable[[Cell], bool]):
        self.matrix = matrix
        self.contradicts = contradicts  # a cell of a unit that shows the unit is not at fault

    def cover(self, cells: Iterable[Cell]) -> dict[Unit, list[Cell]]:
        cells = list(cells)
        found: dict[Unit, list[Cell]] = {}
        harness = [c for c in cells if c.verdict == Verdict.ERROR]
        if harness:
            found[Unit("harness", "harness", "the harness")] = harness
        by_situation: dict[tuple[str, str], list[Cell]] = defaultdict(list)
        for c in cells:
            if c.verdict != Verdict.ERROR:
                by_situation[(c.scenario, c.profile)].append(c)
        options = self._options(by_situation)
        chosen = self._choose([o for o in options.values() if o.valid and o.cells])
        chosen = self._promote(chosen, options)
        assigned: set[str] = set()
        for option in chosen:
            its = [c for i, c in option.cells.items() if i not in assigned]
            assigned.update(option.cells)
            if its:
                found[option.unit] = its
        pairs: dict[tuple[str, str], list[Cell]] = defaultdict(list)
        compared: dict[tuple[str, str], bool] = defaultdict(bool)
        for situation, here in sorted(by_situation.items()):
            pool = self.matrix.situations.get(situation, [])
            for c in here:
                if c.id not in assigned:
                    pairs[(c.server, c.client)].append(c)
                    compared[(c.server, c.client)] |= any(o.id != c.id for o in pool)
        for (server, client), its in pairs.items():
            found[Unit("pair", "pair", f"{server} × {client}", frozenset({server, client}),
                       compared[(server, client)])] = its
        return found

    def _options(self, by_situation: dict[tuple[str, str], list[Cell]]) -> dict[tuple, _Option]:
        options: dict[tuple, _Option] = {}
        for situation, here in sorted(by_situation.items()):
            pool = self.matrix.situations.get(situation, [])
            for unit, partners_needed in self._candidates(here, pool):
                covers = [c for c in here if getattr(c, unit.side) in unit.peers and self._may_blame(c, unit)]
                if not covers:
                    continue
                option = options.setdefault(unit.key, _Option(unit, order=len(options)))
                option.unit = Unit(unit.side, unit.level, unit.name, option.unit.peers | unit.peers)
                option.cells.update((c.id, c) for c in covers)
                mine = [c for c in pool if getattr(c, unit.side) in unit.peers]
                option.contradicted = option.contradicted or any(self.contradicts(c) for c in mine)
                option.compared = option.compared or not partners_needed or len(
                    {getattr(c, OTHER[unit.side]) for c in mine}) >= 2
        return options

    @staticmethod
    def _choose(candidates: list[_Option]) -> list[_Option]:
        """Greedy: the unit explaining most of what is left (the narrower on a tie); then drop a unit
        whose cells the others explain as well (fewest units: a client that fails everywhere for
        several reasons is not blamed for what the servers' limits explain)."""
        chosen: list[_Option] = []
        left = {i for o in candidates for i in o.cells}
        while left:
            best = max(candidates, key=lambda o: (len(left & o.cells.keys()), -LEVELS.index(o.unit.level),
                                                  o.unit.side == "client", -o.order))
            gained = left & best.cells.keys()
            if not gained:
                break
            chosen.append(best)
            left -= gained
        for option in list(chosen):
            others = {i for o in chosen if o is not option for i in o.cells}
            if option.cells.keys() <= others:
                chosen.remove(option)
        return chosen

    @staticmethod
    def _promote(chosen: list[_Option], options: dict[tuple, _Option]) -> list[_Option]:
        """Where a finding blames TLS stacks on one side, a library that is its stack's only one there
        is named by its stack too (Node tls for node-ws), when that stack holds."""
        stacked = {o.unit.side for o in chosen if o.unit.level == "stack"}
        promoted = []
        for option in chosen:
            better = next((o for o in options.values() if o.valid and o.unit.level == "stack"
                           and o.unit.side == option.unit.side and option.unit.side in stacked
                           and o.unit.peers == option.unit.peers and o not in chosen), None)
            promoted.append(better or option)
        return promoted

    def _may_blame(self, cell: Cell, unit: Unit) -> bool:
        """Only the peer under test against a hostile peer; only the refusing side for an acceptance."""
        harness = self.matrix.harness_side(cell)
        if harness:
            return unit.side == OTHER[harness]
        must = REJECTION_GROUPS.get(cell.group)
        if must and cell.verdict == Verdict.INSECURE:
            return unit.side == must
        return True

    def _candidates(self, here: list[Cell], pool: list[Cell]) -> list[tuple[Unit, bool]]:
        matrix = self.matrix
        tls = any(c.group in REJECTION_GROUPS or c.phase in TLS_PHASES for c in here)
        found = []
        for side in ("client", "server"):
            # one partner is enough where the other side cannot be at fault: the hostile peer, or an
            # acceptance the refusing side owns
            lenient = all(matrix.harness_side(c) == OTHER[side]
                          or (c.verdict == Verdict.INSECURE and REJECTION_GROUPS.get(c.group) == side)
                          for c in here)
            for family in sorted({c.family for c in here}):
                found += [(unit, not lenient) for unit in self._units(family, side) if tls or unit.level != "stack"]
        return found

    @functools.cache
    def _units(self, family: str, side: str) -> list[Unit]:
        """Every unit of one side of a family, over the run's peers: a library is all its variants the
        run has, whichever of them a scenario plays."""
        infos = sorted((i for i in self.matrix.peers.values() if i.role == side and i.family == family
                        and not i.harness and not i.control), key=lambda i: i.name)
        groups: list[tuple[str, str, frozenset[str]]] = [("variant", i.name, frozenset({i.name})) for i in infos]
        groups += _shared(infos, "library", lambda i: i.library)
        if side == "server":
            groups += _shared(infos, "framework", lambda i: i.framework or None, also=lambda i: i.library)
            groups += _shared(infos, "proxy", lambda i: i.proxy)
        groups += _shared(infos, "stack", lambda i: i.stack or None, single=True)
        if len({i.library for i in infos}) > 1:
            groups.append(("every", f"every {side}", frozenset(i.name for i in infos)))
        units, seen = [], set()
        for level, name, members in groups:
            if level != "stack":  # a stack of one library stays: it may name that library (_promote)
                if members in seen:
                    continue  # a library of one variant is that variant
                seen.add(members)
            units.append(Unit(side, level, name, members))
        return units


def _shared(infos: list[PeerInfo], level: str, key: Callable[[PeerInfo], Optional[str]],
            also: Callable[[PeerInfo], Optional[str]] | None = None,
            single: bool = False) -> list[tuple[str, str, frozenset[str]]]:
    """Units of peers sharing a value of `key` (or of `also`: a framework is also its own library);
    only those holding more than one peer, unless `single`."""
    values: dict[str, set[str]] = defaultdict(set)
    for info in infos:
        for value in {key(info), also(info) if also else None} - {None, ""}:
            values[value].add(info.name)
    found = []
    for value, names in sorted(values.items()):
        if len(names) > 1 or single:
            found.append((level, value, frozenset(names)))
    return found


# --------------------------------------------------------------------------- findings

@dataclass
class Seen:
    """What the client's user saw, verbatim, in how many of the finding's cells."""

    type: str
    message: str
    clarity: str
    count: int

    @property
    def text(self) -> str:
        """`Type: message`; the message alone when the harness, not a library, raised nothing; the
        emptiness said when the library's message is empty (that emptiness is the finding)."""
        if not self.type:
            return self.message
        return f"{self.type}: {self.message}" if self.message else f"{self.type} (empty message)"


@dataclass
class PairRow:
    """One row of a finding's affected-pairs table: a blamed unit with the partners it failed with."""

    blamed: str
    partners: list[str]
    scenarios: list[str]
    verdicts: Counter


@dataclass
class Finding:
    id: str
    kind: str  # verdict | clarity | advisory
    severity: Severity
    title: str
    layer: Layer
    cells: list[Cell]
    mechanism: Optional[Mechanism] = None
    seen: list[Seen] = field(default_factory=list)
    server_side: str = ""  # what the server recorded, in one line
    pairs: list[PairRow] = field(default_factory=list)
    workarounds: list[str] = field(default_factory=list)
    stability: str = ""
    repro_cells: list[Cell] = field(default_factory=list)  # representative cells, the best first
    libraries: list[str] = field(default_factory=list)
    detail: list[str] = field(default_factory=list)  # what a clarity or advisory finding measured

    @property
    def verdicts(self) -> Counter:
        return Counter(c.verdict.value for c in self.cells)

    @property
    def scenarios(self) -> list[str]:
        return list(dict.fromkeys(c.scenario for c in self.cells))

    @property
    def baseline(self) -> str:
        """KNOWN, NEW, KNOWN+NEW or '' (no baseline)."""
        marks = [m for m in ("KNOWN", "NEW") if any(c.baseline == m for c in self.cells)]
        return "+".join(marks)

    @property
    def user_sees(self) -> str:
        return self.seen[0].text if self.seen else ""

    @property
    def workaround(self) -> str:
        if self.mechanism and self.mechanism.workaround:
            return self.mechanism.workaround
        return self.workarounds[0] if self.workarounds else ""


def finding_cells(matrix: Matrix) -> list[Cell]:
    """Cells that are evidence of a fault: failing (not a control's expected acceptance), and not FLAKY
    unless a known mechanism explains them (a FLAKY cell otherwise goes to the repeatability section)."""
    return [c for c in matrix.cells if c.verdict in FAILING and matrix.severity(c) != Severity.CONTROL
            and (not c.flaky or c.mechanism)]


def find(matrix: Matrix, knowledge: Knowledge = Knowledge()) -> list[Finding]:
    known: dict[str, list[Cell]] = defaultdict(list)
    unknown: list[Cell] = []
    for cell in finding_cells(matrix):
        # a file from before entries named mechanisms: its KNOWN cells group by the entry's reason
        key = cell.mechanism or ("known-" + slug(*cell.baseline_reason.split()[:6]) if cell.baseline == "KNOWN"
                                 and cell.baseline_reason else None)
        if key:
            known[key].append(cell)
        else:
            unknown.append(cell)
    failing = Blamer(matrix, lambda c: c.verdict == Verdict.PASS)
    found = [_finding(matrix, f"F-{key}", cells, failing.cover(cells), knowledge.mechanism(key), "verdict")
             for key, cells in known.items()]
    found += _unknown(matrix, unknown, failing)
    found = _with_clarity(matrix, knowledge, found)
    found = _advisories(matrix, knowledge, found)
    _unique_ids(found)
    return sorted(found, key=lambda f: (SEVERITY_RANK[f.severity], -len(f.cells), f.id))


def _unknown(matrix: Matrix, cells: list[Cell], blamer: Blamer) -> list[Finding]:
    """Cells no known mechanism explains: by what failed and how, then by the units that explain
    them; units failing the same scenarios are one mechanism."""
    by_how: dict[tuple[str, str], list[Cell]] = defaultdict(list)
    for c in cells:
        by_how[(c.verdict.value, canonical(c))].append(c)
    found = []
    for (verdict, error), group in sorted(by_how.items()):
        merged: dict[tuple, dict[Unit, list[Cell]]] = defaultdict(dict)
        for unit, its in blamer.cover(group).items():
            family = frozenset(base_scenario(c.scenario) for c in its)
            merged[(unit.side if unit.side != "pair" else "pair", family)][unit] = its
        for (_, family), units in sorted(merged.items(), key=lambda item: (item[0][0], sorted(item[0][1]))):
            its = sorted({c.id: c for u in units.values() for c in u}.values(), key=matrix.order)
            layer = layer_of(units, matrix)
            scope = sorted(family, key=matrix.scenario_rank)
            name = scope[0] if len(scope) == 1 else (its[0].group if len({c.group for c in its}) == 1 else "several")
            said = "" if error == "-" or (verdict, error) == ("HANG", "TIMEOUT") else error
            ident = "F-" + slug(_unit_slug(layer), name, verdict, said)
            found.append(_finding(matrix, ident, its, units, None, "verdict", layer))
    return found


def _unit_slug(layer: Layer) -> str:
    """A few words naming the blamed layer, without variants: ids stay short and survive a variant added."""
    if layer.common:
        return layer.common.split(" ", 2)[-1]
    def name(unit: Unit) -> str:
        if unit.side == "pair":  # its server's library, then its client's
            return "-".join(library_of(p) for p in sorted(unit.peers, key=lambda p: not p.startswith("server:")))
        return library_of(unit.name) if unit.level in ("variant", "library") else unit.name

    units = layer.units
    if len(units) == 1:
        unit = units[0]
        if unit.side == "harness":
            return "harness"
        return name(unit) if unit.side == "pair" else f"{unit.side}-{name(unit)}"
    if all(u.side == "pair" for u in units):
        servers = {library_of(p) for u in units for p in u.peers if p.startswith("server:")}
        return f"{servers.pop()}-pairs" if len(servers) == 1 else "pairs"
    return f"{units[0].side}s-" + "-".join(dict.fromkeys(name(u) for u in units[:2]))


def _unique_ids(found: list[Finding]) -> None:
    seen: Counter = Counter()
    for f in sorted(found, key=lambda f: (f.id, -len(f.cells))):
        seen[f.id] += 1
        if seen[f.id] > 1:
            f.id = f"{f.id}-{seen[f.id]}"


def _finding(matrix: Matrix, ident: str, cells: list[Cell], units: dict[Unit, list[Cell]] | Iterable[Unit],
             mechanism: Optional[Mechanism], kind: str, layer: Layer | None = None) -> Finding:
    cells = sorted(cells, key=matrix.order)
    layer = layer or layer_of(units, matrix)
    severities = [matrix.severity(c) for c in cells if matrix.severity(c) in FINDING_SEVERITIES]
    severity = min(severities, key=SEVERITY_RANK.__getitem__) if severities else Severity.ADVISORY
    finding = Finding(id=ident, kind=kind, severity=severity, title="", layer=layer, cells=cells, mechanism=mechanism)
    finding.title = mechanism.title if mechanism else title_of(finding, matrix)
    finding.seen = seen_by_user(cells)
    finding.server_side = server_side(cells)
    finding.pairs = pair_rows(layer, units if isinstance(units, dict) else {}, cells, matrix)
    finding.workarounds = workarounds(finding, matrix)
    finding.stability = stability(cells)
    finding.repro_cells = representatives(cells, matrix)
    finding.libraries = libraries(layer, cells, matrix)
    return finding


def title_of(finding: Finding, matrix: Matrix) -> str:
    """What happened, in words, for a finding no curated mechanism names: who, did what, where."""
    cells = finding.cells
    who = finding.layer.short
    bases = list(dict.fromkeys(base_scenario(c.scenario) for c in cells))
    where = (f"{bases[0]} ({matrix.describe(bases[0])})" if len(bases) == 1 and matrix.describe(bases[0])
             else ", ".join(bases[:4]) + (f" and {len(bases) - 4} more" if len(bases) > 4 else ""))
    verdicts = {c.verdict for c in cells}
    error = canonical(cells[0])
    if verdicts == {Verdict.INSECURE}:
        return f"{who} accepts a connection it must refuse: {where}"
    if verdicts == {Verdict.HANG}:
        return f"{who}: no outcome before the deadline in {where}"
    if verdicts == {Verdict.ERROR}:
        return f"the harness failed ({error}) in {where}"
    how = error if error != "-" else (reason_gist([c.reason for c in cells]) or "failed")
    return f"{who}: {how} in {where}"


def reason_gist(reasons: Sequence[str]) -> str:
    """The reasons' common prefix in whole words, up to its first aside (`, ...` or ` (...`)."""
    ordered = sorted(" ".join(r.split()) for r in reasons)
    if not ordered:
        return ""
    prefix = os.path.commonprefix([ordered[0], ordered[-1]])
    if any(len(r) > len(prefix) and not r[len(prefix)].isspace() for r in (ordered[0], ordered[-1])):
        prefix = prefix.rsplit(" ", 1)[0] if " " in prefix else ""  # a word cut in half is no word
    return re.split(r",\s|\s\(", prefix, maxsplit=1)[0].strip(" ,:;")[:100]


# what differs between two cells' copies of one message: the port, the cell's path, a socket's address
VARYING = re.compile(r"(?<=:)\d{2,5}\b|/cell/[\w-]+|\b0x[0-9a-f]+\b|\bfd=\d+")


def seen_by_user(cells: Sequence[Cell], limit: int = 3) -> list[Seen]:
    """The errors the client's user saw, commonest first: one message with another port or cell path
    is the same message (shown as the first cell had it)."""
    tally: Counter = Counter()
    first: dict[tuple, tuple[str, str, str]] = {}
    for c in cells:
        if c.error.type or c.error.message:
            seen = (c.error.type or "", c.error.message or "", c.error.clarity.value if c.error.clarity else "")
            key = (seen[0], VARYING.sub("…", seen[1]), seen[2])
            tally[key] += 1
            first.setdefault(key, seen)
    ranked = sorted(tally.items(), key=lambda item: (-item[1], item[0]))[:limit]
    return [Seen(*first[key], n) for key, n in ranked]


def server_side(cells: Sequence[Cell]) -> str:
    """What the server (or the proxy in front of it) recorded, in one line."""
    said = Counter(f"{e.type or 'error'}: {e.message}" for e in (c.server_saw.tls.error for c in cells) if e)
    said += Counter(f"refused with {c.rejection.canonical}"
                    + (f": {c.rejection.message}" if c.rejection.message else "")
                    for c in cells if c.rejection and c.rejection.by == "server")
    said += Counter(f"identity error: {c.server_saw.handler_identity_error}" for c in cells
                    if c.server_saw.handler_identity_error)
    said += Counter(f"the proxy answered HTTP {c.server_saw.proxy_status} (verify {c.server_saw.proxy_verify})"
                    for c in cells if c.server_saw.proxy_status is not None)
    if not said:
        ran = sum(c.server_saw.handler_ran for c in cells)
        return f"the handler ran in {ran} of {len(cells)} cells" if ran else ""
    text, n = min(said.items(), key=lambda item: (-item[1], item[0]))
    return f"{text} ({n} of {len(cells)} cells)"


def pair_rows(layer: Layer, units: dict[Unit, list[Cell]], cells: list[Cell], matrix: Matrix) -> list[PairRow]:
    """One row per blamed unit (pairs of one server together), with the partners it failed with."""
    rows: dict[str, PairRow] = {}
    for unit in layer.units:
        its = units.get(unit) or [c for c in cells if {c.server, c.client} & unit.peers] or cells
        if unit.side == "pair":
            server = next((p for p in unit.peers if p.startswith("server:")), unit.name)
            key, blamed, partner_role = f"pair {server}", f"pairs of {short(server)}", "client"
        elif unit.side == "harness":
            key, blamed, partner_role = "harness", "the harness", "client"
        else:
            key, blamed, partner_role = unit.key, unit.text, OTHER[unit.side]
        row = rows.setdefault(str(key), PairRow(blamed, [], [], Counter()))
        row.partners = sorted(set(row.partners) | {getattr(c, partner_role) for c in its})
        row.scenarios = list(dict.fromkeys(row.scenarios + [c.scenario for c in its]))
        row.verdicts.update(c.verdict.value for c in its)
    return list(rows.values())


def workarounds(finding: Finding, matrix: Matrix) -> list[str]:
    """What the matrix itself shows working instead: another variant, the tuned profile, the other
    TLS version, or (for a pair) another server."""
    if finding.kind != "verdict" or all(c.verdict == Verdict.ERROR for c in finding.cells):
        return []
    total = len(finding.cells)
    variants: Counter[str] = Counter()
    servers: Counter[str] = Counter()
    tuned = other_tls = 0
    pairs_only = all(u.side == "pair" for u in finding.layer.units)
    for cell in finding.cells:
        for other in matrix.clients:
            if other != cell.client and library_of(other) == library_of(cell.client) and _passes(
                    matrix.get(cell.server, other, cell.scenario, cell.profile)):
                variants[other] += 1
        if cell.profile != "tuned" and _passes(matrix.get(cell.server, cell.client, cell.scenario, "tuned")):
            tuned += 1
        counterpart = base_scenario(cell.scenario) if cell.scenario.endswith("-tls12") else f"{cell.scenario}-tls12"
        if _passes(matrix.get(cell.server, cell.client, counterpart, cell.profile)):
            other_tls += 1
        if pairs_only:
            for other in matrix.servers:
                if other != cell.server and _passes(matrix.get(other, cell.client, cell.scenario, cell.profile)):
                    servers[other] += 1
    enough = (total + 1) // 2  # a way out that works for fewer than half the cells is no workaround
    found = [f"use {short(v)}: it passes {n} of these {total} cells" for v, n in sorted(variants.items(), key=_most)
             if n >= enough][:2]
    if tuned >= enough:
        found.append(f"raise the documented limits (the tuned profile): {tuned} of {total} cells pass")
    if other_tls >= enough:
        found.append(f"the other TLS version: {other_tls} of {total} cells pass")
    found += [f"another server ({short(s)}) works in {n} of these {total} cells" for s, n in
              sorted(servers.items(), key=_most)[:2] if n >= enough]
    return found


def _most(item: tuple[str, int]) -> tuple[int, str]:
    return (-item[1], item[0])


def _passes(cell: Cell | None) -> bool:
    return cell is not None and cell.verdict == Verdict.PASS


def stability(cells: Sequence[Cell]) -> str:
    repeated = [c for c in cells if c.runs]
    flaky = sum(c.flaky for c in cells)
    if not repeated:
        text = f"{len(cells)} {'cell' if len(cells) == 1 else 'cells'}, each run once"
    else:
        runs = sum(c.runs.count for c in repeated)
        passed = sum(round(c.runs.pass_rate * c.runs.count) for c in repeated)
        text = (f"{len(repeated)} of {len(cells)} cells ran {runs} times in all: {runs - passed} of those runs "
                f"showed it (pass rate {passed / runs:.0%})")
    if flaky:
        text += f"; {flaky} FLAKY (their verdict varied between runs)"
    return text


def representatives(cells: Sequence[Cell], matrix: Matrix, limit: int = 6) -> list[Cell]:
    """The cells a reproducer is best built from: in-process peers, the default profile, TLS 1.3."""
    def cost(c: Cell) -> tuple:
        peers = (matrix.peer(c.server), matrix.peer(c.client))
        return (any(p.proxy for p in peers), sum(p.foreign for p in peers), c.profile != "default",
                "tls12" in c.tags, matrix.order(c))
    return sorted(cells, key=cost)[:limit]


def libraries(layer: Layer, cells: Sequence[Cell], matrix: Matrix) -> list[str]:
    peers = layer.peers or {p for c in cells for p in (c.server, c.client)}
    return sorted({matrix.peer(p).library for p in peers if not matrix.peer(p).harness})


# --------------------------------------------------------------------------- clarity

@dataclass
class Outlier:
    """A peer whose users are not told why a connection was refused, where a rival's are."""

    role: str
    group: str
    peer: str
    cells: list[Cell]
    rival: str = ""
    rival_cells: list[Cell] = field(default_factory=list)

    @property
    def grade(self) -> str:
        tally = Counter(c.error.clarity.value for c in self.cells if c.error.clarity and not is_clear(c))
        return max(("OPAQUE", "VAGUE"), key=lambda g: tally[g])


def server_rejections(matrix: Matrix) -> list[Cell]:
    """client-rejected cells the server did reject, graded by how the client's user saw it."""
    return [c for c in matrix.cells if c.group == "client-rejected" and c.rejection and c.rejection.by == "server"
            and c.error.clarity]


def token_refusals(matrix: Matrix) -> list[Cell]:
    """Cells a server refused before the upgrade for the token the client sent, graded."""
    return [c for c in matrix.cells if c.group == "token" and c.rejection and c.rejection.by == "server"
            and c.rejection.phase != "verification" and c.error.clarity]


def clarity_outliers(matrix: Matrix) -> list[Outlier]:
    rejections = server_rejections(matrix)
    return [*_server_outliers(rejections), *_client_outliers(rejections, matrix), *_token_outliers(matrix)]


def _server_outliers(rejections: list[Cell]) -> list[Outlier]:
    """A server whose refusals almost never reach a client with the reason, per TLS version, where
    another server's mostly do for the same clients and scenarios."""
    fired: dict[str, list[Cell]] = defaultdict(list)
    rivals: dict[str, tuple[str, list[Cell]]] = {}
    for label in TLS_LABELS:
        pool = [c for c in rejections if tls_label(c) == label]
        for server, own in _by(pool, "server").items():
            rival = _best_rival(own, pool, "server")
            if clear_share(own) < FEW_CLEAR and rival and clear_share(rival[1]) >= MOSTLY_CLEAR:
                fired[server] += own
                rivals.setdefault(server, rival)
    return [Outlier("server", "client-rejected", s, own, *rivals[s]) for s, own in sorted(fired.items())]


def _client_outliers(rejections: list[Cell], matrix: Matrix) -> list[Outlier]:
    """A client that hides why a server refused its certificate where clients of its TLS stack, with
    the same server and scenarios, mostly show it."""
    fired: dict[str, list[Cell]] = defaultdict(list)
    rivals: dict[str, tuple[str, list[Cell]]] = {}
    slices: dict[tuple[str, str], list[Cell]] = defaultdict(list)
    for c in rejections:
        slices[(tls_label(c), c.server)].append(c)
    for _, pool in sorted(slices.items()):
        for client, own in _by(pool, "client").items():
            info = matrix.peer(client)
            same_stack = [c for c in pool if info.stack and matrix.peer(c.client).stack == info.stack
                          and matrix.peer(c.client).library != info.library]
            rival = _best_rival(own, same_stack, "client")
            # judged with its library's other variants: the way settings are passed does not change what
            # an error says, so a variant alone in the dark met the timing of its connections
            variants = [c for c in pool if c.client != client and matrix.peer(c.client).library == info.library]
            if (clear_share(own + variants) < FEW_CLEAR and rival and clear_share(rival[1]) >= MOSTLY_CLEAR):
                fired[client] += own
                rivals.setdefault(client, rival)
    return [Outlier("client", "client-rejected", c, own, *rivals[c]) for c, own in sorted(fired.items())]


def _token_outliers(matrix: Matrix) -> list[Outlier]:
    """Clients whose user almost never learns why a token was refused: every server sends a 401 or a
    connect error with its reason, so hiding it is the client's doing, rival or not."""
    refusals = token_refusals(matrix)
    found = []
    for client, own in _by(refusals, "client").items():
        if clear_share(own) < FEW_CLEAR:
            rival = _best_rival(own, refusals, "client") or ("", [])
            found.append(Outlier("client", "token", client, own, *(rival if clear_share(rival[1]) >= FEW_CLEAR
                                                                 else ("", []))))
    return found


def _by(cells: Iterable[Cell], role: str) -> dict[str, list[Cell]]:
    grouped: dict[str, list[Cell]] = defaultdict(list)
    for c in cells:
        grouped[getattr(c, role)].append(c)
    return dict(sorted(grouped.items()))


def _best_rival(own: list[Cell], pool: list[Cell], role: str) -> tuple[str, list[Cell]] | None:
    """The other peer of `role` that told most users why, over the same partners and scenarios (the
    CLEAR share decides between two that told as many)."""
    partner = OTHER[role]
    keys = {(getattr(c, partner), c.scenario, c.profile) for c in own}
    rivals = _by([c for c in pool if getattr(c, role) != getattr(own[0], role)
                  and (getattr(c, partner), c.scenario, c.profile) in keys], role)
    return max(rivals.items(), key=lambda item: (sum(map(is_clear, item[1])), clear_share(item[1]), item[0]),
               default=None)


def _with_clarity(matrix: Matrix, knowledge: Knowledge, found: list[Finding]) -> list[Finding]:
    """Clarity outliers as findings: one per known mechanism (joining its verdict finding when it has
    one), else one per library, role and group."""
    by_id = {f.id: f for f in found}
    groups: dict[str, tuple[Optional[Mechanism], list[Outlier]]] = {}
    for outlier in clarity_outliers(matrix):
        mechanism = next((m for m in knowledge.mechanisms if m.explains_clarity(outlier.group, outlier.peer)), None)
        if mechanism is None and outlier.role == "client":  # the server's way of refusing explains it
            servers = {c.server for c in outlier.cells}
            mechanism = next((m for m in knowledge.mechanisms
                              if all(m.explains_clarity(outlier.group, s) for s in servers)), None)
        key = (f"F-{mechanism.id}" if mechanism
               else "F-" + slug("clarity", outlier.role, matrix.peer(outlier.peer).library, outlier.group))
        groups.setdefault(key, (mechanism, []))[1].append(outlier)
    for key, (mechanism, outliers) in groups.items():
        detail = [clarity_line(o) for o in outliers]
        if key in by_id:  # a verdict finding of the same mechanism: the clarity is more of its evidence
            by_id[key].detail += detail
            continue
        cells = sorted({c.id: c for o in outliers for c in o.cells}.values(), key=matrix.order)
        units = [Unit(o.role, "variant", o.peer, frozenset({o.peer})) for o in outliers]
        finding = _finding(matrix, key, cells, units, mechanism, "clarity")
        finding.severity = Severity.ADVISORY
        if not mechanism:
            o = outliers[0]
            finding.title = clarity_title(o, finding.layer.short)
        finding.detail = detail
        found.append(finding)
    return found


def clarity_title(outlier: Outlier, who: str) -> str:
    if outlier.group == "token":
        return f"{who} does not show why a server refused its token"
    if outlier.role == "server":
        return f"{who} refuses client certificates without telling the client why"
    return f"{who} hides why a server refused its certificate"


def clarity_line(o: Outlier) -> str:
    scope = sorted({tls_label(c) for c in o.cells}, key=TLS_LABELS.index)
    clear = sum(is_clear(c) for c in o.cells)
    rival = (f"; {short(o.rival)} gets CLEAR in {sum(is_clear(c) for c in o.rival_cells)} of "
             f"{len(o.rival_cells)} with the same partners" if o.rival else "")
    what = {"server": "its refusals reached the client with the reason",
            "client": "its user was told why"}[o.role]
    return f"{short(o.peer)} ({', '.join(scope)}, {o.group}): {what} in {clear} of {len(o.cells)} ({o.grade}){rival}"


# --------------------------------------------------------------------------- advisories

def _advisories(matrix: Matrix, knowledge: Knowledge, found: list[Finding]) -> list[Finding]:
    """Cells that pass but cost the user something (Cell.advisories): those a known mechanism explains
    join its finding; the others make one finding per kind."""
    by_id = {f.id: f for f in found}
    by_kind: dict[str, list[Cell]] = defaultdict(list)
    texts: dict[str, Counter] = defaultdict(Counter)
    kinds: dict[str, set[str]] = defaultdict(set)
    for cell in matrix.cells:
        if cell.verdict != Verdict.PASS or matrix.severity(cell) == Severity.CONTROL:
            continue
        for advisory in cell.advisories:
            mechanism = next((m for m in knowledge.mechanisms if m.explains_advisory(advisory.kind, cell)), None)
            key = f"F-{mechanism.id}" if mechanism else advisory.kind
            by_kind[key].append(cell)
            texts[key][advisory.text] += 1
            kinds[key].add(advisory.kind)
    added = []
    for key, cells in sorted(by_kind.items()):
        detail = [f"{text} ({n} cells)" for text, n in texts[key].most_common(3)]
        if key in by_id:  # more evidence of a known mechanism's finding
            by_id[key].detail += detail
            continue
        cells = list({c.id: c for c in cells}.values())
        blamer = Blamer(matrix, lambda c, these=kinds[key]: c.verdict == Verdict.PASS
                        and not any(a.kind in these for a in c.advisories))
        units = blamer.cover(cells)
        mechanism = knowledge.mechanism(key.removeprefix("F-")) if key.startswith("F-") else None
        ident = key if mechanism else "F-" + slug(key, _unit_slug(layer_of(units, matrix)))
        finding = _finding(matrix, ident, cells, units, mechanism, "advisory")
        finding.severity = Severity.ADVISORY
        if not mechanism:
            finding.title = f"{finding.layer.short}: {key.replace('-', ' ')}"
        finding.detail = detail
        added.append(finding)
    return found + added


# --------------------------------------------------------------------------- the answer

WORKS, ADVISORY, BROKEN, INSECURE, NOT_RUN = "works", "works with advisories", "broken", "insecure", "not run"
PAIR_STATES = (INSECURE, BROKEN, ADVISORY, WORKS, NOT_RUN)  # worst first
STATE_OF = {Severity.CRITICAL: INSECURE, Severity.BROKEN: BROKEN, Severity.ADVISORY: ADVISORY}


@dataclass
class Answer:
    """Servers x clients of one family: each pair's state, from its worst cell (controls aside)."""

    family: str
    servers: list[str]
    clients: list[str]
    states: dict[tuple[str, str], str]
    counts: dict[tuple[str, str], Counter]  # per pair: cells per severity ("ok" for a clean PASS)

    def state(self, server: str, client: str) -> str:
        return self.states.get((server, client), NOT_RUN)


def pair_state(cells: Iterable[Cell], matrix: Matrix) -> tuple[str, Counter]:
    tally: Counter = Counter()
    for c in cells:
        if c.verdict in NOT_OBSERVED or c.verdict == Verdict.ERROR:
            continue  # declared, or the harness's failure: no evidence about the pair
        severity = matrix.severity(c)
        if severity == Severity.CONTROL:
            tally["control"] += 1
        else:
            tally[severity.value if severity else "ok"] += 1
    worst = next((STATE_OF[s] for s in FINDING_SEVERITIES if tally[s.value]), None)
    return (worst or (WORKS if tally["ok"] else NOT_RUN)), tally


def answers(matrix: Matrix) -> list[Answer]:
    by_pair: dict[tuple[str, str], list[Cell]] = defaultdict(list)
    families: dict[str, tuple[set[str], set[str]]] = {}
    for c in matrix.cells:
        if matrix.harness_side(c) or matrix.peer(c.client).control:
            continue  # the harness's hostile peer; a control variant (its own section): no answer to give
        by_pair[(c.server, c.client)].append(c)
        servers, clients = families.setdefault(c.family, (set(), set()))
        servers.add(c.server)
        clients.add(c.client)
    found = []
    for family, (servers, clients) in families.items():
        states, counts = {}, {}
        for pair, cells in by_pair.items():
            if pair[0] in servers and pair[1] in clients:
                states[pair], counts[pair] = pair_state(cells, matrix)
        found.append(Answer(family, sorted(servers), sorted(clients), states, counts))
    return found


# --------------------------------------------------------------------------- everything a report shows

@dataclass
class Analysis:
    results: Results
    matrix: Matrix
    findings: list[Finding]
    answers: list[Answer]
    knowledge: Knowledge

    @property
    def run(self):
        return self.results.run

    def by_severity(self, severity: Severity) -> list[Finding]:
        return [f for f in self.findings if f.severity == severity]

    def finding_of(self) -> dict[str, str]:
        """cell id -> the id of the (first) finding it is evidence of."""
        found: dict[str, str] = {}
        for f in self.findings:
            for c in f.cells:
                found.setdefault(c.id, f.id)
        return found


def analyse(results: Results, knowledge: Knowledge = Knowledge()) -> Analysis:
    matrix = Matrix(results)
    return Analysis(results, matrix, find(matrix, knowledge), answers(matrix), knowledge)
