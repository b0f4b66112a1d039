"""One option table (options.py): `mtls-matrix run` hands pytest exactly the options it was given."""

from __future__ import annotations

from mtls_matrix import cli, options


def _handed_on(*argv: str) -> list[str]:
    return options.pytest_argv(cli.parser().parse_args(["run", "--out", "out", *argv]))


def test_defaults_and_unset_switches_are_not_handed_on():
    assert _handed_on() == []
    assert _handed_on("--servers", "websockets") == ["--servers", "websockets"]


def test_given_options_are_handed_on_as_given():
    assert _handed_on("--all-pairs", "--deadline", "3", "--peer-plugin", "a", "--peer-plugin", "b") == [
        "--deadline", "3.0", "--all-pairs", "--peer-plugin", "a", "--peer-plugin", "b"]
