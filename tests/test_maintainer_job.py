"""The workflow a library repository copies (docs/maintainer-job.yml) is valid and gates on a change."""

from __future__ import annotations

import subprocess

import yaml

from tests.conftest import REPO
from tests.test_workflow import actionlint

JOB = REPO / "docs" / "maintainer-job.yml"


def lint(path) -> subprocess.CompletedProcess:
    return subprocess.run([actionlint(), "-oneline", "-no-color", str(path)], capture_output=True, text=True,
                          timeout=120)


def test_actionlint_finds_nothing():
    proc = lint(JOB)
    assert proc.returncode == 0, f"actionlint findings:\n{proc.stdout}{proc.stderr}"


def test_actionlint_does_fail_on_a_broken_job(tmp_path):
    broken = tmp_path / "mtls-matrix.yml"
    broken.write_text(JOB.read_text().replace("${{ runner.temp }}", "${{ runner.tmp }}", 1))
    proc = lint(broken)
    assert proc.returncode == 1 and "tmp" in proc.stdout


def test_the_job_runs_the_last_release_against_the_checked_out_tree_and_fails_on_a_change():
    job = yaml.safe_load(JOB.read_text())
    assert "pull_request" in job[True]  # YAML 1.1 reads the bare key `on` as the boolean true
    steps = [s.get("run", "") for s in job["jobs"]["matrix"]["steps"]]
    command = next(s for s in steps if "mtls-matrix versions" in s)
    assert '"$LIBRARY==$last" "$LIBRARY @ file://$GITHUB_WORKSPACE/library"' in command
    assert "--fail-on-change" in command
