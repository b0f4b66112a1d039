"""The verdicts-by-version table of `mtls-matrix versions` (versions.md, and BUGS.md for results
that span several library versions)."""

from __future__ import annotations

from collections import Counter
from typing import Iterable

from mtls_matrix.results import SEVERITY, Results, Verdict


def base_id(cell_id: str) -> str:
    return cell_id.split("@", 1)[0]


def counts(cells: Iterable) -> str:
    counts = Counter(c.verdict for c in cells)
    return ", ".join(f"{counts[v]} {v.value}" for v in sorted(counts, key=SEVERITY.get)) or "-"


def verdict_text(cell) -> str:
    if cell is None:
        return "-"
    if cell.verdict == Verdict.SKIPPED and cell.reason.startswith("cannot run"):
        return "cannot run"
    canonical = cell.error.canonical
    return f"{cell.verdict.value} ({canonical})" if cell.verdict != Verdict.PASS and canonical else cell.verdict.value


def render_table(results: Results, heading: str = "#", all_cells_up_to: int = 40) -> str:
    """Markdown: per environment its status and verdict counts; the cells whose verdict differs
    between environments (every cell when there are few); verdict counts per scenario group."""
    envs = results.run.environments
    names = [e.name for e in envs]
    by_env: dict[str, dict[str, object]] = {n: {} for n in names}
    for cell in results.cells:
        by_env.setdefault(cell.environment or "", {})[base_id(cell.id)] = cell
    ids = list(dict.fromkeys(base_id(c.id) for c in results.cells))
    out = [f"{heading} Verdicts by library version", ""]
    out += ["| environment | status | cells | verdicts |", "|---|---|---|---|"]
    for e in envs:
        status = e.status if e.ok else f"**{e.status}**: {(e.detail or '').splitlines()[-1] if e.detail else ''}"
        out.append(f"| `{e.name}` | {status.replace('|', '/')} | {e.cells} | "
                   f"{counts(by_env[e.name].values())} |")
    runnable = [e.name for e in envs if e.ok]
    differ = [i for i in ids if len({verdict_text(by_env[n].get(i)) for n in runnable}) > 1]
    shown = ids if len(ids) <= all_cells_up_to else differ
    out += ["", f"{heading}# {'Cells' if shown is ids else 'Cells whose verdict differs between versions'}", ""]
    if shown:
        out += ["| cell | " + " | ".join(f"`{n}`" for n in runnable) + " |", "|---|" + "---|" * len(runnable)]
        for i in shown:
            mark = " **changed**" if i in differ else ""
            out.append(f"| {i}{mark} | " + " | ".join(verdict_text(by_env[n].get(i)) for n in runnable) + " |")
    else:
        out.append("No cell's verdict differs between the versions that ran.")
    groups = list(dict.fromkeys(c.group for c in results.cells))
    if groups:
        out += ["", f"{heading}# By scenario group", "",
                "| group | " + " | ".join(f"`{n}`" for n in runnable) + " |", "|---|" + "---|" * len(runnable)]
        for g in groups:
            out.append(f"| {g} | " + " | ".join(counts(c for c in by_env[n].values() if c.group == g)
                                                 for n in runnable) + " |")
    cannot = Counter((c.environment, c.reason) for c in results.cells
                     if c.verdict == Verdict.SKIPPED and c.reason.startswith("cannot run"))
    if cannot:  # the adapter cannot drive that release in these cells: no verdict about the library
        out += ["", f"{heading}# Cells the peers cannot run in an environment", ""]
        out += [f"- `{env}`: {count} cells: {reason}" for (env, reason), count in cannot.items()]
    not_run = [e for e in envs if not e.ok]
    if not_run:
        out += ["", f"{heading}# Versions that did not run", ""]
        for e in not_run:
            out += [f"- `{e.name}`: {e.status}", "", "  ```", *("  " + line for line in (e.detail or "").splitlines()),
                    "  ```"]
    return "\n".join(out) + "\n"
