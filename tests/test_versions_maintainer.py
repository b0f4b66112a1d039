"""Maintainer mode of the version axis: trees, wheels and VCS references as specs, the resolver's own
conflict for 'cannot install', and the gate on a changed verdict (no environment is built here)."""

from __future__ import annotations

import pytest

from mtls_matrix import versions
from mtls_matrix.results import Cell, Results, Run, Verdict
from mtls_matrix.versions import changed_cells, conflict, parse_spec

PIP_SAYS = """\
ERROR: Cannot install python-engineio==4.3.4 and python-socketio==5.18.1 because these package versions have \
conflicting dependencies.

The conflict is caused by:
    The user requested python-engineio==4.3.4
    python-socketio 5.18.1 depends on python-engineio>=4.15.1
    The user requested python-engineio==4.3.4

To fix this you could try to:
1. loosen the range of package versions you've specified
"""


def test_a_tree_a_vcs_reference_and_an_archive_are_specs(tmp_path):
    tree = parse_spec(f"aiohttp @ {tmp_path.as_uri()}")
    assert tree.pins == (("aiohttp", tmp_path.as_uri()),) and tree.trees == [tmp_path.as_uri()]
    assert "/" not in tree.slug and tree.name == f"aiohttp @ {tmp_path.as_uri()}"
    vcs = parse_spec("aiohttp @ git+https://example.invalid/aiohttp@branch+yarl==1.9.4")
    assert dict(vcs.pins) == {"aiohttp": "git+https://example.invalid/aiohttp@branch", "yarl": "1.9.4"}
    wheel = tmp_path / "websocket_client-1.9.0-py3-none-any.whl"
    wheel.write_bytes(b"not really a wheel")
    archive = parse_spec(str(wheel))
    assert archive.pins == (("websocket-client", wheel.as_uri()),) and archive.trees == []
    assert versions.requirements_for(archive)[-1] == f"websocket-client @ {wheel.as_uri()}"


@pytest.mark.parametrize("bad, says", [("aiohttp @ file:///nonexistent/tree", "does not exist"),
                                       ("aiohttp>=3.9", "LIBRARY @ file:///path")])
def test_a_spec_that_is_neither_is_refused_with_the_forms_it_may_take(bad, says):
    with pytest.raises(ValueError, match=says):
        parse_spec(bad)


def test_cannot_install_keeps_the_resolvers_account_each_cause_once():
    said = conflict(PIP_SAYS)
    assert said.splitlines() == [
        "Cannot install python-engineio==4.3.4 and python-socketio==5.18.1 because these package versions have "
        "conflicting dependencies.",
        "The conflict is caused by:",
        "The user requested python-engineio==4.3.4",
        "python-socketio 5.18.1 depends on python-engineio>=4.15.1"]
    assert conflict("ERROR: No matching distribution found for aiohttp==0.0.1") is None


def _cell(env: str, verdict: Verdict) -> Cell:
    return Cell(id=f"a-b[c]-mtls-ok@{env}", server="server:a", client="client:b[c]", scenario="mtls-ok",
                group="works", profile="default", expectation="", verdict=verdict, phase="io", repro="",
                environment=env)


def test_the_gate_counts_a_changed_verdict_and_never_a_cell_that_cannot_run():
    run = Run(started="2026-01-01T00:00:00+00:00", python="3.11", openssl="OpenSSL", platform="linux",
              versions={}, ca_fingerprint="", deadline_s=5, profiles=["default"])
    same = Results(run=run, cells=[_cell("x==1", Verdict.PASS), _cell("x @ file:///t", Verdict.PASS)])
    skipped = Results(run=run, cells=[_cell("x==1", Verdict.PASS), _cell("x @ file:///t", Verdict.SKIPPED)])
    changed = Results(run=run, cells=[_cell("x==1", Verdict.PASS), _cell("x @ file:///t", Verdict.FAIL)])
    assert changed_cells(same) == changed_cells(skipped) == []
    assert changed_cells(changed) == ["a-b[c]-mtls-ok"]
