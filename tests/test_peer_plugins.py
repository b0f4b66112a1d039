"""Third-party peers: through the entry-point group, without editing the package."""

from __future__ import annotations

from tests.conftest import mtls_matrix


def test_entry_point_group_adds_peers(tmp_path):
    dist = tmp_path / "thirdparty_peers-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: thirdparty-peers\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[mtls_matrix.peers]\nselftest = tests.selftest_peers\n")
    import os

    from tests.conftest import REPO

    proc = mtls_matrix("list", env={"PYTHONPATH": os.pathsep.join([str(REPO), str(tmp_path)])})
    assert proc.returncode == 0, proc.stderr
    assert "selftest-lax" in proc.stdout and "selftest-insecure[ssl=context]" in proc.stdout


def test_peer_plugin_option_without_peers_list_is_a_usage_error(tmp_path):
    proc = mtls_matrix("list", "--peer-plugin", "tests.conftest")
    assert proc.returncode == 2 and "has no PEERS list" in proc.stderr
