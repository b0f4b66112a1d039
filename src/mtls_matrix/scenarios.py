"""The scenario catalogue: one entry per situation, each with the expectation a correct pair meets.

Scenarios are data. Each names the certificate each side presents (by `pki.LEAVES` name), the
server's TLS settings, the URL host, the I/O script and the expectation; the builders below only
save repetition (every rejection also runs with the server capped at TLS 1.2, where the
rejection lands in a different phase).
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field, replace

from mtls_matrix.pki import CLIENT_CN
from mtls_matrix.timing import PROMPT_S

PHASES = ("tcp", "tls-handshake", "verification", "upgrade", "handler", "io")
GROUPS = ("works", "client-rejected", "server-rejected", "io", "hostile-server", "hostile-client", "token",
          "proxy-identity", "environment", "local-config")
# groups whose scenarios vary only what the client is given (its process environment, its files, the URL's
# host): one server per family shows them for every client (it names them in its `groups`)
CLIENT_SIDE_GROUPS = ("environment", "local-config")
# groups a server plays only when it names them in its `groups`: their scenarios test an application
# pattern the server must implement (peers/proxy_identity.py), not the TLS stack every server has, or
# (CLIENT_SIDE_GROUPS) need one server only
OPT_IN_GROUPS = ("proxy-identity", *CLIENT_SIDE_GROUPS)
# what a server plays when it names no `groups`
DEFAULT_GROUPS = tuple(g for g in GROUPS if g not in OPT_IN_GROUPS)
# where a client variant that differs from the library's others only in how it writes its TLS settings adds
# information (ClientPeer.variant_scenarios): the handshake, both verifications, what its user sees, an echo
TLS_SETTINGS_SCENARIOS = ("works", "client-rejected", "server-rejected", "environment", "local-config",
                          "token-header-ok", "io-text")
# the groups under mutual TLS: every server peer is configured for them; a stack that cannot serve a
# listener without client certificates (a foreign server, a proxy) plays these only
MTLS_GROUPS = tuple(g for g in GROUPS if g != "token" and g not in OPT_IN_GROUPS)
# the groups where the harness plays one side (peers/hostile.py), against every peer of the other side
HOSTILE_GROUPS = {"hostile-server": "server", "hostile-client": "client"}
PROFILES = ("default", "tuned")

MiB = 1024 * 1024


@dataclass(frozen=True)
class Expect:
    """`succeed`; or `reject` by one side, for one canonical reason, no later than one phase; or,
    facing a hostile peer, `give-up` (the side under test ends it by itself within the deadline),
    `fail` (it fails with an error right away) or `prompt` (it finishes its script right away after
    the fault); or `config-error` (the client's own configuration is broken: it fails before its TLS
    handshake, with an error naming `reason`)."""

    outcome: str  # "succeed" | "reject" | "give-up" | "fail" | "prompt" | "config-error"
    by: str | None = None  # "server" | "client"
    reason: str | None = None
    latest_phase: str = "verification"

    def describe(self) -> str:
        if self.outcome == "succeed":
            return "connects, the server sees the client identity, I/O round-trips"
        if self.outcome == "give-up":
            return f"the {self.by} ends the connection by itself (a timeout of its own) within the deadline"
        if self.outcome == "fail":
            return f"the {self.by} fails with an error within {PROMPT_S:g} s, not at a timeout"
        if self.outcome == "prompt":
            return f"the {self.by} finishes within {PROMPT_S:g} s of the fault, waiting for nothing the fault withholds"
        if self.outcome == "config-error":
            return (f"the client fails before its TLS handshake with an error naming the problem ({self.reason}); "
                    "it never connects without its certificate")
        return f"{self.by} rejects with {self.reason} at {self.latest_phase} at the latest; the handler never runs"


# Severity (DESIGN.md section 5): how much a failing verdict matters, as results.Severity names it
CRITICAL, BROKEN, ADVISORY = "critical", "broken", "advisory"


@dataclass(frozen=True)
class Severities:
    """What each failing verdict of a scenario costs its user; severity.py applies it to a cell."""

    insecure: str = CRITICAL  # accepted what must be refused: a fail-open under a correct configuration
    fail: str = BROKEN
    hang: str = BROKEN
    # profile -> a FAIL's severity under that profile, where the library's documented default (a message
    # size limit) explains it and another profile raises that default
    fail_under: tuple[tuple[str, str], ...] = ()
    # a HANG whose deadline was the library's own documented timeout plus a margin (Cell.deadline.source
    # "library"): it outlived its own timeout. None: every HANG is `hang`
    hang_past_own_timeout: str | None = None
    # a client variant that disables verification on purpose (ClientPeer.controls) is a control here: its
    # INSECURE is the expected outcome, and proves the scenario's certificate is bad
    controls: bool = False


MUST_WORK = Severities()  # a documented, correct configuration that does not work is broken
# refused, but later than it should, by the other side, for another reason or after a wait: the chain of
# trust held, the user pays in clarity or time
MUST_REFUSE = Severities(fail=ADVISORY, hang=ADVISORY)
SERVER_MUST_BE_REFUSED = replace(MUST_REFUSE, controls=True)
# the host matched against the CN when there is no subjectAltName: deprecated (RFC 6125 section 6.4.4,
# RFC 9525) and still the TLS stacks' default; the certificate chains to the trusted CA
CN_FALLBACK = replace(SERVER_MUST_BE_REFUSED, insecure=ADVISORY)
# a message larger than the library's documented default limit: `tuned` raises the limit, where a FAIL is broken
OVER_DEFAULT_LIMIT = Severities(fail_under=(("default", ADVISORY),))
# facing the harness's hostile peer: a library without a timeout of its own, or that notices a fault
# only at a timeout, is an advisory; one that outlives its own documented timeout is broken
FACING_HOSTILE = Severities(fail=ADVISORY, hang=ADVISORY, hang_past_own_timeout=BROKEN)
# the client's own certificate or key file is broken: a client that goes on to a handshake without it is
# critical (nothing but the server stands between it and a connection without its certificate); one that
# never ends is broken; what its user reads is graded apart (clarity)
CLIENT_FILES_BROKEN = Severities(fail=CRITICAL, hang=BROKEN)
# what a scenario's expectation implies, unless it declares its own (Scenario.severity)
BY_EXPECTATION = {"succeed": MUST_WORK, "reject": MUST_REFUSE, "give-up": FACING_HOSTILE, "fail": FACING_HOSTILE,
                  "prompt": FACING_HOSTILE, "config-error": CLIENT_FILES_BROKEN}


@dataclass(frozen=True)
class Token:
    """What a `token`-group client presents (the hybrid model: the server presents its certificate,
    requests none, and requires a bearer token in the opening request)."""

    carrier: str | None  # header (Authorization: Bearer) | query (?token=) | auth (Socket.IO); None: no token
    kind: str = "valid"  # valid | malformed (the valid token in the wrong shape) | wrong (well-formed, not issued)


@dataclass(frozen=True)
class Claim:
    """proxy-identity: the agent id the client claims (Socket.IO `auth` payload), and what it sends
    itself in the headers a TLS-terminating proxy sets (peers.FORWARDED_CERT, peers.PROXY_PROOF):
    to test the app directly, playing the proxy, or to forge them through a real proxy."""

    agent: str = CLIENT_CN
    forwarded_cert: str | None = None  # a LEAVES name: its certificate (public PEM, URL-escaped) as the header
    forwarded_raw: str | None = None  # or this header value as is (a malformed one)
    proof: str | None = None  # "proxy": the proxy's secret; "guess": a made-up one; None: no proof header


@dataclass(frozen=True)
class Scenario:
    name: str
    group: str
    description: str
    expect: Expect
    server_cert: str = "server"
    client_cert: str | None = "client"
    server_tls: str = "any"  # any | tls12 (max 1.2) | tls13 (min 1.3)
    crl: bool = False  # the server checks the client leaf against the CA's CRL
    host: str = "localhost"  # what the client puts in the URL
    io: tuple[tuple, ...] = (("text", "hello mtls"),)
    tags: frozenset[str] = field(default_factory=frozenset)
    profiled: bool = False  # runs once per profile (default, tuned): limits only matter for I/O
    deadline_scale: float = 1.0
    hostile: str | None = None  # the behaviour of the harness's peer (peers/hostile.py) in the hostile groups
    token: Token | None = None  # a token-auth server (group `token`), and what the client presents
    family: str | None = None  # only peers of this family play it (a Socket.IO auth token, namespace, reconnect)
    namespace: str | None = None  # socketio: the namespace the client connects to (None: the default, '/')
    # the cell gets a server instance of its own, started and stopped with it: its steps drop the
    # server's connections or restart it, which must disturb no other cell
    private_server: bool = False
    # What it varies does not pass through the client's TLS settings: the client's first variant shows
    # it for the whole library (unless --all-pairs)
    one_variant: bool = False
    claim: Claim | None = None  # proxy-identity: the identity the client claims, and how
    # the client's process environment: "other-ca" points every CA variable (pki.CA_ENVIRONMENT) at the
    # unrelated CA while the client's code passes its explicit TLS settings; None: the scrubbed environment
    environment: str | None = None
    # the server requests a client certificate (False on the listener of a variant that presents none,
    # ClientPeer.server_auth_only: it is judged on verifying the server, as on the token group's listener)
    client_auth: bool = True
    severity: Severities | None = None  # what each failing verdict costs; None: what the expectation implies

    @property
    def severities(self) -> Severities:
        return self.severity or BY_EXPECTATION[self.expect.outcome]

    @property
    def sends_headers(self) -> bool:
        """The client must send request headers (ClientTLS.headers): a bearer token, or a proxy's headers."""
        claim = self.claim
        return (self.token is not None and self.token.carrier == "header") or (
            claim is not None and (claim.forwarded_cert or claim.forwarded_raw or claim.proof) is not None)

    @property
    def server_key(self) -> tuple:
        """Cells with the same key can share one running server."""
        return (self.server_cert, self.server_tls, self.crl, self.hostile, self.token is not None, self.client_auth)

    @property
    def tls_tag(self) -> str:
        return "tls12" if self.server_tls == "tls12" else "tls13"


def works(name: str, description: str, **kw) -> Scenario:
    return Scenario(name, "works", description, Expect("succeed"), **kw)


def io(name: str, description: str, *steps: tuple, **kw) -> Scenario:
    return Scenario(name, "io", description, Expect("succeed"), io=steps, profiled=True, **kw)


def reconnect(name: str, description: str, step: tuple, *after: tuple, severity: Severities | None = None) -> Scenario:
    """Socket.IO: echo, then the server drops the connection or restarts (the `reconnect` step,
    run by the harness on the cell's private server), then what must follow."""
    # deadline_scale: a reconnect takes reconnection delays, a second server start, and when it must be
    # refused the library's attempts and the 1 s python-socketio's wait() sleeps before it reports giving up
    return Scenario(name, "io", description, Expect("succeed"), io=(("text", "before"), step, *after),
                    family="socketio", private_server=True, tags=frozenset({"reconnect"}), deadline_scale=2.0,
                    severity=severity)


def _with_tls12(base: Scenario) -> list[Scenario]:
    capped = replace(
        base,
        name=f"{base.name}-tls12",
        server_tls="tls12",
        description=f"{base.description} (server capped at TLS 1.2)",
        tags=base.tags | {"tls12"},
    )
    return [replace(base, tags=base.tags | {"tls13"}), capped]


def server_must_reject(name: str, reason: str, description: str, **kw) -> list[Scenario]:
    client_cert = kw.pop("client_cert", name)  # the LEAVES entry of the same name, unless told
    return _with_tls12(
        Scenario(name, "client-rejected", description, Expect("reject", "server", reason), client_cert=client_cert, **kw)
    )


def client_must_reject(name: str, reason: str, description: str, **kw) -> list[Scenario]:
    kw.setdefault("severity", SERVER_MUST_BE_REFUSED)
    return _with_tls12(
        Scenario(name, "server-rejected", description, Expect("reject", "client", reason), server_cert=name, **kw)
    )


def hostile_server(behaviour: str, outcome: str, description: str, **kw) -> Scenario:
    """The harness plays the server (peers/hostile.py); judged for every client, which gets no
    timeout from the harness: its own defaults decide, the deadline only ends the wait."""
    return Scenario(f"hostile-server-{behaviour}", "hostile-server", description, Expect(outcome, "client"),
                    hostile=behaviour, tags=frozenset({"hostile"}), **kw)


def hostile_client(behaviour: str, description: str) -> Scenario:
    """The harness plays the client; judged for every server: does it drop the connection itself?"""
    return Scenario(f"hostile-client-{behaviour}", "hostile-client", description, Expect("give-up", "server"),
                    hostile=behaviour, tags=frozenset({"hostile"}))


TOKEN_REFUSED = Expect("reject", "server", "UNAUTHORIZED", latest_phase="upgrade")
_CARRIERS = {"header": "the Authorization header", "query": "a ?token= query parameter",
             "auth": "the Socket.IO auth payload"}
_PRESENTED = {"valid": "the valid token", "malformed": "the valid token in the wrong shape ({})",
              "wrong": "a well-formed token the server never issued"}
_MALFORMED = {"header": "no 'Bearer' scheme", "query": "'Bearer <token>'", "auth": "'Bearer <token>'"}


def token(carrier: str | None, kind: str = "valid") -> Scenario:
    """TLS without a client certificate, a bearer token in the opening request (go-ws's BearerTokenAuth
    / QueryTokenAuth, Socket.IO's auth). Every refusal must come from the server before the upgrade;
    the success shows which identity the token named. Only the success of the header carrier plays
    every client variant: the refusals, and the other carriers, show the same with one."""
    if carrier is None:
        name, what = "token-missing", "no token at all"
    else:
        name = f"token-{carrier}-{'ok' if kind == 'valid' else kind}"
        what = f"{_PRESENTED[kind].format(_MALFORMED[carrier])} in {_CARRIERS[carrier]}"
    return Scenario(
        name, "token", f"the server requests no client certificate but a token; the client sends {what}",
        Expect("succeed") if kind == "valid" and carrier else TOKEN_REFUSED, client_cert=None,
        token=Token(carrier, kind), family="socketio" if carrier == "auth" else None,
        one_variant=(carrier, kind) != ("header", "valid"), tags=frozenset({"token"}))


def proxy_identity(name: str, description: str, reason: str | None = None, tags: tuple[str, ...] = (),
                   **kw) -> Scenario:
    """The app validates the certificate a proxy forwards (peers/proxy_identity.py). `reason`: the
    server's app must refuse the Socket.IO connection with it, in its connect handler at the latest."""
    expect = Expect("reject", "server", reason, latest_phase="handler") if reason else Expect("succeed")
    return Scenario(name, "proxy-identity", description, expect, tags=frozenset({"proxy-identity", *tags}), **kw)


# Two topologies (the peers say which they play): `proxy-id-header-*` test the app alone, the client
# sending over TLS what the proxy would set (it presents its good certificate, which only carries the
# connection); `proxy-id-cert-*` put nginx (`ssl_verify_client optional_no_ca`) in front, and the
# client presents the certificate nginx forwards.
_PLAYS_PROXY = Claim(forwarded_cert="client", proof="proxy")
_FORGED = Claim(forwarded_cert="client", proof="guess")  # the stored certificate is public: anyone can send it
PROXY_IDENTITY = (
    proxy_identity("proxy-id-header-ok", "the stored certificate and the proxy's proof in the headers, "
                   "the agent id of its CN claimed", claim=_PLAYS_PROXY),
    proxy_identity("proxy-id-header-forged", "a client connecting directly sends the stored certificate in "
                   "X-SSL-Client-Cert, without the proxy's proof", "FORWARD_UNTRUSTED",
                   claim=Claim(forwarded_cert="client"), tags=("forged-header",)),
    proxy_identity("proxy-id-header-not-stored", "a certificate with the same CN from another CA, not in the store",
                   "CERT_NOT_STORED", claim=Claim(forwarded_cert="client-untrusted-ca", proof="proxy")),
    proxy_identity("proxy-id-header-cn-mismatch", "the stored certificate, but the client claims another agent id",
                   "AGENT_MISMATCH", claim=Claim(agent="agent-other", forwarded_cert="client", proof="proxy")),
    proxy_identity("proxy-id-header-malformed", "X-SSL-Client-Cert holds no PEM certificate", "BAD_FORWARDED_CERT",
                   claim=Claim(forwarded_raw="-----BEGIN%20CERTIFICATE-----%0Anot-base64%0A", proof="proxy")),
    proxy_identity("proxy-id-cert-ok", "the client presents the stored certificate; nginx forwards it",
                   claim=Claim()),
    proxy_identity("proxy-id-cert-not-stored", "the client presents a certificate from another CA (same CN), which "
                   "nginx does not check", "CERT_NOT_STORED", client_cert="client-untrusted-ca", claim=Claim()),
    proxy_identity("proxy-id-cert-none", "the client presents no certificate; nginx forwards none",
                   "CERT_REQUIRED", client_cert=None, claim=Claim()),
    proxy_identity("proxy-id-cert-cn-mismatch", "the client presents the stored certificate, claims another agent id",
                   "AGENT_MISMATCH", claim=Claim(agent="agent-other")),
    proxy_identity("proxy-id-cert-forged-header", "the client presents a certificate from another CA and sends the "
                   "stored one in X-SSL-Client-Cert with a guessed proof: nginx must replace both",
                   "CERT_NOT_STORED", client_cert="client-untrusted-ca", claim=_FORGED, tags=("forged-header",)),
    proxy_identity("proxy-id-cert-none-forged-header", "the client presents no certificate and sends the stored one "
                   "in X-SSL-Client-Cert with a guessed proof: nginx must drop both (it forwards no empty header)",
                   "CERT_REQUIRED", client_cert=None, claim=_FORGED, tags=("forged-header",)),
)

def environment(name: str, description: str, expect: Expect, **kw) -> Scenario:
    """The process environment points every CA variable at the unrelated CA while the client's code
    passes its explicit settings (the run's CA, its certificate): the explicit settings must win, on
    every transport."""
    return Scenario(name, "environment", description, expect, environment="other-ca",
                    tags=frozenset({"environment"}), **kw)


def config_error(name: str, reason: str, description: str) -> Scenario:
    """The client's certificate or key file is broken (pki.LeafSpec.broken): it must fail before its
    handshake, with an error that names the problem, and never connect without its certificate."""
    return Scenario(name, "local-config", description, Expect("config-error", "client", reason, latest_phase="tcp"),
                    client_cert=name, tags=frozenset({"client-files"}))


CATALOGUE: tuple[Scenario, ...] = (
    works("mtls-ok", "ECDSA P-256 leaves from the root CA, both verified"),
    works("mtls-rsa", "RSA-2048 leaves", server_cert="server-rsa", client_cert="client-rsa", tags=frozenset({"rsa"})),
    works(
        "mtls-ed25519", "Ed25519 leaves", server_cert="server-ed25519", client_cert="client-ed25519",
        tags=frozenset({"ed25519"}),
    ),
    works(
        "mtls-chain", "leaves from the intermediate CA; each side sends leaf + intermediate, trusts only the root",
        server_cert="server-chain", client_cert="client-chain", tags=frozenset({"chain"}),
    ),
    works("tls12-only", "the server is capped at TLS 1.2", server_tls="tls12", tags=frozenset({"tls12"})),
    works("tls13-only", "the server requires TLS 1.3", server_tls="tls13", tags=frozenset({"tls13"})),
    works("ip-url", "the client connects to wss://127.0.0.1 (IP SAN)", host="127.0.0.1", tags=frozenset({"ip"})),
    *server_must_reject("client-no-cert", "CERT_REQUIRED", "the client presents no certificate", client_cert=None),
    *server_must_reject("client-untrusted-ca", "UNKNOWN_CA", "the client certificate is from an unrelated CA"),
    *server_must_reject("client-expired", "CERT_EXPIRED", "the client certificate expired yesterday"),
    *server_must_reject("client-not-yet-valid", "CERT_NOT_YET_VALID", "the client certificate is valid from tomorrow"),
    *server_must_reject("client-wrong-eku", "BAD_EKU", "the client certificate has EKU serverAuth only"),
    *server_must_reject("client-self-signed", "UNKNOWN_CA", "the client certificate is self-signed"),
    *server_must_reject(
        "client-revoked", "CERT_REVOKED", "the client certificate is on the CA's CRL, which the server loads",
        crl=True, tags=frozenset({"crl"}),
    ),
    *client_must_reject("server-untrusted-ca", "UNKNOWN_CA", "the server certificate is from an unrelated CA"),
    *client_must_reject("server-expired", "CERT_EXPIRED", "the server certificate expired yesterday"),
    *client_must_reject("server-wrong-host", "HOSTNAME_MISMATCH", "the server certificate is for wrong-host.invalid"),
    *client_must_reject(
        "server-cn-only", "HOSTNAME_MISMATCH", "the server certificate names localhost in its CN only, no SAN",
        severity=CN_FALLBACK,
    ),
    *client_must_reject("server-wrong-eku", "BAD_EKU", "the server certificate has EKU clientAuth only"),
    *client_must_reject("server-self-signed", "UNKNOWN_CA", "the server certificate is self-signed"),
    *client_must_reject(
        "server-missing-intermediate", "UNKNOWN_CA",
        "the server leaf is from the intermediate CA but the server sends no intermediate",
    ),
    io("io-text", "a text message echoes back", ("text", "hello mtls")),
    io("io-binary", "a binary message echoes back", ("binary", 4096)),
    io("io-1mib", "a 1 MiB binary message echoes back", ("binary", MiB), tags=frozenset({"large"}),
       severity=OVER_DEFAULT_LIMIT),
    io(
        "io-16mib", "a 16 MiB binary message echoes back", ("binary", 16 * MiB),
        tags=frozenset({"large"}), deadline_scale=3.0, severity=OVER_DEFAULT_LIMIT,
    ),
    io("io-1000-ordered", "1000 small text messages, sent at once, echo back in order", ("burst", 1000)),
    io("io-ping", "a ping is answered by a pong with the same payload", ("ping", "mtls-ping")),
    io("io-close", "the client closes with 4001/'client-bye'; the server sees that code and reason",
       ("close", 4001, "client-bye")),
    io("io-server-close", "the server closes with 4002/'server-bye'; the client sees that code and reason",
       ("server-close", 4002, "server-bye")),
    io("io-namespace", "the client connects to the namespace /agents only: that namespace's connect handler sees "
       "the client identity and an echo with ack round-trips there", ("text", "hello agents"),
       family="socketio", namespace="/agents"),
    reconnect("reconnect-drop", "the server drops the connection (TCP abort): the client reconnects by itself, "
              "presents its certificate again (the handler sees it twice), verifies the server again, keeps the "
              "user's HTTP session, and echoes", ("reconnect", "drop"), ("text", "after the drop")),
    reconnect("reconnect-restart", "the server stops listening and comes back on the same port: the client "
              "reconnects by itself, presents its certificate again, verifies the server again, keeps the user's "
              "HTTP session, and echoes", ("reconnect", "restart"), ("text", "after the restart")),
    reconnect("reconnect-restart-untrusted", "the server comes back on the same port with a certificate from an "
              "unrelated CA: the client's reconnection must refuse it (UNKNOWN_CA) and give up, never connect",
              ("reconnect", "restart", "server-untrusted-ca"), severity=MUST_REFUSE),
    hostile_server("silent", "give-up", "the server accepts TCP and never speaks TLS"),
    hostile_server("close-after-hello", "fail", "the server closes the connection right after the ClientHello"),
    hostile_server("garbage", "fail", "the server answers the ClientHello with plain HTTP instead of TLS"),
    hostile_server("no-upgrade", "give-up", "the server completes TLS and never answers the upgrade request"),
    hostile_server("stall-after-upgrade", "give-up", "the server completes the upgrade and never answers a message"),
    hostile_server("reset-mid-message", "fail",
                   "the server answers the first message with half a frame, then resets the TCP connection"),
    hostile_server("no-close-reply", "give-up", "the server echoes, but never answers the client's close "
                   "(no close frame, no close_notify) and keeps TCP open", io=(("text", "hello mtls"),
                                                                                ("close", 1000, "bye"))),
    hostile_client("silent", "the client opens TCP and never sends a byte (slowloris)"),
    hostile_client("mid-handshake", "the client sends half a ClientHello and stops"),
    *(token(carrier, kind) for carrier in ("header", "query", "auth") for kind in ("valid", "malformed", "wrong")),
    token(None),
    *PROXY_IDENTITY,
    environment("env-other-ca-ok", "the environment points every CA variable (SSL_CERT_FILE, SSL_CERT_DIR, "
                "REQUESTS_CA_BUNDLE, CURL_CA_BUNDLE, WEBSOCKET_CLIENT_CA_BUNDLE, NODE_EXTRA_CA_CERTS) at an unrelated "
                "CA; the code passes the run's CA: the server, from the run's CA, must verify", Expect("succeed")),
    environment("env-other-ca-untrusted", "the environment points every CA variable at an unrelated CA, and the "
                "server presents a certificate from that CA; the code passes the run's CA: the client must refuse "
                "it", Expect("reject", "client", "UNKNOWN_CA"), server_cert="server-untrusted-ca"),
    Scenario("host-trailing-dot", "local-config", "the URL's host is the absolute name localhost. (trailing dot), "
             "which names the same host as localhost: it must verify against the certificate's DNS name localhost",
             Expect("succeed"), host="localhost.", tags=frozenset({"host-name"})),
    Scenario("server-chain-disordered", "local-config", "the server's chain file lists its two intermediates in "
             "the wrong order (leaf, the intermediate's issuer, the intermediate): TLS 1.3 lets the client build "
             "the path from the unordered list", Expect("succeed"), server_cert="server-chain-disordered",
             tags=frozenset({"chain"})),
    config_error("client-cert-missing", "FILE_NOT_FOUND", "the client's certificate file does not exist"),
    config_error("client-key-missing", "FILE_NOT_FOUND", "the client's key file does not exist"),
    config_error("client-key-unreadable", "FILE_UNREADABLE", "the client's key path cannot be read (a directory)"),
    config_error("client-key-mismatch", "KEY_MISMATCH", "the client's key file holds the key of another certificate"),
    hostile_server("close-no-notify", "prompt", "the server answers the client's close frame, then never sends its "
                   "TLS close_notify nor closes TCP before the client does: the client's close must not wait on it",
                   io=(("text", "hello mtls"), ("close", 1000, "bye"))),
)

BY_NAME: dict[str, Scenario] = {s.name: s for s in CATALOGUE}


def select(patterns: list[str] | None) -> list[Scenario]:
    """Scenarios by name, group or glob (`client-*`). Raises ValueError naming what did not match."""
    if not patterns:
        return list(CATALOGUE)
    chosen: dict[str, Scenario] = {}
    for pattern in patterns:
        hits = [s for s in CATALOGUE if s.group == pattern or fnmatch.fnmatchcase(s.name, pattern)]
        if not hits:
            raise ValueError(
                f"unknown scenario {pattern!r}; valid: groups {', '.join(GROUPS)}; "
                f"scenarios {', '.join(BY_NAME)} (globs like 'client-*' work too)"
            )
        chosen.update((s.name, s) for s in hits)
    return [s for s in CATALOGUE if s.name in chosen]
