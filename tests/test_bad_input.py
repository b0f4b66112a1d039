"""Bad input, every verb: one line on stderr naming the file or option and what is wrong with it,
exit 2, and nothing written (no output file, no directory, nothing changed beside the inputs)."""

from __future__ import annotations

import os

import pytest

from mtls_matrix.results import Cell, ErrorInfo, Results, Run, Verdict
from tests.conftest import mtls_matrix

DEEP = 200_000  # nesting levels: deeper than any recursive parser goes


def _results(started: str = "2026-11-23T11:00:00+00:00", finished: str = "2026-11-23T11:01:00+00:00",
             server: str = "tornado") -> str:
    cell = Cell(id=f"{server}-websockets[ssl=context]-client-expired", server=f"server:{server}",
                client="client:websockets[ssl=context]", scenario="client-expired", group="client-rejected",
                profile="default", expectation="server rejects", verdict=Verdict.FAIL, phase="upgrade",
                error=ErrorInfo(canonical="EOF"), repro="mtls-matrix run ...")
    run = Run(started=started, finished=finished, python="3.11.7", openssl="OpenSSL 3.0.19", platform="Linux",
              versions={"tornado": "6.6.1", "websockets": "17.4"}, ca_fingerprint="aa", deadline_s=5.0,
              profiles=["default"])
    return Results(run=run, cells=[cell]).model_dump_json()


# The inputs a row may name, made fresh in each test's directory: name -> content (None: a directory).
INPUTS: dict[str, str | bytes | None] = {
    "good.json": _results(),
    "aiohttp.json": _results(server="aiohttp"),
    "yesterday.json": _results(started="yesterday", server="aiohttp"),
    "naive.json": _results(started="2026-11-23T10:59:00", finished="2026-11-23T11:02:00", server="aiohttp"),
    "dir.json": None,
    "binary.json": bytes(range(256)) * 4,
    "deep.json": "[" * DEEP + "]" * DEEP,
    "deep-object.json": '{"run": ' + "[" * DEEP + "]" * DEEP + "}",
    "a-file": "not a directory\n",
    "list.toml": "entry = [1, 2]\n",
    "strings.toml": 'entry = ["x"]\n',
    "deep.toml": "entry = " + "[" * DEEP + "]" * DEEP + "\n",
    "binary.toml": bytes(range(256)),
    "dir.toml": None,
    "review/baseline.toml": "",
    "review/baseline.proposed.toml": None,  # where --update writes its proposal: a directory
}

CELL = "aiohttp-websockets[ssl=context]-mtls-ok"

# (verb and case, argv with {tmp} for the test's directory, what the one line must say)
ROWS = [
    # run: numbers finite and bounded, outputs checked before anything runs
    ("run --deadline inf", ["run", "--out", "{tmp}/out", "--deadline", "inf"], "argument --deadline: inf is out of range"),
    ("run --deadline nan", ["run", "--out", "{tmp}/out", "--deadline", "nan"], "argument --deadline: nan is out of range"),
    ("run --deadline 1e300", ["run", "--out", "{tmp}/out", "--deadline", "1e300"], "argument --deadline: 1e300 is out of range"),
    ("run --deadline -1", ["run", "--out", "{tmp}/out", "--deadline", "-1"], "argument --deadline: -1 is out of range"),
    ("run --deadline 0", ["run", "--out", "{tmp}/out", "--deadline", "0"], "argument --deadline: 0 is out of range"),
    ("run --deadline text", ["run", "--out", "{tmp}/out", "--deadline", "soon"], "'soon' is not a number of seconds"),
    ("run --repeat 0", ["run", "--out", "{tmp}/out", "--repeat", "0"], "--repeat must be a whole number of runs, at least 1"),
    ("run --repeat huge", ["run", "--out", "{tmp}/out", "--repeat", "1000000"], "--repeat must be at most 1000 runs"),
    ("run --confirm -1", ["run", "--out", "{tmp}/out", "--confirm", "-1"], "--confirm must be a whole number of extra runs"),
    ("run --confirm 2.5", ["run", "--out", "{tmp}/out", "--confirm", "2.5"], "argument --confirm: invalid int value: '2.5'"),
    ("run -n many", ["run", "--out", "{tmp}/out", "-n", "many"], "argument -n/--workers: 'many' is not auto"),
    ("run --out a file", ["run", "--out", "{tmp}/a-file"], "argument --out: {tmp}/a-file: exists and is not a directory"),
    ("run --out under a file", ["run", "--out", "{tmp}/a-file/out"], "{tmp}/a-file is not a directory"),
    ("run --html a directory", ["run", "--out", "{tmp}/out", "--html", "{tmp}/dir.json"],
     "argument --html: {tmp}/dir.json: is a directory"),
    ("run --bugs under a file", ["run", "--out", "{tmp}/out", "--bugs", "{tmp}/a-file/BUGS.md"],
     "argument --bugs: {tmp}/a-file/BUGS.md: {tmp}/a-file is not a directory"),
    ("run two reports, one file", ["run", "--out", "{tmp}/out", "--bugs", "{tmp}/r", "--html", "{tmp}/r"],
     "two reports would be written to the same file"),
    ("run --servers unknown", ["run", "--out", "{tmp}/out", "--servers", "nope"], "unknown server peer 'nope'"),
    ("run --profile unknown", ["run", "--out", "{tmp}/out", "--profile", "fast"], "unknown profile fast; valid: default"),
    ("run --baseline a directory", ["run", "--out", "{tmp}/out", "--baseline", "{tmp}/dir.toml"],
     "{tmp}/dir.toml: is a directory, not a baseline file"),
    ("run --baseline entry not a table", ["run", "--out", "{tmp}/out", "--baseline", "{tmp}/list.toml"],
     "{tmp}/list.toml: entry 1: 1 is not a table"),
    ("run --baseline deep TOML", ["run", "--out", "{tmp}/out", "--baseline", "{tmp}/deep.toml"],
     "{tmp}/deep.toml: not a valid TOML baseline: nested too deeply"),
    # report: inputs of any shape, outputs refused before anything is written
    ("report a directory", ["report", "{tmp}/dir.json", "--out", "{tmp}/BUGS.md"], "{tmp}/dir.json: is a directory"),
    ("report a binary file", ["report", "{tmp}/binary.json", "--out", "{tmp}/BUGS.md"],
     "{tmp}/binary.json: not a results file: binary content"),
    ("report 200k-deep JSON", ["report", "{tmp}/deep.json", "--out", "{tmp}/BUGS.md"],
     "{tmp}/deep.json: not a valid mtls-matrix results file"),
    ("report --html a directory", ["report", "{tmp}/good.json", "--out", "{tmp}/BUGS.md", "--svg", "{tmp}/h.svg",
                                   "--html", "{tmp}/dir.json"], "argument --html: {tmp}/dir.json: is a directory"),
    ("report --out under a file", ["report", "{tmp}/good.json", "--out", "{tmp}/a-file/BUGS.md"],
     "argument --out: {tmp}/a-file/BUGS.md: {tmp}/a-file is not a directory"),
    ("report a missing file", ["report", "{tmp}/missing.json", "--out", "{tmp}/BUGS.md"],
     "{tmp}/missing.json: no such results file"),
    # list, schema, the verbs themselves
    ("list --peer-plugin unknown", ["list", "--peer-plugin", "no.such.module"], "cannot import peer plugin 'no.such.module'"),
    ("schema with an argument", ["schema", "extra"], "unrecognized arguments: extra"),
    ("no verb", [], "the following arguments are required: command"),
    ("unknown verb", ["frobnicate"], "invalid choice: 'frobnicate'"),
    # baseline
    ("baseline --check a directory", ["baseline", "--check", "{tmp}/dir.json", "--baseline", "{tmp}/review/baseline.toml"],
     "{tmp}/dir.json: is a directory"),
    ("baseline --check binary", ["baseline", "--check", "{tmp}/binary.json", "--baseline", "{tmp}/review/baseline.toml"],
     "{tmp}/binary.json: not a results file: binary content"),
    ("baseline --check 200k-deep JSON", ["baseline", "--check", "{tmp}/deep-object.json",
                                         "--baseline", "{tmp}/review/baseline.toml"],
     "{tmp}/deep-object.json: not a valid mtls-matrix results file"),
    ("baseline entry a string", ["baseline", "--check", "{tmp}/good.json", "--baseline", "{tmp}/strings.toml"],
     "{tmp}/strings.toml: entry 1: 'x' is not a table"),
    ("baseline binary TOML", ["baseline", "--check", "{tmp}/good.json", "--baseline", "{tmp}/binary.toml"],
     "{tmp}/binary.toml: not a baseline file: binary content"),
    ("baseline --update, proposal a directory", ["baseline", "--update", "{tmp}/good.json",
                                                 "--baseline", "{tmp}/review/baseline.toml"],
     "{tmp}/review/baseline.proposed.toml: is a directory"),
    ("baseline without an action", ["baseline"], "one of the arguments --check --update is required"),
    # diff
    ("diff a directory", ["diff", "{tmp}/good.json", "{tmp}/dir.json"], "{tmp}/dir.json: is a directory"),
    ("diff 200k-deep JSON", ["diff", "{tmp}/deep.json", "{tmp}/good.json"], "{tmp}/deep.json: not a valid mtls-matrix"),
    ("diff --fields unknown", ["diff", "{tmp}/good.json", "{tmp}/good.json", "--fields", "clarity"],
     "unknown field clarity for --fields; valid: verdict, phase, canonical"),
    # merge
    ("merge started yesterday", ["merge", "{tmp}/good.json", "{tmp}/yesterday.json", "--out", "{tmp}/m.json"],
     "{tmp}/yesterday.json: run.started 'yesterday' is not an ISO 8601 time"),
    ("merge naive and aware times", ["merge", "{tmp}/good.json", "{tmp}/naive.json", "--out", "{tmp}/m.json"],
     "run.started of {tmp}/naive.json, run.finished of {tmp}/naive.json has no UTC offset"),
    ("merge --out a directory", ["merge", "{tmp}/good.json", "{tmp}/aiohttp.json", "--out", "{tmp}/dir.json"],
     "argument --out: {tmp}/dir.json: is a directory"),
    ("merge --out under a file", ["merge", "{tmp}/good.json", "{tmp}/aiohttp.json", "--out", "{tmp}/a-file/m.json"],
     "argument --out: {tmp}/a-file/m.json: {tmp}/a-file is not a directory"),
    ("merge a binary shard", ["merge", "{tmp}/good.json", "{tmp}/binary.json", "--out", "{tmp}/m.json"],
     "{tmp}/binary.json: not a results file: binary content"),
    # versions, bisect: refused before any venv is built or release listed
    ("versions a spec without a version", ["versions", "aiohttp", "--out", "{tmp}/v"], "bad version spec 'aiohttp'"),
    ("versions --deadline nan", ["versions", "aiohttp==3.9.1", "--out", "{tmp}/v", "--deadline", "nan"],
     "argument --deadline: nan is out of range"),
    ("versions --out a file", ["versions", "aiohttp==3.9.1", "--out", "{tmp}/a-file"],
     "argument --out: {tmp}/a-file: exists and is not a directory"),
    ("bisect an unknown cell", ["bisect", "aiohttp", "3.9.0", "3.10.0", "--cell", "no-such-cell", "--out", "{tmp}/b"],
     "unknown cell id 'no-such-cell'"),
    ("bisect --deadline inf", ["bisect", "aiohttp", "3.9.0", "3.10.0", "--cell", CELL, "--deadline", "inf"],
     "argument --deadline: inf is out of range"),
    # repro: the deadline goes into the generated script
    ("repro --deadline nan", ["repro", CELL, "--out", "{tmp}/r", "--deadline", "nan"], "argument --deadline: nan is out of range"),
    ("repro --deadline 0", ["repro", CELL, "--out", "{tmp}/r", "--deadline", "0"], "argument --deadline: 0 is out of range"),
    ("repro --deadline -1", ["repro", CELL, "--out", "{tmp}/r", "--deadline", "-1"], "argument --deadline: -1 is out of range"),
    ("repro --out a file", ["repro", CELL, "--out", "{tmp}/a-file"], "argument --out: {tmp}/a-file: exists and is not a directory"),
    ("repro --results a directory", ["repro", CELL, "--out", "{tmp}/r", "--results", "{tmp}/dir.json"],
     "{tmp}/dir.json: is a directory"),
    ("repro an unknown cell", ["repro", "no-such-cell", "--out", "{tmp}/r"], "unknown cell 'no-such-cell'"),
    # setup-foreign
    ("setup-foreign --only unknown", ["setup-foreign", "--only", "cobol"], "unknown stack cobol; valid: "),
]


def _make_inputs(root) -> None:
    for name, content in INPUTS.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if content is None:
            path.mkdir()
        elif isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)


def _tree(root) -> dict[str, tuple]:
    """Every path under root with its size and modification time: what 'nothing written' compares."""
    found = {}
    for top, dirs, files in os.walk(root):
        for name in dirs + files:
            stat = os.stat(os.path.join(top, name))
            found[os.path.relpath(os.path.join(top, name), root)] = (stat.st_size, stat.st_mtime_ns)
    return found


def test_the_table_is_large_and_covers_every_verb():
    verbs = {argv[0] for _, argv, _ in ROWS if argv}
    assert len(ROWS) >= 30
    assert verbs >= {"run", "report", "list", "baseline", "diff", "merge", "versions", "bisect", "repro",
                     "setup-foreign", "schema"}


@pytest.mark.parametrize("argv, says", [row[1:] for row in ROWS], ids=[row[0] for row in ROWS])
def test_bad_input_is_one_line_exit_2_and_nothing_written(tmp_path, argv, says):
    _make_inputs(tmp_path)
    before = _tree(tmp_path)
    proc = mtls_matrix(*[arg.replace("{tmp}", str(tmp_path)) for arg in argv], timeout=120)
    assert proc.returncode == 2, f"exit {proc.returncode}\nstdout: {proc.stdout}\nstderr: {proc.stderr}"
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("mtls-matrix") and "error: " in lines[0], lines[0]
    assert says.replace("{tmp}", str(tmp_path)) in lines[0]
    assert proc.stdout == ""
    assert _tree(tmp_path) == before  # nothing written, created or touched


def test_baseline_update_on_an_id_without_its_scenarios_name_proposes_the_exact_id(tmp_path):
    """A hand-made results file whose cell id does not contain its scenario: no pattern can be
    derived from the id, so the proposal names the cell itself."""
    results = Results.model_validate_json(_results())
    results.cells[0].id = "renamed-cell"
    (tmp_path / "r.json").write_text(results.model_dump_json())
    (tmp_path / "baseline.toml").write_text("")
    proc = mtls_matrix("baseline", "--update", str(tmp_path / "r.json"), "--baseline", str(tmp_path / "baseline.toml"))
    assert proc.returncode == 0, proc.stderr
    assert 'cells = ["renamed-cell"]' in (tmp_path / "baseline.proposed.toml").read_text()
