"""Repeatability (--repeat, --confirm, FLAKY) and order independence, over real TLS.

The flaky peer is `selftest-flaky` (tests/selftest_peers.py): a websockets server that refuses
every other connection, the first one included, with a close 1013 after a real mutual-TLS
handshake. Its count is per listener, so a one-cell slice fails on runs 1, 3, 5... and passes on
runs 2, 4, 6...: exact rates to assert.
"""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections import defaultdict

import pytest

from mtls_matrix import baseline, findings
from mtls_matrix.plugin import IN_PROCESS_CELLS, WAITING_WORKERS, shared_process
from mtls_matrix.reports import bugs
from mtls_matrix.reports.html import render_html
from mtls_matrix.results import Results
from mtls_matrix.scenarios import BY_NAME
from mtls_matrix.selection import build_selection
from tests.conftest import REPO, mtls_matrix, verdicts
from tests.test_html_report import browser, open_report  # noqa: F401  (browser: the shared Chromium fixture)

FLAKY_SLICE = ("--peer-plugin", "tests.selftest_peers", "--servers", "selftest-flaky,websockets",
               "--clients", "websockets[ssl=context]", "--scenarios", "mtls-ok", "-n", "0")
FLAKY_ID = "selftest-flaky-websockets[ssl=context]-mtls-ok"
STABLE_ID = "websockets-websockets[ssl=context]-mtls-ok"


def run(out, *args: str) -> tuple[Results, subprocess.CompletedProcess]:
    proc = mtls_matrix("run", "--out", str(out), *args)
    assert (out / "results.json").exists(), f"no results.json:\n{proc.stdout}\n{proc.stderr}"
    return Results.load(out / "results.json"), proc


def by_id(results: Results) -> dict:
    return {c.id: c for c in results.cells}


def junit_names(out) -> list[str]:
    """The test cases in the order they ran (JUnit records them in that order with -n 0)."""
    return [case.get("name") for case in ET.parse(out / "junit.xml").iter("testcase")]


@pytest.fixture(scope="module")
def repeated(tmp_path_factory):
    """The flaky slice with --repeat 4, run once for the tests that read it."""
    out = tmp_path_factory.mktemp("repeat")
    results, proc = run(out, *FLAKY_SLICE, "--repeat", "4")
    return results, proc, out


def test_repeat_on_stable_cells_keeps_one_item_per_cell_and_a_pass_rate_of_1(tmp_path):
    args = ("--servers", "aiohttp", "--clients", "websockets[ssl=context]", "--scenarios", "mtls-ok,client-expired,io-text",
            "--profile", "default", "-n", "0")
    plain, _ = run(tmp_path / "plain", *args)
    results, proc = run(tmp_path / "repeat", *args, "--repeat", "3")
    assert proc.returncode == 0, proc.stderr
    assert [c.id for c in results.cells] == [c.id for c in plain.cells]  # ids stable, no extra items
    assert len(junit_names(tmp_path / "repeat")) == len(results.cells)
    for cell in results.cells:
        assert cell.verdict.value == "PASS" and not cell.flaky, cell.id
        assert (cell.runs.count, cell.runs.pass_rate, cell.runs.verdicts) == (3, 1.0, {"PASS": 3}), cell.id
        assert cell.runs.mode == "repeat" and [r.verdict.value for r in cell.runs.each] == ["PASS"] * 3


def test_repeat_labels_the_flaky_server_with_its_rate(repeated):
    results, proc, _ = repeated
    flaky, stable = by_id(results)[FLAKY_ID], by_id(results)[STABLE_ID]
    assert flaky.flaky and flaky.runs.count == 4 and flaky.runs.pass_rate == 0.5
    assert [r.verdict.value for r in flaky.runs.each] == ["FAIL", "PASS", "FAIL", "PASS"]
    assert flaky.verdict.value == "FAIL"  # the first run's verdict, as a plain run would report it
    assert not stable.flaky and stable.runs.pass_rate == 1.0
    assert "FLAKY (FAIL 2/4, PASS 2/4)" in proc.stdout and "1 FLAKY" in proc.stdout


def test_confirm_reruns_only_failing_cells_and_labels_the_flaky_one(tmp_path):
    results, proc = run(tmp_path / "out", *FLAKY_SLICE, "--confirm", "3")
    flaky, stable = by_id(results)[FLAKY_ID], by_id(results)[STABLE_ID]
    assert flaky.flaky and flaky.runs.mode == "confirm"
    assert (flaky.runs.count, flaky.runs.verdicts, flaky.runs.pass_rate) == (4, {"FAIL": 2, "PASS": 2}, 0.5)
    assert stable.runs is None and not stable.flaky  # a PASS first run is not rerun


def test_strict_fails_on_a_flaky_cell(tmp_path):
    _, proc = run(tmp_path / "out", *FLAKY_SLICE, "--repeat", "2", "--strict")
    assert proc.returncode == 1


@pytest.mark.parametrize("args, says", [
    (("--repeat", "0"), "--repeat must be a whole number of runs, at least 1, got 0"),
    (("--repeat", "-2"), "--repeat must be a whole number of runs, at least 1, got -2"),
    (("--confirm", "-1"), "--confirm must be a whole number of extra runs, 0 or more, got -1"),
    (("--repeat", "twice"), "invalid int value: 'twice'"),
])
def test_bad_repeat_or_confirm_is_a_usage_error(tmp_path, args, says):
    out = tmp_path / "out"
    proc = mtls_matrix("run", "--out", str(out), "--servers", "aiohttp", "--scenarios", "mtls-ok", *args)
    assert proc.returncode == 2 and says in proc.stderr
    assert not out.exists()


def test_bad_repeat_is_a_usage_error_under_plain_pytest_too():
    proc = subprocess.run([sys.executable, "-m", "pytest", "matrix", "--servers", "aiohttp", "--repeat", "0"],
                          capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 2 and "--repeat must be a whole number" in proc.stdout + proc.stderr


def test_verdicts_do_not_depend_on_cell_order_or_worker(tmp_path):
    """The same slice sequentially, on two xdist workers (forked, with their client processes, from
    the run's fork server), and reversed: every verdict the same, but for a cell whose own
    back-to-back reruns disagree in some leg: that is the library racing with itself (websockets'
    sync client reads and writes one TLS connection from two threads), which the cell before it
    cannot cause. Such cells must stay rare, or the harness is the one racing."""
    args = ("--servers", "aiohttp,tornado", "--clients", "websockets,websocket-client",
            "--scenarios", "works,client-no-cert,client-expired,server-wrong-host,io-text", "--profile", "default",
            "--confirm", "2")
    forward, _ = run(tmp_path / "forward", *args, "-n", "0")
    workers, _ = run(tmp_path / "workers", *args, "-n", "2")
    backward, _ = run(tmp_path / "reverse", *args, "-n", "0", "--", "--mtls-order", "reverse")
    ran = junit_names(tmp_path / "reverse")
    assert ran == list(reversed(junit_names(tmp_path / "forward"))) and len(ran) > 40  # really reversed
    assert workers.run.workers == 2
    racing = {c.id for c in forward.cells + workers.cells + backward.cells if c.flaky}
    assert len(racing) <= 2, racing

    def settled(results: Results) -> dict[str, str]:
        return {i: v for i, v in verdicts(results).items() if i not in racing}

    assert settled(forward) == settled(workers) == settled(backward)


def test_auto_workers_give_the_waiting_cells_a_worker_of_their_own(tmp_path):
    """`-n auto` with cells whose server mostly waits (the socket.io servers) among others: one
    worker per core plus WAITING_WORKERS, which take the waiting cells; verdicts as in a serial run.
    Without waiting cells, one worker per core; a handful of cells run in the controller."""
    args = ("--servers", "websockets,socketio-aiohttp",
            "--clients", "websockets,aiohttp[ssl=context],socketio-asyncclient[http_session=connector+websocket]",
            "--scenarios", "works,client-no-cert,server-wrong-host,io-text", "--profile", "default", "--confirm", "2")
    auto, _ = run(tmp_path / "auto", *args, "-n", "auto")
    serial, _ = run(tmp_path / "serial", *args, "-n", "0")
    cores = len(os.sched_getaffinity(0))
    assert auto.run.workers == cores + WAITING_WORKERS
    ran_by = {case.get("name").partition("[")[2][:-1]: case.find("properties/property[@name='worker']").get("value")
              for case in ET.parse(tmp_path / "auto" / "junit.xml").iter("testcase")}
    waiting = [c.id for c in auto.cells if c.server == "server:socketio-aiohttp"]
    assert waiting and {ran_by[i] for i in waiting} <= {f"gw{cores + n}" for n in range(WAITING_WORKERS)}, ran_by
    # the schedule must not change a verdict; a cell whose own reruns disagree is a timing race, not the schedule's
    racing = {c.id for c in auto.cells + serial.cells if c.flaky}
    assert {i: v for i, v in verdicts(auto).items() if i not in racing} == \
           {i: v for i, v in verdicts(serial).items() if i not in racing}
    plain, _ = run(tmp_path / "plain", "--servers", "websockets", "--clients", "websockets[ssl=context]",
                   "--scenarios", "works,client-rejected")
    assert len(plain.cells) > IN_PROCESS_CELLS and plain.run.workers == cores
    few, _ = run(tmp_path / "few", "--servers", "websockets", "--clients", "websockets[ssl=context]", "--scenarios", "mtls-ok")
    assert few.run.workers == 1 and [c.verdict.value for c in few.cells] == ["PASS"]


def test_a_worker_keeps_the_listeners_it_started(tmp_path):
    """On two workers, a shared listener's cells run on the worker that started it, but for those
    the other worker takes at the end, when none of its own and no unstarted listener is left:
    spreading cells in catalogue order (`--dist load`) would start most listeners on both."""
    out = tmp_path / "out"
    results, _ = run(out, "--servers", "websockets,aiohttp,tornado",
                     "--clients", "websockets[ssl=context],aiohttp[ssl=context],tornado[ssl_options=context]",
                     "--scenarios", "works,client-rejected,server-rejected", "--profile", "default", "-n", "2")
    ran_by = {case.get("name").partition("[")[2][:-1]: case.find("properties/property[@name='worker']").get("value")
              for case in ET.parse(out / "junit.xml").iter("testcase")}
    listeners = {c.id: (c.server, BY_NAME[c.scenario].server_key) for c in results.cells}
    started = {(listeners[i], worker) for i, worker in ran_by.items()}
    assert set(ran_by.values()) == {"gw0", "gw1"} and len(set(listeners.values())) > 20
    assert len(started) <= 1.2 * len(set(listeners.values())), (len(started), len(set(listeners.values())))


def test_a_browsers_cells_share_one_process_whichever_server_and_page_they_play():
    """A browser serves every cell that presents its certificate (chromium.browser_for), against any
    server and as either page: the scheduler keeps them on the worker that started it, where a
    listener's cells would have spread them over every worker, a browser started on each."""
    cells = build_selection(servers=["websockets", "aiohttp", "socketio-aiohttp"],
                            clients=["chromium", "chromium-socketio"]).cells
    by_certificate = defaultdict(set)
    for spec in cells:
        by_certificate[spec.served.client_cert].add(shared_process(spec))
    assert len(by_certificate) >= 3 and all(len(keys) == 1 for keys in by_certificate.values()), by_certificate
    listeners = {shared_process(spec) for spec in build_selection(servers=["websockets"], clients=["websockets"]).cells}
    assert listeners and not listeners & set().union(*by_certificate.values())


def test_baseline_knows_a_flaky_cell_when_one_of_its_runs_is_known(repeated, tmp_path):
    results = repeated[0].model_copy(deep=True)
    flaky = by_id(results)[FLAKY_ID]
    flaky.verdict, flaky.runs.each[0].verdict = flaky.runs.each[1].verdict, flaky.runs.each[1].verdict  # PASS first
    entry = tmp_path / "known.toml"
    entry.write_text('[[entry]]\ncells = "selftest-flaky-*"\nverdict = "FAIL"\nreason = "refuses every other"\n')
    found = baseline.classify(results, baseline.load(entry), full_run=False)
    assert [c.id for c in found.known] == [FLAKY_ID] and not found.new and not found.stale
    other = tmp_path / "other.toml"
    other.write_text('[[entry]]\ncells = "selftest-flaky-*"\nverdict = "HANG"\nreason = "not what it does"\n')
    found = baseline.classify(results, baseline.load(other), full_run=False)
    # its runs disagree and no entry explains them: not reproduced, so not NEW; a FAIL run: not stale either
    assert not found.new and not found.known and not found.stale and by_id(results)[FLAKY_ID].baseline is None


def test_bugs_lists_flaky_cells_apart_from_the_findings(repeated):
    analysis = findings.analyse(repeated[0])
    text = bugs.render(analysis)
    assert "**1 FLAKY cell**" in text.splitlines()[4]  # the summary under the headline says so
    section = text.split("## Repeatability", 1)[1].split("\n## ", 1)[0]
    assert f"| `{FLAKY_ID}` | 50% | FAIL 2/4, PASS 2/4 | ❌ ✅ ❌ ✅ |" in section
    assert not any(FLAKY_ID == c.id for f in analysis.findings for c in f.cells)  # not a finding: no known mechanism


def test_html_drilldown_shows_the_runs(repeated, browser, tmp_path):  # noqa: F811
    path = tmp_path / "report.html"
    path.write_text(render_html(findings.analyse(repeated[0])))
    with open_report(browser, path, "#cell=" + FLAKY_ID) as tools:
        assert tools.js("document.getElementById('drill-flaky').textContent") == "FLAKY 50% PASS"
        assert tools.js("document.getElementById('drill-runs').textContent") == \
            "FAIL 2/4, PASS 2/4; pass rate 50%; FLAKY: the verdict varied"
        assert tools.errors() == []
