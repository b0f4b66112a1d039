"""Observation x Expectation -> verdict, phase, canonical error, clarity.

Library-neutral: library-specific exceptions reach here already mapped by their peer module
(`ClientPeer.canonical`); everything else is read from the exception chain and from the TLS
events the probe recorded on both sides.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from mtls_matrix import evidence
from mtls_matrix.canonical import (
    APP_REASONS, CERT_REASONS, CONFIG_REASONS, INSECURE_STEP, canonical_from_exception, canonical_from_text,
    canonical_from_tls, chain,
)
from mtls_matrix.evidence import HANDSHAKES, own_check_failed
from mtls_matrix.observe import Event
from mtls_matrix.pki import CLIENT_CN
from mtls_matrix.results import Advisory, Clarity, Deadline, ErrorInfo, Hostile, Rejection, Step, Verdict
from mtls_matrix.scenarios import HOSTILE_GROUPS, PHASES, Scenario
from mtls_matrix.timing import ADVISORY_WAIT_S, PROMPT_S

TLS_WORDS = re.compile(r"ssl|tls|handshake|certif|alert", re.I)
# a refused request's status, or a token-auth server's reason (peers.TokenRefused), in the client's message
REFUSAL_SHOWN = re.compile(r"\b40[13]\b|unauthori[sz]ed|forbidden|\btoken\b", re.I)


def clarity(exc: BaseException) -> Clarity:
    """Grade only what the user of the client sees: the outermost exception's type and text. A
    refused request (a token-auth server's HTTP 401, a Socket.IO connect error) is CLEAR when the
    text gives its status or the server's reason; a generic connection error is OPAQUE."""
    return _grade(type(exc).__name__, str(exc), getattr(exc, "filename", None))


def _grade(kind: str, message: str, filename: str | None = None) -> Clarity:
    if canonical_from_text(message) in CONFIG_REASONS:  # a file problem is clear when it says which file
        return Clarity.CLEAR if filename or re.search(r"/|\.pem\b", message) else Clarity.VAGUE
    if canonical_from_text(message) in CERT_REASONS | set(APP_REASONS) or REFUSAL_SHOWN.search(message):
        return Clarity.CLEAR
    if TLS_WORDS.search(f"{kind}: {message}"):
        return Clarity.VAGUE
    return Clarity.OPAQUE


def error_info(exc: BaseException, peer_hint: str | None = None) -> ErrorInfo:
    return ErrorInfo(
        canonical=canonical_from_exception(exc, peer_hint),
        type=f"{type(exc).__module__}.{type(exc).__qualname__}",
        message=str(exc)[:500],
        clarity=clarity(exc),
        chain=[f"{type(e).__name__}: {str(e)[:200]}" for e in chain(exc)],
    )


def signal_info(exc: BaseException, shown: tuple[str, str], canonical: str) -> ErrorInfo:
    """What the user saw of an end the library reported without raising (a value it returned, a
    callback it called, a page's events): `shown` is (what reported it, what it said), in the library's
    own terms; the chain goes on with what the adapter learnt besides (`exc`'s causes)."""
    kind, message = shown
    causes = [f"{type(e).__name__}: {str(e)[:200]}" for e in chain(exc)[1:]]
    return ErrorInfo(canonical=canonical, type=kind, message=message[:500], clarity=_grade(kind, message),
                     chain=[f"{kind}: {message[:200]}", *causes])


@dataclass
class Observation:
    events: list[Event]
    connected: bool = False  # the client finished the upgrade
    error: ErrorInfo | None = None  # what the client's user saw, if it failed
    steps: list[Step] = field(default_factory=list)
    timed_out: bool = False
    harness_error: str | None = None
    unsupported: str | None = None
    skipped: str | None = None  # why a peer could not run at all (its toolchain is missing)
    client_after_deadline: str | None = None  # stopped | abandoned, for a client still running at the deadline
    hostile: Hostile | None = None  # hostile-server / hostile-client cells
    took_s: float | None = None  # how long the client's run took, until its outcome or the deadline
    handed_s: float | None = None  # the timeout the harness handed the library for its opening handshake, if any
    server_crash: str | None = None  # the server's listener or event loop died during the cell: what ended it

    def event(self, side: str, *kinds: str) -> Event | None:
        return next((e for e in self.events if e.side == side and e.kind in kinds), None)


@dataclass
class Judgement:
    verdict: Verdict
    phase: str
    reason: str
    rejection: Rejection | None = None
    advisories: list[Advisory] = field(default_factory=list)
    decided_by: Deadline | None = None  # whose clock decided, when not the cell's deadline (a handed timeout)


def _cert_related(data: dict) -> bool:
    return own_check_failed(data) or canonical_from_tls(data) in CERT_REASONS | {"BAD_CERTIFICATE"}


def client_phase(obs: Observation) -> str:
    """The phase the client was in when its connection attempt ended, as the client saw it, for every
    client alike: a client whose own TLS handshake completed (TLS 1.3: before the server's verdict
    on its certificate reached it) is at the upgrade, and so is one that got an HTTP response."""
    if obs.connected:
        return "io"
    handshake = obs.event("client", "handshake-ok", "handshake-error")
    if handshake is None:  # a client that reports nothing of TLS (a browser's WebSocket): what it got, the server saw
        http = obs.error and (obs.error.canonical or "").startswith("HTTP_")
        # under TLS 1.3 the server verifies the client's certificate after the client's handshake completed
        late = any(e.side == "server" and e.kind == "handshake-error" and e.data.get("version") == "TLSv1.3"
                   and evidence.server_refused(e.data) for e in obs.events)
        if http or late or obs.event("server", "handshake-ok", *evidence.REFUSED_UPGRADES):
            return "upgrade"
        return "tls-handshake" if obs.event("server", "accept", *HANDSHAKES) else "tcp"
    if handshake.kind == "handshake-error":
        return "verification" if _cert_related(handshake.data) else "tls-handshake"
    return "upgrade"


def _server_reason(record: str | None, alert: str | None) -> str | None:
    """The refusal's reason from the server's own record and its alert: the one that names a
    certificate problem, the record's first; else whichever names anything."""
    return next((c for c in (record, alert) if c in CERT_REASONS), None) or record or alert


def rejection(obs: Observation) -> Rejection | None:
    """Which side's own check refused the other, on the same evidence for every server, Python, foreign
    or proxy (evidence.py): what it recorded itself (an own verification error, a proxy's refusal in
    its log) and what it put on the wire (the alert the client received: a side that merely received
    an alert did not refuse, but the side that sent it did). The reason is the more specific of the two."""
    alert, _ = evidence.received(obs.events, obs.error)
    wired = evidence.alert_canonical(alert)
    server = obs.event("server", "handshake-error")
    # a client may open several connections in one cell (a browser: a spare socket it closes unused,
    # a request before the WebSocket): the server refused if it refused any of them
    refused = next((e for e in obs.events if e.side == "server" and e.kind == "handshake-error"
                    and evidence.server_refused(e.data)), None)
    if refused:
        message = refused.data.get("message")
        if refused.data.get("proxy"):
            message = f"{refused.data['proxy']}: {message}"
        return Rejection(by="server", canonical=_server_reason(canonical_from_tls(refused.data), wired),
                         phase="verification", message=message)
    client = obs.event("client", "handshake-error")
    if client and own_check_failed(client.data):
        return Rejection(by="client", canonical=canonical_from_tls(client.data), phase="verification",
                         message=client.data.get("message"))
    # the application refused: the request reached it, so no proxy in front refused it (a proxy's log
    # line about the certificate, e.g. nginx's optional_no_ca verify error, is not a refusal then)
    refused = obs.event("server", "auth-refused")  # a token-auth server refused the request (peers.TokenAuth)
    if refused:
        return Rejection(by="server", canonical=refused.data.get("canonical"), phase="upgrade",
                         message=refused.data.get("reason"))
    refused = obs.event("server", "app-refused")
    if refused:  # the application refused the identity it was given (peers/proxy_identity.py)
        return Rejection(by="server", canonical=refused.data.get("canonical"), phase="handler",
                         message=refused.data.get("message"))
    found = proxy_rejection(obs, server)
    if found:
        return found
    if alert:  # the server ended the handshake with an alert although its own record names no refusal
        told = f"; it recorded: {server.data.get('message')}" if server and server.data.get("message") else ""
        return Rejection(by="server", canonical=_server_reason(canonical_from_tls(server.data) if server else None,
                                                               wired),
                         phase="verification", message=f"the server sent the alert {alert}{told}")
    if obs.error and obs.error.canonical and obs.error.canonical.startswith("HTTP_4"):
        return Rejection(by="server", canonical=obs.error.canonical, phase="upgrade", message=obs.error.message)
    if obs.error and obs.error.canonical in CERT_REASONS and not obs.connected and not server:
        # the client library refused after the TLS handshake (its own post-handshake check)
        return Rejection(by="client", canonical=obs.error.canonical, phase=client_phase(obs),
                         message=obs.error.message)
    return None


def proxy_rejection(obs: Observation, server: Event | None) -> Rejection | None:
    """A TLS-terminating proxy's refusal, from its log (peers/proxy.py): nginx's HTTP 400 after a
    completed handshake; a failed handshake the proxy logged (it logs only its own failures, and the
    client's own check did not fail), its reason the more specific of its log and its alert."""
    refused = obs.event("server", "upgrade-refused")
    if refused:  # nginx: the TLS handshake completed, the request was refused (HTTP 400)
        return Rejection(by="server", canonical=refused.data.get("canonical"), phase="upgrade",
                         message=refused.data.get("message"))
    if server is None or not server.data.get("proxy"):
        return None
    alert, _ = evidence.received(obs.events, obs.error)
    canonical = _server_reason(canonical_from_tls(server.data), evidence.alert_canonical(alert))
    return Rejection(by="server", canonical=canonical, phase="verification",
                     message=f"{server.data['proxy']}: {server.data.get('message')}")


# A refusal whose evidence names no reason fits an expected one when it is what TLS has for it: a
# missing certificate has an alert of its own only from TLS 1.3 (before, handshake_failure: RFC 5246
# section 7.4.6), a certificate TLS has no alert for gets bad_certificate (OpenSSL's choice for one not
# yet valid; Go's for every refused certificate); a proxy that logs no reason leaves only those words.
GENERIC_REASONS = {
    "BAD_CERTIFICATE": CERT_REASONS - {"CERT_REQUIRED"},
    "HANDSHAKE_FAILURE": {"CERT_REQUIRED"},
}


def passing_reason(found: Rejection, expected: str) -> str | None:
    """The PASS line for a refusal whose reason fits the expected one; None when it does not."""
    if found.canonical == expected:
        return f"the {found.by} rejected with {found.canonical}"
    if expected in GENERIC_REASONS.get(found.canonical, ()):
        return (f"the {found.by} rejected with {found.canonical}, TLS's word for {expected} "
                f"(its record and its alert name no more)")
    return None


def _seconds(value: float | None) -> str:
    return "none" if value is None else f"{value:g} s"


def whose_clock(deadline: Deadline) -> str:
    """For a HANG's reason: the library's own timeout the wait outlived, or why the deadline was the
    harness's (the library has no timeout for this wait, or one longer than the matrix waits)."""
    if deadline.source == "library":
        return f"it outlived its own {deadline.timeout} ({deadline.documented_s:g} s)"
    if deadline.documented_s is not None:
        return (f"the deadline was the harness's: its own {deadline.timeout} ({deadline.documented_s:g} s) is longer "
                f"than the matrix waits for a library")
    unset = f" ({deadline.timeout}: none)" if deadline.timeout else ""
    return f"the deadline was the harness's: it has no timeout of its own for this wait{unset}"


def _on_its_clock(deadline: Deadline) -> str:
    return f" (its own {deadline.timeout}: {deadline.documented_s:g} s)" if deadline.source == "library" else ""


def _waited(seconds: float, text: str, kind: str = "slow", deadline: Deadline | None = None) -> list[Advisory]:
    """An outcome that came only after a wait on the library's own clock costs its user that wait; one that
    came by that clock (`deadline`: a hostile cell's) costs what the clock allows, whichever is longer."""
    allows = deadline.documented_s if deadline is not None and deadline.source == "library" else None
    if max(seconds, allows or 0.0) < ADVISORY_WAIT_S:
        return []
    allowed = f" (its own {deadline.timeout} allows {allows:g} s)" if allows else ""
    return [Advisory(kind=kind, text=text.format(seconds=f"{seconds:.0f}") + allowed)]


def judge_hostile(scenario: Scenario, obs: Observation, phase: str, deadline: Deadline) -> Judgement:
    """The peer under test faced the harness's hostile peer: did it end the connection itself?"""
    outcome, by = obs.hostile, scenario.expect.by
    peer = HOSTILE_GROUPS[scenario.group]
    what = scenario.description.replace("the server ", "").replace("the client ", "")
    if not outcome.ended:
        others = {name: value for name, value in outcome.own_timeouts.items() if name != deadline.timeout}
        own = ", ".join(f"{name} {_seconds(value)}" for name, value in others.items())
        return Judgement(Verdict.HANG, phase, f"the {by} was still waiting after {deadline.seconds:g} s when the "
                         f"{peer} {what}: {whose_clock(deadline)}" + (f" (its other defaults: {own})" if own else ""))
    took = f"after {outcome.after_s:.3g} s with {outcome.how}"
    if by == "client":
        text = f"the user waits {{seconds}} s for the client to give up on a {peer} that {what}"
    else:
        text = f"the server holds for {{seconds}} s a connection whose {peer} {what}"
    slow = _waited(outcome.after_s, text, deadline=deadline)
    reaction = outcome.after_s if outcome.after_fault_s is None else outcome.after_fault_s  # since the fault, when known
    if scenario.expect.outcome == "prompt":
        failed = next((s for s in obs.steps if not s.ok), None)
        if failed:
            return Judgement(Verdict.FAIL, phase, f"{failed.op}: {failed.detail}", advisories=slow)
        if reaction > PROMPT_S:
            return Judgement(Verdict.FAIL, phase, f"the {by} finished only {reaction:.3g} s after the "
                             f"{peer} {what.split(',')[0]}, with {outcome.how}: it waited", advisories=slow)
        return Judgement(Verdict.PASS, phase, f"the {by} finished {reaction * 1000:.0f} ms after the fault, with "
                         f"{outcome.how}")
    if scenario.expect.outcome == "fail":
        if obs.error is None:
            return Judgement(Verdict.FAIL, phase, f"the {by} reported no error although the {peer} {what}",
                             advisories=slow)
        if reaction > PROMPT_S:
            return Judgement(Verdict.FAIL, phase, f"the {by} noticed only {reaction:.3g} s after the fault, with "
                             f"{outcome.how}: a timeout, not the fault{_on_its_clock(deadline)}", advisories=slow)
        return Judgement(Verdict.PASS, phase, f"the {by} failed {reaction * 1000:.0f} ms after the fault, with "
                         f"{outcome.how}")
    return Judgement(Verdict.PASS, phase, f"the {by} gave up by itself {took}{_on_its_clock(deadline)}",
                     advisories=slow)


def judge_config_error(scenario: Scenario, obs: Observation, phase: str, deadline: Deadline) -> Judgement:
    """The client's certificate or key file is broken: it must fail before its TLS handshake. A server
    handshake that got further than a closed TCP connection means it went on without that certificate."""
    expect = scenario.expect
    if obs.connected or obs.event("server", "handler"):
        return Judgement(Verdict.INSECURE, phase, f"connected although its certificate or key file is broken "
                         f"({expect.reason}): the server let it in")
    if obs.timed_out:
        return Judgement(Verdict.HANG, phase, f"no outcome within {deadline.seconds:g}s: {whose_clock(deadline)}")
    tried = next((e for e in obs.events if e.side == "server" and (e.kind == "handshake-ok" or (
        e.kind == "handshake-error" and canonical_from_tls(e.data) not in (None, "EOF")))), None)
    if tried is not None:
        found = rejection(obs)
        why = f"the server refused it with {found.canonical}" if found else f"the server's handshake: {tried.kind}"
        return Judgement(Verdict.FAIL, "tls-handshake", f"went on to a TLS handshake without a usable certificate "
                         f"({expect.reason}): {why}", found)
    if obs.error is None:
        return Judgement(Verdict.FAIL, phase, "neither connected nor reported an error")
    return Judgement(Verdict.PASS, phase, f"failed before its TLS handshake with {obs.error.canonical}")


def judge(scenario: Scenario, obs: Observation, deadline: Deadline) -> Judgement:
    judgement = _judge(scenario, obs, deadline)
    if obs.server_crash and judgement.verdict in (Verdict.FAIL, Verdict.HANG):
        # one cause, whatever the client made of it (EOF, a reset, a wait)
        seen = f"; the client saw {obs.error.canonical}" if obs.error and obs.error.canonical else ""
        return Judgement(Verdict.FAIL, judgement.phase, f"the server crashed during the cell: {obs.server_crash}{seen}",
                         judgement.rejection, judgement.advisories)
    return judgement


def _judge(scenario: Scenario, obs: Observation, deadline: Deadline) -> Judgement:
    expect = scenario.expect
    phase = client_phase(obs)
    if obs.harness_error:
        return Judgement(Verdict.ERROR, phase, f"harness: {obs.harness_error}")
    if obs.skipped:
        return Judgement(Verdict.SKIPPED, "tcp", obs.skipped)
    if obs.unsupported:
        return Judgement(Verdict.UNSUPPORTED, "tcp", obs.unsupported)
    if obs.hostile is not None:
        return judge_hostile(scenario, obs, "tls-handshake" if obs.hostile.under_test == "server" else phase,
                             deadline)
    if scenario.expect.outcome == "config-error":
        return judge_config_error(scenario, obs, phase, deadline)
    handler = obs.event("server", "handler")
    found = rejection(obs)
    # A client's own timers (ClientPeer.waits) run once its opening handshake is over: connected, or
    # refused by the server. Before that it waits on the timeout the harness handed it: the harness's clock
    if deadline.source == "library" and not (obs.connected or found):
        deadline = Deadline(seconds=deadline.seconds, source="harness")
    # A library that gave up on a timeout the harness handed it had no outcome either, nor had a client
    # whose adapter stopped waiting (no exception: type None); on its own clock a timeout is its own
    handed_timeout = obs.error is not None and obs.error.canonical == "TIMEOUT" and obs.handed_s is not None and (
        deadline.source == "harness" or obs.error.type is None)
    timed_out = obs.timed_out or handed_timeout
    if handed_timeout and not obs.timed_out:
        deadline = Deadline(seconds=obs.handed_s, source="harness")
    seen = obs.error.canonical if obs.error else None
    took = obs.took_s or 0.0
    within = f"no outcome within {deadline.seconds:g}s"
    clock = f": {whose_clock(deadline)}" if deadline.source == "library" else \
        ": the deadline was the harness's, handed to the library as its timeout"

    if expect.outcome == "reject":
        if obs.connected or handler or any(s.ok for s in obs.steps):
            what = "the handler ran" if handler else "the upgrade completed"
            return Judgement(Verdict.INSECURE, phase,
                             f"accepted ({what}) although the {expect.by} must reject with {expect.reason}", found)
        if timed_out:
            after = f" after the {found.by} rejected with {found.canonical}" if found else ""
            return Judgement(Verdict.HANG, phase, f"{within}{after}{clock}", found, decided_by=deadline)
        if found is None:
            return Judgement(Verdict.FAIL, phase, f"failed with {seen} but neither side rejected a certificate; "
                             f"expected the {expect.by} to reject with {expect.reason}")
        if found.by != expect.by:
            return Judgement(Verdict.FAIL, phase, f"rejected by the {found.by} ({found.canonical}) instead of the "
                             f"{expect.by}", found)
        passed = passing_reason(found, expect.reason)
        if passed is None:
            return Judgement(Verdict.FAIL, phase, f"rejected for {found.canonical}, expected {expect.reason}", found)
        if PHASES.index(found.phase) > PHASES.index(expect.latest_phase):
            # Later than the scenario allows is a FAIL even when nothing got through (the handler never
            # ran): nginx's `ssl_verify_client on` completes the TLS handshake whatever the client
            # presents and refuses the request with HTTP 400. Its user sees an HTTP status instead of a
            # failed TLS handshake (whose alert can name the certificate problem); code that handles
            # TLS failures (retry policy, error reporting, monitoring) does not see one. The
            # expectation says where a correct rejection lands; the reason says where and how this one did.
            how = f": {found.message}" if found.message and found.message != (obs.error and obs.error.message) else ""
            saw = f"; the client saw {seen}" if seen and seen != found.canonical else ""
            return Judgement(Verdict.FAIL, phase, f"rejected only at {found.phase}{how}{saw}", found)
        # a refusal waits on one timer of the library's own (ClientPeer.waits): the deadline's
        late = _waited(took, f"the user waits {{seconds}} s for the refusal: the client sits out its own "
                       f"{deadline.timeout} ({deadline.documented_s:g} s) first", "late-refusal") \
            if deadline.source == "library" else []
        after = f", which reached the user after {took:.3g} s" if late else ""
        return Judgement(Verdict.PASS, phase, f"{passed}{after}", found, advisories=late)

    # An I/O step that already failed (a message out of order, a truncated echo) stays the outcome,
    # however long the connection then takes to close; a step cut short by the harness's timeout does not
    failed = next((s for s in obs.steps if not s.ok), None)
    if failed is not None and handed_timeout and failed is obs.steps[-1]:
        failed = None
    slow = _waited(took, "the user waits {seconds} s for the client's calls to return") \
        if deadline.source == "library" else []
    if timed_out and failed is None:
        return Judgement(Verdict.HANG, phase, f"{within} (reached {phase}){clock}", decided_by=deadline)
    if not obs.connected:
        why = f"rejected by the {found.by} with {found.canonical}" if found else f"failed with {seen}"
        return Judgement(Verdict.FAIL, phase, f"should connect but {why}", found, slow)
    if not handler or handler.data.get("peer_cn") != CLIENT_CN:
        saw = handler.data.get("peer_cn") if handler else None
        error = f" ({handler.data['identity_error']})" if handler and handler.data.get("identity_error") else ""
        return Judgement(Verdict.FAIL, "handler",
                         "the server handler never ran" if not handler
                         else f"the server handler saw client identity {saw!r}, not {CLIENT_CN!r}{error}",
                         advisories=slow)
    if scenario.namespace and handler.data.get("namespace") != scenario.namespace:
        return Judgement(Verdict.FAIL, "handler", f"the connect handler of namespace {handler.data.get('namespace')!r} "
                         f"ran, not that of {scenario.namespace!r}", advisories=slow)
    if failed:
        insecure = (failed.detail or "").startswith(INSECURE_STEP)
        return Judgement(Verdict.INSECURE if insecure else Verdict.FAIL, "io", f"{failed.op}: {failed.detail}",
                         advisories=slow)
    tls = obs.event("client", "handshake-ok")
    if scenario.server_tls == "tls12" and tls and tls.data.get("version") != "TLSv1.2":
        return Judgement(Verdict.FAIL, "tls-handshake", f"negotiated {tls.data.get('version')} with a TLS 1.2 server",
                         advisories=slow)
    return Judgement(Verdict.PASS, "io", "connected, identity seen, I/O round-tripped", advisories=slow)
