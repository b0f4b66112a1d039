"""The library-version axis: spec parsing, the bisect search on a fake oracle, combining
environments, and one real run in two real environments (marked slow: it installs from PyPI
the first time, then reuses the cached venvs)."""

from __future__ import annotations

import json

import pytest

from mtls_matrix import versions
from mtls_matrix.results import Cell, Results, Run, Verdict
from mtls_matrix.versions import BisectError, Env, Spec, bisect_versions, parse_spec, versions_between
from tests.conftest import mtls_matrix

# -- specs -------------------------------------------------------------------------------------------


def test_a_spec_pins_one_or_more_libraries_by_canonical_name():
    assert parse_spec("aiohttp==3.9.1").name == "aiohttp==3.9.1"
    assert parse_spec("websocket_client==1.0.0").pins == (("websocket-client", "1.0.0"),)
    assert parse_spec("yarl==1.9.4+aiohttp==3.9.1").name == "aiohttp==3.9.1+yarl==1.9.4"


@pytest.mark.parametrize("bad", ["aiohttp", "aiohttp>=3.9", "aiohttp==3.*", "aiohttp==3.9.1,<4",
                                 "aiohttp[speedups]==3.9.1", "aiohttp==3.9.1+aiohttp==3.10.0", "==3.9.1", ""])
def test_a_spec_that_is_not_a_single_pin_is_refused(bad):
    with pytest.raises(ValueError, match="LIBRARY==VERSION|pinned twice"):
        parse_spec(bad)


def test_the_pin_replaces_the_projects_own_requirement_even_below_its_floor():
    reqs = versions.requirements_for(parse_spec("websockets==12.0"))
    assert "websockets==12.0" in reqs and not any(r.startswith("websockets>") for r in reqs)
    assert any(r.startswith("aiohttp") for r in reqs)


# -- bisect on a fake oracle ---------------------------------------------------------------------------

RELEASES = [f"1.{i}" for i in range(16)]


def oracle(change_at: str, broken: set[str] = frozenset(), calls: list | None = None):
    def verdict(version: str) -> str | None:
        if calls is not None:
            calls.append(version)
        if version in broken:
            return None
        return "FAIL" if RELEASES.index(version) < RELEASES.index(change_at) else "PASS"
    return verdict


def test_bisect_finds_the_first_release_whose_verdict_differs_and_installs_few():
    calls: list[str] = []
    found = bisect_versions(RELEASES, oracle("1.11", calls=calls))
    assert (found.good_verdict, found.last_good, found.first_changed, found.changed_verdict) == \
        ("FAIL", "1.10", "1.11", "PASS")
    assert len(calls) == len(set(calls)) <= 2 + 4  # GOOD, BAD and log2(14) between
    assert found.untested == [] and found.skipped == []


def test_bisect_skips_releases_that_cannot_run_and_reports_them():
    found = bisect_versions(RELEASES, oracle("1.11", broken={"1.7", "1.8", "1.9"}))
    assert (found.last_good, found.first_changed) == ("1.10", "1.11")
    assert set(found.skipped) <= {"1.7", "1.8", "1.9"} and found.skipped


def test_bisect_says_when_the_change_hides_behind_releases_that_cannot_run():
    found = bisect_versions(RELEASES, oracle("1.11", broken={"1.10", "1.9"}))
    assert (found.last_good, found.first_changed, found.untested) == ("1.8", "1.11", ["1.9", "1.10"])


def test_bisect_uses_the_newest_runnable_release_when_bad_cannot_run():
    found = bisect_versions(RELEASES, oracle("1.3", broken={"1.15", "1.14"}))
    assert (found.last_good, found.first_changed) == ("1.2", "1.3")
    assert {"1.15", "1.14"} <= set(found.skipped)


def test_bisect_reports_no_change_and_refuses_a_good_that_cannot_run():
    assert bisect_versions(RELEASES, lambda v: "PASS").first_changed is None
    with pytest.raises(BisectError, match="GOOD 1.0 cannot run"):
        bisect_versions(RELEASES, oracle("1.3", broken={"1.0"}))


def test_the_span_runs_from_good_to_bad_in_either_direction():
    released = ["0.9", "1.0.0", "1.0.1", "1.1.0", "1.2.0"]
    assert versions_between(released, "1.0", "1.1.0") == ["1.0.0", "1.0.1", "1.1.0"]
    assert versions_between(released, "1.2.0", "1.0.1") == ["1.2.0", "1.1.0", "1.0.1"]
    with pytest.raises(ValueError, match="same version"):
        versions_between(released, "1.0.0", "1.0")
    with pytest.raises(ValueError, match="1.0.7 is not a released version"):
        versions_between(released, "1.0.7", "1.2.0")


# -- the CLI's bad input: exit 2, nothing written ------------------------------------------------------

CELL = "tornado-websocket-client[sslopt=context]-mtls-ok"


@pytest.mark.parametrize("args, message", [
    (["versions", "aiohttp>=3.9", "--out", "{out}"], "LIBRARY==VERSION"),
    (["versions", "aiohttp==3.9.1", "aiohttp==3.9.1", "--out", "{out}"], "twice"),
    (["versions", "aiohttp==3.9.1", "--servers", "nope", "--out", "{out}"], "unknown server peer 'nope'"),
    (["bisect", "websocket-client", "1.0.0", "1.3.0", "--cell", "tornado-nope-mtls-ok", "--out", "{out}"],
     "unknown cell id"),
])
def test_bad_input_is_a_usage_error(tmp_path, args, message):
    out = tmp_path / "out"
    proc = mtls_matrix(*[a.format(out=out) for a in args])
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr
    assert not out.exists()


@pytest.mark.parametrize("good, bad, message",
                         [("1.3.0", "1.3", "same version"), ("1.0.77", "1.3.0", "not a released")])
def test_bisect_refuses_versions_that_are_not_two_releases(tmp_path, good, bad, message):
    # asks pip's configured index for the release list (a small query)
    proc = mtls_matrix("bisect", "websocket-client", good, bad, "--cell", CELL, "--out", str(tmp_path / "out"))
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr


# -- combining environments ------------------------------------------------------------------------------


def _results(version: str, verdict: Verdict) -> Results:
    run = Run(started="2026-01-01T00:00:00+00:00", python="3.11", openssl="OpenSSL", platform="linux",
              versions={"tornado": "6.6", "websocket-client": version}, ca_fingerprint="ab", deadline_s=5,
              profiles=["default"])
    cell = Cell(id=CELL, server="server:tornado", client="client:websocket-client[sslopt=context]",
                scenario="mtls-ok", group="works", profile="default", expectation="connects", verdict=verdict,
                phase="io", versions={"tornado": "6.6", "websocket-client": version}, repro="mtls-matrix run")
    return Results(run=run, cells=[cell])


def test_combined_results_keep_every_environment_apart_and_report_those_that_did_not_run(tmp_path):
    envs = [
        (Env(parse_spec("websocket-client==1.0.0"), "ok", tmp_path), _results("1.0.0", Verdict.FAIL)),
        (Env(parse_spec("websocket-client==1.3.0"), "ok", tmp_path), _results("1.3.0", Verdict.PASS)),
        (Env(Spec((("websockets", "12.0"),)), "cannot import", tmp_path,
             "ValueError: cannot import peer plugin 'mtls_matrix.peers.websockets': "
             "No module named 'websockets.asyncio'"),
         None),
    ]
    combined = versions.combine(envs, "mtls-matrix versions ...")
    combined = Results.model_validate_json(combined.model_dump_json())  # survives the file
    assert [c.id for c in combined.cells] == [f"{CELL}@websocket-client==1.0.0", f"{CELL}@websocket-client==1.3.0"]
    assert [c.environment for c in combined.cells] == ["websocket-client==1.0.0", "websocket-client==1.3.0"]
    assert [e.status for e in combined.run.environments] == ["ok", "ok", "cannot import"]
    assert combined.run.versions["websocket-client"] == "1.0.0, 1.3.0"
    assert not combined.run.complete
    table = versions.render_table(combined)
    assert f"| {CELL} **changed** | FAIL | PASS |" in table
    assert "`websockets==12.0`: cannot import" in table and "No module named 'websockets.asyncio'" in table
    from mtls_matrix import findings
    from mtls_matrix.reports import bugs

    assert "## Verdicts by library version" in bugs.render(findings.analyse(combined))
    assert "Verdicts by library version" not in bugs.render(findings.analyse(_results("1.3.0", Verdict.PASS)))


# -- one real run in two real environments ---------------------------------------------------------------


@pytest.mark.slow
def test_two_real_environments_show_websocket_client_honouring_sslopt_context_from_1_2_2(tmp_path):
    """websocket-client 1.0.0 ignores sslopt={"context": ...} (it builds its own context from the
    default CAs), so the server's certificate from our CA is UNKNOWN_CA; 1.3.0 uses the context
    (`mtls-matrix bisect` puts the change at 1.2.2)."""
    out = tmp_path / "v"
    proc = mtls_matrix("versions", "websocket-client==1.0.0", "websocket-client==1.3.0", "--out", str(out),
                       "--servers", "tornado", "--clients", "websocket-client[sslopt=context]",
                       "--scenarios", "mtls-ok", "--profile", "default", timeout=600)
    assert proc.returncode == 0, proc.stderr
    combined = Results.load(out / "results.json")
    got = {c.environment: (c.versions["websocket-client"], c.verdict.value, c.error.canonical) for c in combined.cells}
    assert got == {"websocket-client==1.0.0": ("1.0.0", "FAIL", "UNKNOWN_CA"),
                   "websocket-client==1.3.0": ("1.3.0", "PASS", None)}
    for spec in ("websocket-client==1.0.0", "websocket-client==1.3.0"):
        assert json.loads((out / spec / "results.json").read_text())["run"]["versions"]["websocket-client"] == spec[-5:]
    table = (out / "versions.md").read_text()
    assert f"| {CELL} **changed** | FAIL (UNKNOWN_CA) | PASS |" in table
    assert table in proc.stdout
