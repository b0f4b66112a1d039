"""The fork server (mtls_matrix/forkserver.py) with real processes: what a forked child gets, that it
dies with whoever asked for it, that the server refuses to fork with a second thread and that the
launcher then runs the interpreter itself, and that the server leaves nothing behind. That a verdict
does not depend on it: test_flakes.py's order test (in-process against forked workers and client
processes)."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import tempfile
import time

import pytest

from mtls_matrix import forkserver, isolate
from mtls_matrix.pki import gone
from tests.conftest import REPO
from tests.forked_programs import PRELOADED

REPORT = ["-m", "tests.forked_programs", "report"]


def start(*preload: str) -> forkserver.Server:
    return forkserver.Server(tempfile.mkdtemp(), [PRELOADED, *preload], dict(os.environ))


@pytest.fixture
def server():
    started = start()
    yield started
    started.close(10)


def launch(program: list[str], cwd, server_path: str | None, **env) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if k != forkserver.ENV}
    if server_path:
        environ[forkserver.ENV] = server_path
    return subprocess.run([*shlex.split(forkserver.launcher_command()), "-u", *program], cwd=cwd,
                          env=dict(environ, PYTHONPATH=str(REPO), **env), capture_output=True, text=True, timeout=60)


def test_a_launched_child_is_forked_with_the_imports_done_frozen_and_the_launchers_streams_cwd_and_environment(
        server, tmp_path):
    proc = launch(REPORT, tmp_path, server.path, MARK="seen")
    modules, cwd, mark, parent, frozen = proc.stdout.split()
    assert proc.returncode == 0, proc.stderr
    assert (modules, cwd, mark, int(parent), frozen) == (f"['{PRELOADED}']", str(tmp_path), "seen", server.proc.pid,
                                                         "True")


def test_a_server_in_a_directory_deeper_than_a_socket_address_allows_still_forks(tmp_path):
    deep = tmp_path / ("d" * 100)
    deep.mkdir(mode=0o700)
    server = forkserver.Server(str(deep), [PRELOADED], dict(os.environ))
    try:
        proc = launch(REPORT, tmp_path, server.path)
    finally:
        server.close(10)
    assert len(server.path) > 107 and int(proc.stdout.split()[3]) == server.proc.pid, proc.stderr


def test_what_the_server_is_sent_later_is_imported_before_the_next_fork(tmp_path):
    server = forkserver.Server(tempfile.mkdtemp(), [], dict(os.environ))
    try:
        before = launch(REPORT, tmp_path, server.path).stdout.split()[0]
        server.preload([PRELOADED])
        after = launch(REPORT, tmp_path, server.path).stdout.split()[0]
    finally:
        server.close(10)
    assert (before, after) == ("[]", f"['{PRELOADED}']")


def test_without_a_server_the_launcher_runs_the_interpreter_itself(tmp_path):
    proc = launch(REPORT, tmp_path, None, MARK="seen")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split()[:3] == ["[]", str(tmp_path), "seen"] and proc.stdout.split()[4] == "False"


def test_a_one_thread_process_forks_its_server_which_has_its_imports_and_leaves_its_dirs_to_it(tmp_path):
    """Forked, the server and its children are copies of the process that started it: they have its
    imports without being told, and a child's exit leaves the starter's private dirs alone."""
    proc = subprocess.run([sys.executable, "-m", "tests.forked_programs", "fork-of-this-process"], cwd=REPO,
                          env=dict(os.environ, MARK="seen"), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    modules, _, mark, parent, frozen, server_pid, outlived, code, dir_gone = proc.stdout.split()
    assert (modules, mark, parent, frozen, outlived, code, dir_gone) == (
        f"['{PRELOADED}']", "seen", server_pid, "True", "True", "0", "True"), proc.stdout


def test_a_server_with_a_second_thread_refuses_to_fork_and_the_launcher_runs_the_interpreter(tmp_path):
    threaded = start("tests.starts_a_thread")
    try:
        proc = launch(REPORT, tmp_path, threaded.path)
    finally:
        threaded.close(10)
    assert proc.returncode == 0, proc.stderr
    modules, _, _, parent, _ = proc.stdout.split()
    assert modules == "[]" and int(parent) != threaded.proc.pid


def test_a_forked_client_process_answers_and_is_killed_for_good(server):
    child = forkserver.Forked.start(server.path, isolate.CLIENT_MODULE, dict(os.environ))
    assert child is not None and child.poll() is None
    assert isolate.receive(child.stdout) == (-1, isolate.READY)
    child.kill()
    assert child.poll() is not None and wait_gone(child.pid)


def test_a_forked_child_dies_with_the_process_that_asked_for_it(server):
    proc = subprocess.run([sys.executable, "-m", "tests.forked_programs", "ask-and-die", server.path], cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert wait_gone(int(proc.stdout))


def test_the_server_ends_after_its_children_and_leaves_nothing(tmp_path):
    server = start()
    child = forkserver.Forked.start(server.path, isolate.CLIENT_MODULE, dict(os.environ))
    assert child is not None
    child.stdin.close()  # a client process ends when its stdin closes
    server.close(10)
    assert server.proc.returncode == 0 and wait_gone(child.pid) and not os.path.exists(server.dir)


def wait_gone(pid: int, within: float = 10.0) -> bool:
    end = time.monotonic() + within
    while not gone(pid) and time.monotonic() < end:
        time.sleep(0.02)
    return gone(pid)
