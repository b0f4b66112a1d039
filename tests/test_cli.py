"""The CLI and the pytest options, as a user meets them."""

from __future__ import annotations

import json
import shlex

import pytest

from tests.conftest import REPO, mtls_matrix, verdicts


@pytest.mark.parametrize("args, named, valid", [
    (["--servers", "nginx"], "unknown server peer 'nginx'", "websockets, aiohttp, tornado"),
    (["--clients", "curl"], "unknown client peer 'curl'", "websocket-client[sslopt=dict]"),
    (["--scenarios", "client-bogus"], "unknown scenario 'client-bogus'", "client-expired-tls12"),
    (["--profile", "fast"], "unknown profile fast", "default, tuned"),
    (["--peer-plugin", "no.such.module"], "cannot import peer plugin 'no.such.module'", ""),
])
def test_bad_selection_is_a_usage_error_naming_the_valid_choices(tmp_path, args, named, valid):
    out = tmp_path / "out"
    proc = mtls_matrix("run", "--out", str(out), *args)
    assert proc.returncode == 2
    assert named in proc.stderr and valid in proc.stderr
    assert not out.exists()  # nothing half-written


def test_pytest_usage_error_exits_2_too():
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "pytest", "matrix", "--scenarios", "nope"],
                          capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 2
    assert "unknown scenario 'nope'" in proc.stdout + proc.stderr


@pytest.mark.parametrize("content, says", [
    (None, "no such results file"),
    ("{not json", "not a valid mtls-matrix results file"),
    ('{"run": {}, "cells": []}', "not a valid mtls-matrix results file"),
])
def test_report_rejects_a_missing_or_malformed_results_file(tmp_path, content, says):
    results = tmp_path / "results.json"
    if content is not None:
        results.write_text(content)
    out = tmp_path / "BUGS.md"
    proc = mtls_matrix("report", str(results), "--out", str(out))
    assert proc.returncode == 2 and says in proc.stderr
    assert not out.exists()


def test_run_writes_results_junit_and_a_repro_that_reruns_the_cell(run_matrix, tmp_path):
    results, proc = run_matrix("--servers", "aiohttp", "--clients", "websockets[ssl=context]",
                               "--scenarios", "mtls-ok,server-expired-tls12", "-n", "0")
    assert proc.returncode == 0, proc.stderr
    junit = (tmp_path / "out" / "junit.xml").read_text()
    assert junit.count("<testcase") == 2 and 'name="verdict" value="PASS"' in junit
    cell = next(c for c in results.cells if c.scenario == "server-expired-tls12")
    assert cell.id == "aiohttp-websockets[ssl=context]-server-expired-tls12"
    assert cell.rejection.by == "client" and cell.rejection.canonical == "CERT_EXPIRED"
    again, _ = run_matrix(*shlex.split(cell.repro)[2:-2], out=tmp_path / "repro")
    assert verdicts(again) == {cell.id: cell.verdict.value}


def test_keyword_selection_and_xdist_give_the_same_verdicts(tmp_path, run_matrix):
    args = ["--servers", "websockets,tornado", "--clients", "websockets,websocket-client",
            "--scenarios", "mtls-ok,client-expired,client-expired-tls12,server-wrong-host,io-ping"]
    serial, _ = run_matrix(*args, "-n", "0", out=tmp_path / "serial")
    parallel, _ = run_matrix(*args, "-n", "2", out=tmp_path / "parallel")
    assert verdicts(serial) == verdicts(parallel)
    assert parallel.run.workers == 2
    picked, _ = run_matrix(*args, "-n", "0", "--", "-k", "tornado and client-expired-tls12", out=tmp_path / "k")
    assert sorted(verdicts(picked)) == sorted(k for k in verdicts(serial)
                                              if k.startswith("tornado-") and k.endswith("client-expired-tls12"))


def test_the_users_tls_environment_cannot_change_a_verdict(run_matrix, tmp_path):
    """A CA bundle, a key log and a proxy in the environment: scrubbed, recorded, no effect."""
    keylog = tmp_path / "keys.log"
    env = {"SSL_CERT_FILE": str(tmp_path / "elsewhere.pem"), "SSLKEYLOGFILE": str(keylog),
           "HTTPS_PROXY": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9",
           "WEBSOCKET_CLIENT_CA_BUNDLE": str(tmp_path)}
    args = ["--servers", "websockets", "--clients", "websockets,websocket-client,aiohttp",
            "--scenarios", "mtls-ok,server-untrusted-ca", "-n", "0"]
    clean, _ = run_matrix(*args, out=tmp_path / "clean")
    dirty, _ = run_matrix(*args, env=env, out=tmp_path / "dirty")
    assert verdicts(dirty) == verdicts(clean)
    assert set(env) <= set(dirty.run.scrubbed_env)
    assert not keylog.exists()


def test_results_carry_the_run_metadata(run_matrix):
    results, _ = run_matrix("--servers", "websockets", "--clients", "websockets[ssl=context]", "--scenarios", "mtls-ok", "-n", "0")
    run = results.run
    assert run.complete and run.python and run.openssl.startswith("OpenSSL")
    assert set(run.versions) == {"websockets"} and len(run.ca_fingerprint) == 64
    [cell] = results.cells
    assert cell.server_saw.handler_peer_cn == "mtls-matrix-client"
    assert {"tcp", "tls-handshake", "upgrade", "handler", "io", "total"} <= set(cell.timings)
    assert "PRIVATE KEY" not in json.dumps(results.model_dump())
