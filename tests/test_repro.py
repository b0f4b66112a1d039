"""`mtls-matrix repro`: standalone reproducers that behave like the cell they reproduce.

Each reproducer is generated, run in a fresh interpreter as a user would run it, and its
OBSERVED line is compared with the verdict the real matrix gives the same cell (run through
`run_matrix`, never hard-coded).
"""

from __future__ import annotations

import ast
import importlib
import importlib.metadata
import inspect
import pkgutil
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from mtls_matrix import repro, usercode
from mtls_matrix.peers.foreign import ForeignClient, ForeignServer
from mtls_matrix.peers.proxy import ProxiedServer
from mtls_matrix.selection import build_selection
from mtls_matrix.scenarios import BY_NAME
from tests.conftest import mtls_matrix

# A representative subset: every server, every client library, each TLS-settings style
# (context, dict, paths, connector), every outcome (PASS by working, PASS by either side's
# rejection, INSECURE, FAIL in the handler and in I/O), a CRL, the tuned profile, a bearer token.
CELLS = [
    # (server, client variant, scenario, profile)
    ("websockets", "websockets[ssl=context]", "mtls-ok", "default"),
    ("aiohttp", "websocket-client[sslopt=dict]", "server-cn-only", "default"),
    ("tornado", "aiohttp[ssl=context]", "client-expired-tls12", "default"),
    ("websockets", "websockets[ssl=context]", "io-16mib", "default"),
    ("tornado[identity=open]", "tornado[request=paths]", "mtls-ok", "default"),
    ("aiohttp", "tornado[ssl_options=dict]", "client-revoked", "default"),
    ("websockets", "aiohttp[connector=context]", "client-no-cert", "default"),
    ("tornado", "websocket-client[sslopt=context]", "io-close", "tuned"),
    ("aiohttp", "tornado[ssl_options=context]", "server-wrong-host-tls12", "default"),
    ("tornado", "tornado[ssl_options=dict+cert_reqs]", "token-header-ok", "default"),
    ("aiohttp", "aiohttp[session=pooled]", "io-text", "default"),
    ("websockets", "websocket-client[app+sslopt=context]", "io-server-close", "default"),
    # Socket.IO (usercode/socketio_*.py): an https:// URL, events, a connect auth payload; both clients,
    # each transport, a rejection by either side, a token in the auth payload, and every server it runs
    ("socketio-aiohttp", "socketio-asyncclient[http_session=connector+websocket]", "mtls-ok", "default"),
    ("socketio-aiohttp", "socketio-asyncclient[http_session=connector+websocket]", "client-no-cert", "default"),
    ("socketio-aiohttp", "socketio-asyncclient[http_session=connector+websocket]", "server-untrusted-ca", "default"),
    ("socketio-aiohttp", "socketio-client[http_session=requests+polling]", "io-text", "default"),
    ("socketio-aiohttp", "socketio-asyncclient[http_session=connector+polling]", "token-auth-ok", "default"),
    ("socketio-tornado", "socketio-client[websocket_extra_options=sslopt+websocket]", "mtls-ok", "default"),
    ("socketio-werkzeug", "socketio-asyncclient[http_session=connector+polling]", "mtls-ok", "default"),
]


def canonical(distribution: str) -> str:
    return distribution.lower().replace("_", "-")


def cell_id(server: str, client: str, scenario: str, profile: str) -> str:
    return f"{server}-{client}-{scenario}" + ("-tuned" if profile == "tuned" else "")


def generate(out: Path, cell: str, *extra: str) -> subprocess.CompletedProcess:
    return mtls_matrix("repro", cell, "--out", str(out), *extra)


def run_script(out: Path) -> subprocess.CompletedProcess:
    # a fresh interpreter, from another directory, with nothing of the harness on its path
    return subprocess.run([sys.executable, "-I", str(out / "repro.py")], capture_output=True, text=True,
                          timeout=60, cwd=out.parent)


def line(stdout: str, label: str) -> str:
    found = re.findall(rf"^{label}: (.*)$", stdout, re.M)
    assert len(found) == 1, f"expected one {label} line:\n{stdout}"
    return found[0]


def imported_modules(source: str) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("server, client, scenario, profile", CELLS, ids=[cell_id(*c) for c in CELLS])
def test_reproducer_observes_what_the_matrix_judged(run_matrix, tmp_path, server, client, scenario, profile):
    ident = cell_id(server, client, scenario, profile)
    results, proc = run_matrix("--servers", server, "--clients", client, "--scenarios", scenario,
                               "--profile", profile, "-n", "0")
    [cell] = [c for c in results.cells if c.id == ident]

    out = tmp_path / "repro"
    made = generate(out, ident, "--results", str(tmp_path / "out" / "results.json"))
    assert made.returncode == 0, made.stderr
    ran = run_script(out)
    expect = BY_NAME[scenario].expect
    observed = line(ran.stdout, "OBSERVED")
    assert repro.verdict_of(observed, expect.outcome, expect.by, expect.reason) == cell.verdict.value, (
        f"matrix: {cell.verdict.value} ({cell.reason})\nreproducer:\n{ran.stdout}\n{ran.stderr}")
    assert line(ran.stdout, "VERDICT").split()[0] == cell.verdict.value
    assert line(ran.stdout, "EXPECTED") == expect.describe()
    assert ran.returncode == (0 if cell.verdict.value == "PASS" else 1)
    # (stderr may hold the libraries' own logging, tracebacks included: part of the story)

    # only the two libraries (and what they run on: python-socketio's HTTP stacks) and the standard library;
    # nothing of mtls_matrix
    text = (out / "repro.py").read_text()
    spec = repro.find_cell(ident)
    distributions = {canonical(spec.server.library), canonical(spec.client.peer.library)}
    owners = importlib.metadata.packages_distributions()
    third_party = imported_modules(text) - set(sys.stdlib_module_names) - {"__future__"}
    assert "mtls_matrix" not in imported_modules(text)  # (comments name where its pieces come from)
    imported = {canonical(owners[m][0]) for m in third_party}
    if spec.server.family == "ws":
        assert imported == distributions  # the server's and the client's code are both there, and nothing else
    else:
        assert distributions <= imported, (imported, distributions)
        pins = {canonical(pin.split("==")[0]) for pin in (out / "requirements.txt").read_text().split()}
        assert imported <= pins, (imported, pins)  # `pip install -r requirements.txt` brings what it imports

    # the README carries the cell and what the run observed
    notes = (out / "README.md").read_text()
    assert ident in notes and BY_NAME[scenario].description in notes and cell.verdict.value in notes
    assert "throwaway test keys from a test CA" in notes


# Foreign peers (peers/foreign.py): the reproducer starts the very program the matrix ran, with
# the same config. A Node server failing in I/O and rejecting a client, a Go client rejecting a
# server, a Node client accepting what it must not; openssl s_client rejecting a server, and
# rejected by one after its TLS 1.3 handshake finished.
FOREIGN_CELLS = [
    ("node-ws", "tornado[ssl_options=context]", "io-16mib", "default"),
    ("node-ws", "websockets[ssl=context]", "client-expired", "default"),
    ("websockets", "gorilla[dialer-tlsconfig]", "server-untrusted-ca", "default"),
    ("aiohttp", "node-ws[options]", "server-cn-only", "default"),
    ("aiohttp", "openssl-s_client[verify_return_error]", "server-untrusted-ca", "default"),
    ("websockets", "openssl-s_client[verify_return_error]", "client-no-cert", "default"),
]


@pytest.mark.parametrize("server, client, scenario, profile", FOREIGN_CELLS, ids=[cell_id(*c) for c in FOREIGN_CELLS])
def test_a_foreign_peers_reproducer_runs_its_program_and_observes_what_the_matrix_judged(
        run_matrix, tmp_path, server, client, scenario, profile):
    ident = cell_id(server, client, scenario, profile)
    spec = repro.find_cell(ident)
    program = spec.server if spec.server.foreign else spec.client.peer
    if program.missing():
        pytest.skip(program.missing())
    results, _ = run_matrix("--servers", server, "--clients", client, "--scenarios", scenario,
                            "--profile", profile, "-n", "0")
    [cell] = [c for c in results.cells if c.id == ident]

    out = tmp_path / "repro"
    made = generate(out, ident)
    assert made.returncode == 0, made.stderr
    ran = run_script(out)
    expect = BY_NAME[scenario].expect
    observed = line(ran.stdout, "OBSERVED")
    assert repro.verdict_of(observed, expect.outcome, expect.by, expect.reason) == cell.verdict.value, (
        f"matrix: {cell.verdict.value} ({cell.reason})\nreproducer:\n{ran.stdout}\n{ran.stderr}")
    assert ran.returncode == (0 if cell.verdict.value == "PASS" else 1)
    # the program's own words, as the matrix recorded them, where they are its own: a client the
    # server rejects after its TLS 1.3 handshake only hears the close, and whether as an EOF, an
    # orderly close or a reset depends on how its upgrade request crossed the server's close, a
    # race the matrix and the reproducer each run once
    words = cell.error.message if program is spec.client.peer else (
        cell.server_saw.tls.error.message if cell.server_saw.tls.error else None)
    words = words and re.sub(r"^[0-9A-F]{8,}:", "", words)  # OpenSSL's error lines start with a thread id
    rejected_by_the_other_side = expect.outcome == "reject" and expect.by != program.role
    assert words is None or rejected_by_the_other_side or words in ran.stdout, (words, ran.stdout)
    contract = hasattr(program, "command")  # a program of fixtures/ (else a tool its module drives: s_client)
    assert f"{program.role} program: " in ran.stdout if contract else "s_client: " in ran.stdout  # what it printed
    # the Python side's library and the standard library only; nothing of mtls_matrix
    text = (out / "repro.py").read_text()
    python_side = spec.client.peer if program is spec.server else spec.server
    owners = importlib.metadata.packages_distributions()
    third_party = imported_modules(text) - set(sys.stdlib_module_names) - {"__future__"}
    assert "mtls_matrix" not in text and {owners[m][0] for m in third_party} == {python_side.library}
    pins = (out / "requirements.txt").read_text().split()
    assert f"{python_side.library}=={importlib.metadata.version(python_side.library)}" in pins
    assert not any(p.startswith(program.library + "==") for p in pins)
    assert ("setup-foreign --only" in (out / "README.md").read_text()) == contract


def test_every_foreign_program_peer_has_snippets_that_compile():
    cells = [s for s in build_selection().cells if s.scenario.name in ("mtls-ok", "io-close") and s.server.family == "ws"
             and (isinstance(s.server, ForeignServer) or isinstance(s.client.peer, ForeignClient)
                  or s.client.peer.name == "openssl-s_client") and not isinstance(s.server, ProxiedServer)]
    assert {c.server.name for c in cells} >= {"node-ws", "gorilla", "puma-faye", "puma-driver"}
    assert {c.client.peer.name for c in cells} >= {"node-ws", "gorilla", "em-websocket-driver", "faye-websocket",
                                                   "openssl-s_client"}
    for spec in cells:
        files = {"ca.pem": (None, False, ""), f"{spec.scenario.server_cert}.chain.pem": (None, False, ""),
                 "client.chain.pem": (None, False, "")}
        compile(repro.script(spec, files, 5.0), spec.id, "exec")


@pytest.mark.parametrize("scenario, client_files, crl", [
    ("mtls-ok", {"client.chain.pem", "client.key.pem"}, False),
    ("client-no-cert", set(), False),
    ("client-revoked-tls12", {"client-revoked.chain.pem", "client-revoked.key.pem"}, True),
])
def test_only_the_needed_certificates_are_written_and_keys_are_private(tmp_path, scenario, client_files, crl):
    out = tmp_path / "repro"
    proc = generate(out, f"aiohttp-websockets[ssl=context]-{scenario}")
    assert proc.returncode == 0, proc.stderr
    expected = {"repro.py", "requirements.txt", "README.md", "ca.pem", "server.chain.pem", "server.key.pem"}
    expected |= client_files | ({"crl.pem"} if crl else set())
    assert {p.name for p in out.iterdir()} == expected
    for path in out.iterdir():
        is_key = path.name.endswith(".key.pem")
        assert ("PRIVATE KEY" in path.read_text()) == is_key, path.name
        if is_key:
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, path.name


def test_requirements_pin_both_libraries_and_their_dependencies(tmp_path):
    out = tmp_path / "repro"
    assert generate(out, "aiohttp-websocket-client[sslopt=dict]-mtls-ok").returncode == 0
    pins = (out / "requirements.txt").read_text().split()
    for dist in ("aiohttp", "websocket-client", "yarl", "multidict"):
        assert f"{dist}=={importlib.metadata.version(dist)}" in pins
    assert not any(p.lower().startswith(("mtls-matrix", "pytest", "cryptography", "tornado")) for p in pins)


def test_usercode_modules_keep_to_their_sides_names():
    """A reproducer holds a server module and a client module side by side (with the usercode modules they
    import): each top-level name a module defines starts with its side (any case, after underscores)."""
    for found in pkgutil.iter_modules(usercode.__path__):
        module = importlib.import_module(f"{usercode.__name__}.{found.name}")
        side = "server" if "server" in found.name else "client"
        names = []
        for node in ast.parse(inspect.getsource(module)).body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.append(node.name)
            elif isinstance(node, (ast.Assign, ast.AnnAssign)):
                names += [t.id for t in (node.targets if isinstance(node, ast.Assign) else [node.target])
                          if isinstance(t, ast.Name)]
        strays = [n for n in names if not n.lstrip("_").lower().startswith(side) and n not in (
            "start_server", "stop_server", "connect_client", "TIMEOUTS")]
        assert not strays, (found.name, strays)


def test_every_server_and_client_variant_has_snippets_that_compile():
    # the reproducer skeleton speaks the ws-family echo protocol in Python (the socketio family has no
    # snippets yet); a proxied or foreign server, a foreign or TLS-only client, has no Python reproducer
    cells = [s for s in build_selection().cells if s.server.family == "ws" and s.scenario.name in ("mtls-ok", "io-close")
             and s.profile in ("default", "tuned") and not s.server.out_of_process
             and not s.client.peer.foreign]
    assert {c.server.name for c in cells} == {"websockets", "aiohttp", "tornado", "tornado[identity=open]"}
    assert len({c.client.name for c in cells}) == 14  # (the default-store variants play neither scenario)
    for spec in cells:
        files = {"ca.pem": (None, False, ""), f"{spec.scenario.server_cert}.chain.pem": (None, False, ""),
                 "client.chain.pem": (None, False, "")}
        compile(repro.script(spec, files, 5.0), spec.id, "exec")


def test_every_socketio_server_and_client_variant_has_snippets_that_compile():
    # uvicorn builds its own SSLContext from files (no reproducer: below); the reconnects need the harness
    cells = [s for s in build_selection().cells
             if s.server.name in ("socketio-aiohttp", "socketio-tornado", "socketio-werkzeug")
             and s.client.peer.name.startswith("socketio-") and s.scenario.name in ("mtls-ok", "io-close", "token-auth-ok")]
    assert {c.server.name for c in cells} == {"socketio-aiohttp", "socketio-tornado", "socketio-werkzeug"}
    assert len({c.client.name for c in cells}) == 16  # (the default-store variants play none of these)
    for spec in cells:
        files = {"ca.pem": (None, False, ""), f"{spec.scenario.server_cert}.chain.pem": (None, False, ""),
                 "client.chain.pem": (None, False, "")}
        compile(repro.script(spec, files, 5.0), spec.id, "exec")


def test_unknown_cell_id_names_the_format_and_the_nearest_ids(tmp_path):
    out = tmp_path / "repro"
    proc = generate(out, "websockets-websockets[ssl=context]-mtls-okay")
    assert proc.returncode == 2
    assert "unknown cell 'websockets-websockets[ssl=context]-mtls-okay'" in proc.stderr
    assert "SERVER-CLIENT[VARIANT]-SCENARIO" in proc.stderr
    assert "websockets-websockets[ssl=context]-mtls-ok" in proc.stderr
    assert not out.exists()


def test_a_peer_without_snippets_is_a_usage_error(tmp_path):
    # selftest-lax subclasses the websockets server: it must not borrow its parent's snippet
    out = tmp_path / "repro"
    proc = generate(out, "selftest-lax-websockets[ssl=context]-client-no-cert", "--peer-plugin", "tests.selftest_peers")
    assert proc.returncode == 2
    assert "server peer 'selftest-lax'" in proc.stderr and "usercode" in proc.stderr
    assert not out.exists()


@pytest.mark.parametrize("cell, says", [
    ("aiohttp-aiohttp[ssl=context]-io-ping", "UNSUPPORTED"),
    ("websockets-openssl-s_client[verify_return_error]-io-text", "UNSUPPORTED (openssl s_client speaks TLS only"),
    ("nginx+websockets-websockets[ssl=context]-client-no-cert", "is a proxy process"),
    ("socketio-aiohttp-socketio-asyncclient[http_session=connector+websocket]-reconnect-drop", "reconnect step"),
    ("socketio-uvicorn-socketio-asyncclient[http_session=connector+websocket]-mtls-ok", "TLS settings as files"),
])
def test_unsupported_cell_is_a_usage_error(tmp_path, cell, says):
    proc = generate(tmp_path / "repro", cell)
    assert proc.returncode == 2 and says in proc.stderr
    assert not (tmp_path / "repro").exists()


def test_refuses_a_non_empty_directory_and_a_results_file_without_the_cell(tmp_path):
    out = tmp_path / "repro"
    out.mkdir()
    (out / "mine.txt").write_text("keep me")
    proc = generate(out, "websockets-websockets[ssl=context]-mtls-ok")
    assert proc.returncode == 2 and "not an empty directory" in proc.stderr
    assert [p.name for p in out.iterdir()] == ["mine.txt"]

    proc = generate(tmp_path / "other", "websockets-websockets[ssl=context]-mtls-ok", "--results",
                    str(tmp_path / "missing.json"))
    assert proc.returncode == 2 and "no such results file" in proc.stderr
    assert not (tmp_path / "other").exists()


@pytest.mark.parametrize("observed, expect, verdict", [
    ("works: connected, ...", ("succeed", None, None), "PASS"),
    ("works: connected, ...", ("reject", "client", "HOSTNAME_MISMATCH"), "INSECURE"),
    ("connected, but I/O step binary failed: closed with 1009", ("succeed", None, None), "FAIL"),
    ("handler ran (client identity None), but the client failed", ("reject", "server", "CERT_REQUIRED"), "INSECURE"),
    ("rejected by the server: CERT_EXPIRED", ("reject", "server", "CERT_EXPIRED"), "PASS"),
    ("rejected by the client: CERT_EXPIRED", ("reject", "server", "CERT_EXPIRED"), "FAIL"),
    ("rejected by the client: HOSTNAME_MISMATCH after the TLS handshake", ("reject", "client", "HOSTNAME_MISMATCH"),
     "FAIL"),
    ("rejected by the server: UNKNOWN_CA", ("succeed", None, None), "FAIL"),
    ("no outcome within 5s", ("reject", "server", "CERT_EXPIRED"), "HANG"),
    ("failed: EOF (neither side rejected a certificate)", ("succeed", None, None), "FAIL"),
])
def test_observed_summary_maps_to_the_matrix_verdict(observed, expect, verdict):
    assert repro.verdict_of(observed, *expect) == verdict
