"""The catalogue is consistent data."""

from __future__ import annotations

import pytest

from mtls_matrix.pki import LEAVES
from mtls_matrix.scenarios import BY_NAME, CATALOGUE, GROUPS, HOSTILE_GROUPS, select


def test_every_certificate_a_scenario_names_exists():
    for s in CATALOGUE:
        assert s.server_cert in LEAVES and (s.client_cert is None or s.client_cert in LEAVES), s.name


def test_every_certificate_rejection_runs_under_tls13_and_tls12():
    # a token refusal, and proxy-identity's refusals, are the app's, after TLS: the version cannot move them
    # (the environment group's refusal varies the client's environment, not the TLS the server speaks)
    rejections = [s for s in CATALOGUE if s.expect.outcome == "reject"
                  and s.group not in ("token", "proxy-identity", "environment")]
    assert len(rejections) == 28
    for s in rejections:
        if not s.name.endswith("-tls12"):
            assert BY_NAME[f"{s.name}-tls12"].server_tls == "tls12"


def test_groups_cover_the_catalogue_and_expectations_match_them():
    assert {s.group for s in CATALOGUE} == set(GROUPS)
    for s in CATALOGUE:
        by = {"client-rejected": "server", "server-rejected": "client",  # the side that must reject
              "hostile-server": "client", "hostile-client": "server",  # the side under test
              "environment": "client" if s.expect.outcome == "reject" else None,  # a refusal is the client's
              "local-config": "client" if s.expect.outcome == "config-error" else None}.get(s.group)
        if s.group == "token":  # the server refuses a bad token; a good one connects
            by = "server" if s.expect.outcome == "reject" else None
        elif s.group == "proxy-identity":  # the app refuses, in its connect handler, or accepts
            by = "server" if s.expect.reason else None
            assert s.claim is not None and (not by or s.expect.latest_phase == "handler"), s.name
        assert s.expect.by == by, s.name
        assert (s.hostile is not None) == (s.group in HOSTILE_GROUPS), s.name


def test_select_by_group_glob_and_name():
    assert {s.name for s in select(["io"])} == {s.name for s in CATALOGUE if s.group == "io"}
    assert all(s.name.startswith("server-") for s in select(["server-*"]))
    with pytest.raises(ValueError, match="unknown scenario 'nope'.*mtls-ok"):
        select(["nope"])
