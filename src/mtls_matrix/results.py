"""The results schema: the single source of truth for every report.

results.json is a `Results`; every renderer reads it and nothing else. `python -m
mtls_matrix.results` prints the JSON Schema exported to docs/results.schema.json.
"""

from __future__ import annotations

import json
import os
import tempfile
from enum import Enum
from pathlib import Path
from typing import Literal, Optional

from pydantic import BaseModel, Field

SCHEMA_VERSION = 2
# version 1 lacks only fields that have defaults here: its files still load (diff against an older run)
READABLE_VERSIONS = (1, 2)


class Verdict(str, Enum):
    PASS = "PASS"
    INSECURE = "INSECURE"
    FAIL = "FAIL"
    HANG = "HANG"
    UNSUPPORTED = "UNSUPPORTED"
    ERROR = "ERROR"
    SKIPPED = "SKIPPED"  # a peer's toolchain is missing (foreign peers): the cell did not run


SEVERITY = {  # report order, worst first
    Verdict.INSECURE: 0, Verdict.HANG: 1, Verdict.FAIL: 2, Verdict.ERROR: 3, Verdict.UNSUPPORTED: 4,
    Verdict.SKIPPED: 5, Verdict.PASS: 6,
}
# Declared, never observed: the pair cannot express the scenario, or a peer could not run at all.
# Neither is evidence about a library, nor a known issue, nor worth a rerun.
NOT_OBSERVED = (Verdict.UNSUPPORTED, Verdict.SKIPPED)


class Severity(str, Enum):
    """How much a cell's outcome matters (DESIGN.md section 5), declared as data in the scenario
    catalogue and the client variants, separate from the verdict, which says what happened."""

    CRITICAL = "critical"  # a fail-open under a documented, correct configuration
    BROKEN = "broken"  # a documented, correct configuration that should work does not
    ADVISORY = "advisory"  # a default that deviates from current standards or costs the user; trust intact
    CONTROL = "control"  # a variant that disables verification on purpose: its INSECURE is expected


SEVERITY_RANK = {Severity.CRITICAL: 0, Severity.BROKEN: 1, Severity.ADVISORY: 2, Severity.CONTROL: 3}


class Clarity(str, Enum):
    CLEAR = "CLEAR"  # names the certificate problem
    VAGUE = "VAGUE"  # a TLS failure without the reason
    OPAQUE = "OPAQUE"  # reset, EOF, empty message, a generic connection error


class ErrorInfo(BaseModel):
    canonical: Optional[str] = Field(None, description="UNKNOWN_CA, CERT_EXPIRED, HOSTNAME_MISMATCH, EOF, HTTP_403, ...")
    type: Optional[str] = Field(None, description="the exception type the user of the library sees, with its module; "
                                                  "for an end the library reports without raising (a value it "
                                                  "returns, a callback it calls), what reports it")
    message: Optional[str] = None
    clarity: Optional[Clarity] = Field(None, description="how well the message tells the user what went wrong")
    chain: list[str] = Field(default_factory=list, description="causes and contexts, outermost first: 'Type: message'")
    attributes: dict[str, str] = Field(
        default_factory=dict, description="the exception's documented attributes a user reads, as the client's peer "
                                          "names them (aiohttp's ClientConnectorError: os_error, host, port, ssl)")


class Rejection(BaseModel):
    by: str = Field(description="server | client: the side whose own verification refused the other")
    canonical: Optional[str] = None
    phase: str
    message: Optional[str] = None


class TLSSide(BaseModel):
    handshake: Optional[str] = Field(None, description="ok | error | none")
    version: Optional[str] = None
    cipher: Optional[str] = None
    peer_cn: Optional[str] = Field(None, description="CN of the certificate the other side presented")
    error: Optional[ErrorInfo] = None


class ServerSaw(BaseModel):
    accepted_tcp: bool = False
    tls: TLSSide = Field(default_factory=TLSSide)
    handler_ran: bool = False
    handler_peer_cn: Optional[str] = Field(None, description="the client identity the application handler could see")
    handler_identity_error: Optional[str] = Field(None, description="what the handler hit reading the identity")
    close_code: Optional[int] = None
    close_reason: Optional[str] = None
    transport: Optional[str] = Field(None, description="socketio family: the transport the server saw last "
                                                       "(polling | websocket)")
    proxy_status: Optional[int] = Field(None, description="the HTTP status a TLS-terminating proxy answered, from its log")
    proxy_verify: Optional[str] = Field(None, description="the proxy's client-certificate verification result "
                                        "as it logs it (nginx $ssl_client_verify, HAProxy ssl_c_verify)")
    crash: Optional[str] = Field(None, description="the server's listener or event loop died during the cell: "
                                                   "what ended it (None: it did not)")


class Step(BaseModel):
    op: str
    ok: bool
    detail: Optional[str] = None
    ms: Optional[float] = None


class RunOutcome(BaseModel):
    verdict: Verdict
    phase: str
    canonical: str = Field("-", description="as BUGS.md names it: the user's error, else the rejecting side's")
    ms: Optional[float] = Field(None, description="the run's total time")


class Runs(BaseModel):
    """`--repeat N` / `--confirm N`: the cell ran more than once, back to back in one pytest item.
    The cell's own fields (verdict, phase, error, ...) are its first run's: a plain run's answer."""

    mode: Literal["repeat", "confirm", "repeat+confirm"] = Field(
        description="repeat: every cell ran N times; confirm: a non-PASS first run was rerun")
    count: int = Field(description="how many runs, the first included")
    verdicts: dict[str, int] = Field(description="runs per verdict")
    pass_rate: float = Field(description="the share of runs that were PASS, 0..1")
    each: list[RunOutcome] = Field(description="every run in order, the first one first")


EARLIER_CELL = "(an earlier cell's) "  # starts a ResourceWarning about a socket of another listener (Leaks)


class Leaks(BaseModel):
    """What a rejected connection left behind once its cell settled (observed, not judged: a leak
    never changes a verdict). Recorded only when something leaked."""

    client_sockets: int = Field(0, description="open sockets of the client side of the cell's connection")
    server_sockets: int = Field(0, description="open accepted sockets of the server side of the cell's connection")
    client_tasks: int = Field(0, description="pending tasks on the client's event loop right before it was closed")
    server_tasks: int = Field(0, description="how many more pending tasks the server's event loop had after the cell")
    resource_warnings: list[str] = Field(default_factory=list, description="ResourceWarnings emitted during the "
                                         "cell; one about a socket of another listener (an earlier cell's object, "
                                         f"collected during this one) starts with {EARLIER_CELL!r}")


class Hostile(BaseModel):
    """A hostile-server / hostile-client cell: how the peer under test dealt with the harness's
    hostile peer (peers/hostile.py)."""

    behaviour: str = Field(description="what the harness's peer did (the scenario's `hostile`)")
    under_test: str = Field(description="the role judged: client (hostile-server) or server (hostile-client)")
    ended: bool = Field(description="the peer under test ended the connection (or its call) by itself before the deadline")
    after_s: Optional[float] = Field(None, description="seconds from the connection attempt until it did")
    after_fault_s: Optional[float] = Field(None, description="seconds from the hostile peer's fault (closing, "
                                                             "sending garbage, resetting) until it did")
    how: Optional[str] = Field(None, description="canonical: how it ended (TIMEOUT, EOF, CONNECTION_RESET, "
                                                 "PROTOCOL_VERSION, CLOSED: its close returned, ...)")
    left_open: Optional[bool] = Field(None, description="it still held its socket of the connection a moment after "
                                                        "the connection ended (None: not measured)")
    own_timeouts: dict[str, Optional[float]] = Field(
        default_factory=dict, description="the library's default timeouts, read from the library (None: no timeout)")


class Advisory(BaseModel):
    """Something a user of this pair pays for although the verdict may be PASS: a refusal that took
    tens of seconds, a refused handshake the client repeated on its own, a deprecated default."""

    kind: str = Field(description="slow | late-refusal | repeated-handshake | ...: what the advisory is about")
    text: str = Field(description="one line for the report")


class Deadline(BaseModel):
    """How long the runner waited for the cell, and whose clock that was."""

    seconds: float
    source: Literal["library", "harness"] = Field(
        description="library: the library's longest relevant documented timeout plus a margin; harness: a "
                    "deadline the harness chose (the library documents none, or it was handed the deadline)")
    timeout: Optional[str] = Field(None, description="the documented timeout it rests on, by the library's name for it")
    documented_s: Optional[float] = Field(None, description="that timeout's documented default, in seconds")


class Wire(BaseModel):
    """What the server put on the wire, as the client side saw it: the same evidence for every server,
    whatever its language or process."""

    alert: Optional[str] = Field(None, description="the TLS alert the client received (unknown_ca, "
                                                   "certificate_required, ...); None: no alert")
    ended: Optional[str] = Field(None, description="how the server ended the connection: alert | close_notify | "
                                                   "fin | reset | open (still open when the cell ended)")
    after_ms: Optional[float] = Field(None, description="ms from the connection's start until the server ended it")


class Cell(BaseModel):
    id: str = Field(description="the pytest id: server-client-scenario[-profile]")
    server: str
    client: str
    scenario: str
    group: str
    profile: str
    family: str = "ws"
    tags: list[str] = Field(default_factory=list)
    expectation: str
    verdict: Verdict
    phase: str = Field(description="where the outcome was decided, as the client saw it: tcp .. io")
    reason: str = Field("", description="one line: why this verdict")
    error: ErrorInfo = Field(default_factory=ErrorInfo, description="what the client's user sees")
    rejection: Optional[Rejection] = None
    client_tls: TLSSide = Field(default_factory=TLSSide)
    server_saw: ServerSaw = Field(default_factory=ServerSaw)
    steps: list[Step] = Field(default_factory=list)
    timings: dict[str, float] = Field(default_factory=dict, description=(
        "ms since the cell started, per phase reached; `total`: the client's run, `cell`: the whole cell as its "
        "runner spent it"))
    versions: dict[str, str] = Field(default_factory=dict, description="library versions of this pair")
    repro: str = Field(description="a command that reruns just this cell")
    client_after_deadline: Optional[str] = Field(
        None, description="for a client still running at the deadline: stopped (its sockets were shut down and "
                          "its thread ended), killed (a blocking library's client process, isolate.py, was killed) "
                          "or abandoned (an async client blocked outside a socket; its daemon thread was left)")
    baseline: Optional[Literal["KNOWN", "NEW"]] = Field(
        None, description="against the baseline of known issues (run --baseline); None: PASS, UNSUPPORTED or no baseline")
    baseline_reason: Optional[str] = Field(None, description="the matching baseline entry's reason (KNOWN cells)")
    upstream: Optional[str] = Field(None, description="the matching baseline entry's upstream link (KNOWN cells)")
    environment: Optional[str] = Field(
        None, description="`mtls-matrix versions`: the pins of the environment this cell ran in (aiohttp==3.9.1); "
                          "its id then ends in @ENVIRONMENT. None: a plain run")
    runs: Optional[Runs] = Field(None, description="--repeat / --confirm: every run of this cell; None: it ran once")
    flaky: bool = Field(False, description="its runs did not all reach the same verdict (see runs)")
    transport: Optional[str] = Field(
        None, description="socketio family: the transport that carried the session on the client once connected "
                          "(polling | websocket); None for the ws family or a cell that never connected")
    hostile: Optional[Hostile] = Field(None, description="hostile-server / hostile-client cells: the outcome")
    leaks: Optional[Leaks] = Field(
        None, description="rejection cells: what the peers left behind (sockets, tasks, ResourceWarnings); "
                          "None: nothing leaked, or not a rejection cell")
    severity: Optional[Severity] = Field(
        None, description="how much the outcome matters, from the catalogue (scenario, variant): set for every "
                          "observed cell that is not a clean PASS; advisory for a PASS with advisories")
    advisories: list[Advisory] = Field(default_factory=list, description="what the user pays although it worked")
    deadline: Optional[Deadline] = Field(None, description="how long the runner waited, and on whose clock")
    wire: Optional[Wire] = Field(None, description="what the server put on the wire, as the client saw it")
    handshakes: Optional[int] = Field(None, description="TLS handshakes the server saw in this cell (None: not counted)")
    mechanism: Optional[str] = Field(None, description="the id of the known mechanism (baseline entry) explaining it")


def canonical(cell: Cell) -> str:
    """The canonical error as reports name it: what the client's user saw, else the rejecting side's
    reason; `-` when nothing failed."""
    if cell.error.canonical:
        return cell.error.canonical
    if cell.rejection and cell.rejection.canonical:
        return cell.rejection.canonical
    return "-"


def rate_text(cell: Cell) -> str:
    """`PASS 3/5, FAIL 2/5`: the verdicts of a cell's runs, most frequent first (ties in the order first seen)."""
    runs = cell.runs
    if not runs:
        return f"{cell.verdict.value} 1/1"
    order = {v.verdict.value: i for i, v in reversed(list(enumerate(runs.each)))}
    ranked = sorted(runs.verdicts.items(), key=lambda kv: (-kv[1], order.get(kv[0], 0)))
    return ", ".join(f"{verdict} {n}/{runs.count}" for verdict, n in ranked)


class Floor(BaseModel):
    """Bare asyncio + ssl on the machine that ran the matrix (mtls_matrix.floor): the pairs'
    handshake latency and echo throughput read against it."""

    handshakes: int = Field(description="how many handshakes the percentiles are over (after one warm-up)")
    tls_version: Optional[str] = None
    handshake_p50_ms: float = Field(description="median, from the server's TCP accept to the client's completed "
                                                "mutual handshake (what a cell's tls-handshake - tcp measures)")
    handshake_p95_ms: float
    echo_bytes: int = Field(description="one message of this size sent and read back on an established connection")
    echo_ms: float = Field(description="the median of a few such echoes")
    echo_mib_s: float = Field(description="2 x echo_bytes (there and back) per second, in MiB/s")


class ScenarioInfo(BaseModel):
    """The catalogue entry of a scenario as it was when the run was made: renderers read this, never
    today's catalogue, so an old results.json renders as it ran."""

    name: str
    group: str
    description: str
    expectation: str
    tags: list[str] = Field(default_factory=list)
    severity: dict[str, Severity] = Field(
        default_factory=dict, description="verdict -> the severity a cell of this scenario gets with it")
    reproducible: bool = Field(False, description="mtls-matrix repro writes a standalone script for its cells "
                                                  "(not when the harness acts in it: a reconnect, an environment)")


class PeerInfo(BaseModel):
    """A peer as the run knew it: what findings need to blame the narrowest layer."""

    name: str = Field(description="as cells name it: server:aiohttp, client:aiohttp[ssl=context]")
    role: Literal["server", "client"]
    family: str
    library: str
    version: str
    stack: str = Field(description="the TLS implementation that verifies the other side (CPython ssl, Node tls, ...)")
    framework: Optional[str] = Field(None, description="a server library running on another library's HTTP server "
                                                       "(socketio-aiohttp: aiohttp); a proxy's backend server")
    proxy: Optional[str] = Field(None, description="the TLS-terminating proxy in front (nginx, haproxy)")
    foreign: bool = False
    harness: bool = Field(False, description="the harness's own hostile peer: never blamed")
    control: Optional[str] = Field(None, description="why this variant disables verification on purpose: a control")
    reproducible: bool = Field(False, description="mtls-matrix repro writes a standalone reproducer of its cells "
                                                  "(its library code is a usercode module, or a program's own)")
    configures: list[str] = Field(default_factory=list, description="the library calls that configure this side in "
                                                                    "its reproducer (BUGS.md quotes them); none for "
                                                                    "a program in another language")


class NotRun(BaseModel):
    name: str
    why: str


class Run(BaseModel):
    started: str
    finished: Optional[str] = None
    duration_s: Optional[float] = None
    complete: bool = True
    command: str = ""
    python: str
    openssl: str
    platform: str
    versions: dict[str, str] = Field(description="every peer library's version")
    ca_fingerprint: str = Field(description="SHA-256 of the run's root CA certificate (DER); 'merged' for shards "
                                            "with different CAs (see ca_fingerprints)")
    ca_fingerprints: list[str] = Field(
        default_factory=list, description="`mtls-matrix merge`: each shard's CA fingerprint, in shard order; empty for one run")
    scrubbed_env: list[str] = Field(default_factory=list, description="variables removed so the user's setup cannot leak in")
    deadline_s: float
    profiles: list[str]
    workers: int = 1
    environments: list[Environment] = Field(
        default_factory=list, description="`mtls-matrix versions`: one entry per version environment, in order")
    floor: Optional[Floor] = Field(
        None, description="the bare-ssl floor measured once at the start of the run; None: not measured")
    scenarios: list[ScenarioInfo] = Field(default_factory=list, description="the catalogue entries the run used, "
                                                                            "in catalogue order")
    peers: list[PeerInfo] = Field(default_factory=list, description="every peer the run's cells name")
    not_run: list[NotRun] = Field(default_factory=list, description="stacks the matrix does not run here, and why")


class Environment(BaseModel):
    name: str = Field(description="its pins, e.g. aiohttp==3.9.1 (several joined by '+')")
    pins: dict[str, str]
    status: str = Field(description="ok | cannot install | cannot import | run failed: only ok environments have cells")
    detail: Optional[str] = Field(None, description="the last lines of the error when status is not ok")
    versions: dict[str, str] = Field(default_factory=dict, description="every peer library's version in it")
    ca_fingerprint: str = ""
    cells: int = 0

    @property
    def ok(self) -> bool:
        return self.status == "ok"


class StaleEntry(BaseModel):
    entry: int = Field(description="its position in the baseline file, from 1")
    cells: list[str] = Field(description="its cell patterns")
    verdict: str
    canonical: Optional[str] = None
    reason: str
    why: str = Field(description="its cells all PASS now, or it matches no cell of a complete run")


class BaselineSummary(BaseModel):
    file: str
    counts: dict[str, int] = Field(description="KNOWN and NEW cells, XPASS (stale) entries")
    stale: list[StaleEntry] = Field(default_factory=list)


Run.model_rebuild()


class Results(BaseModel):
    schema_version: int = SCHEMA_VERSION
    run: Run
    cells: list[Cell]
    baseline: Optional[BaselineSummary] = Field(None, description="the classification against a baseline, if any")

    @classmethod
    def load(cls, path: str | Path) -> Results:
        """Raises ValueError naming the file and what is wrong with it, in one line."""
        text = read_text(path, "results file")
        version = _schema_version(text)
        if version not in READABLE_VERSIONS:  # before validation: another version's shape would fail confusingly
            raise ValueError(f"{path}: results schema version {version}, this mtls-matrix reads versions "
                             f"{', '.join(map(str, READABLE_VERSIONS))}; use the mtls-matrix that wrote it, or re-run")
        try:
            return cls.model_validate_json(text)
        except ValueError as exc:
            raise ValueError(f"{path}: not a valid mtls-matrix results file: {_first_error(exc)}") from None

    def save(self, path: str | Path) -> None:
        write_atomically(Path(path), self.model_dump_json(indent=1))


def _first_error(exc: ValueError) -> str:
    """One line for a validation error, however many problems pydantic found."""
    errors = exc.errors() if hasattr(exc, "errors") else []
    if not errors:
        return " ".join(str(exc).split())
    where = ".".join(map(str, errors[0]["loc"]))
    more = f" (and {len(errors) - 1} more problems)" if len(errors) > 1 else ""
    return f"{where + ': ' if where else ''}{errors[0]['msg']}{more}"


def read_text(path: str | Path, what: str) -> str:
    """A UTF-8 text file's content; ValueError naming the file and the problem, whatever it is."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise ValueError(f"{path}: no such {what}") from None
    except IsADirectoryError:
        raise ValueError(f"{path}: is a directory, not a {what}") from None
    except OSError as exc:
        raise ValueError(f"{path}: cannot read the {what}: {exc.strerror or exc}") from None
    try:
        return data.decode()
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: not a {what}: binary content (not UTF-8 text at byte {exc.start})") from None


def _schema_version(text: str):
    """The file's declared version; the current one when it cannot tell (validation then says why)."""
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):  # RecursionError: nested deeper than the parser goes
        return SCHEMA_VERSION
    return data.get("schema_version", SCHEMA_VERSION) if isinstance(data, dict) else SCHEMA_VERSION


def check_output(path: str | Path, directory: bool = False) -> None:
    """Raises ValueError when `path` cannot become the output file (or, with `directory`, the output
    directory): checked before any work, so bad input writes nothing."""
    path = Path(path)
    if directory and path.exists() and not path.is_dir():
        raise ValueError(f"{path}: exists and is not a directory")
    if not directory and path.is_dir():
        raise ValueError(f"{path}: is a directory; give the path of a file")
    nearest = next(p for p in ([path] if directory else []) + [*path.parents] if p.exists() or p.is_symlink())
    if not nearest.is_dir():
        raise ValueError(f"{path}: {nearest} is not a directory")
    if not os.access(nearest, os.W_OK | os.X_OK):
        raise ValueError(f"{path}: {nearest} is not writable")


def write_atomically(path: Path, text: str) -> None:
    """Readers never see half a file: write beside it, then rename over it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def json_schema() -> str:
    return json.dumps(Results.model_json_schema(), indent=2) + "\n"


if __name__ == "__main__":
    print(json_schema(), end="")
