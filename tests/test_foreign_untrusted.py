"""What a foreign program prints is untrusted input (peers/foreign.py's readers): a line over the
limit, a `listening` without a number, an event with a key of the harness's own, a connection id
that is no id, an output that ends while the program runs on. Each is reported with the line and
costs at most the cell it came in, fast; the reader goes on, or, when it cannot, the process is
ended with it. The programs: the real node-ws behind tests/foreign/shim.py, broken once."""

from __future__ import annotations

import asyncio
import io
import ssl
import time

import pytest
from websockets.sync.client import connect

from mtls_matrix import observe
from mtls_matrix.cell import ServerHost, client_tls, server_context
from mtls_matrix.peers.foreign import LineTooLong, parse_line, read_lines, read_lines_async
from mtls_matrix.pki import PKI
from mtls_matrix.scenarios import BY_NAME
from tests.foreign.peers import untrusted_server
from tests.test_foreign import needs_node

PLUGIN = ("--peer-plugin", "tests.foreign.peers", "--profile", "default", "-n", "0")
SCENARIOS = "mtls-ok,mtls-rsa,io-text,io-binary"
DEADLINE_S = 10


def test_lines_over_the_limit_are_skipped_whole_and_reported_with_their_start():
    data = b'{"a": 1}\n' + b"y" * 100 + b"\n" + b'{"b": 2}\n' + b"z" * 10 + b"\n" + b'{"c": 3}'
    lines = list(read_lines(io.BufferedReader(io.BytesIO(data)), 32))
    assert [line if isinstance(line, bytes) else type(line) for line in lines] == [
        b'{"a": 1}\n', LineTooLong, b'{"b": 2}\n', b"z" * 10 + b"\n", b'{"c": 3}']
    assert lines[1].start.startswith(b"yyyy") and "101 bytes" in str(lines[1])

    async def read_async():
        reader = asyncio.StreamReader(limit=32)
        reader.feed_data(data)
        reader.feed_eof()
        return [line async for line in read_lines_async(reader, 32)]

    assert [line if isinstance(line, bytes) else type(line) for line in asyncio.run(read_async())] == [
        b'{"a": 1}\n', LineTooLong, b'{"b": 2}\n', b"z" * 10 + b"\n", b'{"c": 3}']


@pytest.mark.parametrize("line, event, problem", [
    (b'{"event": "open", "id": 3}\n', {"event": "open", "id": 3}, None),
    (b"a log line on stdout\n", None, None),  # no event at all: kept with stderr, as before
    (b"[1, 2]\n", None, None),
    (b"[" * 100_000 + b"]" * 100_000, None, None),  # too deep for the parser: no event either
    (b'{"event": "accept", "kind": "forged"}\n', None, "the key 'kind' is not part of the contract"),
    (b'{"event": "accept", "side": "client"}\n', None, "the key 'side' is not part of the contract"),
    (LineTooLong(b"xxx", 10 << 20, 1 << 20), None, "a line of 10485760 bytes or more, over the limit"),
])
def test_parse_line(line, event, problem):
    parsed, said = parse_line(line)
    assert parsed == event
    assert (said is None) if problem is None else (problem in said)


@pytest.fixture(scope="module")
def pki():
    with PKI() as built:
        yield built


@needs_node
def test_an_event_with_a_key_of_the_harness_is_reported_on_its_cell_and_the_reader_goes_on(pki, tmp_path,
                                                                                            monkeypatch):
    monkeypatch.setenv("MTLS_TEST_MARKER", str(tmp_path / "broke"))
    scenario = BY_NAME["mtls-ok"]
    host = ServerHost(untrusted_server("kind-in-accept"), server_context(pki, scenario), "default")
    tls = client_tls(pki, scenario)
    context = ssl.create_default_context(cafile=str(tls.ca))
    context.load_cert_chain(str(tls.cert), str(tls.key))
    try:
        for token in ("first", "second"):
            recorder = observe.begin(token)
            try:
                with connect(f"wss://localhost:{host.port}/cell/{token}", ssl=context) as ws:
                    ws.send("hello")
                    assert ws.recv() == "hello"
                end = time.monotonic() + 10  # the program's events come on their own pipe, maybe later
                while recorder.find("server", "handler") is None and time.monotonic() < end:
                    time.sleep(0.01)
            finally:
                observe.end(recorder)
            kinds = [(e.side, e.kind) for e in recorder.events]
            errors = [e.data["message"] for e in recorder.events if e.kind == "error"]
            if token == "first":
                assert errors and "stdout line" in errors[0] and "the key 'kind' is not part of the contract" in errors[0]
                assert ("server", "accept") not in kinds  # the bad event itself is skipped
            else:
                assert errors == [] and ("server", "accept") in kinds
            assert ("server", "handler") in kinds  # the reader lives on
    finally:
        host.close()


@needs_node
def test_a_line_over_the_limit_before_listening_does_not_stop_the_server(run_matrix, tmp_path):
    results, _ = run_matrix(*PLUGIN, "--servers", "selftest-node-long-line-before-listening", "--clients", "websockets[ssl=context]",
                            "--scenarios", SCENARIOS, env={"MTLS_TEST_MARKER": str(tmp_path / "broke")})
    assert (tmp_path / "broke").exists()
    assert [c.verdict.value for c in results.cells] == ["PASS"] * 4, [(c.id, c.reason) for c in results.cells]


@needs_node
def test_a_listening_port_that_is_no_number_fails_the_start_at_once_with_the_reason(run_matrix, tmp_path):
    results, _ = run_matrix(*PLUGIN, "--servers", "selftest-node-bad-port", "--clients", "websockets[ssl=context]",
                            "--scenarios", "mtls-ok", env={"MTLS_TEST_MARKER": str(tmp_path / "broke")})
    (cell,) = results.cells
    assert cell.verdict.value != "PASS"
    assert "bad `listening` event" in cell.reason and "'forty-two'" in cell.reason, cell.reason
    assert "did not report listening" not in cell.reason
    assert cell.timings["cell"] < 5000  # not the 15 s start timeout


@needs_node
@pytest.mark.parametrize("client, says", [
    ("selftest-node-list-id-on-open", "`id` [1] is no connection id"),
    ("selftest-node-long-line-for-open", "over the limit of 33554432"),
    ("selftest-node-close-stdout-on-connect", "client process exited with code -9"),
])
def test_a_client_that_breaks_the_contract_fails_its_cell_fast_with_the_reason_and_the_next_ones_pass(
        run_matrix, tmp_path, client, says):
    results, _ = run_matrix(*PLUGIN, "--servers", "websockets", "--clients", client, "--scenarios", SCENARIOS,
                            "--deadline", str(DEADLINE_S), env={"MTLS_TEST_MARKER": str(tmp_path / "broke")})
    assert (tmp_path / "broke").exists()
    first, *rest = results.cells
    assert first.verdict.value == "FAIL" and says in first.error.message, (first.reason, first.error)
    assert first.timings["cell"] < DEADLINE_S * 1000 / 2  # failed fast, not at the deadline
    assert [c.verdict.value for c in rest] == ["PASS"] * 3, [(c.id, c.reason) for c in rest]
