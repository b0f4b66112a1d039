"""The run options, each defined once: name, type, default, help and validation.

`mtls-matrix run` (and the selection arguments of versions, bisect and repro) and the pytest
plugin's options are generated from this table, so the two cannot drift apart; `pytest_argv` hands
the values `mtls-matrix run` parsed on to the pytest run it starts.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any, Callable

from mtls_matrix.results import check_output

DEFAULT_DEADLINE = 5.0
MAX_DEADLINE = 3600.0  # seconds per cell: beyond an hour a wait measures nothing more
MAX_WORKERS = 256  # pytest-xdist processes: more is a typo, not a machine
DEFAULT_PROFILES = "default,tuned"


def names(value: str | None) -> list[str] | None:
    """A comma-separated list as given (`--servers a,b`); None when none was given."""
    return [v.strip() for v in value.split(",") if v.strip()] if value else None


# Types: a value is checked where it is parsed, before anything runs or is written.

def seconds(text: str) -> float:
    """A deadline: a finite number of seconds, more than 0 and at most MAX_DEADLINE."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0 < value <= MAX_DEADLINE:  # also refuses nan and inf
        raise argparse.ArgumentTypeError(f"{text} is out of range: more than 0 and at most {MAX_DEADLINE:g} seconds")
    return value


def workers(text: str) -> str:
    """pytest-xdist's -n: auto, logical, or a number of processes (0: none)."""
    if text in ("auto", "logical") or (text.isdigit() and int(text) <= MAX_WORKERS):
        return text
    raise argparse.ArgumentTypeError(f"{text!r} is not auto, logical or a number of workers from 0 to {MAX_WORKERS}")


def output_file(text: str) -> str:
    try:
        check_output(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def output_dir(text: str) -> str:
    try:
        check_output(text, directory=True)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


@dataclass(frozen=True)
class Option:
    flags: tuple[str, ...]
    help: str
    type: Callable[[str], Any] | None = None
    default: Any = None
    action: str | None = None  # store_true, append
    metavar: str | None = None

    @property
    def dest(self) -> str:
        return self.flags[-1].lstrip("-").replace("-", "_")

    def arguments(self) -> dict[str, Any]:
        """The keyword arguments of argparse's add_argument, which pytest's addoption takes too."""
        given = dict(help=self.help, type=self.type, default=self.default, action=self.action, metavar=self.metavar)
        if self.action in ("store_true", "append"):
            given.pop("type")
        return {key: value for key, value in given.items() if value is not None}

    def argv(self, value: Any) -> list[str]:
        """The value as arguments of this option (none for a default)."""
        if self.action == "store_true":
            return [self.flags[-1]] if value else []
        if value is None or value == self.default:
            return []
        if self.action == "append":
            return [arg for item in value for arg in (self.flags[-1], str(item))]
        return [self.flags[-1], str(value)]


ALL_PAIRS_HELP = ("every pairing, not only where each peer adds information (ServerPeer.scenarios, a client's "
                  "variant_scenarios and servers, foreign with foreign); a variant's `only` still holds")

SERVERS = Option(("--servers",), "comma-separated server peers (default: all)")
CLIENTS = Option(("--clients",), "comma-separated client peers, 'aiohttp' (all its variants) or "
                                 "'aiohttp[ssl=context]' (default: all)")
SCENARIOS = Option(("--scenarios",), "comma-separated scenario names, groups or globs (default: all)")
PROFILE = Option(("--profile",), "comma-separated profiles: default (library defaults), tuned (documented limits "
                                 "raised); I/O scenarios run once per profile, the others under 'default' only",
                 default=DEFAULT_PROFILES)
DEADLINE = Option(("--deadline",), f"seconds a cell may take before it is a HANG, at most {MAX_DEADLINE:g} "
                                   f"(default {DEFAULT_DEADLINE:g})", type=seconds, default=DEFAULT_DEADLINE)
ALL_PAIRS = Option(("--all-pairs",), ALL_PAIRS_HELP, action="store_true")
PEER_PLUGIN = Option(("--peer-plugin",), "import peers from this module's PEERS list (repeatable)", action="append",
                     default=[], metavar="MODULE")
BASELINE = Option(("--baseline",), "known issues (matrix/baseline.toml): their cells are KNOWN; a cell that would "
                                   "be NEW runs twice more and is NEW only if they reproduce it (else FLAKY); a NEW "
                                   "finding or a stale entry fails the run", metavar="FILE")
REPEAT = Option(("--repeat",), "run every cell N times inside its one pytest item; its verdict is the first run's, "
                               "`runs` holds the pass rate and a cell whose runs disagree is FLAKY (default 1)",
                type=int, default=1, metavar="N")
CONFIRM = Option(("--confirm",), "rerun a cell whose first run was FAIL, INSECURE, HANG or ERROR N more times; "
                                 "FLAKY when the reruns disagree (default 0)", type=int, default=0, metavar="N")

# which cells: every command that runs the matrix takes these
SELECTION = (SERVERS, CLIENTS, SCENARIOS, PROFILE, DEADLINE, ALL_PAIRS)
# a matrix run's options: `mtls-matrix run` takes them and passes them on to pytest
RUN = (*SELECTION, PEER_PLUGIN, BASELINE, REPEAT, CONFIRM)

# `mtls-matrix run`'s own
OUT = Option(("--out",), "output directory (reports/latest for the main job)", type=output_dir)
WORKERS = Option(("-n", "--workers"), "pytest-xdist workers: a number, auto, or 0 for none", type=workers,
                 default="auto")
STRICT = Option(("--strict",), "exit 1 when any cell is FAIL, INSECURE, HANG, ERROR or FLAKY (with --baseline: NEW, "
                               "ERROR or FLAKY); a control (verification off on purpose) never", action="store_true")
BUGS = Option(("--bugs",), "also render BUGS.md here once the run finished", type=output_file, metavar="PATH")
HTML = Option(("--html",), "also render the HTML report here", type=output_file, metavar="PATH")
SVG = Option(("--svg",), "also render the heatmap image here", type=output_file, metavar="PATH")

# the pytest plugin's own: `mtls-matrix run` sets --mtls-out from --out
MTLS_OUT = Option(("--mtls-out",), "write DIR/results.json at the end of the run", metavar="DIR")
ORDER = Option(("--mtls-order",), "run the cells in catalogue order (forward), reversed (reverse), or shuffled with "
                                  "a seed (random:SEED, SEED a whole number): verdicts must not depend on it",
               default="forward", metavar="ORDER")
PYTEST = (*RUN, MTLS_OUT, ORDER)


def add_arguments(parser: argparse.ArgumentParser, options=SELECTION, required: tuple[Option, ...] = ()) -> None:
    for option in options:
        parser.add_argument(*option.flags, **option.arguments(), **({"required": True} if option in required else {}))


def add_pytest_options(group, options=PYTEST) -> None:
    """pytest's OptionGroup.addoption takes argparse's keywords."""
    for option in options:
        group.addoption(*option.flags, **option.arguments())


def pytest_argv(args: argparse.Namespace, options=RUN) -> list[str]:
    """The values `args` holds for `options`, as pytest arguments."""
    return [arg for option in options for arg in option.argv(getattr(args, option.dest))]
