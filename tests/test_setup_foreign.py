"""`mtls-matrix setup-foreign` leaves the machine as it found it, apart from the packages, and
`--undo` removes what it added: the service hook goes however setup ends, the services of the
packages it installed do not start at boot, no managed browser policy, nothing at a fixed path in
/tmp, npm runs no install script. The checks of this machine's own state need root and the
packages (`tox -e py` runs setup-foreign first); the rest runs against stand-ins in a temp dir."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mtls_matrix import setup_foreign
from mtls_matrix.peers import chromium
from mtls_matrix.peers.foreign import Leftover, Toolchain
from mtls_matrix.peers.gorilla import GO
from mtls_matrix.peers.node_ws import NODE
from tests.conftest import REPO, mtls_matrix

as_root_with_the_packages = pytest.mark.skipif(
    os.geteuid() != 0 or setup_foreign.toolchains()["nginx"].missing() is not None,
    reason="checks this machine after a real setup-foreign: needs root and the packages installed")

HISTORY = """\
Start-Date: 2026-12-07  00:12:00
Commandline: apt-get install -y -qq --no-install-recommends nginx haproxy golang
Install: nginx:amd64 (1.22.1-9+deb12u12), libnginx-mod-stream:amd64 (1.22.1-9, automatic), golang:amd64 (2:1.19~1)
End-Date: 2026-12-07  00:12:55

Start-Date: 2026-12-08  10:00:00
Commandline: apt-get install -y postgresql
Install: postgresql:amd64 (15+248)
End-Date: 2026-12-08  10:00:30
"""


def test_apt_history_says_which_packages_setup_installed(tmp_path):
    (tmp_path / "history.log").write_text(HISTORY.split("\n\n")[1])
    (tmp_path / "history.log.1.gz").write_bytes(gzip.compress(HISTORY.split("\n\n")[0].encode()))
    assert setup_foreign.installed_by_setup(tmp_path) == {"nginx", "libnginx-mod-stream", "golang"}


def test_a_leftover_goes_only_while_it_is_as_setup_left_it(tmp_path):
    policy = tmp_path / "policy.json"
    policy.write_text("{}")
    assert not setup_foreign.remove_leftover(Leftover(str(policy), "{}\n")) and policy.exists()  # changed: kept
    assert setup_foreign.remove_leftover(Leftover(str(policy), "{}")) and not policy.exists()
    cache = tmp_path / "cache"
    (cache / "sub").mkdir(parents=True)
    link = tmp_path / "link"
    link.symlink_to(cache)
    assert not setup_foreign.remove_leftover(Leftover(str(link))) and cache.exists()  # a symlink: not followed
    assert setup_foreign.remove_leftover(Leftover(str(cache))) and not cache.exists()
    assert not setup_foreign.remove_leftover(Leftover(str(tmp_path / "absent")))


def test_undo_removes_what_the_steps_made_the_leftovers_and_a_killed_setups_hook(tmp_path, monkeypatch):
    fixtures = tmp_path / "fixtures"
    (fixtures / "stack" / "node_modules" / "ws").mkdir(parents=True)
    (fixtures / "stack" / "source.js").write_text("kept")
    leftover = tmp_path / "old-policy.json"
    leftover.write_text("old")
    hook = tmp_path / "policy-rc.d"
    hook.write_text(setup_foreign.HOOK_TEXT)
    monkeypatch.setattr(setup_foreign, "HOOK", hook)
    monkeypatch.setattr("mtls_matrix.peers.foreign.FIXTURES_DIR", fixtures)
    chain = Toolchain("stack", executables=(), created=("node_modules",), leftovers=(Leftover(str(leftover), "old"),))
    assert setup_foreign.undo([chain]) == 0
    assert not (fixtures / "stack" / "node_modules").exists() and (fixtures / "stack" / "source.js").exists()
    assert not leftover.exists() and not hook.exists()
    hook.write_text("#!/bin/sh\nexit 101\n")  # someone else's hook: theirs to keep
    assert setup_foreign.undo([chain]) == 0 and hook.exists()


SETUP_UNDER_TEST = """
import sys
from pathlib import Path
from mtls_matrix import setup_foreign
from mtls_matrix.peers.foreign import Toolchain

setup_foreign.HOOK = Path(sys.argv[1])
chain = Toolchain("stand-in", executables=("no-such-program-mtls",), apt=("no-such-package-mtls",))
sys.exit(setup_foreign.setup([chain]))
"""

# an apt-get on PATH that installs for a minute: `update` returns at once
FAKE_APT = """#!/bin/sh
[ "$1" = update ] && exit 0
echo $$ > "$FAKE_APT_PID"
exec sleep 60
"""


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_a_signal_during_apt_removes_the_hook_and_stops_apt_first(tmp_path, signum):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "apt-get").write_text(FAKE_APT)
    (bin_dir / "apt-get").chmod(0o755)
    hook, apt_pid = tmp_path / "policy-rc.d", tmp_path / "apt.pid"
    env = {**os.environ, "PYTHONPATH": str(REPO), "PATH": f"{bin_dir}:{os.environ['PATH']}",
           "FAKE_APT_PID": str(apt_pid)}
    setup = subprocess.Popen([sys.executable, "-c", SETUP_UNDER_TEST, str(hook)], env=env, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while not (apt_pid.exists() and apt_pid.read_text().strip()) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert hook.read_text() == setup_foreign.HOOK_TEXT  # in place while apt installs
        setup.send_signal(signum)
        _, stderr = setup.communicate(timeout=30)
    finally:
        setup.kill()
    assert setup.returncode == 128 + signum, stderr
    assert f"stopped by {signal.Signals(signum).name}" in stderr
    assert not hook.exists()
    assert not os.path.exists(f"/proc/{apt_pid.read_text().strip()}")  # apt was stopped, not orphaned


def test_npm_runs_no_install_script_and_go_builds_with_a_cache_of_its_own():
    assert "--ignore-scripts" in NODE.steps[0]
    build = (REPO / "fixtures" / "go" / "build.sh").read_text()
    assert "mktemp -d" in build and "mtls-matrix-gocache" not in build
    assert GO.created == ("build",) and NODE.created == ("node_modules",)


@pytest.mark.skipif(shutil.which("go") is None, reason="go not installed (mtls-matrix setup-foreign)")
def test_the_go_build_leaves_nothing_in_the_temp_dir(tmp_path):
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "GOCACHE"} | {"TMPDIR": str(scratch), "HOME": str(tmp_path)}
    subprocess.run(["sh", str(REPO / "fixtures" / "go" / "build.sh"), str(tmp_path / "peer")], env=env, check=True,
                   timeout=600)
    assert (tmp_path / "peer").exists()
    assert list(scratch.iterdir()) == []  # its build cache was its own, and is gone


@as_root_with_the_packages
def test_after_setup_nothing_selects_another_certificate_nothing_starts_at_boot_nothing_in_tmp():
    proc = mtls_matrix("setup-foreign", "--only", "nginx,haproxy,chromium,go", timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for service in ("nginx", "haproxy"):
        assert setup_foreign.enabled_at_boot(service) == []
    for policies in (Path("/etc/chromium/policies/managed"), Path("/etc/opt/chrome/policies/managed")):
        for policy in policies.glob("*.json") if policies.is_dir() else ():
            for rule in json.loads(policy.read_text()).get("AutoSelectCertificateForUrls", []):
                assert json.loads(rule).get("filter"), f"{policy}: {rule} selects any certificate"
    assert not Path(chromium.LEGACY_POLICY.path).exists()
    assert not Path("/tmp/mtls-matrix-gocache").exists()
    assert mtls_matrix("setup-foreign", "--only", "nginx,haproxy,chromium").stdout.count("ready") == 3  # idempotent
