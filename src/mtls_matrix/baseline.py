"""The baseline of known issues: reviewed entries (cell pattern -> expected verdict, canonical
error, reason, upstream link) that sort a run's findings into KNOWN and NEW, and its entries into
current and stale (XPASS).

`matrix/baseline.toml` is a list of `[[entry]]` tables. Patterns are globs over cell ids in which
only `*` and `?` are wildcards: ids contain `[variant]` brackets, which must match literally. An
entry names the known mechanism that explains its cells (`mechanism`, defined in mechanisms.toml
beside the baseline: its reason and upstream link are the entry's); a KNOWN cell records it, and
BUGS.md shows one finding per mechanism.

- A cell that is neither PASS nor UNSUPPORTED nor SKIPPED is KNOWN when an entry matches its id with the same
  verdict (and canonical error, when the entry names one), NEW otherwise.
- An entry is stale (XPASS) when the cells it matches all PASS now, or when it matches no cell of
  a complete run of the whole catalogue (its cells were renamed or removed). A slice that did not
  run an entry's cells says nothing about it.
- A cell that ran several times (--repeat, --confirm) is judged on all its runs: KNOWN when any
  run is what a matching entry expects (so a FLAKY cell that sometimes shows a known issue is not
  NEW, whatever its first run was), NEW when its runs failed alike and none is expected (a FLAKY
  cell no entry explains did not reproduce: neither); it counts as PASSing for staleness only when
  every run passed. A control (severity.py: verification off on purpose) is never a finding.

`mtls-matrix baseline --check RESULTS` prints that classification (exit 1 on NEW or XPASS);
`--update RESULTS` writes `baseline.proposed.toml` beside the reviewed file and prints the diff:
the reviewed file changes only by a human's hand.
"""

from __future__ import annotations

import argparse
import difflib
import functools
import json
import re
import tomllib
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal, Optional, Union, get_args

from pydantic import AfterValidator, ValidationError, field_validator, model_validator

from mtls_matrix import findings, knowledge, repeat, scenarios
from mtls_matrix.errors import UsageError
from mtls_matrix.peers import Registry
from mtls_matrix.results import (
    NOT_OBSERVED, BaselineSummary, Cell, Results, Severity, StaleEntry, Verdict, canonical, check_output,
    read_text, write_atomically,
)

DEFAULT_FILE = f"{knowledge.DEFAULT_DIR}/baseline.toml"
PROPOSED_NAME = "baseline.proposed.toml"
# ERROR is a harness bug and PASS/UNSUPPORTED/SKIPPED are no finding: none of them is a known issue.
KnownVerdict = Literal["INSECURE", "FAIL", "HANG"]
VERDICTS = get_args(KnownVerdict)
TODO = "TODO: review"


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("blank")
    return value


Text = Annotated[str, AfterValidator(_not_blank)]


class Written(knowledge.Strict):
    """One `[[entry]]` table as written: these keys only, a mechanism or else a reason."""

    model_config = knowledge.Strict.model_config | {"strict": True}

    cells: Union[Text, list[Text]]  # a glob over cell ids, or a list of them
    verdict: KnownVerdict
    canonical: Optional[Text] = None
    mechanism: Optional[Text] = None
    reason: Optional[Text] = None
    upstream: Optional[Text] = None

    _http = field_validator("upstream")(knowledge.web_link)

    @field_validator("cells")
    @classmethod
    def _some(cls, cells: str | list[str]) -> str | list[str]:
        if not cells:
            raise ValueError("no cells")
        return cells

    @model_validator(mode="after")
    def _explained(self) -> "Written":
        if self.mechanism is None and self.reason is None:
            raise ValueError("missing mechanism")
        return self


def _problem(raw: dict, exc: ValidationError) -> str:
    """The first thing wrong with an entry, in one line naming the valid choices."""
    errors = exc.errors()
    unknown = sorted(str(e["loc"][0]) for e in errors if e["type"] == "extra_forbidden")
    if unknown:
        return f"unknown key {', '.join(unknown)}; valid keys: {', '.join(Written.model_fields)}"
    missing = [k for k in ("cells", "verdict") if k not in raw] + (
        [] if "mechanism" in raw or "reason" in raw else ["mechanism"])
    if missing:
        return f"missing {', '.join(missing)}; every entry needs cells, verdict and a mechanism (or a reason)"
    key = str(errors[0]["loc"][0])
    value = raw.get(key)
    if key == "cells":
        return "cells must be a non-empty glob over cell ids, or a list of them"
    if key == "verdict":
        return f"verdict {value!r} is not one of {', '.join(VERDICTS)}"
    if key == "upstream" and isinstance(value, str) and value.strip():
        return f"upstream {value!r} is not an http(s) link"
    return f"{key} must be a non-empty string"


@dataclass(frozen=True)
class Entry:
    number: int  # position in the file, from 1: how messages and reports name it
    cells: tuple[str, ...]
    verdict: str
    reason: str
    canonical: str | None = None
    upstream: str | None = None
    mechanism: str | None = None

    @property
    def label(self) -> str:
        return f"entry {self.number} ({', '.join(self.cells)})"

    def matches(self, cell_id: str) -> bool:
        return _any_of(self.cells).match(cell_id) is not None

    def expects(self, cell: Cell) -> bool:
        """Any run of the cell (only one, unless --repeat or --confirm) shows this entry's issue."""
        return any(run.verdict.value == self.verdict and self.canonical in (None, run.canonical)
                   for run in repeat.outcomes(cell))


@dataclass
class Baseline:
    path: Path
    text: str
    entries: list[Entry]


@functools.cache  # a run matches every failing cell against the entries, and every entry against every cell
def _any_of(patterns: tuple[str, ...]) -> re.Pattern[str]:
    return re.compile("|".join(f"(?:{knowledge.glob(p).pattern})" for p in patterns))


# --------------------------------------------------------------------------- loading

def load(path: str | Path) -> Baseline:
    """Raises ValueError naming the file, the entry and the problem."""
    path = Path(path)
    text = read_text(path, "baseline file")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{path}: not a valid TOML baseline: {exc}") from None
    except RecursionError:
        raise ValueError(f"{path}: not a valid TOML baseline: nested too deeply") from None
    extra = sorted(set(data) - {"entry"})
    if extra:
        raise ValueError(f"{path}: unknown top-level key {', '.join(extra)}; a baseline holds only [[entry]] tables")
    raw = data.get("entry", [])
    if not isinstance(raw, list):
        raise ValueError(f"{path}: 'entry' must be an array of tables, written [[entry]]")
    known = knowledge.load(path.parent) if any(isinstance(i, dict) and "mechanism" in i for i in raw) else None
    return Baseline(path, text, [_entry(path, n, item, known) for n, item in enumerate(raw, 1)])


def _entry(path: Path, number: int, raw: object, known: knowledge.Knowledge | None = None) -> Entry:
    where = f"{path}: entry {number}"
    if not isinstance(raw, dict):
        raise ValueError(f"{where}: {raw!r:.60} is not a table; write each entry as an [[entry]] table")
    try:
        written = Written.model_validate(raw)
    except ValidationError as exc:
        raise ValueError(f"{where}: {_problem(raw, exc)}") from None
    reason, upstream = written.reason, written.upstream
    if written.mechanism is not None:
        mechanism = known.mechanism(written.mechanism) if known else None
        if mechanism is None:
            ids = ", ".join(m.id for m in known.mechanisms) if known else "none"
            raise ValueError(f"{where}: mechanism {written.mechanism!r} is not defined in "
                             f"{path.parent / knowledge.MECHANISMS} (defined: {ids})")
        reason, upstream = reason or mechanism.reason, upstream or mechanism.upstream
    cells = [written.cells] if isinstance(written.cells, str) else written.cells
    return Entry(number, tuple(cells), written.verdict, reason, written.canonical, upstream, written.mechanism)


# --------------------------------------------------------------------------- classifying

def classify_cell(baseline: Baseline, cell: Cell) -> tuple[str | None, Entry | None]:
    """("KNOWN", entry) | ("NEW", None) | (None, None) for PASS, UNSUPPORTED and SKIPPED, a control
    (severity.py), and a FLAKY cell no entry explains: not reproduced, so not NEW (repeat.py), unless
    its first run was a harness ERROR, which no rerun excuses."""
    if cell.severity == Severity.CONTROL or all(
            run.verdict in (Verdict.PASS, *NOT_OBSERVED) for run in repeat.outcomes(cell)):
        return None, None
    entry = next((e for e in baseline.entries if e.matches(cell.id) and e.expects(cell)), None)
    return ("KNOWN", entry) if entry else (None, None) if cell.flaky and cell.verdict != Verdict.ERROR else ("NEW", None)


def mark(baseline: Baseline, cell: Cell) -> Entry | None:
    """Write the cell's classification into it; return the entry that makes it KNOWN."""
    status, entry = classify_cell(baseline, cell)
    cell.baseline = status
    cell.baseline_reason = entry.reason if entry else None
    cell.upstream = entry.upstream if entry else None
    cell.mechanism = entry.mechanism if entry else None
    return entry


@dataclass
class Classification:
    baseline: Baseline
    known: list[Cell] = field(default_factory=list)
    new: list[Cell] = field(default_factory=list)
    stale: list[tuple[Entry, str]] = field(default_factory=list)  # (entry, why)
    used: dict[int, int] = field(default_factory=dict)  # entry number -> KNOWN cells
    not_run: list[Entry] = field(default_factory=list)  # entries this (sliced) run says nothing about

    @property
    def exit_code(self) -> int:
        return 1 if self.new or self.stale else 0


def classify(results: Results, baseline: Baseline, full_run: bool | None = None) -> Classification:
    """Marks every cell and records the summary in `results.baseline`. `full_run` (whether the
    run covered the whole catalogue) is worked out from the results when not given."""
    found = Classification(baseline)
    for cell in results.cells:
        entry = mark(baseline, cell)
        if entry:
            found.known.append(cell)
            found.used[entry.number] = found.used.get(entry.number, 0) + 1
        elif cell.baseline == "NEW":
            found.new.append(cell)
    full = covers_everything(results) if full_run is None else full_run
    for entry in baseline.entries:
        why = _staleness(entry, results.cells, full)
        if why:
            found.stale.append((entry, why))
        elif not any(entry.matches(c.id) for c in results.cells):
            found.not_run.append(entry)
    results.baseline = summary(found)
    return found


def _staleness(entry: Entry, cells: list[Cell], full_run: bool) -> str | None:
    matched = [c for c in cells if entry.matches(c.id) and c.verdict not in NOT_OBSERVED]
    if matched and all(run.verdict == Verdict.PASS for c in matched for run in repeat.outcomes(c)):
        return "its only cell PASSes now" if len(matched) == 1 else f"its {len(matched)} cells all PASS now"
    if not matched and full_run and not any(entry.matches(c.id) for c in cells):
        return "it matches no cell of this complete run of the whole catalogue (renamed or removed?)"
    return None


def covers_everything(results: Results) -> bool:
    """A complete run of every registered peer, scenario and profile: only such a run shows that an
    entry matching none of its cells names cells that no longer exist."""
    registry = Registry([])
    cells = results.cells
    return (results.run.complete
            and {f"server:{n}" for n in registry.servers} <= {c.server for c in cells}
            and {f"client:{n}" for n in registry.clients} <= {c.client for c in cells}
            and {s.name for s in scenarios.CATALOGUE} <= {c.scenario for c in cells}
            and set(scenarios.PROFILES) <= set(results.run.profiles))


def summary(found: Classification) -> BaselineSummary:
    return BaselineSummary(
        file=str(found.baseline.path),
        counts={"KNOWN": len(found.known), "NEW": len(found.new), "XPASS": len(found.stale)},
        stale=[StaleEntry(entry=e.number, cells=list(e.cells), verdict=e.verdict, canonical=e.canonical,
                          reason=e.reason, why=why) for e, why in found.stale],
    )


def exit_code(results: Results) -> int:
    """From a results file already classified (`run --baseline`): 1 on NEW or XPASS."""
    counts = results.baseline.counts if results.baseline else {}
    return 1 if counts.get("NEW") or counts.get("XPASS") else 0


# --------------------------------------------------------------------------- text

def render_check(found: Classification, source: str) -> str:
    lines = [f"baseline {found.baseline.path} against {source}: {len(found.known)} KNOWN, {len(found.new)} NEW, "
             f"{len(found.stale)} XPASS (stale entries)"]
    for cell in found.new:
        lines.append(f"NEW    {cell.id}: {cell.verdict.value} at {cell.phase} ({canonical(cell)}): {cell.reason}")
    for entry, why in found.stale:
        lines.append(f"XPASS  {entry.label}: expected {entry.verdict}, but {why}; remove the entry")
    for entry in found.baseline.entries:
        if entry.number in found.used:
            lines.append(f"KNOWN  {entry.label}: {found.used[entry.number]} cells {entry.verdict}: {entry.reason}")
    for entry in found.not_run:
        lines.append(f"-      {entry.label}: not run in this results file")
    lines.append("result: " + ("NEW findings or stale entries: review them (mtls-matrix baseline --update)"
                               if found.exit_code else "every finding is known and every entry still holds"))
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- proposing a change

def propose(found: Classification, results: Results) -> str:
    """The reviewed file's text without its stale entries, plus one entry per NEW signature."""
    stale = {entry.number for entry, _ in found.stale}
    kept = [block for number, block in _blocks(found.baseline.text) if number not in stale]
    text = "".join(kept).rstrip("\n") + "\n"
    added = [_render_entry(*item) for item in _new_signatures(found.new, results)]
    return text + "".join("\n" + block for block in added)


def _blocks(text: str) -> list[tuple[int, str]]:
    """The file cut into (entry number, text) at each `[[entry]]` header; 0 is the preamble. The
    comments between two entries describe the next one and go with it; above the first entry, only
    the comment lines touching its header do (the rest is the preamble)."""
    lines = text.splitlines(keepends=True)
    starts, floor = [], None
    for i, line in enumerate(lines):
        if line.strip() == "[[entry]]":
            start = i
            skip = _comment if floor is None else _comment_or_blank
            while start > (floor or 0) and skip(lines[start - 1]):
                start -= 1
            while floor is not None and start < i and not lines[start].strip():
                start += 1  # the blank line that ends the previous entry stays with it
            starts.append(start)
            floor = i + 1
    bounds = [0, *starts, len(lines)]
    return [(n, "".join(lines[bounds[n]:bounds[n + 1]])) for n in range(len(bounds) - 1)]


def _comment(line: str) -> bool:
    return line.lstrip().startswith("#")


def _comment_or_blank(line: str) -> bool:
    return _comment(line) or not line.strip()


def _new_signatures(new: list[Cell], results: Results) -> list[tuple[str, list[str], str, str, str]]:
    """(verdict, patterns, canonical, title, finding id) per finding of the NEW cells and verdict, as
    BUGS.md groups them."""
    ids = {c.id for c in new}
    proposals = []
    for finding in findings.find(findings.Matrix(results)):
        by_outcome: dict[tuple[str, str], list[Cell]] = defaultdict(list)
        for c in finding.cells:
            if c.id in ids:
                by_outcome[(c.verdict.value, canonical(c))].append(c)
        for (verdict, error), cells in by_outcome.items():
            proposals.append((verdict, _patterns(cells, results), error, finding.title, finding.id))
    return proposals


def _patterns(cells: list[Cell], results: Results) -> list[str]:
    """`*-SCENARIO[-profile]` where these cells are every cell of it that ran; exact ids otherwise."""
    by_situation: dict[tuple[str, str], list[Cell]] = defaultdict(list)
    for c in cells:
        by_situation[(c.scenario, c.profile)].append(c)
    patterns = []
    for (scenario, profile), group in by_situation.items():
        ran = [c for c in results.cells if (c.scenario, c.profile) == (scenario, profile)
               and c.verdict not in NOT_OBSERVED]
        _, named, suffix = group[0].id.rpartition(scenario)  # suffix: "" or "-tuned"
        whole = named and len(group) == len(ran)  # an id without its scenario's name: only exact ids
        patterns += [f"*-{scenario}{suffix}"] if whole else [c.id for c in group]
    return patterns


def _render_entry(verdict: str, patterns: list[str], error: str, title: str, finding: str) -> str:
    def s(value: str) -> str:  # a TOML basic string: JSON's escapes are TOML's
        return json.dumps(value, ensure_ascii=False)

    lines = [f"# NEW ({finding}): {' '.join(title.split())}", "[[entry]]",
             f"cells = [{', '.join(s(p) for p in patterns)}]", f"verdict = {s(verdict)}"]
    if error != "-":
        lines.append(f"canonical = {s(error)}")
    lines += [f"reason = {s(TODO)}", f"# mechanism = {s(finding.removeprefix('F-'))}  (define it in mechanisms.toml)",
              ""]
    return "\n".join(lines)


# --------------------------------------------------------------------------- the command

def register(subparsers) -> None:
    p = subparsers.add_parser("baseline", help="classify a results.json against the baseline of known issues")
    action = p.add_mutually_exclusive_group(required=True)
    action.add_argument("--check", metavar="RESULTS", help="print KNOWN / NEW / XPASS; exit 1 on NEW or XPASS")
    action.add_argument("--update", metavar="RESULTS",
                        help=f"write {PROPOSED_NAME} beside the baseline (NEW added, stale removed) and print "
                             "the diff; the reviewed file is never changed")
    p.add_argument("--baseline", default=DEFAULT_FILE, help=f"the reviewed baseline (default {DEFAULT_FILE})")
    p.set_defaults(func=cmd_baseline)


def cmd_baseline(args: argparse.Namespace) -> int:
    source = args.check or args.update
    try:
        base = load(args.baseline)
        results = Results.load(source)
        if args.update:
            check_output(base.path.with_name(PROPOSED_NAME))
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    found = classify(results, base)
    if args.check:
        print(render_check(found, source), end="")
        return found.exit_code
    return _update(found, results)


def _update(found: Classification, results: Results) -> int:
    path = found.baseline.path
    proposed = propose(found, results)
    target = path.with_name(PROPOSED_NAME)
    diff = "".join(difflib.unified_diff(found.baseline.text.splitlines(keepends=True),
                                        proposed.splitlines(keepends=True), str(path), str(target)))
    if not diff:
        print(f"no change: {path} already matches {len(results.cells)} cells; nothing written")
        return 0
    write_atomically(target, proposed)
    print(diff, end="")
    print(f"wrote {target} ({len(found.new)} NEW cells, {len(found.stale)} stale entries); review it, then "
          f"move it over {path}")
    return 0
