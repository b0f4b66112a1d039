"""The import check a version environment runs (versions.prepare): a real module, run as the
environment runs it, here with this interpreter."""

from __future__ import annotations

import importlib.metadata
import json
import subprocess
import sys

from tests.conftest import REPO


def test_the_import_check_prints_the_peers_versions_and_the_pins_as_one_json_line():
    proc = subprocess.run([sys.executable, "-m", "mtls_matrix.import_check", "websockets", "aiohttp"],
                          capture_output=True, text=True, timeout=120, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    seen = json.loads(proc.stdout.strip().splitlines()[-1])
    assert set(seen) == {"versions", "pins"}
    assert seen["pins"] == {lib: importlib.metadata.version(lib) for lib in ("websockets", "aiohttp")}
    versions = seen["versions"]
    assert list(versions) == sorted(versions) and all(isinstance(v, str) for v in versions.values())
    assert versions["websockets"] == seen["pins"]["websockets"] and versions["aiohttp"] == seen["pins"]["aiohttp"]


def test_a_pin_that_is_not_installed_fails_the_check():
    proc = subprocess.run([sys.executable, "-m", "mtls_matrix.import_check", "no-such-library-mtls"],
                          capture_output=True, text=True, timeout=120, cwd=REPO)
    assert proc.returncode != 0 and "no-such-library-mtls" in proc.stderr
