"""Helpers for the harness's own tests: they run the real CLI in a subprocess, as a user would."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from mtls_matrix.peers.node_ws import NODE
from mtls_matrix.results import Results

REPO = Path(__file__).resolve().parent.parent
needs_node = pytest.mark.skipif(NODE.missing() is not None, reason=f"{NODE.missing()}")


def mtls_matrix(*args: str, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    # the repository (tests.*), after whatever PYTHONPATH the tests run under (a worktree's src/)
    path = os.pathsep.join(filter(None, (os.environ.get("PYTHONPATH"), str(REPO))))
    environ = {**os.environ, "PYTHONPATH": path, **(env or {})}
    return subprocess.run([sys.executable, "-m", "mtls_matrix.cli", *args], capture_output=True, text=True,
                          env=environ, timeout=timeout, cwd=REPO)


@pytest.fixture
def run_matrix(tmp_path):
    """Runs `mtls-matrix run --out TMP ARGS...` and returns (results, completed process)."""

    def run(*args: str, env: dict | None = None, out: Path | None = None):
        out = out or tmp_path / "out"
        proc = mtls_matrix("run", "--out", str(out), *args, env=env)
        assert (out / "results.json").exists(), f"no results.json; stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
        return Results.load(out / "results.json"), proc

    return run


def verdicts(results: Results) -> dict[str, str]:
    return {c.id: c.verdict.value for c in results.cells}
