"""A real run stopped by Ctrl-C, SIGTERM or a closed terminal (SIGHUP) while its hostile batch waits
out a 30 s deadline: it ends within 2 s, exit 2, the finished cells written (marked incomplete), no
process of the run left, no key file left on disk. And what a SIGKILL leaves, the next run sweeps."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import threading
import time

import pytest

from mtls_matrix import pki
from mtls_matrix.results import Results
from tests.conftest import REPO

STOPPED_WITHIN_S = 2.0
WAIT_BEFORE_SIGNAL_S = 3.0  # after the first finished cell: the hostile batch started with the session
# nginx: a process of the run's own, with a private dir its worker owns
SELECTION = ("--deadline", "30", "--servers", "hostile,websockets,nginx+websockets",
             "--clients", "hostile,websockets[ssl=context]", "--scenarios", "hostile-*,mtls-ok,client-*")


def _processes_marked(mark: str) -> list[int]:
    """Every process whose environment carries the run's mark: its children inherit it, in whatever
    process group or session they put themselves."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/environ", "rb") as environ:
                if f"MTLS_TEST_RUN={mark}".encode() in environ.read().split(b"\0"):
                    found.append(int(pid))
        except OSError:
            continue
    return found


@pytest.mark.parametrize("signum, to, workers", [
    (signal.SIGINT, "group", "2"),  # Ctrl-C in a terminal: every process of the foreground group
    (signal.SIGTERM, "controller", "2"),  # a CI cancel, `kill PID`
    (signal.SIGHUP, "group", "2"),  # the terminal closed
    (signal.SIGTERM, "controller", "0"),  # no workers: the hostile batch runs in the controller itself
], ids=["sigint-group", "sigterm-controller", "sighup-group", "sigterm-no-workers"])
def test_a_signal_during_the_hostile_batch_ends_the_run_within_2_s_leaving_nothing(tmp_path, signum, to, workers):
    scratch = tmp_path / "tmp"  # the run's temp dir: where its keys live
    scratch.mkdir()
    out = tmp_path / "out"
    mark = str(tmp_path)
    env = {**os.environ, "PYTHONPATH": str(REPO), "TMPDIR": str(scratch), "PYTHONUNBUFFERED": "1",
           "MTLS_TEST_RUN": mark}
    run = subprocess.Popen(
        [sys.executable, "-m", "mtls_matrix.cli", "run", "--out", str(out), "-n", workers, *SELECTION,
         "--", "-vv"],  # the CLI passes -q
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            line = run.stdout.readline()
            assert line, "the run ended before it could be interrupted"
            if " PASSED " in line or " FAILED " in line:
                break
        output = []
        threading.Thread(target=lambda: output.append(run.stdout.read()), daemon=True).start()
        time.sleep(WAIT_BEFORE_SIGNAL_S)
        sent = time.monotonic()
        if to == "group":
            os.killpg(run.pid, signum)
        else:
            os.kill(run.pid, signum)
        while run.poll() is None and time.monotonic() - sent < 60:
            time.sleep(0.01)
        took = time.monotonic() - sent
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
        for pid in _processes_marked(mark):
            os.kill(pid, signal.SIGKILL)
    assert took < STOPPED_WITHIN_S, f"the run took {took:.2f} s to stop"
    assert run.returncode == 2  # interrupted
    assert _processes_marked(mark) == []  # no worker, server, client or browser process of the run is left
    results = Results.load(out / "results.json")
    assert not results.run.complete and results.cells  # the finished cells, and only those
    hostile = [c for c in results.cells if c.group.startswith("hostile-")]
    assert not any(c.scenario == "hostile-server-silent" for c in hostile)  # it waits 30 s: still waiting
    assert not [p for p in scratch.rglob("*") if p.name.startswith("mtls-matrix-") or p.name.endswith(".key.pem")]


def test_what_a_killed_run_left_is_swept_by_the_next_one(tmp_path, monkeypatch):
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    env = {**os.environ, "PYTHONPATH": str(REPO), "TMPDIR": str(scratch)}
    killed = subprocess.Popen([sys.executable, "-c", "import time; from mtls_matrix.pki import PKI; "
                                                     "print(PKI().dir, flush=True); time.sleep(60)"],
                              env=env, stdout=subprocess.PIPE, text=True)
    left = killed.stdout.readline().strip()
    killed.kill()  # SIGKILL: no atexit, no cleanup
    killed.wait()
    assert any(p.name.endswith(".key.pem") for p in os.scandir(left))
    alive = pki.private_dir("alive")  # this process's: kept
    unowned = scratch / "mtls-matrix-unowned"  # no owner recorded (an older mtls-matrix): not ours to judge
    unowned.mkdir()
    assert pki.sweep() == [type(alive)(left)]
    assert alive.is_dir() and unowned.is_dir() and not os.path.exists(left)
