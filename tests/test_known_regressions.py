"""Recall on known regressions: the version axis shows each public TLS regression of
matrix/regressions.toml as a verdict that flips on its cell between the buggy and the fixed release (or,
for a change a release introduced, between the release before it and that release).

Marked slow: each pair runs `mtls-matrix versions` in two cached venvs (installed from PyPI the first
time, reused from $MTLS_MATRIX_CACHE after)."""

from __future__ import annotations

import tomllib

import pytest

from mtls_matrix.selection import build_selection
from mtls_matrix.results import Results
from mtls_matrix.versions import parse_spec
from tests.conftest import REPO, mtls_matrix

CATALOGUE = tomllib.loads((REPO / "matrix" / "regressions.toml").read_text())
REGRESSIONS = CATALOGUE["regression"]


def _spec(entry: dict, version: str) -> str:
    return "+".join([f"{entry['library']}=={version}", *([entry["pins"]] if entry.get("pins") else [])])


def _id(entry: dict) -> str:
    return f"{entry['library']}-{entry['earlier']}-{entry['client']}-{entry['scenario']}"


def test_the_catalogue_names_real_cells_specs_and_links():
    cells = {spec.id for spec in build_selection().cells}
    for entry in REGRESSIONS:
        assert f"{entry['server']}-{entry['client']}-{entry['scenario']}" in cells, _id(entry)
        for version in (entry["earlier"], entry["later"]):
            parse_spec(_spec(entry, version))  # raises on a malformed pin
        assert entry["before"] != entry["after"] and entry["upstream"].startswith("https://"), _id(entry)
        assert entry["kind"] in ("fixed", "introduced"), _id(entry)
    for entry in CATALOGUE["not_covered"]:
        assert entry["why"] and entry["upstream"].startswith("https://"), entry["what"]


def test_at_least_six_distinct_fixed_regressions_across_libraries():
    assert len({(e["library"], e["earlier"], e["client"]) for e in REGRESSIONS if e["kind"] == "fixed"}) >= 6
    assert {e["library"] for e in REGRESSIONS} >= {"tornado", "websocket-client", "python-engineio"}


@pytest.mark.slow
@pytest.mark.parametrize("entry", REGRESSIONS, ids=_id)
def test_the_verdict_flips_between_the_two_releases(tmp_path, entry):
    earlier, later = _spec(entry, entry["earlier"]), _spec(entry, entry["later"])
    proc = mtls_matrix("versions", earlier, later, "--out", str(tmp_path), "--servers", entry["server"],
                       "--clients", entry["client"], "--scenarios", entry["scenario"], "--profile", "default",
                       timeout=1200)
    assert proc.returncode == 0, proc.stderr[-3000:]
    combined = Results.load(tmp_path / "results.json")
    seen = {cell.environment: cell.verdict.value for cell in combined.cells}
    assert seen == {parse_spec(earlier).name: entry["before"], parse_spec(later).name: entry["after"]}, \
        f"{entry['what']} ({entry['upstream']})"
