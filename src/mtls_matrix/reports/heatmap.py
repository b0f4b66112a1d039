"""The servers x clients heatmap as a standalone SVG, and the colours the HTML report shares.

`render_svg(results) -> str`. One square per (server, client) pair, filled with the colour of the
worst verdict among its cells (one INSECURE cell among forty PASS must not look green), with the
count of every verdict present written inside. BUGS.md and README.md embed it; it reads only
results.json, like every renderer.
"""

from __future__ import annotations

from collections import Counter
from typing import Iterable
from xml.sax.saxutils import escape

from mtls_matrix.results import SEVERITY, Cell, Results, Verdict

# Fill and text colour per verdict. Dark fills with white text, except UNSUPPORTED, which is
# informational and must not draw the eye. INSECURE is purple rather than red so that it stays
# distinct from FAIL for readers who cannot tell red from orange.
COLOURS = {
    Verdict.INSECURE: ("#6a1b9a", "#ffffff"),
    Verdict.HANG: ("#e65100", "#ffffff"),
    Verdict.FAIL: ("#c62828", "#ffffff"),
    Verdict.ERROR: ("#37474f", "#ffffff"),
    Verdict.UNSUPPORTED: ("#cfd8dc", "#263238"),
    Verdict.SKIPPED: ("#eceff1", "#455a64"),
    Verdict.PASS: ("#2e7d32", "#ffffff"),
}
NOT_RUN = ("#f5f5f5", "#9e9e9e")
WORST_FIRST = sorted(Verdict, key=SEVERITY.__getitem__)

CELL_W, CELL_H, PAD = 150, 74, 8
CHAR_W = 7.2  # monospace 12px: used to size the label column without font metrics
LINE_H = 15


def short(peer: str) -> str:
    """`client:aiohttp[ssl=context]` -> `aiohttp[ssl=context]`: the role is the axis."""
    return peer.split(":", 1)[-1]


def worst(tally: Counter[Verdict]) -> Verdict | None:
    return next((v for v in WORST_FIRST if tally[v]), None)


def pair_counts(cells: Iterable[Cell]) -> dict[tuple[str, str], Counter[Verdict]]:
    tallies: dict[tuple[str, str], Counter[Verdict]] = {}
    for c in cells:
        tallies.setdefault((c.server, c.client), Counter())[c.verdict] += 1
    return tallies


def render_svg(results: Results) -> str:
    servers = sorted({c.server for c in results.cells})
    clients = sorted({c.client for c in results.cells})
    tallies = pair_counts(results.cells)
    label_w = int(max([len(short(c)) for c in clients] + [10]) * CHAR_W) + 2 * PAD
    top = 2 * LINE_H + 3 * PAD
    width = label_w + len(servers) * CELL_W + PAD
    legend_y = top + len(clients) * CELL_H + 2 * PAD
    height = legend_y + 2 * LINE_H + 2 * PAD
    parts = _head(results, width, height)
    for i, server in enumerate(servers):
        parts.append(_text(label_w + i * CELL_W + CELL_W / 2, top - PAD, short(server), anchor="middle"))
    for j, client in enumerate(clients):
        y = top + j * CELL_H
        parts.append(_text(label_w - PAD, y + CELL_H / 2 + 4, short(client), anchor="end"))
        for i, server in enumerate(servers):
            parts += _square(label_w + i * CELL_W, y, tallies.get((server, client), Counter()))
    parts += _legend(PAD, legend_y)
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def _head(results: Results, width: int, height: int) -> list[str]:
    return [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="monospace" font-size="12">',
        f"<title>mtls-matrix: {len(results.cells)} cells, servers x clients, worst verdict per pair</title>",
        f'<rect width="{width}" height="{height}" fill="#ffffff"/>',
        _text(PAD, PAD + LINE_H, f"client \\ server ({len(results.cells)} cells, {results.run.started})",
              weight="bold"),
    ]


def _square(x: float, y: float, tally: Counter[Verdict]) -> list[str]:
    verdict = worst(tally)
    fill, ink = COLOURS[verdict] if verdict else NOT_RUN
    lines = [f"{tally[v]} {v.value}" for v in WORST_FIRST if tally[v]] or ["not run"]
    title = ", ".join(lines)
    out = [f'<rect class="pair" x="{x + 2}" y="{y + 2}" width="{CELL_W - 4}" height="{CELL_H - 4}" rx="3" '
           f'fill="{fill}"><title>{escape(title)}</title></rect>']
    first = y + CELL_H / 2 - (len(lines) - 1) * LINE_H / 2 + 4
    for k, line in enumerate(lines):
        out.append(_text(x + CELL_W / 2, first + k * LINE_H, line, anchor="middle", fill=ink))
    return out


def _legend(x: float, y: float) -> list[str]:
    out = []
    for v in WORST_FIRST:
        fill, _ = COLOURS[v]
        out.append(f'<rect x="{x}" y="{y}" width="12" height="12" fill="{fill}"/>')
        out.append(_text(x + 16, y + 10, v.value))
        x += 16 + len(v.value) * CHAR_W + 2 * PAD
    note = "colour: the worst verdict among the pair's cells; text: cells per verdict"
    out.append(_text(PAD, y + 10 + LINE_H + 4, note, fill="#555555"))
    return out


def _text(x: float, y: float, text: str, anchor: str = "start", fill: str = "#212121",
          weight: str = "normal") -> str:
    return (f'<text x="{x:g}" y="{y:g}" text-anchor="{anchor}" fill="{fill}" font-weight="{weight}">'
            f"{escape(text)}</text>")
