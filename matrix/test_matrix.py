"""`pytest matrix [--servers ...] [--clients ...] [--scenarios ...]` runs the matrix directly."""

from mtls_matrix.suite import test_cell  # noqa: F401  (collected here)
