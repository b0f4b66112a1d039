"""BUGS.md's "Reference findings" section: for each finding of reference/ruby-mtls-BUGS.md, does
this matrix reproduce it with the versions it ran, and which cells say so.

The catalogue is data: each finding names the cells that test it (server, client and scenario
patterns) and the observation that would reproduce it (verdicts, phase, a regex over what the
cell reports). The status is computed from the results, never written by hand:

- reproduced: every tested cell shows the observation; partly: some do; not reproduced: none;
- not run: no cell of this run tests it (a slice without those peers, or SKIPPED / UNSUPPORTED);
- not testable here: no cell can (the stack is not packaged): the finding says why.

`contrast` cells are shown beside the evidence (the working variant, the control): they do not
decide the status.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

from mtls_matrix.results import NOT_OBSERVED, Cell

SOURCE = "reference/ruby-mtls-BUGS.md"
ASYNC_NOT_PACKAGED = ("async-websocket (and protocol-websocket, which it needs) is not packaged in Debian, and "
                      "neither PyPI nor npm carries it: only async-http itself is, and its server plays here with "
                      "websocket-driver as `async-http-driver`")


@dataclass(frozen=True)
class Cells:
    """Cells by pattern (`*` and `?` only: client names hold brackets) and what they must show."""

    server: str = "*"  # over the server's name (without "server:")
    client: str = "*"  # over the client's name with its variant (without "client:")
    scenarios: tuple[str, ...] = ("*",)  # scenario names, globs or groups
    verdicts: tuple[str, ...] = ()  # the cell's verdict is one of these (empty: any)
    phase: str | None = None  # the phase the cell ended in
    text: str | None = None  # a regex searched in the cell's reason, error and rejection messages
    handler_ran: bool | None = None  # the server's handler ran (the upgrade reached it)
    shows: str = ""  # the observation in words
    exclude: tuple[str, ...] = ()  # client patterns whose cells test nothing here

    def selects(self, cell: Cell) -> bool:
        client = cell.client.split(":", 1)[-1]
        return (_glob(self.server).match(cell.server.split(":", 1)[-1]) is not None
                and _glob(self.client).match(client) is not None
                and not any(_glob(pattern).match(client) for pattern in self.exclude)
                and any(cell.group == s or _glob(s).match(cell.scenario) for s in self.scenarios))

    def seen_in(self, cell: Cell) -> bool:
        return ((not self.verdicts or cell.verdict.value in self.verdicts)
                and (self.phase is None or cell.phase == self.phase)
                and (self.text is None or re.search(self.text, _said(cell), re.I) is not None)
                and (self.handler_ran is None or cell.server_saw.handler_ran == self.handler_ran))


@dataclass(frozen=True)
class ReferenceFinding:
    id: str  # the reference's numbering: attempt.observation, or the section of its conclusions
    title: str
    claimed: str  # what the reference reported, in short
    evidence: Cells | None = None  # None: not testable here
    untestable: str | None = None  # why not
    contrast: Cells | None = None
    comment: str = ""  # what the cells add to the claim (the real cause, a better variant)
    links: tuple[str, ...] = ()  # the upstream record, each one read


def _glob(pattern: str) -> re.Pattern[str]:
    return re.compile(re.escape(pattern).replace(r"\*", ".*").replace(r"\?", ".") + r"\Z")


def _said(cell: Cell) -> str:
    parts = [cell.reason, cell.error.message, cell.rejection.message if cell.rejection else None,
             cell.server_saw.tls.error.message if cell.server_saw.tls.error else None]
    return " | ".join(dict.fromkeys(p for p in parts if p))


SUCCEEDS = ("works", "io")
# client variants that refuse every server by themselves (findings 2.1 and 3.1): they never reach
# a server, so their cells test no claim about one
SELF_FAILING = ("faye-websocket[faye-ca-file]", "em-websocket-driver[em-driver-no-callback]")
FINDINGS: tuple[ReferenceFinding, ...] = (
    ReferenceFinding("1.1", "async-http: `NoMethodError: undefined method 'Stream' for Async::IO`",
                     "async-http 0.88.0 calls an async-io API that is gone",
                     untestable="a mismatch between async-http 0.88 and a newer async-io; Debian packages async-http "
                     "0.59.5 with async-io 1.34.1, which load together (`Async::IO::Stream` is defined: the "
                     "async-http-driver server runs on it), and the reference met it in a stack built on "
                     "async-websocket, which is not packaged"),
    ReferenceFinding("1.2", "Async::WebSocket::Server middleware: `NameError: uninitialized constant "
                     "Async::WebSocket::Adapters`", "an internal bug of the middleware (async-websocket 0.29/0.30)",
                     untestable=ASYNC_NOT_PACKAGED),
    ReferenceFinding("1.3", "`request.websocket?` missing on async-http's request",
                     "async-websocket's mixin does not reach the request object over mTLS",
                     untestable=ASYNC_NOT_PACKAGED),
    ReferenceFinding(
        "1.4", "async server never runs the application after the 101 over mTLS",
        "Async::HTTP::Server does not hand the hijacked connection to the application",
        evidence=Cells(server="async-http-driver", scenarios=SUCCEEDS, verdicts=("FAIL", "HANG"), handler_ran=False,
                       shows="the upgrade is answered but the application never runs on the hijacked connection",
                       exclude=SELF_FAILING),
        contrast=Cells(server="puma-driver", scenarios=("mtls-ok",), verdicts=("PASS",),
                       shows="(the same websocket-driver application on puma's hijack) works"),
        comment="async-http-driver is the reference's manual setup without async-websocket (not packaged): "
                "`Async::HTTP::Server` on an `Async::HTTP::Endpoint` with an `OpenSSL::SSL::SSLContext` (verify "
                "PEER and FAIL_IF_NO_PEER_CERT), an application that calls `request.hijack!` on the WebSocket "
                "upgrade and runs websocket-driver on the returned stream in the connection's own task, then "
                "returns nil (a full hijack). With async-http 0.59.5 / async 1.30.3 the application runs and sees "
                "the client certificate (`stream.io.peer_cert`). The task matters: async-io closes the TLS socket "
                "when the connection's task returns (`SSLServer#accept` closes it in an `ensure`). Tried by hand "
                "(no cell): the same application starting websocket-driver in a child task and returning at once "
                "sends the 101 and its open event runs, then the socket is closed under it, and 46 of 78 cells "
                "(works, io-text, io-close, io-1000-ordered with the three Python clients) failed with the "
                "connection closed (1006, broken pipe): a likely cause of the reference's observation. Rack "
                "servers built on async-http met the same with applications that hand the hijacked socket to "
                "another thread (ActionCable).",
        links=("https://github.com/socketry/falcon/issues/10", "https://github.com/socketry/falcon/issues/106")),
    ReferenceFinding(
        "2.1", "faye-websocket client: `Unable to verify the server certificate for 'localhost'`",
        "blamed on a server certificate without SANs",
        evidence=Cells(client="faye-websocket[faye-ca-file]", scenarios=("works",), verdicts=("FAIL",),
                       text=r"Unable to verify the server certificate",
                       shows="fails with that message although the server certificate has DNS and IP SANs"),
        contrast=Cells(client="faye-websocket[faye-root-cert-file]", scenarios=("mtls-ok",), verdicts=("PASS",),
                       shows="connects"),
        comment="The cause is the option, not the certificate: faye 0.11 reads `root_cert_file`; `ca_file` (what "
                "the reference passed) is ignored and the system store is used.",
        links=("https://github.com/faye/faye-websocket-ruby/pull/129",)),
    ReferenceFinding(
        "2.3", "puma + faye-websocket server: `TypeError: no implicit conversion of Puma::MiniSSL::Socket into "
        "Integer` at `EM.attach`", "faye cannot attach puma's TLS socket to EventMachine after the hijack",
        evidence=Cells(server="puma-faye", scenarios=SUCCEEDS,
                       text=r"no implicit conversion of Puma::MiniSSL::Socket into Integer",
                       shows="the server reports that TypeError and the connection goes nowhere",
                       exclude=SELF_FAILING),
        contrast=Cells(server="puma-driver", scenarios=("mtls-ok",), verdicts=("PASS",), shows="works"),
        links=("https://github.com/puma/puma/issues/1515", "https://github.com/puma/puma/issues/865")),
    ReferenceFinding("2.4", "`Faye::WebSocket.load_adapter('puma')` does not help",
                     "the puma adapter does not fix the TypeError",
                     untestable="no cell can: faye-websocket 0.11 ships no puma adapter (only goliath, rainbows, "
                     "thin), and `load_adapter('puma')` swallows the LoadError, so it changes nothing to run"),
    ReferenceFinding("2.6", "`Faye::WebSocket.new(env, nil, socket: io)`: `Unrecognized option: :socket`",
                     "faye cannot take a pre-hijacked socket",
                     untestable="an option error at construction, before any connection: faye validates its "
                     "options and has no `socket`; the hijack that works is the puma-driver server",
                     contrast=Cells(server="puma-driver", scenarios=("mtls-ok",), verdicts=("PASS",),
                                    shows="a hijacked puma socket driven by websocket-driver works")),
    ReferenceFinding(
        "3.1", "EventMachine `start_tls(verify_peer: true, ca_file:)`: `certificate verify failed`",
        "an EventMachine bug, since `openssl s_client` verifies the same server",
        evidence=Cells(client="em-websocket-driver[em-driver-no-callback]", scenarios=("works",), verdicts=("FAIL",),
                       phase="tls-handshake", shows="every connection fails in the TLS handshake"),
        contrast=Cells(client="em-websocket-driver[em-driver-verify-callback]", scenarios=("mtls-ok",),
                       verdicts=("PASS",), shows="connects"),
        comment="Not an OpenSSL or CA problem: EventMachine has no CA option (`ca_file` is ignored) and with "
                "`verify_peer: true` accepts a certificate only if the application's `ssl_verify_peer` returns "
                "true; without one, every server is refused.",
        links=("https://github.com/faye/faye-websocket-ruby/pull/129",)),
    ReferenceFinding(
        "3.3", "the puma/faye server fails the same way whatever the client",
        "the server-side TypeError does not depend on the client library",
        evidence=Cells(server="puma-faye", scenarios=("mtls-ok",),
                       text=r"no implicit conversion of Puma::MiniSSL::Socket into Integer",
                       shows="the same TypeError with every client", exclude=SELF_FAILING)),
    ReferenceFinding(
        "3.4", "EventMachine `send_data` sends only 1 byte of the upgrade after TLS with `verify_peer: false`",
        "the upgrade request never gets through after a TLS handshake without verification",
        evidence=Cells(client="em-websocket-driver[em-driver-noverify]", scenarios=("server-rejected",),
                       handler_ran=False, shows="the upgrade does not reach the server"),
        comment="The em-driver-noverify variant accepts any server by design and plays only server-rejected "
                "cells: there, INSECURE with the handler run shows that the upgrade and the echo went through."),
    ReferenceFinding(
        "4.2", "puma + websocket-driver server (hijack) and EventMachine client: deadlock",
        "the server never receives the data the client sends after TLS",
        evidence=Cells(server="puma-driver", client="em-websocket-driver[*]", scenarios=SUCCEEDS + ("server-rejected",),
                       verdicts=("HANG",), phase="upgrade", shows="stalls before the upgrade completes",
                       exclude=SELF_FAILING)),
    ReferenceFinding(
        "§3 puma", "puma handles server-side mTLS correctly",
        "client certificate verification works in puma",
        evidence=Cells(server="puma-*", scenarios=("client-rejected",), verdicts=("PASS",),
                       shows="rejects each bad client certificate for its reason", exclude=SELF_FAILING),
        comment="Puma cannot cap or floor the TLS version (those cells are UNSUPPORTED) and has no CRL option "
                "(the CRL goes into the CA file)."),
)


def status(finding: ReferenceFinding, cells: Sequence[Cell]) -> tuple[str, list[Cell], list[Cell]]:
    """(status, the cells that test it, those of them that show the observation)."""
    if finding.evidence is None:
        return "not testable here", [], []
    tested = [c for c in cells if finding.evidence.selects(c) and c.verdict not in NOT_OBSERVED]
    shown = [c for c in tested if finding.evidence.seen_in(c)]
    if not tested:
        return "not run", [], []
    if len(shown) == len(tested):
        return "reproduced", tested, shown
    return ("partly reproduced" if shown else "not reproduced"), tested, shown


def _relevant(cells: Sequence[Cell]) -> bool:
    return any(f.evidence.selects(c) for f in FINDINGS if f.evidence for c in cells)


def _versions(cells: Sequence[Cell]) -> dict[str, str]:
    """The libraries of the cells any finding selects (evidence or contrast), with their versions."""
    found: dict[str, str] = {}
    for cell in cells:
        if any(pattern and pattern.selects(cell) for f in FINDINGS for pattern in (f.evidence, f.contrast)):
            found.update(cell.versions)
    return found


def render(cells: Sequence[Cell]) -> list[str]:
    """Nothing when no cell of the run involves the peers the reference is about."""
    from mtls_matrix.reports.bugs import code, id_list  # bugs.py imports this module

    if not _relevant(cells):
        return []
    lines = ["## Reference findings (Ruby)", "",
             f"Each finding of `{SOURCE}`, checked against the cells that test it, with the versions of this run: "
             + ", ".join(f"{library} {version}" for library, version in sorted(_versions(cells).items())) + ".",
             "", "| # | finding | status | cells |", "|---|---|---|---|"]
    details: list[str] = []
    for finding in FINDINGS:
        state, tested, shown = status(finding, cells)
        count = f"{len(shown)} of {len(tested)}" if tested else "-"
        lines.append(f"| {finding.id} | {finding.title.replace('|', '/')} | **{state}** | {count} |")
        details += [f"### {finding.id}: {state}", "", f"- Reference: {finding.title}: {finding.claimed}."]
        if finding.evidence is None:
            details.append(f"- Not testable here: {finding.untestable}.")
        else:
            details.append(f"- Would reproduce it: `{finding.evidence.server}` x `{finding.evidence.client}` x "
                           f"{', '.join(finding.evidence.scenarios)}: {finding.evidence.shows}.")
            if tested:
                by_verdict = sorted(f"{c.id} {c.verdict.value}" + (" (shows it)" if c in shown else "")
                                    for c in tested)
                details += [f"- Tested by {len(tested)} cells, {len(shown)} show it:", "",
                            *id_list(by_verdict, f"{len(tested)} cells"), ""]
                example = (shown or tested)[0]
                details.append(f"- For example {code(example.id)}: {example.verdict.value} at {example.phase}: "
                               f"{code(_said(example)[:300])}")
            else:
                details.append("- No cell of this run tests it (its peers were not selected, SKIPPED or "
                               "UNSUPPORTED).")
        if finding.contrast:
            contrast = [c for c in cells if finding.contrast.selects(c) and c.verdict not in NOT_OBSERVED]
            holds = [c for c in contrast if finding.contrast.seen_in(c)]
            if contrast:
                details.append(f"- Contrast: `{finding.contrast.server}` x `{finding.contrast.client}` x "
                               f"{', '.join(finding.contrast.scenarios)} {finding.contrast.shows} in "
                               f"{len(holds)} of {len(contrast)} cells (e.g. {code(contrast[0].id)} "
                               f"{contrast[0].verdict.value}).")
        if finding.comment:
            details.append(f"- {finding.comment}")
        if finding.links:
            details.append("- Upstream: " + ", ".join(finding.links))
        details.append("")
    return lines + [""] + details
