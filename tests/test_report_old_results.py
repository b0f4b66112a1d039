"""`mtls-matrix report` renders a results.json written before a scenario was renamed or dropped from
the catalogue: from what the file recorded, without loading today's catalogue, peers or runner."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import REPO

RENAMED, DESCRIPTION = "client-expired-long-ago", "the client certificate expired long ago (as this old run named it)"
GONE = "mtls-retired"  # a scenario today's catalogue never had
RUNTIME = ("mtls_matrix.scenarios", "mtls_matrix.peers", "mtls_matrix.cell")


@pytest.fixture(scope="module")
def old_results(tmp_path_factory):
    """A real run, rewritten as an older tree would have written it: client-expired under another name
    and description (one of its cells an INSECURE finding, so BUGS.md names it), and a cell of a scenario
    that no longer exists."""
    out = tmp_path_factory.mktemp("old")
    proc = subprocess.run([sys.executable, "-m", "mtls_matrix.cli", "run", "--servers", "websockets", "--clients",
                           "websockets", "--scenarios", "mtls-ok,client-expired", "--out", str(out)],
                          capture_output=True, text=True, timeout=300, cwd=REPO)
    assert (out / "results.json").exists(), proc.stdout + proc.stderr
    data = json.loads((out / "results.json").read_text())
    for info in data["run"]["scenarios"]:
        if info["name"] == "client-expired":
            info["name"], info["description"] = RENAMED, DESCRIPTION
    renamed = [c for c in data["cells"] if c["scenario"] == "client-expired"]
    assert renamed, [c["id"] for c in data["cells"]]
    for cell in renamed:
        cell["id"], cell["scenario"] = cell["id"].replace("client-expired", RENAMED), RENAMED
    renamed[0] |= {"verdict": "INSECURE", "severity": "critical", "phase": "io", "rejection": None,
                   "reason": "accepted (the handler ran) although the server must reject with CERT_EXPIRED"}
    gone = json.loads(json.dumps(next(c for c in data["cells"] if c["scenario"] == "mtls-ok")))
    gone["id"], gone["scenario"] = gone["id"].replace("mtls-ok", GONE), GONE
    data["cells"].append(gone)
    (out / "results.json").write_text(json.dumps(data))
    return out


def _report(results, tmp_path) -> tuple[subprocess.CompletedProcess, list[str]]:
    """`mtls-matrix report` on RESULTS with every output, and the mtls_matrix modules it imported."""
    proc = subprocess.run([sys.executable, str(REPO / "tests" / "command_imports.py"), "report", str(results),
                           "--out", str(tmp_path / "BUGS.md"), "--html", str(tmp_path / "report.html"),
                           "--svg", str(tmp_path / "heatmap.svg")],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    return proc, json.loads(proc.stdout.strip().splitlines()[-1])


def test_an_old_results_file_renders_with_the_names_and_descriptions_it_recorded(old_results, tmp_path):
    _report(old_results / "results.json", tmp_path)
    bugs = (tmp_path / "BUGS.md").read_text()
    assert f"{RENAMED} ({DESCRIPTION})" in bugs  # the finding names the scenario as the run knew it
    assert (tmp_path / "report.html").stat().st_size and (tmp_path / "heatmap.svg").stat().st_size


def test_rendering_an_old_results_file_loads_no_catalogue_peer_or_runner(old_results, tmp_path):
    _, imported = _report(old_results / "results.json", tmp_path)
    loaded = [m for m in imported if any(m == r or m.startswith(f"{r}.") for r in RUNTIME)]
    assert not loaded, loaded
