"""`mtls-matrix diff` and `mtls-matrix merge`, and that shards of a real run merge into that run."""

from __future__ import annotations

import json

import pytest

from mtls_matrix.compare import changes, merge
from mtls_matrix.results import Cell, ErrorInfo, Results, Run, Verdict
from tests.conftest import mtls_matrix, verdicts


def cell(scenario: str, verdict: str = "PASS", phase: str = "upgrade", canonical: str | None = "UNKNOWN_CA",
         server: str = "tornado", client: str = "websockets[ssl=context]", versions: dict | None = None) -> Cell:
    return Cell(id=f"{server}-{client}-{scenario}", server=f"server:{server}", client=f"client:{client}",
                scenario=scenario, group="client-rejected", profile="default", expectation="server rejects",
                verdict=Verdict(verdict), phase=phase, error=ErrorInfo(canonical=canonical),
                versions=versions or {"tornado": "6.6.1", "websockets": "17.4"}, repro="mtls-matrix run ...")


def results(*cells: Cell, versions: dict | None = None, fingerprint: str = "aa", started: str = "2026-11-23T11:00:00+00:00",
            finished: str = "2026-11-23T11:01:00+00:00", complete: bool = True) -> Results:
    run = Run(started=started, finished=finished, complete=complete, python="3.11.7", openssl="OpenSSL 3.0.19",
              platform="Linux", versions=versions or {"tornado": "6.6.1", "websockets": "17.4"},
              ca_fingerprint=fingerprint, deadline_s=5.0, profiles=["default"])
    return Results(run=run, cells=list(cells))


def save(tmp_path, name: str, r: Results) -> str:
    path = tmp_path / name
    r.save(path)
    return str(path)


# --- diff -------------------------------------------------------------------------------------

def test_a_changed_verdict_is_listed_under_its_transition_with_both_versions(tmp_path):
    old = results(cell("client-expired"), cell("client-no-cert"))
    new = results(cell("client-expired", "INSECURE", "io", None, versions={"tornado": "6.7", "websockets": "17.4"}),
                  cell("client-no-cert"), versions={"tornado": "6.7", "websockets": "17.4"})
    proc = mtls_matrix("diff", save(tmp_path, "old.json", old), save(tmp_path, "new.json", new))
    assert proc.returncode == 1, proc.stderr
    out = proc.stdout
    assert "PASS -> INSECURE (1)" in out
    assert "server:tornado x client:websockets[ssl=context]  [tornado 6.6.1 -> 6.7, websockets 17.4]" in out
    assert ("tornado-websockets[ssl=context]-client-expired: verdict PASS -> INSECURE; phase upgrade -> io; "
            "canonical UNKNOWN_CA -> none") in out
    assert "versions: tornado 6.6.1 -> 6.7, websockets 17.4" in out
    assert "client-no-cert" not in out  # unchanged cells are not listed


def test_identical_runs_exit_0(tmp_path):
    path = save(tmp_path, "r.json", results(cell("client-expired")))
    proc = mtls_matrix("diff", path, path)
    assert proc.returncode == 0, proc.stderr
    assert "0 cells changed, 0 only in OLD, 0 only in NEW" in proc.stdout


def test_a_changed_canonical_counts_by_default_and_not_with_fields_verdict():
    """The TLS 1.3 race: a reset overtakes the alert, the verdict stays."""
    old = results(cell("client-expired", canonical="CERT_EXPIRED"))
    new = results(cell("client-expired", canonical="CONNECTION_RESET"))
    [change] = changes(old, new)
    assert change.kind == "PASS, canonical changed" and change.fields == ("canonical",)
    assert changes(old, new, ("verdict",)) == []
    assert changes(old, new, ("verdict", "phase")) == []


def test_fields_verdict_on_the_cli_exits_0_for_a_canonical_only_change(tmp_path):
    old = save(tmp_path, "old.json", results(cell("client-expired", canonical="CERT_EXPIRED")))
    new = save(tmp_path, "new.json", results(cell("client-expired", canonical="CONNECTION_RESET")))
    assert mtls_matrix("diff", old, new).returncode == 1
    proc = mtls_matrix("diff", old, new, "--fields", "verdict")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "compared: verdict\n" in proc.stdout


def test_cells_in_one_run_only_are_listed_and_count_as_a_change():
    old = results(cell("client-expired"), cell("client-revoked", "FAIL", canonical="EOF"))
    new = results(cell("client-expired"), cell("server-wrong-host"))
    found = changes(old, new)
    assert [(c.kind, c.cell.scenario) for c in found] == [
        ("only in OLD", "client-revoked"), ("only in NEW", "server-wrong-host")]


def test_markdown_groups_by_change_then_pair(tmp_path):
    old = results(cell("client-expired"), cell("client-revoked", server="aiohttp", versions={"aiohttp": "3.14.5"}))
    new = results(cell("client-expired", "HANG", "tls-handshake", "TIMEOUT"),
                  cell("client-revoked", "FAIL", server="aiohttp", versions={"aiohttp": "3.15.0"}))
    proc = mtls_matrix("diff", save(tmp_path, "o.json", old), save(tmp_path, "n.json", new), "--format", "markdown")
    assert proc.returncode == 1, proc.stderr
    md = proc.stdout
    assert md.startswith("### mtls-matrix diff\n")
    # HANG is worse than FAIL: its group comes first
    assert md.index("#### PASS → HANG (1)") < md.index("#### PASS → FAIL (1)")
    assert "`server:aiohttp` × `client:websockets[ssl=context]` (aiohttp 3.14.5 -> 3.15.0)" in md
    assert "- `tornado-websockets[ssl=context]-client-expired`: verdict PASS -> HANG; phase upgrade -> tls-handshake" in md


@pytest.mark.parametrize("content, says", [
    (None, "no such results file"),
    ("{not json", "not a valid mtls-matrix results file"),
    ('{"run": {}, "cells": []}', "not a valid mtls-matrix results file"),
    ('{"schema_version": 9, "run": {}, "cells": []}', "results schema version 9, this mtls-matrix reads versions 1, 2"),
])
def test_diff_bad_input_exits_2_naming_the_file(tmp_path, content, says):
    good = save(tmp_path, "good.json", results(cell("client-expired")))
    bad = tmp_path / "bad.json"
    if content is not None:
        bad.write_text(content)
    proc = mtls_matrix("diff", good, str(bad))
    assert proc.returncode == 2 and f"{bad}: {says}" in proc.stderr, proc.stderr
    assert proc.stdout == ""


def test_diff_unknown_field_exits_2_naming_the_valid_ones(tmp_path):
    good = save(tmp_path, "good.json", results(cell("client-expired")))
    proc = mtls_matrix("diff", good, good, "--fields", "verdict,clarity")
    assert proc.returncode == 2 and "unknown field clarity" in proc.stderr
    assert "valid: verdict, phase, canonical" in proc.stderr


# --- merge ------------------------------------------------------------------------------------

def test_merge_combines_run_metadata():
    a = results(cell("client-expired"), fingerprint="aa", started="2026-11-23T11:00:05+00:00",
                finished="2026-11-23T11:01:00+00:00", versions={"tornado": "6.6.1", "websockets": "17.4"})
    b = results(cell("client-expired", server="aiohttp"), fingerprint="bb", started="2026-11-23T11:00:00+00:00",
                finished="2026-11-23T11:00:30+00:00", complete=False, versions={"aiohttp": "3.14.5", "websockets": "17.4"})
    merged = merge([("a.json", a), ("b.json", b)])
    run = merged.run
    assert [c.id for c in merged.cells] == [a.cells[0].id, b.cells[0].id]
    assert (run.started, run.finished, run.duration_s) == ("2026-11-23T11:00:00+00:00", "2026-11-23T11:01:00+00:00", 60.0)
    assert run.versions == {"aiohttp": "3.14.5", "tornado": "6.6.1", "websockets": "17.4"}
    assert run.complete is False
    assert run.ca_fingerprint == "merged" and run.ca_fingerprints == ["aa", "bb"]


def test_merge_refuses_a_duplicate_cell_naming_it_and_writes_nothing(tmp_path):
    a = save(tmp_path, "a.json", results(cell("client-expired")))
    b = save(tmp_path, "b.json", results(cell("client-no-cert"), cell("client-expired")))
    out = tmp_path / "merged.json"
    proc = mtls_matrix("merge", a, b, "--out", str(out))
    assert proc.returncode == 2
    assert f"cell tornado-websockets[ssl=context]-client-expired is in two shards: {a} and {b}" in proc.stderr
    assert not out.exists()


def test_merge_refuses_shards_that_ran_different_library_versions(tmp_path):
    a = save(tmp_path, "a.json", results(cell("client-expired")))
    b = save(tmp_path, "b.json", results(cell("client-no-cert"), versions={"tornado": "6.7", "websockets": "17.4"}))
    proc = mtls_matrix("merge", a, b, "--out", str(tmp_path / "m.json"))
    assert proc.returncode == 2 and "shards ran different versions of tornado: 6.6.1" in proc.stderr


def test_merge_of_a_missing_shard_exits_2(tmp_path):
    a = save(tmp_path, "a.json", results(cell("client-expired")))
    proc = mtls_matrix("merge", a, str(tmp_path / "nope.json"), "--out", str(tmp_path / "m.json"))
    assert proc.returncode == 2 and "nope.json: no such results file" in proc.stderr
    assert not (tmp_path / "m.json").exists()


SLICE = ("--clients", "websockets[ssl=context]", "--scenarios", "mtls-ok,client-expired,server-wrong-host", "-n", "0")


def test_shards_by_server_merge_into_the_unsharded_run(run_matrix, tmp_path):
    """What the nightly workflow does: one shard per server peer, then merge."""
    whole, proc = run_matrix("--servers", "websockets,tornado", *SLICE, out=tmp_path / "whole")
    assert proc.returncode == 0, proc.stderr
    shards = []
    for server in ("websockets", "tornado"):
        _, proc = run_matrix("--servers", server, *SLICE, out=tmp_path / f"shard-{server}")
        assert proc.returncode == 0, proc.stderr
        shards.append(str(tmp_path / f"shard-{server}" / "results.json"))
    out = tmp_path / "merged" / "results.json"
    proc = mtls_matrix("merge", *shards, "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    merged = Results.load(out)
    assert [c.id for c in merged.cells] == [c.id for c in whole.cells] and len(whole.cells) == 6
    assert verdicts(merged) == verdicts(whole)
    assert merged.run.complete and len(merged.run.ca_fingerprints) == 2
    assert merged.run.versions == whole.run.versions
    # and diff agrees the verdicts are the same run's
    proc = mtls_matrix("diff", str(tmp_path / "whole" / "results.json"), str(out), "--fields", "verdict")
    assert proc.returncode == 0, proc.stdout
    assert json.loads(out.read_text())["schema_version"] == 2
