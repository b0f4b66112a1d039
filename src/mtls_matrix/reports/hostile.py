"""BUGS.md's "Hostile peers" section: how each library copes when the other side misbehaves.

One table per role under test (clients against the hostile server, servers against the hostile
client): a row per peer, a column per behaviour, each entry what the peer did and how long it
took; then each library's default timeouts, as read from the library. Findings (HANG, FAIL) are
also in the findings list; this section is the overview that answers "does it have a timeout,
how long, and does it clean up?".
"""

from __future__ import annotations

from typing import Sequence

from mtls_matrix.hostile import RELEASE_S
from mtls_matrix.results import Cell, Verdict
from mtls_matrix.scenarios import BY_NAME, HOSTILE_GROUPS

UNDER_TEST = {group: "client" if role == "server" else "server" for group, role in HOSTILE_GROUPS.items()}


def entry(cell: Cell, deadline: float) -> str:
    """One table entry: the outcome in a few characters."""
    outcome = cell.hostile
    if outcome is None:
        return cell.verdict.value  # ERROR: the harness failed before it could tell
    if not outcome.ended:  # the cell's own deadline: the library's timeout plus a margin, or the harness's
        text = f"⏳ waits > {cell.deadline.seconds if cell.deadline else deadline:g} s"
        if cell.deadline and cell.deadline.source == "library":
            text += f" (outlived its {cell.deadline.timeout})"
    else:
        seconds = outcome.after_fault_s if outcome.after_fault_s is not None else outcome.after_s
        took = f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.1f} s"
        mark = "✓" if cell.verdict == Verdict.PASS else "✗"
        text = f"{mark} {outcome.how} {took}"
    if outcome.left_open:
        text += ", socket left open"
    return text


def _timeouts(values: dict[str, float | None]) -> str:
    return ", ".join(f"{name} {'none' if v is None else f'{v:g} s'}" for name, v in values.items()) or "-"


def render(cells: Sequence[Cell], deadline: float) -> list[str]:
    """Nothing when the results hold no hostile cell."""
    hostile = [c for c in cells if c.group in HOSTILE_GROUPS]
    if not hostile:
        return []
    lines = ["## Hostile peers", "",
             "The harness plays one side and misbehaves on purpose (peers/hostile.py); the other side is judged. "
             "The library gets no timeout from the harness: its own defaults decide, and the cell waits as long as "
             "the library's own timeout for that stall, plus a margin; where it has none (or one longer than the "
             "matrix waits), the harness's deadline. "
             "For a fault (closing, garbage, a reset) the time is the reaction after the fault; otherwise "
             "from the connection attempt. \"socket left open\": the peer still held its socket of the connection "
             f"{RELEASE_S:g} s after the connection ended.", ""]
    for group, role in UNDER_TEST.items():
        group_cells = [c for c in hostile if c.group == group]
        if not group_cells:
            continue
        names = [s for s in BY_NAME if BY_NAME[s].group == group and any(c.scenario == s for c in group_cells)]
        peers = sorted({getattr(c, role) for c in group_cells})
        lines += [f"### {role.capitalize()}s facing a hostile {HOSTILE_GROUPS[group]}", "",
                  "| behaviour | expected |", "|---|---|"]
        lines += [f"| `{BY_NAME[n].hostile}` | {BY_NAME[n].description}; {BY_NAME[n].expect.describe()} |" for n in names]
        lines += ["", "| " + role + " | " + " | ".join(f"`{BY_NAME[n].hostile}`" for n in names) + " |",
                  "|---" * (len(names) + 1) + "|"]
        by_key = {(getattr(c, role), c.scenario): c for c in group_cells}
        for peer in peers:
            row = [entry(by_key[(peer, n)], deadline) if (peer, n) in by_key else "·" for n in names]
            lines.append(f"| `{peer.split(':', 1)[1]}` | " + " | ".join(row) + " |")
        defaults = {}
        for c in group_cells:
            if c.hostile and c.hostile.own_timeouts:
                defaults.setdefault(getattr(c, role).split(":", 1)[1].split("[", 1)[0], c.hostile.own_timeouts)
        if defaults:
            lines += ["", "Default timeouts, read from each library: " + "; ".join(
                f"`{name}`: {_timeouts(values)}" for name, values in sorted(defaults.items())) + "."]
        lines.append("")
    return lines
