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
from typing import Optional

from pydantic import BaseModel, Field

SCHEMA_VERSION = 1


class Verdict(str, Enum):
    PASS = "PASS"
    INSECURE = "INSECURE"
    FAIL = "FAIL"
    HANG = "HANG"
    UNSUPPORTED = "UNSUPPORTED"
    ERROR = "ERROR"


SEVERITY = {  # report order, worst first
    Verdict.INSECURE: 0, Verdict.HANG: 1, Verdict.FAIL: 2, Verdict.ERROR: 3, Verdict.UNSUPPORTED: 4, Verdict.PASS: 5,
}


class Clarity(str, Enum):
    CLEAR = "CLEAR"  # names the certificate problem
    VAGUE = "VAGUE"  # a TLS failure without the reason
    OPAQUE = "OPAQUE"  # reset, EOF, empty message, a generic connection error


class ErrorInfo(BaseModel):
    canonical: Optional[str] = Field(None, description="UNKNOWN_CA, CERT_EXPIRED, HOSTNAME_MISMATCH, EOF, HTTP_403, ...")
    type: Optional[str] = Field(None, description="the exception type the user of the library sees, with its module")
    message: Optional[str] = None
    clarity: Optional[Clarity] = Field(None, description="how well the message tells the user what went wrong")
    chain: list[str] = Field(default_factory=list, description="causes and contexts, outermost first: 'Type: message'")


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


class Step(BaseModel):
    op: str
    ok: bool
    detail: Optional[str] = None
    ms: Optional[float] = None


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
    timings: dict[str, float] = Field(default_factory=dict, description="ms since the cell started, per phase reached")
    versions: dict[str, str] = Field(default_factory=dict, description="library versions of this pair")
    repro: str = Field(description="a command that reruns just this cell")


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
    ca_fingerprint: str = Field(description="SHA-256 of the run's root CA certificate (DER)")
    scrubbed_env: list[str] = Field(default_factory=list, description="variables removed so the user's setup cannot leak in")
    deadline_s: float
    profiles: list[str]
    workers: int = 1


class Results(BaseModel):
    schema_version: int = SCHEMA_VERSION
    run: Run
    cells: list[Cell]

    @classmethod
    def load(cls, path: str | Path) -> Results:
        try:
            return cls.model_validate_json(Path(path).read_text())
        except FileNotFoundError:
            raise ValueError(f"{path}: no such results file") from None
        except ValueError as exc:
            raise ValueError(f"{path}: not a valid mtls-matrix results file: {exc}") from None

    def save(self, path: str | Path) -> None:
        write_atomically(Path(path), self.model_dump_json(indent=1))


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
