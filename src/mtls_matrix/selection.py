"""Which cells a run plays: the pairing rules (which peers play which scenarios, under which
profiles), for the pytest plugin, the CLI, the reproducer and the version axis alike.

A selection loads the peers it names, so it first removes from the process environment what would
change a verdict (SCRUBBED).
"""

from __future__ import annotations

import fnmatch
import os
import shlex
from dataclasses import dataclass, replace

from mtls_matrix import scenarios
from mtls_matrix.options import DEFAULT_DEADLINE, DEFAULT_PROFILES, MAX_DEADLINE, names
from mtls_matrix.peers import ClientVariant, Registry, ServerPeer
from mtls_matrix.scenarios import Scenario

# The user's environment must not change a verdict: these make libraries trust other CAs, log
# keys or route through proxies. Removed for the run (names recorded in results.json).
SCRUBBED = (
    "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "WEBSOCKET_CLIENT_CA_BUNDLE",
    "SSLKEYLOGFILE", "HTTP_PROXY", "HTTPS_PROXY", "WS_PROXY", "WSS_PROXY", "ALL_PROXY", "NO_PROXY",
    "http_proxy", "https_proxy", "ws_proxy", "wss_proxy", "all_proxy", "no_proxy",
    # Node's: extra trust anchors, verification switched off, options (--use-openssl-ca) for every node process
    "NODE_EXTRA_CA_CERTS", "NODE_TLS_REJECT_UNAUTHORIZED", "NODE_OPTIONS",
)
scrubbed: set[str] = set()  # the names this process removed


def scrub_environment() -> None:
    """Before any peer library is imported: some build SSL contexts at import time (aiohttp),
    and the stdlib reads SSLKEYLOGFILE when a context is made."""
    for name in SCRUBBED:
        if os.environ.pop(name, None) is not None:
            scrubbed.add(name)


@dataclass(frozen=True)
class CellSpec:
    server: ServerPeer
    client: ClientVariant
    scenario: Scenario
    profile: str

    @property
    def id(self) -> str:
        suffix = f"-{self.profile}" if self.scenario.profiled and self.profile != "default" else ""
        return f"{self.server.name}-{self.client.name}-{self.scenario.name}{suffix}"

    @property
    def served(self) -> Scenario:
        """The scenario as the cell's listener and client get it: a variant that presents no client
        certificate (ClientPeer.server_auth_only) plays on a listener that requests none."""
        if self.client.variant in self.client.peer.server_auth_only and self.scenario.token is None:
            return replace(self.scenario, client_cert=None, client_auth=False)
        return self.scenario

    @property
    def repro(self) -> str:
        return shlex.join([
            "mtls-matrix", "run", "--servers", self.server.name, "--clients", self.client.name,
            "--scenarios", self.scenario.name, "--profile", self.profile, "--out", "reports/repro",
        ])


@dataclass
class Selection:
    registry: Registry
    cells: list[CellSpec]
    profiles: list[str]
    deadline: float


def build_selection(servers=None, clients=None, scenario_names=None, profile=DEFAULT_PROFILES,
                    deadline=DEFAULT_DEADLINE, peer_plugins=(), all_pairs=False) -> Selection:
    """Raises ValueError naming what was wrong and the valid choices."""
    scrub_environment()
    registry = Registry(list(peer_plugins))
    profiles = names(profile) or []
    unknown = [p for p in profiles if p not in scenarios.PROFILES]
    if unknown or not profiles:
        raise ValueError(f"unknown profile {', '.join(unknown) or repr(profile)}; valid: {', '.join(scenarios.PROFILES)}")
    if not 0 < deadline <= MAX_DEADLINE:  # also refuses nan and inf
        raise ValueError(f"--deadline must be more than 0 and at most {MAX_DEADLINE:g} seconds, got {deadline}")
    chosen_servers = registry.select_servers(servers)
    chosen_clients = registry.select_clients(clients)
    chosen_scenarios = scenarios.select(scenario_names)
    cells = [
        CellSpec(server, client, scenario, profile)
        for server in chosen_servers
        for client in chosen_clients
        if client.peer.family == server.family
        for scenario in chosen_scenarios
        if _plays(server, client, scenario, all_pairs)
        for profile in (profiles if scenario.profiled else ["default"])
        if scenario.profiled or profile == profiles[0] or "default" in profiles
        if all_pairs or _plays_profile(server, client, scenario, profile)
    ]
    return Selection(registry, cells, profiles, deadline)


def _plays_profile(server, client, scenario, profile: str) -> bool:
    """`scenarios` name profiled cells as in their ids: NAME (default), NAME-tuned."""
    if not scenario.profiled or profile == "default":
        return True
    return all(patterns is None or any(fnmatch.fnmatchcase(f"{scenario.name}-{profile}", p) for p in patterns)
               for patterns in (server.scenarios, client.peer.variant_scenarios.get(client.variant)))


def _named(scenario, patterns: tuple[str, ...]) -> bool:
    """Is the scenario among these names, globs or group names?"""
    return any(p == scenario.group or fnmatch.fnmatchcase(scenario.name, p) for p in patterns)


def _plays(server, client, scenario, all_pairs: bool = False) -> bool:
    """A hostile scenario pairs the harness's hostile peer, in the role it names, with every real
    peer of the other role; every other scenario pairs real peers: within the server's groups, the
    scenario's family and a variant's `only`, always; and unless `all_pairs`, where each peer adds
    information (the server's scenarios, the client variant's scenarios and the client's servers, one
    variant for a `one_variant` scenario), foreign with Python."""
    hostile_role = scenarios.HOSTILE_GROUPS.get(scenario.group)
    if scenario.group not in (server.groups or set(scenarios.GROUPS) - set(scenarios.OPT_IN_GROUPS)):
        return False
    if scenario.family is not None and scenario.family != server.family:
        return False  # a scenario of one protocol (a Socket.IO namespace): even with all_pairs
    only = client.peer.only.get(client.variant)
    if only is not None and not _named(scenario, only):
        return False
    if not all_pairs:
        if server.foreign and client.peer.foreign:
            return False
        if scenario.one_variant and client.variant != client.peer.variants[0]:
            return False
        for patterns in (server.scenarios, client.peer.variant_scenarios.get(client.variant)):
            if patterns is not None and not _named(scenario, patterns):
                return False
        if client.peer.servers is not None and not any(fnmatch.fnmatchcase(server.name, p) for p in client.peer.servers):
            return False
        if server.clients is not None and client.name not in server.clients:
            return False
    # a variant without a client certificate plays where a listener can request none (the token group's kind)
    if client.variant in client.peer.server_auth_only and "token" not in (server.groups or scenarios.GROUPS):
        return False
    return server.harness == (hostile_role == "server") and client.peer.harness == (hostile_role == "client")
