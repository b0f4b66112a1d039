"""The harness's own security hygiene: loopback only, private keys stay private."""

from __future__ import annotations

import ipaddress
import stat

from mtls_matrix import observe
from mtls_matrix.cell import ServerPool
from mtls_matrix.leaks import listening_addresses
from mtls_matrix.peers import Registry
from mtls_matrix.pki import PKI
from mtls_matrix.scenarios import CATALOGUE


def test_every_server_peer_listens_on_loopback_only():
    before = listening_addresses()
    observe.install()
    with PKI() as pki:
        pool = ServerPool(pki)
        mtls_ok = [s for s in CATALOGUE if s.name == "mtls-ok"]
        hostile = [s for s in CATALOGUE if s.group == "hostile-server"]  # the harness's own, every behaviour
        try:
            started = 0
            for server in Registry().servers.values():
                for scenario in hostile if server.harness else mtls_ok:
                    for profile in ("default", "tuned"):
                        pool.get(server, scenario, profile)
                        started += 1
            opened = listening_addresses() - before
            # a proxy or a foreign server listens in its own process; a proxy's plain backend in this one
            apart = [host.peer for host in pool.hosts.values() if host.peer.out_of_process]
            for peer in apart:
                opened |= listening_addresses(peer.pid)
            backends = {peer.backend_port for peer in apart if hasattr(peer, "backend_port")}
            ports = {host.port for host in pool.hosts.values()} | backends
            assert len(ports) == started + len(backends) and started > 2 * len(hostile) and backends
            assert {port for _, port in opened} == ports
            assert all(ipaddress.ip_address(address).is_loopback for address, _ in opened), opened
        finally:
            pool.close()


def test_no_private_key_reaches_a_report_or_the_log(run_matrix, tmp_path):
    results, proc = run_matrix("--servers", "websockets,tornado", "--clients", "aiohttp[ssl=context],websocket-client",
                               "--scenarios", "mtls-ok,client-expired,server-self-signed,io-1000-ordered", "-n", "2",
                               "--", "-rA", "-v")
    outputs = [p.read_text(errors="replace") for p in (tmp_path / "out").rglob("*") if p.is_file()]
    outputs += [proc.stdout, proc.stderr]
    assert results.cells and len(outputs) >= 4
    for text in outputs:
        assert "PRIVATE KEY" not in text
        assert "BEGIN EC" not in text and "BEGIN RSA" not in text


def test_key_files_are_readable_by_their_owner_only():
    with PKI() as pki:
        keys = [c.key for c in pki.credentials.values() if c.spec.broken is None]
        assert keys and all(stat.S_IMODE(k.stat().st_mode) == 0o600 for k in keys)
        assert stat.S_IMODE(pki.dir.stat().st_mode) == 0o700
