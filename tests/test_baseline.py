"""The baseline of known issues: classification on hand-built results, the CLI's input checks and
--update, and `run --baseline` end to end on a tiny real slice."""

from __future__ import annotations

import json

import pytest

from mtls_matrix import baseline, findings, knowledge
from mtls_matrix.reports import bugs
from tests.conftest import REPO, mtls_matrix
from tests.hand_built import INSECURE, TOO_BIG, cell, grid, results

CN_ONLY = '''
[[entry]]
cells = "*-server-cn-only"
verdict = "INSECURE"
reason = "CN fallback"
upstream = "https://example.org/cn"
'''
TOO_BIG_ENTRY = '''
[[entry]]
cells = "alpha-one?a=1?-io-16mib"
verdict = "FAIL"
canonical = "MESSAGE_TOO_BIG"
reason = "default limit"
'''


def write(tmp_path, text: str, name: str = "baseline.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def insecure_everywhere():
    return grid("server-cn-only", {(s, c): INSECURE for s in ("server:alpha", "server:beta")
                                   for c in ("client:one[a=1]", "client:one[b=2]", "client:two[x=1]")})


# --------------------------------------------------------------------------- classification

def test_matching_cells_are_known_and_carry_the_reason(tmp_path):
    run = results(*insecure_everywhere(), *grid("mtls-ok"))
    found = baseline.classify(run, baseline.load(write(tmp_path, CN_ONLY)), full_run=False)
    assert (len(found.known), found.new, found.stale, found.exit_code) == (6, [], [], 0)
    known = [c for c in run.cells if c.scenario == "server-cn-only"]
    assert {(c.baseline, c.baseline_reason, c.upstream) for c in known} == {("KNOWN", "CN fallback",
                                                                            "https://example.org/cn")}
    assert {c.baseline for c in run.cells if c.scenario == "mtls-ok"} == {None}  # PASS is no finding
    assert run.baseline.counts == {"KNOWN": 6, "NEW": 0, "XPASS": 0}


def test_unlisted_finding_and_wrong_canonical_are_new(tmp_path):
    wrong = dict(TOO_BIG, error=TOO_BIG["error"].model_copy(update={"canonical": "EOF"}))
    run = results(*insecure_everywhere(),
                  cell("server:alpha", "client:one[a=1]", "io-16mib", **wrong))  # entry says MESSAGE_TOO_BIG
    found = baseline.classify(run, baseline.load(write(tmp_path, TOO_BIG_ENTRY)), full_run=False)
    assert sorted(c.scenario for c in found.new) == ["io-16mib"] + ["server-cn-only"] * 6
    assert found.known == [] and found.exit_code == 1
    assert "NEW    alpha-one[a=1]-io-16mib: FAIL at io (EOF)" in baseline.render_check(found, "r.json")


def test_brackets_in_ids_are_literal(tmp_path):
    """`[a=1]` in a pattern is not a character class: only the listed variant is known."""
    text = TOO_BIG_ENTRY.replace("alpha-one?a=1?-io-16mib", "alpha-one[a=1]-io-16mib")
    run = results(cell("server:alpha", "client:one[a=1]", "io-16mib", **TOO_BIG),
                  cell("server:alpha", "client:one[b=2]", "io-16mib", **TOO_BIG))
    found = baseline.classify(run, baseline.load(write(tmp_path, text)), full_run=False)
    assert [c.client for c in found.known] == ["client:one[a=1]"]
    assert [c.client for c in found.new] == ["client:one[b=2]"]


def test_entry_whose_cells_all_pass_is_stale(tmp_path):
    run = results(*grid("server-cn-only"), *grid("mtls-ok"))
    found = baseline.classify(run, baseline.load(write(tmp_path, CN_ONLY)), full_run=False)
    assert [(e.number, why) for e, why in found.stale] == [(1, "its 6 cells all PASS now")]
    assert found.exit_code == 1
    assert run.baseline.counts["XPASS"] == 1 and run.baseline.stale[0].cells == ["*-server-cn-only"]


def test_entry_one_failing_cell_still_holds(tmp_path):
    cells = grid("server-cn-only", {("server:alpha", "client:two[x=1]"): INSECURE})
    found = baseline.classify(results(*cells), baseline.load(write(tmp_path, CN_ONLY)), full_run=False)
    assert (len(found.known), found.stale) == (1, [])


def test_entry_matching_no_cell_is_stale_only_after_a_full_run(tmp_path):
    base = baseline.load(write(tmp_path, CN_ONLY))
    sliced = baseline.classify(results(*grid("mtls-ok")), base, full_run=False)
    assert (sliced.stale, [e.number for e in sliced.not_run], sliced.exit_code) == ([], [1], 0)
    full = baseline.classify(results(*grid("mtls-ok")), base, full_run=True)
    assert "matches no cell" in full.stale[0][1] and full.exit_code == 1


def test_the_reviewed_baseline_is_valid():
    """matrix/baseline.toml loads: every entry has a verdict a known issue can have and a reason."""
    base = baseline.load(REPO / "matrix" / "baseline.toml")
    assert all(e.reason.strip() and e.verdict in baseline.VERDICTS for e in base.entries)
    assert len(base.entries) >= 6


# --------------------------------------------------------------------------- bad input

@pytest.mark.parametrize("text, says", [
    ("[[entry]\n", "not a valid TOML baseline"),
    ('[[entry]]\ncells = "*"\nverdict = "INSECURE"\n', "entry 1: missing mechanism"),
    ('[[entry]]\ncells = "*"\nverdict = "INSECURE"\nmechanism = "nope"\n',
     "entry 1: mechanism 'nope' is not defined"),
    (CN_ONLY + '[[entry]]\ncells = "*"\nverdict = "BROKEN"\nreason = "x"\n',
     "entry 2: verdict 'BROKEN' is not one of INSECURE, FAIL, HANG"),
    ('[[entry]]\ncells = "*"\nverdict = "ERROR"\nreason = "x"\n', "is not one of INSECURE, FAIL, HANG"),
    ('[[entry]]\ncells = []\nverdict = "FAIL"\nreason = "x"\n', "entry 1: cells must be a non-empty glob"),
    ('[[entry]]\ncells = "*"\nverdict = "FAIL"\nreason = "x"\nwhy = "y"\n',
     "entry 1: unknown key why; valid keys: cells, verdict, canonical, mechanism, reason, upstream"),
    ('[[entry]]\ncells = "*"\nverdict = "FAIL"\nreason = "x"\nupstream = "tornado#2994"\n',
     "entry 1: upstream 'tornado#2994' is not an http(s) link"),
    ('title = "x"\n', "unknown top-level key title"),
])
def test_malformed_baseline_is_exit_2_naming_the_problem_and_writes_nothing(tmp_path, text, says):
    path = write(tmp_path, text)
    out = tmp_path / "out"
    proc = mtls_matrix("run", "--out", str(out), "--baseline", str(path), "--servers", "websockets",
                       "--clients", "websockets[ssl=context]", "--scenarios", "mtls-ok", "-n", "0")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert str(path) in proc.stderr and says in proc.stderr
    assert not out.exists()


def test_check_with_missing_files_is_exit_2(tmp_path):
    proc = mtls_matrix("baseline", "--check", str(tmp_path / "none.json"), "--baseline", str(write(tmp_path, CN_ONLY)))
    assert proc.returncode == 2 and "no such results file" in proc.stderr
    proc = mtls_matrix("baseline", "--check", str(tmp_path / "none.json"), "--baseline", str(tmp_path / "no.toml"))
    assert proc.returncode == 2 and "no such baseline file" in proc.stderr


# --------------------------------------------------------------------------- --check and --update

def saved(tmp_path, run) -> str:
    path = tmp_path / "results.json"
    run.save(path)
    return str(path)


def test_update_proposes_new_and_drops_stale_without_touching_the_reviewed_file(tmp_path):
    reviewed = write(tmp_path, "# reviewed by hand\n" + CN_ONLY + "\n# the limit\n" + TOO_BIG_ENTRY)
    before = reviewed.read_text()
    run = results(*grid("server-cn-only"),  # entry 1 is stale: all PASS
                  cell("server:alpha", "client:one[a=1]", "io-16mib", **TOO_BIG),
                  *grid("server-wrong-host", {("server:beta", "client:two[x=1]"): INSECURE}))
    proc = mtls_matrix("baseline", "--update", saved(tmp_path, run), "--baseline", str(reviewed))
    assert proc.returncode == 0, proc.stderr
    assert reviewed.read_text() == before
    proposed = (tmp_path / "baseline.proposed.toml").read_text()
    assert "*-server-cn-only" not in proposed and "# reviewed by hand" in proposed and "# the limit" in proposed
    assert 'cells = ["beta-two[x=1]-server-wrong-host"]' in proposed and 'reason = "TODO: review"' in proposed
    assert "-cells = \"*-server-cn-only\"" in proc.stdout and "+verdict = \"INSECURE\"" in proc.stdout
    entries = baseline.load(tmp_path / "baseline.proposed.toml").entries  # the proposal is itself valid
    assert [e.cells for e in entries] == [("alpha-one?a=1?-io-16mib",), ("beta-two[x=1]-server-wrong-host",)]


def test_update_groups_a_whole_scenario_into_one_pattern(tmp_path):
    run = results(*insecure_everywhere())
    found = baseline.classify(run, baseline.load(write(tmp_path, "")), full_run=False)
    proposed = baseline.propose(found, run)
    assert 'cells = ["*-server-cn-only"]' in proposed and proposed.count("[[entry]]") == 1


def test_check_exit_codes(tmp_path):
    base = str(write(tmp_path, CN_ONLY))
    known = mtls_matrix("baseline", "--check", saved(tmp_path, results(*insecure_everywhere())), "--baseline", base)
    assert known.returncode == 0 and "6 KNOWN, 0 NEW, 0 XPASS" in known.stdout
    stale = mtls_matrix("baseline", "--check", saved(tmp_path, results(*grid("server-cn-only"))), "--baseline", base)
    assert stale.returncode == 1 and "XPASS  entry 1 (*-server-cn-only)" in stale.stdout


def test_bugs_md_shows_the_baseline_reason(tmp_path):
    run = results(*insecure_everywhere(), cell("server:alpha", "client:one[a=1]", "io-16mib", **TOO_BIG))
    baseline.classify(run, baseline.load(write(tmp_path, CN_ONLY)), full_run=False)
    text = bugs.render(findings.analyse(run))
    cn = text.split("### F-known-cn-fallback")[1].split("\n### ")[0]
    assert "· KNOWN" in cn and "**Why:** CN fallback" in cn
    assert "· NEW" in text.split("### F-alpha-one-io-16mib-fail-message-too-big")[1].split("\n### ")[0]


MECHANISMS = '''
[[mechanism]]
id = "cn-fallback"
title = "The CN is matched without a SAN"
reason = "CPython falls back to the CN"
links = [{ url = "https://example.org/cn", status = "documented" }]
'''


def test_an_entry_names_its_mechanism_which_gives_the_reason_and_the_finding(tmp_path):
    write(tmp_path, MECHANISMS, "mechanisms.toml")
    entry = '[[entry]]\ncells = "*-server-cn-only"\nverdict = "INSECURE"\nmechanism = "cn-fallback"\n'
    run = results(*insecure_everywhere())
    baseline.classify(run, baseline.load(write(tmp_path, entry)), full_run=False)
    assert {(c.mechanism, c.baseline_reason, c.upstream) for c in run.cells} == {
        ("cn-fallback", "CPython falls back to the CN", "https://example.org/cn")}
    [finding] = findings.analyse(run, knowledge.load(tmp_path)).findings
    assert (finding.id, finding.title) == ("F-cn-fallback", "The CN is matched without a SAN")


def test_the_repositorys_baseline_names_only_known_mechanisms():
    loaded = baseline.load(REPO / "matrix" / "baseline.toml")
    ids = {m.id for m in knowledge.load(REPO / "matrix").mechanisms}
    assert loaded.entries and all(e.mechanism in ids for e in loaded.entries)


# --------------------------------------------------------------------------- end to end, real TLS

SLICE = ("--servers", "websockets", "--clients", "websockets[ssl=context]", "--scenarios", "server-cn-only,mtls-ok", "-n", "0")


@pytest.mark.parametrize("text, code, counts", [
    (CN_ONLY, 0, {"KNOWN": 1, "NEW": 0, "XPASS": 0}),
    ("", 1, {"KNOWN": 0, "NEW": 1, "XPASS": 0}),  # server-cn-only is INSECURE: NEW
    (CN_ONLY + '[[entry]]\ncells = "*-mtls-ok"\nverdict = "FAIL"\nreason = "x"\n', 1,
     {"KNOWN": 1, "NEW": 0, "XPASS": 1}),  # mtls-ok passes: the entry is stale
])
def test_run_with_baseline_exit_codes(tmp_path, run_matrix, text, code, counts):
    loaded, proc = run_matrix("--baseline", str(write(tmp_path, text)), *SLICE)
    assert proc.returncode == code, proc.stdout + proc.stderr
    assert loaded.baseline.counts == counts
    cn_only = next(c for c in loaded.cells if c.scenario == "server-cn-only")
    assert cn_only.verdict.value == "INSECURE" and cn_only.baseline == ("KNOWN" if counts["KNOWN"] else "NEW")
    assert json.loads((tmp_path / "out" / "results.json").read_text())["baseline"]["counts"] == counts
