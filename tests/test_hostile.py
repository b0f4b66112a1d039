"""Hostile and broken peers: the harness plays one side and misbehaves, the other side is judged
(does it have a timeout of its own, how long, does it notice a fault at once, does it close its
socket). Real libraries, real TLS on loopback; peers/hostile.py is the harness's side."""

from __future__ import annotations

import pytest

from mtls_matrix import selection
from mtls_matrix.scenarios import BY_NAME, HOSTILE_GROUPS
from mtls_matrix.timing import PROMPT_S
from tests.conftest import needs_node, verdicts
from tests.selftest_peers import QUICK_TIMEOUT_S

PLUGIN = ("--peer-plugin", "tests.selftest_peers")


def test_hostile_peers_play_only_hostile_scenarios_and_only_against_real_peers():
    cells = selection.build_selection().cells
    hostile = [c for c in cells if c.scenario.group in HOSTILE_GROUPS]
    assert {c.scenario.group for c in hostile} == set(HOSTILE_GROUPS)
    for cell in cells:
        role = HOSTILE_GROUPS.get(cell.scenario.group)
        assert cell.server.harness == (role == "server"), cell.id
        assert cell.client.peer.harness == (role == "client"), cell.id
    # the hostile server speaks the ws-family protocol: it faces every real client of that family
    # that plays there (not a variant insecure by design, not a browser, whose hostile cells are slow)
    silent = BY_NAME["hostile-server-silent"]
    real_clients = {c.client.name for c in cells if not c.client.peer.harness and c.client.peer.family == "ws"
                    and all(selection._named(silent, patterns) for patterns in (
                        c.client.peer.only.get(c.client.variant), c.client.peer.variant_scenarios.get(c.client.variant))
                        if patterns is not None)}
    assert {c.client.name for c in hostile if c.scenario.group == "hostile-server"} == real_clients


def test_a_client_facing_each_hostile_server(run_matrix):
    """websocket-client: no timeout by default (it waits on a silent server), but it notices a
    closed, garbled or reset connection at once and its close() gives up after its own 3 s."""
    results, _ = run_matrix(*PLUGIN, "--clients", "websocket-client[sslopt=context]", "--servers", "hostile",
                            "--scenarios", "hostile-server-*", "--deadline", "4")
    by_scenario = {c.scenario: c for c in results.cells}
    assert set(by_scenario) == {f"hostile-server-{b}" for b in (
        "silent", "close-after-hello", "garbage", "no-upgrade", "stall-after-upgrade", "reset-mid-message",
        "no-close-reply", "close-no-notify")}
    for fault, how in (("close-after-hello", "EOF"), ("garbage", "PROTOCOL_VERSION"), ("reset-mid-message", "EOF")):
        cell = by_scenario[f"hostile-server-{fault}"]
        assert cell.verdict.value == "PASS", cell.reason
        assert cell.hostile.how == how and cell.hostile.after_fault_s < PROMPT_S
        assert cell.hostile.left_open is False
    for stall in ("silent", "no-upgrade", "stall-after-upgrade"):
        cell = by_scenario[f"hostile-server-{stall}"]
        assert (cell.verdict.value, cell.hostile.ended) == ("HANG", False), cell.reason
        assert cell.hostile.own_timeouts["timeout"] is None  # websocket.getdefaulttimeout(): none
        assert "still waiting after 4 s" in cell.reason and "no timeout of its own" in cell.reason
        assert (cell.deadline.source, cell.deadline.timeout) == ("harness", "timeout")
    close = by_scenario["hostile-server-no-close-reply"]
    assert (close.verdict.value, close.hostile.how) == ("PASS", "CLOSED")
    assert 2.5 < close.hostile.after_s < 4  # WebSocket.close(timeout=3)
    assert (close.deadline.source, close.deadline.documented_s) == ("library", 3)  # its own clock set the deadline
    assert "(its own close timeout: 3 s)" in close.reason and not close.advisories  # 3 s: nothing to advise
    # TLS completed only where the hostile server speaks it: each cell saw its own connection
    tls = {s.split("hostile-server-")[1]: c.server_saw.tls.handshake for s, c in by_scenario.items()}
    assert tls == {"silent": "none", "close-after-hello": "none", "garbage": "none", "no-upgrade": "ok",
                   "stall-after-upgrade": "ok", "reset-mid-message": "ok", "no-close-reply": "ok",
                   "close-no-notify": "ok"}


@needs_node
def test_a_client_that_closes_tcp_itself_after_the_close_handshake_is_prompt(run_matrix):
    """close-no-notify: after answering the close frame the hostile server sends no close_notify and
    keeps reading until the client closes TCP. Node's ws ends its side at once, so its close is
    prompt; a server that stopped reading would keep ws waiting its 30 s closeTimeout and blame ws
    for the harness."""
    results, _ = run_matrix("--servers", "hostile", "--clients", "node-ws[options]",
                            "--scenarios", "hostile-server-close-no-notify")
    (cell,) = results.cells
    assert cell.verdict.value == "PASS", cell.reason
    assert cell.hostile.how == "CLOSED" and cell.hostile.after_fault_s < PROMPT_S


def test_a_client_with_its_own_timeout_gives_up_by_itself(run_matrix):
    results, _ = run_matrix(*PLUGIN, "--clients", "selftest-quick-timeout", "--servers", "hostile",
                            "--scenarios", "hostile-server-silent,hostile-server-no-upgrade")
    for cell in results.cells:
        assert cell.verdict.value == "PASS", cell.reason
        assert cell.hostile.ended and cell.hostile.how == "TIMEOUT"
        assert QUICK_TIMEOUT_S <= cell.hostile.after_s < 5 and "gave up by itself" in cell.reason


def test_servers_facing_a_silent_or_stalled_client(run_matrix):
    """A server with a TLS handshake timeout drops the hostile client itself and closes its
    socket; tornado has none (SSLIOStream's handshake waits forever): still waiting at the harness's
    deadline, which the cell says is the harness's."""
    results, _ = run_matrix(*PLUGIN, "--servers", "selftest-handshake-timeout,tornado", "--clients", "hostile",
                            "--scenarios", "hostile-client", "--deadline", "2")
    got = verdicts(results)
    assert got == {
        "selftest-handshake-timeout-hostile[tcp]-hostile-client-silent": "PASS",
        "selftest-handshake-timeout-hostile[tcp]-hostile-client-mid-handshake": "PASS",
        "tornado-hostile[tcp]-hostile-client-silent": "HANG",
        "tornado-hostile[tcp]-hostile-client-mid-handshake": "HANG",
    }
    for cell in results.cells:
        assert cell.hostile.under_test == "server" and cell.hostile.left_open is False
        if cell.verdict.value == "PASS":
            assert cell.hostile.how in ("EOF", "CONNECTION_RESET")
            assert QUICK_TIMEOUT_S <= cell.hostile.after_s < 2
        else:
            assert cell.hostile.own_timeouts == {"SSLIOStream handshake": None}
            assert (cell.deadline.source, cell.deadline.seconds) == ("harness", 2)
            assert "it has no timeout of its own for this wait (SSLIOStream handshake: none)" in cell.reason
