"""The process environment a cell asks for reaches that cell's client only: the environment style (the
default store pointed at the run's CA) and the `environment` group (another CA everywhere) run side by
side with cells whose environment stays scrubbed, and each sees its own."""

from __future__ import annotations

from tests.conftest import verdicts


def test_each_cell_gets_its_own_environment_and_no_other(run_matrix):
    results, _ = run_matrix(
        "--servers", "aiohttp", "-n", "0", "--profile", "default",
        "--clients", "aiohttp[ssl=True],aiohttp[ssl=context],websocket-client[sslopt=dict]",
        "--scenarios", "token-header-ok,server-untrusted-ca,env-other-ca-ok,env-other-ca-untrusted",
        env={"SSL_CERT_FILE": "/nonexistent/ca.pem", "NODE_EXTRA_CA_CERTS": "/nonexistent/ca.pem"})
    got = verdicts(results)
    # the default-store variant trusts the run's CA only because its own process was given it
    assert got["aiohttp-aiohttp[ssl=True]-token-header-ok"] == "PASS"
    assert got["aiohttp-aiohttp[ssl=True]-server-untrusted-ca"] == "PASS"
    # the explicit settings win over an environment that names another CA (a client process of its own),
    # and the ordinary cells run in between still pass
    for client in ("aiohttp[ssl=context]", "websocket-client[sslopt=dict]"):
        for scenario in ("token-header-ok", "server-untrusted-ca", "env-other-ca-ok", "env-other-ca-untrusted"):
            assert got[f"aiohttp-{client}-{scenario}"] == "PASS", (client, scenario)
    assert {"SSL_CERT_FILE", "NODE_EXTRA_CA_CERTS"} <= set(results.run.scrubbed_env)


def test_foreign_processes_get_the_scrubbed_environment(run_matrix):
    """NODE_OPTIONS reaches every node process it is not removed from: one that requires a file that does
    not exist stops Node before the peer program runs. Scrubbed, the Node server and client just work."""
    results, _ = run_matrix(
        "--servers", "node-ws,websockets", "--clients", "websockets[ssl=context],node-ws[options]",
        "--scenarios", "mtls-ok", "-n", "0",
        env={"NODE_OPTIONS": "--require /nonexistent/preload.js", "NODE_TLS_REJECT_UNAUTHORIZED": "0",
             "NODE_EXTRA_CA_CERTS": "/nonexistent/ca.pem"})
    got = verdicts(results)
    if {c.verdict.value for c in results.cells} == {"SKIPPED"}:
        return  # no Node on this machine (setup-foreign could not install it)
    assert got == {"node-ws-websockets[ssl=context]-mtls-ok": "PASS", "websockets-node-ws[options]-mtls-ok": "PASS",
                   "websockets-websockets[ssl=context]-mtls-ok": "PASS"}
    assert {"NODE_OPTIONS", "NODE_TLS_REJECT_UNAUTHORIZED", "NODE_EXTRA_CA_CERTS"} <= set(results.run.scrubbed_env)
