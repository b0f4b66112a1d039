"""Compare two runs (`diff`) and join the shards of one run (`merge`).

Both read only results.json files (results.py is the schema).

`mtls-matrix diff OLD NEW` exits 0 when no compared field of any cell changed and both runs
have the same cells, 1 when something changed, 2 for bad input. `--fields` chooses what
counts as a change: under TLS 1.3 a server's TCP reset can overtake its TLS alert, so the
canonical error of some rejections varies between two runs of the same code; a CI job that
only cares about verdicts passes `--fields verdict`.

`mtls-matrix merge SHARD... --out MERGED` joins shards of one run (CI runs one per server
peer): cells concatenated in shard order, run metadata combined.
"""

from __future__ import annotations

import argparse
import datetime as dt
from dataclasses import dataclass

from mtls_matrix.errors import UsageError
from mtls_matrix.options import names, output_file
from mtls_matrix.results import SEVERITY, Cell, Results, Run

FIELDS = {
    "verdict": lambda c: c.verdict.value,
    "phase": lambda c: c.phase,
    "canonical": lambda c: c.error.canonical,
}
DEFAULT_FIELDS = ("verdict", "phase", "canonical")
ONLY_OLD, ONLY_NEW = "only in OLD", "only in NEW"


def register(subparsers) -> None:
    diff = subparsers.add_parser(
        "diff", help="cells whose verdict, phase or canonical error changed between two runs",
        description="Exit 0: nothing changed; 1: a compared field of a cell changed, or a cell is in one run "
                    "only; 2: bad input (missing or malformed file, different schema versions, unknown field).")
    diff.add_argument("old", metavar="OLD", help="results.json of the earlier run")
    diff.add_argument("new", metavar="NEW", help="results.json of the later run")
    diff.add_argument("--format", choices=("text", "markdown"), default="text",
                      help="text for a terminal (default), markdown for a PR comment")
    diff.add_argument("--fields", default=",".join(DEFAULT_FIELDS),
                      help=f"comma-separated fields to compare, of {', '.join(FIELDS)} (default: all)")
    diff.set_defaults(func=cmd_diff)

    merge = subparsers.add_parser("merge", help="merge the results.json of shards of one run into one")
    merge.add_argument("shards", nargs="+", metavar="SHARD", help="results.json of each shard")
    merge.add_argument("--out", required=True, type=output_file, help="where to write the merged results.json")
    merge.set_defaults(func=cmd_merge)


def _load(path: str) -> Results:
    try:
        return Results.load(path)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def _fields(value: str) -> tuple[str, ...]:
    given = tuple(names(value) or ())
    unknown = [n for n in given if n not in FIELDS]
    if unknown or not given:
        raise UsageError(f"unknown field {', '.join(unknown) or repr(value)} for --fields; valid: {', '.join(FIELDS)}")
    return given


# --- diff -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Change:
    old: Cell | None
    new: Cell | None
    fields: tuple[str, ...]  # the compared fields that differ; empty for a cell in one run only

    @property
    def cell(self) -> Cell:
        return self.new or self.old

    @property
    def kind(self) -> str:
        """The group heading: a verdict transition, or what changed under an unchanged verdict."""
        if self.old is None:
            return ONLY_NEW
        if self.new is None:
            return ONLY_OLD
        if "verdict" in self.fields:
            return f"{self.old.verdict.value} -> {self.new.verdict.value}"
        return f"{self.new.verdict.value}, {' and '.join(self.fields)} changed"


def changes(old: Results, new: Results, fields: tuple[str, ...] = DEFAULT_FIELDS) -> list[Change]:
    before = {c.id: c for c in old.cells}
    after = {c.id: c for c in new.cells}
    found = [Change(before.get(i), after.get(i), ()) for i in [*before, *after]
             if (i in before) != (i in after)]
    for cell_id in before.keys() & after.keys():
        differ = tuple(f for f in fields if FIELDS[f](before[cell_id]) != FIELDS[f](after[cell_id]))
        if differ:
            found.append(Change(before[cell_id], after[cell_id], differ))
    return sorted(found, key=_order)


def _order(change: Change) -> tuple:
    """Verdict transitions first (worst new verdict first), then changes under an unchanged
    verdict, then cells of one run only."""
    rank = {ONLY_OLD: 2, ONLY_NEW: 3}.get(change.kind, 0 if "verdict" in change.fields else 1)
    cell = change.cell
    return (rank, SEVERITY[cell.verdict], change.kind, cell.server, cell.client, cell.scenario, cell.profile)


def grouped(found: list[Change]) -> dict[str, dict[tuple[str, str], list[Change]]]:
    """kind -> (server, client) -> changes, in report order (dicts keep insertion order)."""
    groups: dict[str, dict[tuple[str, str], list[Change]]] = {}
    for change in found:
        pairs = groups.setdefault(change.kind, {})
        pairs.setdefault((change.cell.server, change.cell.client), []).append(change)
    return groups


def _show(value) -> str:
    return "none" if value is None else str(value)


def describe(change: Change) -> str:
    """One line: what changed in the cell, or, for a one-run cell, its outcome."""
    if not change.fields:
        c = change.cell
        return f"{c.verdict.value} at {c.phase}, canonical {_show(c.error.canonical)}"
    return "; ".join(f"{f} {_show(FIELDS[f](change.old))} -> {_show(FIELDS[f](change.new))}" for f in change.fields)


def _arrow(a: str, b: str) -> str:
    return a if a == b else f"{a} -> {b}"


def versions_line(old: dict[str, str], new: dict[str, str]) -> str:
    """Each library once: 'x 1.0' when both runs agree, 'x 1.0 -> 1.1' when not, '-' for absent."""
    libs = sorted(old.keys() | new.keys())
    return ", ".join(f"{lib} {_arrow(old.get(lib, '-'), new.get(lib, '-'))}" for lib in libs) or "none recorded"


def _pair_versions(changes_of_pair: list[Change]) -> str:
    first = changes_of_pair[0]
    return versions_line(first.old.versions if first.old else {}, first.new.versions if first.new else {})


def _summary(found: list[Change], old: Results, new: Results) -> str:
    only_old = sum(c.kind == ONLY_OLD for c in found)
    only_new = sum(c.kind == ONLY_NEW for c in found)
    changed = len(found) - only_old - only_new
    return (f"{changed} cells changed, {only_old} only in OLD, {only_new} only in NEW "
            f"(OLD {len(old.cells)} cells, NEW {len(new.cells)})")


def _run_lines(old: Results, new: Results, old_path: str, new_path: str) -> list[str]:
    return [
        f"OLD {old_path} (started {old.run.started}) -> NEW {new_path} (started {new.run.started})",
        f"versions: {versions_line(old.run.versions, new.run.versions)}",
        f"python {_arrow(old.run.python, new.run.python)}; openssl {_arrow(old.run.openssl, new.run.openssl)}",
    ]


def render_text(found: list[Change], old: Results, new: Results, paths: tuple[str, str],
                fields: tuple[str, ...]) -> str:
    lines = _run_lines(old, new, *paths) + [f"compared: {', '.join(fields)}", _summary(found, old, new)]
    for kind, pairs in grouped(found).items():
        lines += ["", f"{kind} ({sum(map(len, pairs.values()))})"]
        for (server, client), items in pairs.items():
            lines.append(f"  {server} x {client}  [{_pair_versions(items)}]")
            lines += [f"    {c.cell.id}: {describe(c)}" for c in items]
    return "\n".join(lines) + "\n"


def render_markdown(found: list[Change], old: Results, new: Results, paths: tuple[str, str],
                    fields: tuple[str, ...]) -> str:
    run = _run_lines(old, new, *paths)
    lines = ["### mtls-matrix diff", "", f"- {run[0]}", f"- {run[1]}", f"- {run[2]}",
             f"- compared: {', '.join(fields)}", "", f"**{_summary(found, old, new)}**"]
    for kind, pairs in grouped(found).items():
        lines += ["", f"#### {kind.replace('->', '→')} ({sum(map(len, pairs.values()))})"]
        for (server, client), items in pairs.items():
            lines += ["", f"`{server}` × `{client}` ({_pair_versions(items)})", ""]
            lines += [f"- `{c.cell.id}`: {describe(c)}" for c in items]
    return "\n".join(lines) + "\n"


def cmd_diff(args: argparse.Namespace) -> int:
    fields = _fields(args.fields)
    old, new = _load(args.old), _load(args.new)
    found = changes(old, new, fields)
    render = render_markdown if args.format == "markdown" else render_text
    print(render(found, old, new, (args.old, args.new), fields), end="")
    return 1 if found else 0


# --- merge ------------------------------------------------------------------------------------

# Shards of one run must agree on what decides a verdict; other run fields are combined.
MUST_AGREE = ("python", "openssl", "deadline_s", "profiles")
MERGED_CA = "merged"


def _agree(named: list[tuple[str, Results]], field: str):
    values = {str(getattr(r.run, field)): path for path, r in named}
    if len(values) > 1:
        shown = "; ".join(f"{v} ({p})" for v, p in values.items())
        raise UsageError(f"shards differ in {field}: {shown}; they are not shards of one run")
    return getattr(named[0][1].run, field)


def _union_versions(named: list[tuple[str, Results]]) -> dict[str, str]:
    """A library at two versions means two different runs: refuse rather than pick one."""
    seen: dict[str, tuple[str, str]] = {}
    for path, r in named:
        for lib, version in r.run.versions.items():
            if lib in seen and seen[lib][0] != version:
                raise UsageError(f"shards ran different versions of {lib}: {seen[lib][0]} ({seen[lib][1]}), "
                                 f"{version} ({path}); they are not shards of one run")
            seen.setdefault(lib, (version, path))
    return {lib: seen[lib][0] for lib in sorted(seen)}


def _cells(named: list[tuple[str, Results]]) -> list[Cell]:
    where: dict[str, str] = {}
    cells = []
    for path, r in named:
        for cell in r.cells:
            if cell.id in where:
                raise UsageError(f"cell {cell.id} is in two shards: {where[cell.id]} and {path}")
            where[cell.id] = path
            cells.append(cell)
    return cells


def _unique(values: list[str]) -> list[str]:
    return list(dict.fromkeys(v for v in values if v))


def _span(named: list[tuple[str, Results]]) -> tuple[str, str | None, float | None]:
    """Earliest start, latest finish (None if a shard never finished), wall time between them.
    Times with a UTC offset and times without cannot be ordered: all have one, or none."""
    times: dict[str, list[tuple[dt.datetime, str]]] = {"started": [], "finished": []}
    naive = []
    for path, r in named:
        for field, value in (("started", r.run.started), ("finished", r.run.finished)):
            if value is None:
                continue
            try:
                time = dt.datetime.fromisoformat(value)
            except ValueError:
                raise UsageError(f"{path}: run.{field} {value!r} is not an ISO 8601 time") from None
            times[field].append((time, value))
            if time.tzinfo is None:
                naive.append(f"run.{field} of {path}")
    if naive and len(naive) < sum(map(len, times.values())):
        raise UsageError(f"{', '.join(naive)} has no UTC offset, unlike the other shards' times: they cannot be ordered")
    started = min(times["started"])
    if len(times["finished"]) < len(named):
        return started[1], None, None
    finished = max(times["finished"])
    return started[1], finished[1], round((finished[0] - started[0]).total_seconds(), 2)


def merge(named: list[tuple[str, Results]]) -> Results:
    """Raises UsageError naming the shard and what does not fit."""
    runs = [r.run for _, r in named]
    agreed = {field: _agree(named, field) for field in MUST_AGREE}
    started, finished, duration = _span(named)
    fingerprints = [r.ca_fingerprint for r in runs]
    run = Run(
        started=started, finished=finished, duration_s=duration,
        complete=all(r.complete for r in runs),
        command=" ; ".join(_unique([r.command for r in runs])),
        platform=" | ".join(_unique([r.platform for r in runs])),  # runners differ in kernel builds
        versions=_union_versions(named),
        # Each shard built its own CA: no single fingerprint describes the merged run.
        ca_fingerprint=fingerprints[0] if len(set(fingerprints)) == 1 else MERGED_CA,
        ca_fingerprints=fingerprints,
        scrubbed_env=sorted({v for r in runs for v in r.scrubbed_env}),
        workers=sum(r.workers for r in runs),
        environments=[e for r in runs for e in r.environments],
        **agreed,
    )
    # No baseline summary: a shard's stale entries may match cells of another shard. Each cell's
    # own KNOWN/NEW is kept; `mtls-matrix baseline --check MERGED` judges the whole run.
    return Results(run=run, cells=_cells(named))


def cmd_merge(args: argparse.Namespace) -> int:
    named = [(path, _load(path)) for path in args.shards]
    merged = merge(named)  # every check before anything is written
    merged.save(args.out)
    print(f"wrote {args.out}: {len(merged.cells)} cells from {len(named)} shards"
          f"{'' if merged.run.complete else ' (incomplete: a shard did not finish)'}")
    return 0
