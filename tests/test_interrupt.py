"""Ctrl-C or SIGTERM in the middle of a real run: the finished cells are written (marked
incomplete), no process of the run survives, no key file is left on disk."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from mtls_matrix.results import Results
from tests.conftest import REPO

FINISHED_BEFORE_SIGNAL = 15


@pytest.mark.parametrize("how", ["sigterm-to-controller", "ctrl-c-to-process-group"])
def test_interrupted_run_leaves_valid_results_and_nothing_behind(tmp_path, how):
    scratch = tmp_path / "tmp"  # the run's temp dir: where its keys live
    scratch.mkdir()
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(REPO), "TMPDIR": str(scratch), "PYTHONUNBUFFERED": "1"}
    run = subprocess.Popen(
        [sys.executable, "-m", "mtls_matrix.cli", "run", "--out", str(out), "-n", "2",
         "--servers", "websockets,aiohttp,tornado", "--clients", "websockets,websocket-client,tornado", "--", "-vv"],  # the CLI passes -q
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        finished = 0
        deadline = time.monotonic() + 120
        while finished < FINISHED_BEFORE_SIGNAL and time.monotonic() < deadline:
            line = run.stdout.readline()
            assert line, "the run ended before it could be interrupted"
            finished += " PASSED " in line or " FAILED " in line
        if how == "sigterm-to-controller":
            os.kill(run.pid, signal.SIGTERM)
        else:
            os.killpg(run.pid, signal.SIGINT)
        run.communicate(timeout=60)
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
    assert run.returncode == 2  # interrupted
    with pytest.raises(ProcessLookupError):
        os.killpg(run.pid, 0)  # no worker, server or client process of the run is left
    results = Results.load(out / "results.json")
    assert not results.run.complete
    assert FINISHED_BEFORE_SIGNAL <= len(results.cells) < 3 * 5 * 51
    assert not [p for p in scratch.rglob("*") if "mtls-matrix-pki" in str(p)]  # keys removed
