"""The servers x clients heatmap as a standalone SVG (docs/heatmap.svg), and the colours the HTML
report shares.

`render_svg(analysis) -> str`. One grid per family, one square per pair, filled with the colour of
its state (findings.pair_state: the worst severity among its cells; a control variant's expected
acceptances never colour it), with the count of cells per severity written inside.
"""

from __future__ import annotations

from xml.sax.saxutils import escape

from mtls_matrix.findings import ADVISORY, BROKEN, INSECURE, NOT_RUN, PAIR_STATES, WORKS, Analysis, Answer, short

# Fill and text colour per pair state. INSECURE is purple rather than red so that it stays distinct
# from broken for readers who cannot tell red from orange.
COLOURS = {
    INSECURE: ("#6a1b9a", "#ffffff"),
    BROKEN: ("#c62828", "#ffffff"),
    ADVISORY: ("#f9a825", "#212121"),
    WORKS: ("#2e7d32", "#ffffff"),
    NOT_RUN: ("#f5f5f5", "#9e9e9e"),
}
COUNTED = (("critical", "critical"), ("broken", "broken"), ("advisory", "advisory"), ("ok", "ok"))

CELL_W, CELL_H, PAD = 130, 64, 8
CHAR_W = 7.2  # monospace 12px: sizes the label column without font metrics
LINE_H = 15


def render_svg(analysis: Analysis) -> str:
    answers = analysis.answers
    clients = [c for a in answers for c in a.clients]
    servers = max((len(a.servers) for a in answers), default=0)
    label_w = int(max([len(short(c)) for c in clients] + [12]) * CHAR_W) + 2 * PAD
    width = label_w + servers * CELL_W + PAD
    y = 2 * LINE_H + 2 * PAD
    body: list[str] = []
    for answer in answers:
        body += _grid(answer, label_w, y)
        y += 2 * LINE_H + PAD + len(answer.clients) * CELL_H + 2 * PAD
    body += _legend(PAD, y)
    height = y + 2 * LINE_H + 2 * PAD
    cells = len(analysis.matrix.cells)
    head = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" font-family="monospace" font-size="12">',
            f"<title>mtls-matrix: {cells} cells, servers x clients, coloured by the worst severity per pair</title>",
            f'<rect width="{width}" height="{height}" fill="#ffffff"/>',
            _text(PAD, PAD + LINE_H, f"client \\ server ({cells} cells, {analysis.run.started})", weight="bold")]
    return "\n".join(head + body + ["</svg>"]) + "\n"


def _grid(answer: Answer, label_w: int, y: float) -> list[str]:
    out = [_text(PAD, y + LINE_H, f"{answer.family} family", weight="bold")]
    top = y + 2 * LINE_H + PAD
    for i, server in enumerate(answer.servers):
        out.append(_text(label_w + i * CELL_W + CELL_W / 2, top - PAD, short(server), anchor="middle"))
    for j, client in enumerate(answer.clients):
        row = top + j * CELL_H
        out.append(_text(label_w - PAD, row + CELL_H / 2 + 4, short(client), anchor="end"))
        for i, server in enumerate(answer.servers):
            out += _square(label_w + i * CELL_W, row, answer, server, client)
    return out


def _square(x: float, y: float, answer: Answer, server: str, client: str) -> list[str]:
    state = answer.state(server, client)
    fill, ink = COLOURS[state]
    tally = answer.counts.get((server, client), {})
    lines = [f"{tally[key]} {label}" for key, label in COUNTED if tally.get(key)] or ["not run"]
    title = f"{short(server)} x {short(client)}: {state}; " + ", ".join(lines) + (
        f", {tally['control']} control" if tally.get("control") else "")
    out = [f'<rect class="pair" x="{x + 2}" y="{y + 2}" width="{CELL_W - 4}" height="{CELL_H - 4}" rx="3" '
           f'fill="{fill}" data-state="{escape(state)}"><title>{escape(title)}</title></rect>']
    first = y + CELL_H / 2 - (len(lines) - 1) * LINE_H / 2 + 4
    for k, line in enumerate(lines):
        out.append(_text(x + CELL_W / 2, first + k * LINE_H, line, anchor="middle", fill=ink))
    return out


def _legend(x: float, y: float) -> list[str]:
    out = []
    for state in PAIR_STATES:
        fill, _ = COLOURS[state]
        out.append(f'<rect x="{x}" y="{y}" width="12" height="12" fill="{fill}" stroke="#9e9e9e"/>')
        out.append(_text(x + 16, y + 10, state))
        x += 16 + len(state) * CHAR_W + 2 * PAD
    note = "colour: the worst severity among the pair's cells (controls aside); text: cells per severity"
    out.append(_text(PAD, y + 10 + LINE_H + 4, note, fill="#555555"))
    return out


def _text(x: float, y: float, text: str, anchor: str = "start", fill: str = "#212121",
          weight: str = "normal") -> str:
    return (f'<text x="{x:g}" y="{y:g}" text-anchor="{anchor}" fill="{fill}" font-weight="{weight}">'
            f"{escape(text)}</text>")
