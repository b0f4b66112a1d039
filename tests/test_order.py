"""Order independence: no verdict depends on which cell ran before it (--mtls-order).

The socket.io slice runs once per order, each with --confirm 2. Some of its cells' verdicts are
timing races of their libraries (whether disconnect() on polling waits out the pending long-poll;
whether werkzeug reads a websocket close frame as HTTP): such a cell may differ between orders only
where its runs disagree, in its own reruns, or when it runs again alone with no cell before it. A
cell that is consistent alone but gets another verdict in some order, reproduced by its reruns there,
depends on the order: that fails.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from mtls_matrix.results import Results
from tests.conftest import REPO, mtls_matrix
from tests.test_flakes import junit_names

SOCKETIO_SLICE = ("--servers", "socketio-aiohttp,socketio-tornado,socketio-uvicorn,socketio-werkzeug",
                  "--clients", "socketio-asyncclient,socketio-client", "--scenarios", "client-no-cert,io-close",
                  "--profile", "default", "-n", "0", "--confirm", "2")
ORDERS = ("forward", "reverse", "random:1")
ALONE_RUNS = 6


def test_socketio_verdicts_do_not_depend_on_the_order_of_the_cells(tmp_path):
    # the three orders side by side: most of these cells wait on a library timer, not on a core
    runs = {order: subprocess.Popen(
        [sys.executable, "-m", "mtls_matrix.cli", "run", "--out", str(tmp_path / order), *SOCKETIO_SLICE,
         "--", "--mtls-order", order],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)}) for order in ORDERS}
    for order, proc in runs.items():
        output = proc.communicate(timeout=600)[0]
        assert (tmp_path / order / "results.json").exists(), f"{order}: no results.json\n{output[-3000:]}"
    results = {order: {c.id: c for c in Results.load(tmp_path / order / "results.json").cells} for order in ORDERS}
    forward = junit_names(tmp_path / "forward")
    assert junit_names(tmp_path / "reverse") == forward[::-1]
    shuffled = junit_names(tmp_path / "random:1")
    assert sorted(shuffled) == sorted(forward) and shuffled not in (forward, forward[::-1])

    ids = results["forward"].keys()
    assert len(ids) == 80 and all(r.keys() == ids for r in results.values())
    differ = {i: {o: r[i].verdict.value for o, r in results.items()} for i in ids
              if len({r[i].verdict for r in results.values()}) > 1}
    flaky = {i for i in ids if any(r[i].flaky for r in results.values())}
    reproduced = {i for i in set(differ) - flaky if any(_reproduced(r[i]) for r in results.values())}
    alone = {i: _alone(results["forward"][i], tmp_path / "alone" / str(n)) for n, i in enumerate(reproduced)}
    order_bound = {i: (differ[i], alone[i]) for i in alone if len(alone[i]) == 1
                   and any(_reproduced(r[i]) and r[i].verdict.value not in alone[i] for r in results.values())}
    assert not order_bound, order_bound
    # werkzeug accepted every cell's connection: none waited behind what an earlier cell left half-done
    held = [(o, c.id) for o, r in results.items() for c in r.values()
            if c.server == "server:socketio-werkzeug" and c.phase == "tcp"]
    assert not held, held
    print(f"FLAKY by timing (their reruns disagree): {sorted(flaky | set(alone))}; "
          f"of them with verdicts differing between orders: {sorted(differ)}")


def _reproduced(cell) -> bool:
    """Whether an order's verdict is evidence: every run of it (the first and its --confirm reruns) agreed.
    A single passing run is not; a consistent verdict there that the cell never gets alone is."""
    return cell.runs is not None and cell.runs.count > 1 and len(cell.runs.verdicts) == 1


def _alone(cell, out) -> dict[str, int]:
    """The cell run ALONE_RUNS times by itself: no cell before it. Its runs per verdict."""
    proc = mtls_matrix("run", "--out", str(out), "--servers", cell.server.partition(":")[2],
                       "--clients", cell.client.partition(":")[2], "--scenarios", cell.scenario,
                       "--profile", "default", "-n", "0", "--repeat", str(ALONE_RUNS))
    assert (out / "results.json").exists(), proc.stdout + proc.stderr
    return Results.load(out / "results.json").cells[0].runs.verdicts


@pytest.mark.parametrize("order", ["backwards", "random", "random:x", "random:1.5"])
def test_a_bad_order_is_one_clear_line_and_exit_2(tmp_path, order):
    out = tmp_path / "out"
    proc = mtls_matrix("run", "--out", str(out), "--servers", "websockets", "--clients", "websockets[ssl=context]",
                       "--scenarios", "mtls-ok", "-n", "0", "--", "--mtls-order", order)
    said = [line for line in (proc.stdout + proc.stderr).splitlines() if "--mtls-order" in line]
    assert proc.returncode == 2
    assert said == [f"Exit: mtls-matrix: error: unknown --mtls-order {order!r}; valid: forward, reverse, "
                    "random:SEED (SEED a whole number, e.g. random:1)"]
    assert not (out / "results.json").exists()


def test_a_seeded_shuffle_is_the_same_every_time_and_another_seed_gives_another(tmp_path):
    def collected(order: str) -> list[str]:
        proc = subprocess.run([sys.executable, "-m", "pytest", "matrix", "--collect-only", "-q", "-p",
                               "no:cacheprovider", "--servers", "websockets,aiohttp", "--clients", "websockets[ssl=context]",
                               "--scenarios", "works,io-text", "--profile", "default", "--mtls-order", order],
                              capture_output=True, text=True, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
        return [line for line in proc.stdout.splitlines() if "::test_cell[" in line]

    forward, first, again, other = collected("forward"), collected("random:1"), collected("random:1"), collected("random:2")
    assert len(forward) == 16 and sorted(first) == sorted(forward)
    assert first == again and first != forward and other != first


def test_a_werkzeug_cell_does_not_wait_behind_what_the_cell_before_left_half_done(run_matrix):
    """selftest-half-done leaves a TCP connection without a ClientHello after its own cell: werkzeug,
    which runs every TLS handshake of a listener in its one accepting thread, would wait on it for good,
    and the next cell would HANG at tcp. Each cell has a listener of its own, so the next cell passes."""
    results, _ = run_matrix("--peer-plugin", "tests.selftest_judgement", "--servers", "socketio-werkzeug",
                            "--clients", "selftest-half-done,socketio-asyncclient[http_session=connector+websocket]",
                            "--scenarios", "mtls-ok", "--profile", "default", "-n", "0")
    assert [(c.client, c.verdict.value, c.phase) for c in results.cells] == [
        ("client:selftest-half-done[http_session=connector+websocket]", "PASS", "io"),
        ("client:socketio-asyncclient[http_session=connector+websocket]", "PASS", "io")]
