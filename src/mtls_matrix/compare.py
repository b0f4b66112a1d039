"""Placeholder: being written (issue 4)."""


def register(subparsers) -> None:
    pass
