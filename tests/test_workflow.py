"""The nightly workflow (.github/workflows/nightly.yml) is valid and shards every server peer."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from mtls_matrix.peers import Registry
from tests.conftest import REPO

WORKFLOW = REPO / ".github" / "workflows" / "nightly.yml"


def actionlint() -> str:
    """The binary the `test` extra installs beside this interpreter (or anywhere on PATH). Missing
    is a failure, not a skip: a skipped lint would let a broken workflow land."""
    found = shutil.which("actionlint", path=str(Path(sys.executable).parent)) or shutil.which("actionlint")
    assert found, "actionlint not found: pip install -e '.[test]'"
    return found


def test_actionlint_finds_nothing():
    proc = subprocess.run([actionlint(), "-oneline", "-no-color", str(WORKFLOW)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"actionlint findings:\n{proc.stdout}{proc.stderr}"


def test_actionlint_does_fail_on_a_broken_workflow(tmp_path):
    """Guards the test above: an undefined matrix key must be reported."""
    broken = tmp_path / "nightly.yml"
    broken.write_text(WORKFLOW.read_text().replace("${{ matrix.server }}", "${{ matrix.sever }}", 1))
    proc = subprocess.run([actionlint(), "-oneline", "-no-color", str(broken)], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 1 and "sever" in proc.stdout


def test_the_shards_are_exactly_the_registry_server_peers():
    """A new server peer cannot be forgotten by the nightly run (nor a removed one linger)."""
    shards = yaml.safe_load(WORKFLOW.read_text())["jobs"]["shard"]["strategy"]["matrix"]["server"]
    registry = Registry([])
    # The project's own peers; a third-party plugin installed on a developer's machine is not ours to shard.
    servers = [name for name in registry.servers if registry.sources[name].startswith("mtls_matrix.")]
    assert shards == servers


def test_the_workflow_runs_nightly_and_on_demand_and_gates_on_the_baseline():
    workflow = yaml.safe_load(WORKFLOW.read_text())
    triggers = workflow[True]  # YAML 1.1 reads the bare key `on` as the boolean true
    assert "workflow_dispatch" in triggers and triggers["schedule"][0]["cron"]
    steps = [s.get("run", "") for job in workflow["jobs"].values() for s in job.get("steps", [])]
    assert any(s.startswith("mtls-matrix run --servers \"$SERVER\" --out shard") for s in steps)
    assert any(s.startswith("mtls-matrix merge ") for s in steps)
    assert any(s.startswith("mtls-matrix baseline --check ") for s in steps)
