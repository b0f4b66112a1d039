"""Hand-built results for the findings and report tests: no TLS, no peers, only the schema.

`cell(server, client, scenario, **outcome)` makes one cell as the run would record it (group and tags
from today's catalogue); `results(*cells, peers=...)` the results file, with a PeerInfo per peer the
cells name (library from the name, CPython ssl unless `peers` says otherwise) and the scenarios.
"""

from __future__ import annotations

from mtls_matrix import scenarios
from mtls_matrix.results import (
    Cell, ErrorInfo, PeerInfo, Rejection, Results, Run, ScenarioInfo, ServerSaw, TLSSide, Verdict,
)

SERVERS = ("server:alpha", "server:beta")
CLIENTS = ("client:one[a=1]", "client:one[b=2]", "client:two[x=1]")
OK = dict(verdict=Verdict.PASS, phase="io")
INSECURE = dict(verdict=Verdict.INSECURE, phase="io",
                reason="accepted (the handler ran) although the client must reject")
TOO_BIG = dict(verdict=Verdict.FAIL, phase="io", reason="binary: closed with 1009",
               error=ErrorInfo(canonical="MESSAGE_TOO_BIG", type="lib.Closed", message="1009 message too big",
                               clarity="OPAQUE"))
RESET = dict(verdict=Verdict.FAIL, phase="io", reason="binary: connection reset",
             error=ErrorInfo(canonical="CONNECTION_RESET", type="ConnectionResetError", message="reset",
                             clarity="OPAQUE"))
LATE_RESET = dict(verdict=Verdict.FAIL, phase="upgrade",
                  reason="rejected by the server (UNKNOWN_CA) instead of the client",
                  error=ErrorInfo(canonical="CONNECTION_RESET", type="ConnectionResetError", message="",
                                  clarity="OPAQUE"),
                  rejection=Rejection(by="server", canonical="UNKNOWN_CA", phase="verification", message="unknown ca"))


def short(peer: str) -> str:
    return peer.split(":", 1)[1]


def cell(server: str, client: str, scenario: str, profile: str = "default", **outcome) -> Cell:
    known = scenarios.BY_NAME[scenario]
    suffix = "-tuned" if profile == "tuned" else ""
    outcome = {
        "client_tls": TLSSide(handshake="ok", version="TLSv1.3", peer_cn="localhost"),
        "server_saw": ServerSaw(accepted_tcp=True, tls=TLSSide(handshake="ok"), handler_ran=True,
                                handler_peer_cn="mtls-matrix-client"),
        **OK, **outcome,
    }
    return Cell(
        id=f"{short(server)}-{short(client)}-{scenario}{suffix}", server=server, client=client, scenario=scenario,
        group=known.group, profile=profile, expectation=known.expect.describe(),
        tags=sorted(known.tags | {known.tls_tag}), family=known.family or "ws",
        repro=f"mtls-matrix run --servers {short(server)} --clients '{short(client)}' --scenarios {scenario}",
        **outcome,
    )


def run(**fields) -> Run:
    return Run(**{"started": "2030-01-01T00:00:00+00:00", "finished": "2030-01-01T00:01:00+00:00",
                  "duration_s": 60.0, "command": "mtls-matrix run --out x", "python": "3.12.0",
                  "openssl": "OpenSSL 3.0.0", "platform": "Linux",
                  "versions": {"alpha": "1.0", "beta": "2.0", "one": "3.0", "two": "4.0"}, "ca_fingerprint": "ab" * 32,
                  "deadline_s": 5.0, "profiles": ["default", "tuned"], "workers": 2, **fields})


def peer_info(name: str, family: str = "ws", **fields) -> PeerInfo:
    role, rest = name.split(":", 1)
    library = rest.split("[", 1)[0]
    return PeerInfo(**{"name": name, "role": role, "family": family, "library": library, "version": "1.0",
                       "stack": "CPython ssl", **fields})


def results(*cells: Cell, peers: dict[str, dict] | None = None, record_run: bool = True) -> Results:
    """`peers`: name -> PeerInfo fields that differ from the defaults (stack, framework, control...).
    `record_run=False`: a file from before the run recorded its scenarios and peers."""
    peers = peers or {}
    if not record_run:
        return Results(run=run(), cells=list(cells))
    names = sorted({p for c in cells for p in (c.server, c.client)} | set(peers))
    families = {p: c.family for c in cells for p in (c.server, c.client)}
    infos = [peer_info(n, families.get(n, "ws"), **peers.get(n, {})) for n in names]
    played = {c.scenario for c in cells}
    scenario_infos = [ScenarioInfo(name=s.name, group=s.group, description=s.description,
                                   expectation=s.expect.describe(), tags=sorted(s.tags | {s.tls_tag}))
                      for s in scenarios.CATALOGUE if s.name in played]
    return Results(run=run(scenarios=scenario_infos, peers=infos), cells=list(cells))


def grid(scenario: str, outcomes: dict | None = None, profile: str = "default", servers=SERVERS,
         clients=CLIENTS) -> list[Cell]:
    """Every server x client in one scenario; PASS unless `outcomes` says otherwise."""
    outcomes = outcomes or {}
    return [cell(s, c, scenario, profile, **outcomes.get((s, c), {})) for s in servers for c in clients]
