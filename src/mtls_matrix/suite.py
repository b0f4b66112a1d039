"""The matrix as one parametrised test: one item per cell (`pytest_generate_tests` in plugin.py).

`mtls-matrix run` points pytest at this file; matrix/test_matrix.py imports it for `pytest matrix`.
"""

from mtls_matrix import plugin


def test_cell(request, mtls_cell, mtls_matrix_env):
    plugin.record(request, plugin.run(request, mtls_cell, mtls_matrix_env))
