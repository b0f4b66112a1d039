"""BUGS.md's "Proxy-validated identity" section (peers/proxy_identity.py): per server and scenario,
who refused and why; what nginx's `optional_no_ca` let through; whether a forged header was honoured.

Read from the cells only: the verdicts, the rejection (phase `handler`: the app's connect handler),
the proxy's `$ssl_client_verify` (ServerSaw.proxy_verify) and the `forged-header` tag.
"""

from __future__ import annotations

from collections import Counter
from typing import Sequence

from mtls_matrix.results import Cell, Verdict
from mtls_matrix.scenarios import BY_NAME
from mtls_matrix.verdict import APP_REASONS

GROUP = "proxy-identity"
FORGED = "forged-header"


def _who(cell: Cell) -> str:
    if cell.rejection is None:
        return "accepted" if cell.server_saw.handler_ran else cell.verdict.value
    who = "app" if cell.rejection.phase == "handler" else cell.server.split(":", 1)[1].split("+", 1)[0]
    return f"{who}: {cell.rejection.canonical}"


def _outcome(cells: list[Cell]) -> str:
    verdicts = Counter(c.verdict.value for c in cells)
    whos = Counter(_who(c) for c in cells)
    return (", ".join(f"{n} {v}" for v, n in sorted(verdicts.items())) + "; "
            + ", ".join(f"{w}" + (f" ×{n}" if n > 1 else "") for w, n in sorted(whos.items())))


def _accepted_unverified(cells: list[Cell]) -> list[Cell]:
    """Proxy cells where the proxy could not verify the certificate and passed the request on anyway."""
    return [c for c in cells if (c.server_saw.proxy_verify or "").startswith("FAILED")
            and (c.server_saw.handler_ran or (c.rejection is not None and c.rejection.phase == "handler"))]


def render(cells: Sequence[Cell]) -> list[str]:
    """Nothing when the results hold no proxy-identity cell."""
    ours = [c for c in cells if c.group == GROUP]
    if not ours:
        return []
    lines = ["## Proxy-validated identity", "",
             "The pattern of reference/socketio-mtls-nginx.md: a proxy asks for the client certificate without "
             "verifying it (nginx `ssl_verify_client optional_no_ca`), forwards it in `X-SSL-Client-Cert`, and the "
             "Socket.IO connect handler accepts it only if it is byte-equal to a stored certificate whose CN is the "
             "agent id the client claims. The app trusts the header only with the proxy's proof "
             "(`X-Proxy-Secret`, which nginx sets). `proxy-id-header-*`: the app alone, the client sending the "
             "headers itself; `proxy-id-cert-*`: nginx in front, the client presenting a certificate. The app's "
             "refusals: " + "; ".join(f"`{k}` {v}" for k, v in APP_REASONS.items()) + "; `CERT_REQUIRED` none "
             "forwarded.", "",
             "| server | scenario | expected | outcome (verdicts; who refused) |", "|---|---|---|---|"]
    for server in sorted({c.server for c in ours}):
        for name in [s for s in BY_NAME if any(c.server == server and c.scenario == s for c in ours)]:
            scenario = BY_NAME[name]
            expected = scenario.expect.reason or "accepted"
            group = [c for c in ours if c.server == server and c.scenario == name]
            lines.append(f"| `{server.split(':', 1)[1]}` | `{name}` | {expected} | {_outcome(group)} |")
    lines.append("")
    unverified = _accepted_unverified(ours)
    if unverified:
        said = sorted({c.server_saw.proxy_verify for c in unverified})
        lines += [f"**optional_no_ca: nginx accepts a certificate from any CA; the app's store is the only check.** "
                  f"In {len(unverified)} cells nginx could not verify the client certificate "
                  f"(`$ssl_client_verify`: {', '.join(f'`{s}`' for s in said)}) and passed the request on; only "
                  "the app's certificate store refused the ones it does not hold (and a certificate in the store is "
                  "accepted for as long as it stays there: the app checks no validity period or revocation).", ""]
    forged = [c for c in ours if FORGED in c.tags]
    if forged:
        honoured = [c for c in forged if c.verdict == Verdict.INSECURE or c.server_saw.handler_ran]
        if honoured:
            lines += [f"**A forged `X-SSL-Client-Cert` was honoured** in {len(honoured)} of {len(forged)} cells: "
                      + ", ".join(f"`{c.id}`" for c in honoured) + ".", ""]
        else:
            reasons = Counter(f"{c.server.split(':', 1)[1]}: {_who(c)}" for c in forged)
            lines += [f"No forged `X-SSL-Client-Cert` was honoured ({len(forged)} cells: "
                      + ", ".join(f"{r} ×{n}" for r, n in sorted(reasons.items())) + "). Directly, the app refused "
                      "the header without the proxy's proof; through nginx, `proxy_set_header` replaced the "
                      "client's headers with nginx's own (and dropped them when nginx had no certificate to "
                      "forward: an empty value sends no header at all), so the app saw only what nginx set.", ""]
    return lines
