"""Foreign peers (docs/FOREIGN.md, peers/foreign.py): the subprocess contract, against the real
node-ws program. A crashed server or a hung client costs its own cell only, no process outlives
the run, a missing toolchain makes SKIPPED cells; and a real slice of node-ws against the Python
peers passes mtls-ok and is refused by the server on client-no-cert."""

from __future__ import annotations

import os
import signal
import ssl
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests.conftest import REPO, mtls_matrix, needs_node, verdicts

PYTHON_CLIENTS = "websockets[ssl=context],aiohttp[ssl=context],tornado[ssl_options=context],websocket-client[sslopt=context]"


def tagged_processes(tag: str) -> list[int]:
    """Processes whose environment carries the tag: everything a run started inherits it."""
    found = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            if f"MTLS_TEST_TAG={tag}".encode() in environ.read_bytes().split(b"\0"):
                found.append(int(environ.parent.name))
        except OSError:
            continue
    return [pid for pid in found if pid != os.getpid()]


@needs_node
def test_node_ws_server_with_python_clients_and_python_servers_with_node_ws_client(run_matrix):
    results, proc = run_matrix("--servers", "node-ws,websockets,aiohttp,tornado", "--clients", f"node-ws,{PYTHON_CLIENTS}",
                               "--scenarios", "mtls-ok,client-no-cert", "--profile", "default", "-n", "2")
    cells = [c for c in results.cells if "node-ws" in c.id and not c.id.startswith("node-ws-node-ws")]
    assert len(cells) == (4 + 3 * 3) * 2, proc.stdout  # node server x 4 clients, 3 servers x 3 node variants
    for cell in cells:
        assert cell.verdict.value == "PASS", (cell.id, cell.reason)
        if cell.scenario == "client-no-cert":
            assert (cell.rejection.by, cell.rejection.canonical) == ("server", "CERT_REQUIRED"), cell.id
        else:
            assert cell.server_saw.handler_peer_cn == "mtls-matrix-client" and cell.client_tls.handshake == "ok"


@needs_node
def test_a_crashed_foreign_server_costs_its_cell_only(run_matrix, tmp_path):
    env = {"MTLS_TEST_MARKER": str(tmp_path / "crashed")}
    results, _ = run_matrix("--peer-plugin", "tests.foreign.peers", "--servers", "selftest-node-crash",
                            "--clients", "websockets[ssl=context]", "--scenarios", "mtls-ok,mtls-rsa,io-text,io-binary",
                            "--profile", "default", "-n", "0", env=env)
    assert (tmp_path / "crashed").exists()  # it did crash, once, in the first cell
    first, *rest = results.cells
    assert first.verdict.value == "FAIL" and "server process exited with code 3" in first.reason, first
    assert [c.verdict.value for c in rest] == ["PASS"] * 3, [(c.id, c.reason) for c in rest]


@needs_node
def test_a_hung_foreign_client_costs_one_cell(run_matrix, tmp_path):
    env = {"MTLS_TEST_MARKER": str(tmp_path / "hung")}
    results, _ = run_matrix("--peer-plugin", "tests.foreign.peers", "--servers", "websockets",
                            "--clients", "selftest-node-hang", "--scenarios", "mtls-ok,mtls-rsa,io-text,io-binary",
                            "--profile", "default", "-n", "0", "--deadline", "3", env=env)
    assert (tmp_path / "hung").exists()
    first, *rest = results.cells
    assert first.verdict.value == "HANG", first
    assert [c.verdict.value for c in rest] == ["PASS"] * 3, [(c.id, c.reason) for c in rest]


@needs_node
def test_no_foreign_process_outlives_a_run(run_matrix):
    tag = uuid.uuid4().hex
    results, _ = run_matrix("--all-pairs", "--servers", "node-ws,websockets", "--clients", "node-ws,websockets",
                            "--scenarios", "mtls-ok,client-no-cert,io-text", "--profile", "default", "-n", "2",
                            env={"MTLS_TEST_TAG": tag})
    assert any(c.id.startswith("node-ws-node-ws") and c.verdict.value == "PASS" for c in results.cells)
    assert tagged_processes(tag) == []


@needs_node
def test_no_foreign_process_outlives_ctrl_c(tmp_path):
    tag = uuid.uuid4().hex
    env = {**os.environ, "PYTHONPATH": str(REPO), "MTLS_TEST_TAG": tag, "PYTHONUNBUFFERED": "1"}
    run = subprocess.Popen(
        [sys.executable, "-m", "mtls_matrix.cli", "run", "--out", str(tmp_path / "out"), "-n", "2",
         "--servers", "node-ws,websockets", "--clients", "node-ws,websockets", "--profile", "default", "--", "-vv"],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        finished, deadline = 0, time.monotonic() + 120
        while finished < 10 and time.monotonic() < deadline:
            line = run.stdout.readline()
            assert line, "the run ended before it could be interrupted"
            finished += " PASSED " in line or " FAILED " in line
        assert tagged_processes(tag)  # node processes are running now
        os.killpg(run.pid, signal.SIGINT)
        run.communicate(timeout=60)
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
    end = time.monotonic() + 5  # a process that got stdin EOF exits by itself
    while tagged_processes(tag) and time.monotonic() < end:
        time.sleep(0.1)
    assert tagged_processes(tag) == []


def test_a_missing_toolchain_makes_skipped_cells(run_matrix):
    python_only = str(Path(sys.executable).parent)  # no node on this PATH
    results, proc = run_matrix("--all-pairs", "--servers", "node-ws,websockets", "--clients", "node-ws[agent],websockets[ssl=context]",
                               "--scenarios", "mtls-ok", "--profile", "default", "-n", "0",
                               env={"PATH": python_only})
    assert verdicts(results) == {
        "node-ws-node-ws[agent]-mtls-ok": "SKIPPED", "node-ws-websockets[ssl=context]-mtls-ok": "SKIPPED",
        "websockets-node-ws[agent]-mtls-ok": "SKIPPED", "websockets-websockets[ssl=context]-mtls-ok": "PASS",
    }
    assert {c.reason for c in results.cells if c.verdict.value == "SKIPPED"} == {
        "node not found; run `mtls-matrix setup-foreign`"}
    assert proc.returncode == 0


def test_setup_foreign_rejects_an_unknown_stack():
    proc = mtls_matrix("setup-foreign", "--only", "node,cobol")
    assert proc.returncode == 2
    valid = proc.stderr.split("unknown stack cobol; valid: ", 1)[1].splitlines()[0].split(", ")
    assert {"node", "go", "ruby", "openssl", "nginx", "haproxy", "chromium"} <= set(valid)


def test_openssl_s_client_reads_a_reset_after_the_handshake_as_a_reset():
    """With -brief, s_client says only "CONNECTION CLOSED BY SERVER" and exits with the errno
    (104): a server that resets right after the handshake must read as CONNECTION_RESET."""
    import asyncio
    import socket
    import struct

    from mtls_matrix.peers import ClientTLS
    from mtls_matrix.peers.foreign import ForeignError
    from mtls_matrix.peers.openssl_sclient import Client
    from mtls_matrix.pki import PKI

    async def main(pki: PKI) -> ForeignError:
        server_cred = pki.credentials["server"]
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(server_cred.chain, server_cred.key)

        async def reset_after_handshake(reader, writer):
            await asyncio.sleep(0.2)  # after the handshake, before the client's upgrade request is answered
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()

        server = await asyncio.start_server(reset_after_handshake, "127.0.0.1", 0, ssl=context)
        port = server.sockets[0].getsockname()[1]
        tls = ClientTLS(ca=pki.root, cert=None, key=None, server_hostname="localhost")
        try:
            await Client().connect("verify_return_error", f"wss://localhost:{port}/", tls, "default", 5)
        except ForeignError as error:
            return error
        finally:
            server.close()
        pytest.fail("s_client's upgrade succeeded against a server that reset the connection")

    with PKI() as pki:
        error = asyncio.run(main(pki))
    assert error.canonical == "CONNECTION_RESET", error


def test_openssl_s_client_is_judged_on_the_handshake_and_reads_the_tls13_rejection(run_matrix):
    results, proc = run_matrix("--servers", "websockets", "--clients", "openssl-s_client",
                               "--scenarios", "mtls-ok,client-no-cert,client-no-cert-tls12,server-untrusted-ca,io-text",
                               "--profile", "default", "-n", "0")
    cells = {c.scenario: c for c in results.cells}
    assert {s: c.verdict.value for s, c in cells.items()} == {
        "mtls-ok": "PASS", "client-no-cert": "PASS", "client-no-cert-tls12": "PASS", "server-untrusted-ca": "PASS",
        "io-text": "UNSUPPORTED"}, proc.stdout
    assert cells["mtls-ok"].server_saw.handler_peer_cn == "mtls-matrix-client"  # its upgrade request reached the handler
    # TLS 1.3: s_client's handshake finished; it read what came after (asyncio drops the server's
    # alert, so it reads an EOF or a reset where a server that sends the alert gives "alert
    # certificate required")
    no_cert = cells["client-no-cert"]
    assert no_cert.client_tls.handshake == "ok" and no_cert.phase == "upgrade"
    assert no_cert.error.canonical in ("EOF", "CONNECTION_RESET", "CERT_REQUIRED"), no_cert.error
    assert (no_cert.rejection.by, no_cert.rejection.canonical) == ("server", "CERT_REQUIRED")
    assert cells["client-no-cert-tls12"].phase == "tls-handshake"
    untrusted = cells["server-untrusted-ca"]
    assert (untrusted.rejection.by, untrusted.rejection.canonical) == ("client", "UNKNOWN_CA")
    assert untrusted.error.message.startswith("verify error:num=20:")


@needs_node
def test_node_socketio_with_the_python_socketio_peers(run_matrix):
    """Node's socket.io server requires and verifies the client certificate and shows it to the app;
    socket.io-client presents one. Over polling, socket.io-client opens a TLS connection per request,
    so aiohttp's connect handler finds the handshake request's connection gone (a finding), unless a
    keep-alive agent carries the requests."""
    python_clients = "socketio-asyncclient[http_session=connector+polling],socketio-asyncclient[http_session=connector+websocket]"
    results, proc = run_matrix("--servers", "node-socketio,socketio-aiohttp", "--clients", f"node-socketio,{python_clients}",
                               "--scenarios", "mtls-ok,client-no-cert", "--profile", "default", "-n", "2")
    cells = {c.id: c for c in results.cells if "node-socketio" in c.id}
    assert len(cells) == (2 + 4) * 2, proc.stdout
    for cell in cells.values():
        if cell.scenario == "client-no-cert":
            assert cell.verdict.value == "PASS", (cell.id, cell.reason)
            assert (cell.rejection.by, cell.rejection.canonical) == ("server", "CERT_REQUIRED"), cell.id
            assert not cell.server_saw.handler_ran, cell.id
    for transport in ("polling", "websocket"):
        ok = cells[f"node-socketio-socketio-asyncclient[http_session=connector+{transport}]-mtls-ok"]
        assert ok.verdict.value == "PASS", (ok.id, ok.reason)
        assert ok.server_saw.handler_peer_cn == "mtls-matrix-client" and ok.server_saw.transport == transport
    for variant, transport in (("options+websocket", "websocket"), ("agent+polling", "polling")):
        ok = cells[f"socketio-aiohttp-node-socketio[{variant}]-mtls-ok"]
        assert ok.verdict.value == "PASS", (ok.id, ok.reason)
        assert ok.transport == transport and ok.client_tls.handshake == "ok"
        assert ok.server_saw.handler_peer_cn == "mtls-matrix-client"
    for variant, transport in (("options+polling", "polling"), ("options+upgrade", "websocket")):
        gone = cells[f"socketio-aiohttp-node-socketio[{variant}]-mtls-ok"]
        assert gone.verdict.value == "FAIL" and gone.transport == transport, (gone.id, gone.reason)
        assert "transport is gone" in gone.server_saw.handler_identity_error
        assert gone.server_saw.tls.peer_cn == "mtls-matrix-client"  # verified; only the app cannot see it
