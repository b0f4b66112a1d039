"""BUGS.md's "Resource hygiene" section: what each peer left behind after its rejected connections.

Observed, not judged (a leak never changes a verdict): per peer, over its rejection cells (groups
client-rejected and server-rejected), how many cells left what. A server answers for the server
side (its sockets, its loop's tasks), a client variant for the client side; a ResourceWarning
cannot be told apart by side, so it counts for both peers of the cell.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Sequence

from mtls_matrix.leaks import EARLIER
from mtls_matrix.results import Cell

GROUPS = ("client-rejected", "server-rejected")
SIDES = {"server": ("server_sockets", "server_tasks"), "client": ("client_sockets", "client_tasks")}


def _warnings(cell: Cell) -> list[str]:
    """The cell's ResourceWarnings, less those about a socket of another listener (an earlier
    cell's object, collected during this one)."""
    return [m for m in cell.leaks.resource_warnings if not m.startswith(EARLIER)] if cell.leaks else []


def _what(cell: Cell, role: str) -> list[str]:
    """What the cell leaked that `role`'s peer answers for, in words."""
    leaks = cell.leaks
    if leaks is None:
        return []
    sockets, tasks = (getattr(leaks, field) for field in SIDES[role])
    found = []
    if sockets:
        found.append(f"{sockets} open {'socket' if sockets == 1 else 'sockets'}")
    if tasks:
        found.append(f"{tasks} pending {'task' if tasks == 1 else 'tasks'}")
    if _warnings(cell):
        found.append(f"ResourceWarning: {_warnings(cell)[0]}")
    return found


def _row(peer: str, role: str, cells: list[Cell]) -> str | None:
    sockets = sum(bool(getattr(c.leaks, SIDES[role][0])) for c in cells if c.leaks)
    tasks = sum(bool(getattr(c.leaks, SIDES[role][1])) for c in cells if c.leaks)
    warned = sum(bool(_warnings(c)) for c in cells)
    leaky = [c for c in cells if _what(c, role)]
    if not leaky:
        return None
    example = next((c for c in leaky if any(getattr(c.leaks, f) for f in SIDES[role])), leaky[0])  # a side's own leak first
    detail = "; ".join(_what(example, role)).replace("|", "\\|").replace("\n", " ")
    if len(detail) > 200:
        detail = detail[:197] + "..."
    return (f"| {role} `{peer.split(':', 1)[1]}` | {len(leaky)} of {len(cells)} | {sockets} | {tasks} | {warned} | "
            f"`{example.id}`: {detail} |")


def render(cells: Sequence[Cell]) -> list[str]:
    """Nothing when the results hold no rejection cell."""
    rejections = sorted((c for c in cells if c.group in GROUPS), key=lambda c: c.id)
    if not rejections:
        return []
    lines = ["## Resource hygiene", "",
             "What the peers left behind once a rejected connection's cell settled (observed, not judged: "
             "verdicts do not change): open sockets of the connection (a peer in another process, a foreign "
             "program, a proxy or a browser, included: counted from outside in /proc, by the cell's port), "
             "pending asyncio tasks (the client's loop "
             "when it was closed, the increase on the server's), ResourceWarnings emitted during the cell. "
             "A ResourceWarning is attributed to the cell current when the object was collected, and counts "
             "for both peers of that cell; one about a socket connected to another listener is an earlier cell's "
             "(collected later) and is not counted.", ""]
    leaked = [c for c in rejections if _what(c, "server") or _what(c, "client")]
    if not leaked:
        n = len(rejections)
        return lines + [f"No peer left anything behind in {n} rejection {'cell' if n == 1 else 'cells'}.", ""]
    lines += [f"{len(leaked)} of {len(rejections)} rejection cells left something behind.", "",
              "| peer | cells that leaked | open sockets | pending tasks | ResourceWarnings | example |",
              "|---|---|---|---|---|---|"]
    for role in ("server", "client"):
        by_peer: dict[str, list[Cell]] = defaultdict(list)
        for c in rejections:
            by_peer[getattr(c, role)].append(c)
        lines += [row for peer in sorted(by_peer) if (row := _row(peer, role, by_peer[peer]))]
    clean = sorted({getattr(c, role) for role in ("server", "client") for c in rejections}
                   - {getattr(c, role) for role in ("server", "client") for c in rejections if _what(c, role)})
    if clean:
        lines += ["", "Clean in every rejection cell: " + ", ".join(f"`{p.split(':', 1)[1]}`" for p in clean) + "."]
    return lines + [""]
