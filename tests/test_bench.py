"""The yardsticks of bench/ do the work they claim: the scenario's messages, real handshakes that
refuse what the scenario's certificates must be refused for. No timing here: bench/ measures."""

from __future__ import annotations

import importlib
import re
import subprocess
import sys

from mtls_matrix.scenarios import BY_NAME, CATALOGUE, HOSTILE_GROUPS, MiB
from tests.conftest import REPO

sys.path.insert(0, str(REPO / "bench"))  # bench/ holds scripts, not a package
floor = importlib.import_module("floor")
plain = importlib.import_module("plain")


def moved(name: str) -> list[int]:
    steps, _ = floor.script(BY_NAME[name])
    return [sum(len(m) for m in step) for step in steps]


def test_the_floor_sends_each_scenarios_messages():
    assert moved("io-1mib") == [MiB]
    assert moved("io-text") == [len("hello mtls")]
    assert [len(step) for step in floor.script(BY_NAME["io-1000-ordered"])[0]] == [1000]
    assert floor.script(BY_NAME["reconnect-drop"])[1] == 1  # a second connection
    assert floor.script(BY_NAME["token-header-wrong"]) == ([], 0)  # refused at the upgrade: no script


def test_the_floor_connects_where_tls_lets_it_and_is_refused_where_it_must_be():
    chosen = [BY_NAME[n] for n in ("mtls-ok", "tls12-only", "client-no-cert", "client-expired-tls12",
                                   "server-untrusted-ca", "server-wrong-host", "token-header-ok")]
    floors = floor.measure(chosen, reps=1)
    assert {n: f.through for n, f in floors.items()} == {
        "mtls-ok": True, "tls12-only": True, "client-no-cert": False, "client-expired-tls12": False,
        "server-untrusted-ca": False, "server-wrong-host": False, "token-header-ok": True}
    assert all(f.as_expected and f.cpu_s > 0 for f in floors.values())


def test_the_floor_leaves_the_hostile_scenarios_out():
    hostile = [s for s in CATALOGUE if s.group in HOSTILE_GROUPS][:1]
    assert floor.measure(hostile, reps=1) == {}


def test_the_plain_harness_plays_the_issues_nine_certificate_scenarios_with_real_refusals():
    assert len(plain.SCENARIOS) == 9 and plain.TLS == ("tls13", "tls12")
    pairs = sum(len(plain.CLIENTS[plain.FAMILY.get(s, "ws")]) for s in plain.SERVERS)
    assert pairs == 16
    refusers = {refuser for *_, refuser in plain.SCENARIOS.values()}
    assert refusers == {None, "server", "client"}


def orphans(*arguments: str) -> str:
    """bench/orphans.py's report on `python -m tests.forked_programs orphan ...`."""
    return subprocess.run([sys.executable, str(REPO / "bench" / "orphans.py"), "--grace", "1", "--", sys.executable,
                           "-m", "tests.forked_programs", "orphan", *arguments],
                          cwd=REPO, capture_output=True, text=True, check=True, timeout=60).stdout


def test_the_benchmark_counts_the_cpu_of_a_process_its_command_orphaned():
    """The orphan's parent exits at once; only a subreaper that reaps it counts its CPU."""
    cpu = float(re.search(r"exit 0: \S+ s wall, (\S+) s CPU", orphans("0.5")).group(1))
    assert cpu >= 0.45, cpu


def test_the_benchmark_ends_and_reports_an_orphan_that_outlives_its_grace():
    report = orphans("linger")
    assert "left running after the command, killed: " in report and "forked_programs orphan linger" in report
