"""The peer registry loads the built-in peer modules a selection needs, and only those."""

from __future__ import annotations

import importlib
import subprocess
import sys
import textwrap

import pytest

from mtls_matrix.peers import BUILTIN, Registry
from tests.conftest import REPO

PLUGIN = """
from mtls_matrix.peers.websockets import Server


class Replacement(Server):
    pass


PEERS = [Replacement()]
"""


def test_a_one_library_selection_imports_that_library_alone():
    script = textwrap.dedent("""
        import sys
        from mtls_matrix.peers import Registry
        registry = Registry()
        registry.select_servers(["websockets"]), registry.select_clients(["websockets"])
        print(sorted(m for m in sys.modules if m.startswith("mtls_matrix.peers.")), "aiohttp" in sys.modules)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, check=True)
    assert proc.stdout.split() == ["['mtls_matrix.peers.websockets']", "False"]


@pytest.mark.parametrize("servers, clients", [
    (["websockets"], ["websockets"]),
    (["socketio-aiohttp", "aiohttp", "tornado[identity=open]"], ["tornado", "socketio-client", "aiohttp[ssl=context]"]),
    (["gorilla", "websockets"], ["node-ws[agent]", "websocket-client"]),
    (None, None),
])
def test_a_selection_is_the_same_as_from_every_peer_loaded(servers, clients):
    full = Registry()
    assert full.servers and full.clients  # loads them all
    lazy = Registry()
    assert [p.name for p in lazy.select_servers(servers)] == [p.name for p in full.select_servers(servers)]
    assert [c.name for c in lazy.select_clients(clients)] == [c.name for c in full.select_clients(clients)]


def test_an_unknown_name_still_lists_every_valid_one():
    valid = "unknown client peer 'nope'.*websockets\\[ssl=context\\].*node-ws\\[options\\]"
    with pytest.raises(ValueError, match=valid):
        Registry().select_clients(["nope"])


def test_every_built_in_peer_has_a_name_of_its_own():
    """What lets a selection stop at the first module naming a peer."""
    seen: dict[str, str] = {}
    for module in BUILTIN:
        for peer in importlib.import_module(module).PEERS:
            names = [peer.name] if peer.role == "server" else [f"{peer.name}[{v}]" for v in peer.variants]
            for name in names:
                key = f"{peer.role}:{name}"
                assert key not in seen, f"{key} in {seen.get(key)} and {module}"
                seen[key] = module


def test_a_plugin_peer_replaces_the_built_in_one_of_its_name(tmp_path, monkeypatch):
    (tmp_path / "replacing_peers.py").write_text(PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    registry = Registry(["replacing_peers"])
    assert type(registry.select_servers(["websockets"])[0]).__name__ == "Replacement"
    assert list(registry.servers)[0] == "websockets"  # in the built-in peer's place
    assert type(registry.servers["websockets"]).__name__ == "Replacement"
    assert registry.sources["websockets"] == "replacing_peers"
