"""The library's own clock: where a library waits on a timer of its own, that timer (plus a margin)
is the cell's deadline, and the record says whose clock decided. A failure stays a failure, and a
server that dies during a cell is a server crash. Real peers, real TLS on loopback
(tests/selftest_peers.py)."""

from __future__ import annotations

from mtls_matrix.cell import cell_deadline
from mtls_matrix.selection import build_selection
from mtls_matrix.timing import CLOCK_MARGIN_S
from tests.selftest_peers import DIES_AT, DOCUMENTED_S, OUTLIVED_S, SWAPPED

PLUGIN = ("--peer-plugin", "tests.selftest_peers", "-n", "0")


def _deadlines(**selection) -> dict:
    return {spec.id: cell_deadline(spec, 5.0) for spec in build_selection(**selection).cells}


def test_whose_clock_sets_each_deadline():
    hostile = _deadlines(servers=["hostile"], clients=["websockets", "aiohttp[ssl=context]", "websocket-client"],
                         scenario_names=["hostile-server-silent", "hostile-server-no-upgrade"])
    opening = hostile["hostile-websockets[ssl=context]-hostile-server-silent"]
    assert (opening.source, opening.timeout, opening.documented_s) == ("library", "open_timeout", 10)
    assert opening.seconds == 10 + CLOCK_MARGIN_S
    # aiohttp: only the session's total (300 s) bounds the upgrade: longer than the matrix waits
    upgrade = hostile["hostile-aiohttp[ssl=context]-hostile-server-no-upgrade"]
    assert (upgrade.source, upgrade.seconds) == ("harness", 5)
    assert (upgrade.timeout, upgrade.documented_s) == ("session total", 300)
    none = hostile["hostile-websocket-client[sslopt=context]-hostile-server-silent"]
    assert (none.source, none.seconds, none.timeout, none.documented_s) == ("harness", 5, "timeout", None)
    # a Socket.IO refusal on polling sits out the long-poll (30 s by the servers' default ping settings)
    polling = "socketio-asyncclient[http_session=connector+polling]"
    sio = _deadlines(servers=["socketio-aiohttp"], scenario_names=["token-missing", "mtls-ok", "io-close"],
                     clients=[polling, "socketio-asyncclient[http_session=connector+websocket]"], profile="default")
    refused = sio[f"socketio-aiohttp-{polling}-token-missing"]
    assert (refused.source, refused.timeout, refused.documented_s) == ("library", "long-poll GET", 30)
    assert sio[f"socketio-aiohttp-{polling}-io-close"].timeout == "call() timeout"  # call("bye"): 60 s, the longest
    plain = sio[f"socketio-aiohttp-{polling}-mtls-ok"]
    assert plain.model_dump(exclude_none=True) == {"seconds": 2.5, "source": "harness"}


def test_within_its_own_timeout_passes_beyond_it_or_without_one_hangs(run_matrix):
    """Three clients facing a server that never speaks TLS, side by side: one gives up after 8 s
    within the 10 s it documents (PASS, and the wait is an advisory), one outlives the 1 s it
    documents (HANG on its clock), one has no timeout (HANG on the harness's)."""
    results, proc = run_matrix(*PLUGIN, "--servers", "hostile", "--scenarios", "hostile-server-silent",
                               "--clients", "selftest-ends-at-8s,selftest-outlives-its-timeout,selftest-no-timeout",
                               "--deadline", "2")
    cells = {c.client.split(":")[1].split("[")[0]: c for c in results.cells}
    ended = cells["selftest-ends-at-8s"]
    assert ended.verdict.value == "PASS" and 7.5 < ended.hostile.after_s < DOCUMENTED_S, ended.reason
    assert (ended.deadline.source, ended.deadline.documented_s) == ("library", DOCUMENTED_S)
    assert [a.kind for a in ended.advisories] == ["slow"] and "the user waits 8 s" in ended.advisories[0].text
    outlived = cells["selftest-outlives-its-timeout"]
    assert outlived.verdict.value == "HANG" and outlived.deadline.source == "library"
    assert outlived.deadline.seconds == OUTLIVED_S + CLOCK_MARGIN_S
    assert f"it outlived its own open_timeout ({OUTLIVED_S:g} s)" in outlived.reason
    none = cells["selftest-no-timeout"]
    assert none.verdict.value == "HANG" and (none.deadline.source, none.deadline.seconds) == ("harness", 2)
    assert "the deadline was the harness's: it has no timeout of its own for this wait" in none.reason
    # side by side: the three waits overlap
    assert results.run.duration_s < 8 + 2 + OUTLIVED_S + CLOCK_MARGIN_S
    assert "1 of 2 HANG decided by a deadline the harness chose" in proc.stdout


def test_a_failed_step_stays_a_failure_however_long_the_close_takes(run_matrix):
    """The server swaps two messages of the burst, then never answers the close: FAIL at io, naming
    the message, not HANG."""
    results, _ = run_matrix(*PLUGIN, "--servers", "selftest-swapping", "--clients", "websockets[ssl=context]",
                            "--scenarios", "io-1000-ordered", "--profile", "default", "--deadline", "3")
    [cell] = results.cells
    assert (cell.verdict.value, cell.phase) == ("FAIL", "io"), cell.reason
    assert cell.reason == f"burst: message {SWAPPED}: expected 'message {SWAPPED}', got 'message {SWAPPED + 1}'"
    assert cell.client_after_deadline == "stopped"  # its close was still waiting at the deadline


def test_a_listener_that_dies_is_a_server_crash(run_matrix):
    """The listener thread dies on its third connection: that cell names the crash (whatever the
    client made of it); the listener is started anew for the next."""
    # one listener serves these four (same certificate and TLS settings), in this order
    results, _ = run_matrix(*PLUGIN, "--servers", "selftest-dying-listener", "--clients", "websockets[ssl=context]",
                            "--scenarios", "mtls-ok,ip-url,io-text,io-binary", "--profile", "default")
    verdicts = [c.verdict.value for c in results.cells]
    assert verdicts == ["PASS"] * (DIES_AT - 1) + ["FAIL"] + ["PASS"], [c.reason for c in results.cells]
    crashed = results.cells[DIES_AT - 1]
    died = f"RuntimeError: the listener thread died on connection {DIES_AT}"
    assert crashed.reason.startswith(f"the server crashed during the cell: {died}")
    assert crashed.server_saw.crash == died
    assert all(c.server_saw.crash is None for c in results.cells if c is not crashed)


def test_the_user_sees_what_the_library_reported_never_the_harness_wrapper(run_matrix):
    """aiohttp reports a close as a message from receive(), python-socketio a dropped session through
    its disconnect handler: that is what the cell says the user saw, not the adapter's Closed."""
    sio = "socketio-asyncclient[http_session=connector+websocket]"
    results, _ = run_matrix("-n", "0", "--servers", "tornado,socketio-aiohttp", "--scenarios", "io-16mib,io-1mib",
                            "--clients", f"aiohttp[ssl=context],{sio}", "--profile", "default")
    cells = {c.id: c for c in results.cells}
    too_big = cells["tornado-aiohttp[ssl=context]-io-16mib"]
    assert (too_big.verdict.value, too_big.error.canonical) == ("FAIL", "MESSAGE_TOO_BIG")
    assert too_big.error.type.startswith("aiohttp.") and "WSMsgType.CLOSE" in too_big.error.message
    dropped = cells[f"socketio-aiohttp-{sio}-io-1mib"]  # max_http_buffer_size: the server drops the session
    assert dropped.error.type == "socketio.AsyncClient 'disconnect' handler", dropped.error
    assert dropped.error.canonical == "DISCONNECTED_TRANSPORT_ERROR"
    assert dropped.reason == "binary: socketio.AsyncClient 'disconnect' handler: called with reason 'transport error'"
    assert not [c.id for c in results.cells if (c.error.type or "").startswith("mtls_matrix.")]
