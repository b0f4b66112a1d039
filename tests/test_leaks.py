"""Resource hygiene after rejection: what the peers leave behind is measured per rejection cell
(real sockets, real loops) and reported per peer in BUGS.md, without changing a verdict."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import pytest

from mtls_matrix import leaks as leaks_mod
from mtls_matrix.peers import foreign, node_ws
from mtls_matrix.peers.node_ws import NODE
from mtls_matrix.peers.ruby import RUBY
from mtls_matrix.pki import PKI
from mtls_matrix import findings
from mtls_matrix.reports import bugs
from mtls_matrix.results import Leaks, Results, Verdict
from tests.conftest import needs_node
from tests.hand_built import cell, results


def hygiene(res: Results) -> str:
    """BUGS.md's resource hygiene section; empty when there is none."""
    text = bugs.render(findings.analyse(res))
    return text.split("## Resource hygiene", 1)[1].split("\n## ", 1)[0] if "## Resource hygiene" in text else ""

LEAKY = "selftest-leaky"


def test_a_leaky_client_is_reported_and_websockets_beside_it_is_clean(run_matrix):
    found, _ = run_matrix("--peer-plugin", "tests.selftest_peers", "--servers", "websockets",
                          "--clients", f"{LEAKY},websockets", "--scenarios", "client-expired", "-n", "0")
    by_client = {c.client.split(":", 1)[1].split("[")[0]: c for c in found.cells}
    assert set(by_client) == {LEAKY, "websockets"}
    leaky = by_client[LEAKY].leaks
    assert leaky is not None and leaky.client_sockets == 1 and leaky.client_tasks == 1
    assert leaky.server_sockets == 0 and leaky.server_tasks == 0
    assert by_client["websockets"].leaks is None
    assert by_client["websockets"].verdict == Verdict.PASS
    section = hygiene(found)
    assert f"| client `{LEAKY}[keeps-socket]` | 1 of 1 | 1 | 1 |" in section
    assert "`websockets[ssl=context]`" in section.split("Clean in every rejection cell:")[1]


def test_resource_warnings_are_captured_inside_the_block_and_only_there():
    seen: list[str] = []
    with warnings.catch_warnings(record=True) as outside:  # what pytest does around a test
        warnings.simplefilter("ignore", ResourceWarning)  # the interpreter's default
        with leaks_mod.resource_warnings(seen):
            s = socket.socket()
            del s  # unclosed: CPython warns when it is collected
            warnings.warn("not a resource warning", UserWarning)
        s = socket.socket()
        del s
    assert len(seen) == 1 and seen[0].startswith("unclosed <socket.socket")
    assert [str(w.message) for w in outside] == ["not a resource warning"]


def test_a_rejected_connection_socket_is_counted_by_side():
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    before = leaks_mod.socket_inodes()
    client = socket.create_connection(("127.0.0.1", port))
    server, _ = listener.accept()
    try:
        assert leaks_mod.connection_sockets(port, before) == (1, 1)
        server.close()
        assert leaks_mod.connection_sockets(port, before) == (1, 0)
    finally:
        client.close()
        listener.close()
    assert leaks_mod.connection_sockets(port, before) == (0, 0)


def test_a_peers_process_tree_is_found_whole_and_an_ended_process_is_left_out():
    """A peer's children and theirs (nginx's workers), and a child started from a thread (node's)."""
    tree = ["bash", "-c", "sleep 30 & (sleep 30 & wait) & wait"]
    peer = subprocess.Popen(tree, start_new_session=True)
    from_thread: list[subprocess.Popen] = []
    release = threading.Event()

    def start_and_stay() -> None:  # a thread that ends hands its children to the main thread
        from_thread.append(subprocess.Popen(tree, start_new_session=True))
        release.wait()

    threading.Thread(target=start_and_stay).start()
    try:
        started = time.monotonic()  # the shells fork when the scheduler lets them: a busy machine takes longer
        while (len(leaks_mod._psutil_tree(peer.pid)) < 4 or not from_thread) and time.monotonic() - started < 10:
            time.sleep(0.05)
        found = leaks_mod.with_children((peer.pid,))
        assert found[0] == peer.pid and sorted(found) == sorted(leaks_mod._psutil_tree(peer.pid)) and len(found) == 4
        assert from_thread[0].pid in leaks_mod.with_children((os.getpid(),))
    finally:
        release.set()
        for process in (peer, *from_thread):
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert leaks_mod.with_children((peer.pid,)) == []


def test_a_reset_connections_sockets_still_count_by_their_local_port():
    """/proc/net/tcp lists a reset socket no more; its descriptor (TCP_INFO: CLOSE) still says which side it is."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    before = leaks_mod.socket_inodes()
    client = socket.create_connection(("127.0.0.1", port))
    server, _ = listener.accept()
    try:
        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        client.close()  # an RST: the server's socket is reset, not closed
        server.settimeout(2)
        with pytest.raises(ConnectionResetError):
            server.recv(1)
        tcp_state = server.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)[0]
        assert f"{tcp_state:02X}" == leaks_mod.CLOSE
        assert leaks_mod.connection_sockets(port, before) == (0, 1)
    finally:
        server.close()
        listener.close()
    assert leaks_mod.connection_sockets(port, before) == (0, 0)


def test_the_section_renders_from_results_built_from_models():
    leaky = cell("server:alpha", "client:one[a=1]", "client-expired",
                 leaks=Leaks(client_sockets=1, client_tasks=2, resource_warnings=["unclosed transport <x>"]))
    server_side = cell("server:beta", "client:two[x=1]", "server-expired", leaks=Leaks(server_tasks=1))
    clean = cell("server:alpha", "client:two[x=1]", "client-expired")
    works = cell("server:alpha", "client:one[b=2]", "mtls-ok", leaks=Leaks(client_sockets=3))  # not a rejection
    section = hygiene(results(leaky, server_side, clean, works))
    assert "2 of 3 rejection cells left something behind." in section
    assert ("| client `one[a=1]` | 1 of 1 | 1 | 1 | 1 | `alpha-one[a=1]-client-expired`: 1 open socket; "
            "2 pending tasks; ResourceWarning: unclosed transport \\<x\\> |") in section
    assert "| server `beta` | 1 of 1 | 0 | 1 | 0 | `beta-two[x=1]-server-expired`: 1 pending task |" in section
    # the ResourceWarning counts for the server of that cell too; two[x=1] leaked nothing of its own
    assert "| server `alpha` | 1 of 2 |" in section
    assert "client `two[x=1]`" not in section and "one[b=2]" not in section
    assert "Clean in every rejection cell: `two[x=1]`." in section


def test_no_section_without_rejection_cells_and_a_clean_line_without_leaks():
    assert hygiene(results(cell("server:alpha", "client:one[a=1]", "mtls-ok"))) == ""
    clean = hygiene(results(cell("server:alpha", "client:one[a=1]", "client-expired")))
    assert "No peer left anything behind in 1 rejection cell." in clean


def test_an_earlier_cells_warning_is_kept_in_the_cell_but_not_counted():
    late = cell("server:alpha", "client:one[a=1]", "client-expired",
                leaks=Leaks(resource_warnings=[leaks_mod.EARLIER + "unclosed <socket.socket raddr=('127.0.0.1', 1)>"]))
    assert "No peer left anything behind in 1 rejection cell." in hygiene(results(late))


def test_a_warning_about_another_listeners_socket_and_its_transport_is_marked_earlier():
    from mtls_matrix.cell import _attributed

    other = "unclosed <socket.socket fd=108, family=2, laddr=('127.0.0.1', 1), raddr=('127.0.0.1', 4000)>"
    mine = "unclosed <socket.socket fd=9, family=2, laddr=('127.0.0.1', 2), raddr=('127.0.0.1', 5000)>"
    marked = _attributed([other, "unclosed transport <_SelectorSocketTransport fd=108>", mine,
                          "unclosed transport <_SelectorSocketTransport fd=7>"], 5000)
    assert [m.startswith(leaks_mod.EARLIER) for m in marked] == [True, True, False, False]


# -- peers in other processes (peers/foreign.py, proxies, the browser): measured from outside ---------



def _settled(port: int, before: set[str], processes: tuple[int, ...], want: tuple[int, int]) -> tuple[int, int]:
    """connection_sockets once it shows `want`, or what it shows after 5 s (another process closes in its own time)."""
    end = time.monotonic() + 5
    while (found := leaks_mod.connection_sockets(port, before, processes)) != want and time.monotonic() < end:
        time.sleep(0.02)
    return found


def test_a_foreign_server_that_keeps_rejected_sockets_is_reported_and_websockets_beside_it_is_clean(run_matrix):
    found, proc = run_matrix("--peer-plugin", "tests.foreign.peers", "--servers", "selftest-leaky-foreign,websockets",
                             "--clients", "websockets[ssl=context]", "--scenarios", "client-expired", "-n", "0",
                             env={"PYTHONPATH": str(Path(__file__).parents[1])})
    leaky = [c for c in found.cells if c.server == "server:selftest-leaky-foreign"]
    assert [c.verdict for c in leaky] == [Verdict.PASS], proc.stdout  # a leak never changes a verdict
    assert leaky[0].leaks == Leaks(server_sockets=1)  # the socket it kept, in its own process
    assert all(c.leaks is None for c in found.cells if c not in leaky)
    section = hygiene(found)
    assert "| server `selftest-leaky-foreign` | 1 of 1 | 1 | 0 | 0 |" in section


@pytest.mark.skipif(RUBY.missing() is not None or NODE.missing() is not None,
                    reason=f"{RUBY.missing() or NODE.missing()}")
def test_faye_websocket_keeps_the_connection_its_hostname_check_refused_and_node_ws_closes_it(run_matrix):
    """A real slice: faye-websocket 0.11's hostname check fails after the upgrade and it reports the
    error, but never closes the TCP connection (Client#on_network_error only finalizes its own
    state): its process still holds the socket, and the server's side stays open with it."""
    found, proc = run_matrix("--servers", "websockets", "--clients", "faye-websocket[faye-root-cert-file],node-ws[options]",
                             "--scenarios", "server-wrong-host", "-n", "0")
    by_client = {c.client.split(":", 1)[1]: c for c in found.cells}
    faye = by_client["faye-websocket[faye-root-cert-file]"]
    assert faye.leaks is not None and faye.leaks.client_sockets == 1 and faye.leaks.server_sockets == 1, proc.stdout
    assert by_client["node-ws[options]"].leaks is None


@pytest.mark.parametrize("server", ["node-ws", "gorilla", "nginx+websockets", "haproxy+websockets"])
def test_a_real_server_in_another_process_is_measured_from_outside_by_the_cells_port(server):
    """The socket a real foreign server or proxy holds for a connection counts as the server's
    while the connection is open (the client's is this process's), and stops counting once closed."""
    from mtls_matrix.cell import ServerPool
    from mtls_matrix.selection import build_selection

    spec = next(c for c in build_selection(servers=[server]).cells if c.scenario.group == "client-rejected")
    if spec.server.missing():
        pytest.skip(spec.server.missing())
    with PKI() as pki:
        pool = ServerPool(pki)
        try:
            host = pool.get(spec.server, spec.scenario, spec.profile)
            processes = host.peer.processes()
            assert processes and ("127.0.0.1", host.port) in leaks_mod.listening_addresses(processes[0])
            processes = tuple(leaks_mod.with_children(processes))  # a proxy's workers hold its sockets
            before = leaks_mod.socket_inodes(processes)
            plain = socket.create_connection(("127.0.0.1", host.port))  # held open by this process
            assert _settled(host.port, before, processes, (1, 1)) == (1, 1)
            plain.close()
            assert _settled(host.port, before, processes, (0, 0)) == (0, 0)
        finally:
            pool.close()


@needs_node
def test_a_real_foreign_client_process_is_measured_from_outside_by_the_cells_port():
    """node-ws's client process holds the connection's client socket: it counts as the client's
    while the connection is open, and stops counting once the harness dropped it."""
    from mtls_matrix.cell import client_tls
    from mtls_matrix.scenarios import select

    listener = socket.create_server(("127.0.0.1", 0))  # accepts, never speaks TLS: the connect waits
    port = listener.getsockname()[1]
    client = node_ws.Client()

    async def connect_and_look(tls) -> tuple[tuple[int, int], tuple[int, int]]:
        attempt = asyncio.ensure_future(client.connect("options", f"wss://localhost:{port}/", tls, "default", 5))
        accepted, _ = await asyncio.to_thread(listener.accept)
        processes = tuple(leaks_mod.with_children(client.processes()))
        during = await asyncio.to_thread(_settled, port, before, processes, (1, 1))
        attempt.cancel()  # the harness tells the process to drop the connection
        accepted.close()
        after = await asyncio.to_thread(_settled, port, before, processes, (0, 0))
        return during, after

    before = leaks_mod.socket_inodes(client.processes())
    with PKI() as pki:
        try:
            assert asyncio.run(connect_and_look(client_tls(pki, select(["mtls-ok"])[0]))) == ((1, 1), (0, 0))
        finally:
            listener.close()
            foreign.close_clients()


def test_a_process_and_its_children_are_followed():
    child = subprocess.Popen([sys.executable, "-c", "import subprocess, sys; subprocess.run([sys.executable, '-c', "
                              "'import time; time.sleep(30)'])"], stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        end = time.monotonic() + 5
        while len(found := leaks_mod.with_children((child.pid,))) < 2 and time.monotonic() < end:
            time.sleep(0.02)
        assert found[0] == child.pid and len(found) == 2
    finally:
        foreign.kill_group(child.pid)
        child.wait()
