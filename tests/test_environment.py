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
