"""The matrix detects what it claims to: broken peers defined in tests/selftest_peers.py, real
handshakes, judged by the real runner."""

from __future__ import annotations

from pathlib import Path

from mtls_matrix.timing import CLIENT_STOP_GRACE_S
from tests.conftest import verdicts

PLUGIN = ("--peer-plugin", "tests.selftest_peers", "-n", "0")


def test_client_that_skips_verification_is_insecure_on_every_server_rejection(run_matrix):
    results, _ = run_matrix(*PLUGIN, "--servers", "websockets", "--clients", "selftest-insecure",
                            "--scenarios", "server-rejected")
    assert len(results.cells) == 14
    assert {c.verdict.value for c in results.cells} == {"INSECURE"}
    assert all(c.server_saw.handler_ran for c in results.cells)


def test_a_harness_failure_costs_its_own_cells_as_error_and_the_run_goes_on(run_matrix):
    results, proc = run_matrix(*PLUGIN, "--servers", "websockets,hostile", "--clients",
                               "selftest-broken-adapter,websockets[ssl=context]",
                               "--scenarios", "mtls-ok,hostile-server-silent", "--deadline", "2")
    by_id = {c.id: c for c in results.cells}
    broken = by_id["hostile-selftest-broken-adapter[ssl=context]-hostile-server-silent"]  # reads the timeouts
    assert broken.verdict.value == "ERROR" and broken.severity is None
    assert "cannot read its library's timeouts" in broken.reason
    assert by_id["websockets-selftest-broken-adapter[ssl=context]-mtls-ok"].verdict.value == "PASS"
    assert by_id["websockets-websockets[ssl=context]-mtls-ok"].verdict.value == "PASS"
    assert proc.returncode == 1  # a harness ERROR fails the run: it is the harness's bug


def test_server_that_does_not_require_a_client_certificate_is_insecure(run_matrix):
    results, _ = run_matrix(*PLUGIN, "--servers", "selftest-lax", "--clients", "websockets[ssl=context]",
                            "--scenarios", "client-no-cert,client-no-cert-tls12,mtls-ok")
    assert verdicts(results) == {
        "selftest-lax-websockets[ssl=context]-client-no-cert": "INSECURE",
        "selftest-lax-websockets[ssl=context]-client-no-cert-tls12": "INSECURE",
        "selftest-lax-websockets[ssl=context]-mtls-ok": "PASS",
    }


def test_server_that_cannot_see_the_client_identity_fails_at_the_handler(run_matrix):
    results, _ = run_matrix(*PLUGIN, "--servers", "selftest-blind", "--clients", "websockets[ssl=context]",
                            "--scenarios", "mtls-ok")
    [cell] = results.cells
    assert (cell.verdict.value, cell.phase) == ("FAIL", "handler")
    assert cell.server_saw.handler_ran and cell.server_saw.handler_peer_cn is None


def test_hanging_peers_cost_their_own_cells_only(run_matrix, tmp_path):
    deadline = 1.0
    scenarios = "mtls-ok,client-no-cert,server-expired"
    alone, _ = run_matrix(*PLUGIN, "--servers", "websockets", "--clients", "websockets[ssl=context]",
                          "--scenarios", scenarios, out=tmp_path / "alone")
    mixed, _ = run_matrix(*PLUGIN, "--deadline", str(deadline),
                          "--servers", "selftest-hang,websockets", "--clients", "selftest-blocking,websockets[ssl=context]",
                          "--scenarios", scenarios, out=tmp_path / "mixed")
    # the blocking client hangs everywhere; the hanging server only where TLS lets it get that far
    hung = [c for c in mixed.cells if "selftest-blocking" in c.id
            or (c.server == "server:selftest-hang" and c.group == "works")]
    assert len(hung) == 2 * 3 + 1
    assert {c.verdict.value for c in hung} == {"HANG"}
    rejected_before_the_hang = [c for c in mixed.cells if c.id.startswith("selftest-hang-websockets")
                                and c.scenario in ("client-no-cert", "server-expired")]
    assert {c.verdict.value for c in rejected_before_the_hang} == {"PASS"}
    # the deadline, the client's stop grace, then at worst a kill on a busy machine: seconds, never a hang's minutes
    budget_s = deadline + CLIENT_STOP_GRACE_S + 3.0
    assert all(c.timings["total"] <= budget_s * 1000 for c in hung), [c.timings for c in hung]
    # every other cell keeps the verdict it has without the hanging peers around
    others = {k: v for k, v in verdicts(mixed).items() if "selftest" not in k}
    assert others == verdicts(alone)


def test_a_hung_sync_client_is_stopped_or_killed_never_abandoned(run_matrix, tmp_path):
    record = tmp_path / "blocking-client"
    results, _ = run_matrix(*PLUGIN, "--deadline", "1", "--servers", "websockets",
                            "--clients", "selftest-stuck-recv,selftest-blocking", "--scenarios", "mtls-ok",
                            env={"SELFTEST_BLOCKING_RECORD": str(record)})
    after = {c.client: (c.verdict.value, c.client_after_deadline) for c in results.cells}
    assert after == {"client:selftest-stuck-recv[no-timeout]": ("HANG", "stopped"),
                     "client:selftest-blocking[forever]": ("HANG", "killed")}
    # the blocked client ran in a client process of its own, and that process is gone
    pid, cmdline = record.read_bytes().split(b"\n", 1)
    assert b"mtls_matrix.isolate" in cmdline
    assert not Path(f"/proc/{int(pid)}").exists()


def test_a_server_that_crashes_costs_only_the_cell_it_crashed_in(run_matrix):
    # these scenarios share one listener (same certificate and TLS settings, default profile)
    results, _ = run_matrix(*PLUGIN, "--deadline", "1", "--servers", "selftest-crash", "--clients", "websockets[ssl=context]",
                            "--scenarios", "mtls-ok,ip-url,io-text,io-binary", "--profile", "default")
    first, *rest = results.cells
    assert first.scenario == "mtls-ok" and first.verdict.value == "FAIL"  # the connection it crashed on
    assert first.server_saw.crash == "its event loop stopped" and first.reason.startswith("the server crashed")
    assert [c.verdict.value for c in rest] == ["PASS"] * 3  # the listener was started anew
