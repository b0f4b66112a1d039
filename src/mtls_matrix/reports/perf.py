"""Per-pair performance, from the matrix's own cells, next to the bare-ssl floor.

No extra runs: every number comes from results.json. Both renderers (BUGS.md, report.html) call
`performance()` so they show the same figures.

- Handshake latency: `timings["tls-handshake"] - timings["tcp"]` of PASS cells where both sides
  completed the handshake, i.e. from the server's first sight of the accepted TCP connection to the
  client's finished mutual handshake. Only cells like the floor's handshakes count (TLS 1.3, the
  default ECDSA leaves: not the rsa / ed25519 / chain scenarios), so the ratio compares like with
  like; the client's own setup (building its context, loading keys) happens before `tcp` and is
  left out, as the floor's prebuilt contexts leave it out.
- 1 MiB echo throughput: the io-1mib cell's `binary` step (send 1 MiB, receive it back: 2 MiB
  moved) under the default profile, or under tuned when the default fails (a default that cannot
  carry 1 MiB is a finding of its own, shown elsewhere).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from html import escape

from mtls_matrix.floor import mib_per_s, percentile
from mtls_matrix.results import Cell, Floor, Results, Verdict

ECHO_SCENARIO = "io-1mib"
ECHO_MOVED = 2 * (1 << 20)  # 1 MiB there and back
UNLIKE_FLOOR = {"rsa", "ed25519", "chain"}  # other certificates than the floor's ECDSA leaves
NONE = "—"


@dataclass
class PairPerf:
    server: str
    client: str
    handshakes_ms: list[float] = field(default_factory=list)
    echo_mib_s: float | None = None
    echo_profile: str | None = None

    @property
    def working(self) -> bool:
        return bool(self.handshakes_ms)

    @property
    def p50(self) -> float | None:
        return percentile(self.handshakes_ms, 50) if self.handshakes_ms else None

    @property
    def p95(self) -> float | None:
        return percentile(self.handshakes_ms, 95) if self.handshakes_ms else None


@dataclass
class Performance:
    pairs: list[PairPerf]
    floor: Floor | None


def handshake_ms(cell: Cell) -> float | None:
    """This cell's handshake latency if it is a completed mutual handshake like the floor's."""
    t = cell.timings
    like_floor = cell.client_tls.version == "TLSv1.3" and not UNLIKE_FLOOR & set(cell.tags)
    completed = cell.client_tls.handshake == "ok" and cell.server_saw.tls.handshake == "ok"
    if cell.verdict != Verdict.PASS or not (like_floor and completed) or "tcp" not in t or "tls-handshake" not in t:
        return None
    return max(t["tls-handshake"] - t["tcp"], 0.0)


def echo_ms(cell: Cell) -> float | None:
    step = next((s for s in cell.steps if s.op == "binary"), None)
    if cell.verdict != Verdict.PASS or step is None or not step.ok or not step.ms:
        return None
    return step.ms


def _pair_key(cell: Cell) -> tuple[str, str]:
    client = f"{cell.client}@{cell.environment}" if cell.environment else cell.client
    return cell.server, client


def performance(results: Results) -> Performance:
    pairs: dict[tuple[str, str], PairPerf] = {}
    echoes: dict[tuple[str, str], dict[str, float]] = defaultdict(dict)
    for cell in results.cells:
        key = _pair_key(cell)
        pair = pairs.setdefault(key, PairPerf(*key))
        if (ms := handshake_ms(cell)) is not None:
            pair.handshakes_ms.append(ms)
        if cell.scenario == ECHO_SCENARIO and (ms := echo_ms(cell)) is not None:
            echoes[key][cell.profile] = ms
    for key, by_profile in echoes.items():
        profile = "default" if "default" in by_profile else min(by_profile)
        pairs[key].echo_mib_s = mib_per_s(ECHO_MOVED, by_profile[profile])
        pairs[key].echo_profile = profile
    return Performance(sorted(pairs.values(), key=lambda p: (p.server, p.client)), results.run.floor)


# --------------------------------------------------------------------------- rows

HEADER = ["server", "client", "handshakes", "p50 ms", "p95 ms", "p50 / floor", "1 MiB echo MiB/s", "floor / echo"]
EXPLAIN = ("TLS handshake latency from the server's accept to the client's completed mutual handshake, over "
           "the PASS cells of each pair with a TLS 1.3 handshake on the default ECDSA certificates (the floor's "
           "kind); 1 MiB echo throughput from the io-1mib cell's binary step (2 MiB moved; the tuned profile when "
           "the default fails). The floor is bare asyncio + ssl on the same machine, measured at the start of "
           "the run. The matrix runs cells in parallel, so these are latencies under load: read the ratios "
           "between pairs, not as benchmarks.")


def _ms(value: float | None) -> str:
    return NONE if value is None else f"{value:.1f}"


def _times(value: float | None, floor: float | None) -> str:
    return NONE if value is None or not floor else f"{value / floor:.1f}×"


def floor_row(floor: Floor) -> list[str]:
    return ["bare asyncio + ssl (floor)", "", str(floor.handshakes), _ms(floor.handshake_p50_ms),
            _ms(floor.handshake_p95_ms), "1.0×", f"{floor.echo_mib_s:.0f}", "1.0×"]


def pair_row(pair: PairPerf, floor: Floor | None) -> list[str]:
    if not pair.working:
        return [pair.server, pair.client, "0", "no working cell", NONE, NONE, NONE, NONE]
    echo = NONE if pair.echo_mib_s is None else f"{pair.echo_mib_s:.0f}"
    if pair.echo_profile and pair.echo_profile != "default":
        echo += f" ({pair.echo_profile})"
    return [pair.server, pair.client, str(len(pair.handshakes_ms)), _ms(pair.p50), _ms(pair.p95),
            _times(pair.p50, floor and floor.handshake_p50_ms),
            echo, _times(floor and floor.echo_mib_s, pair.echo_mib_s)]


def rows(perf: Performance) -> list[list[str]]:
    head = [floor_row(perf.floor)] if perf.floor else []
    return head + [pair_row(p, perf.floor) for p in perf.pairs]


# --------------------------------------------------------------------------- renderers

def render_markdown(results: Results) -> list[str]:
    perf = performance(results)
    if not perf.pairs:
        return []
    lines = ["## Performance by pair", "", EXPLAIN, ""]
    if not perf.floor:
        lines += ["No floor in this results file (an older run, or a merged one): ratios are left out.", ""]
    body = [floor_row(perf.floor)] if perf.floor else []
    body += [[f"`{p.server}`", f"`{p.client}`", *pair_row(p, perf.floor)[2:]] for p in perf.pairs]
    lines += ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    return lines + ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in body] + [""]


def render_html(results: Results) -> str:
    perf = performance(results)
    if not perf.pairs:
        return ""
    head = "".join(f"<th>{escape(h)}</th>" for h in HEADER)
    body = "".join("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in row) + "</tr>" for row in rows(perf))
    missing = "" if perf.floor else "<p>No floor in this results file: ratios are left out.</p>"
    return (f'<section id="perf"><h2>Performance by pair</h2><p>{escape(EXPLAIN)}</p>{missing}'
            f'<table class="grid"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></section>')
