"""mtls-matrix: run the matrix, render reports, list what can run.

Exit codes: 0 the run finished (findings are in the report, not in the exit code, unless
--strict or --baseline); 1 a harness ERROR; with --baseline, a NEW cell (a failure no entry explains,
reproduced by its confirming runs) or a stale (XPASS) entry; with --strict, a FAIL, INSECURE or HANG
cell (with --baseline: a NEW one) or a FLAKY one, never a control (verification off on purpose,
severity.py); 2 bad input (unknown peer, scenario or profile; missing or malformed results file),
with nothing written.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from pathlib import Path

from mtls_matrix import results as results_mod
from mtls_matrix import baseline, repeat, scenarios, severity, suite
from mtls_matrix.plugin import ALL_PAIRS_HELP, DEFAULT_DEADLINE, MAX_DEADLINE, build_selection
from mtls_matrix.results import Results, Verdict, check_output, write_atomically

MAX_WORKERS = 256  # pytest-xdist processes: more is a typo, not a machine


class UsageError(Exception):
    pass


class Parser(argparse.ArgumentParser):
    """Bad input is one line naming the option and the problem; the usage is one `-h` away."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}\n")


def _csv(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


# argparse types: a value is checked where it is parsed, before anything runs or is written.

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


def cmd_run(args: argparse.Namespace) -> int:
    check_reports(args.bugs, args.html, args.svg)
    try:
        build_selection(args.servers and _csv(args.servers), args.clients and _csv(args.clients),
                        args.scenarios and _csv(args.scenarios), args.profile, args.deadline, args.peer_plugin)
        if args.baseline:
            baseline.load(args.baseline)  # malformed: a usage error before anything runs
        repeat.check(args.repeat, args.confirm)
        out = Path(args.out)
        for name in ("results.json", "junit.xml"):
            check_output(out / name)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    import pytest

    suite_file = Path(suite.__file__)
    pytest_args = [
        str(suite_file), "--rootdir", str(suite_file.parent.parent), "-p", "no:cacheprovider", "-q",
        "-W", "ignore::pytest.PytestAssertRewriteWarning",  # this process imported the plugin first
        "--mtls-out", str(out), "--junitxml", str(out / "junit.xml"),
        "--profile", args.profile, "--deadline", str(args.deadline),
        "--repeat", str(args.repeat), "--confirm", str(args.confirm),
    ] + (["--all-pairs"] if args.all_pairs else [])
    for name in ("servers", "clients", "scenarios"):
        if getattr(args, name):
            pytest_args += [f"--{name}", getattr(args, name)]
    for module in args.peer_plugin:
        pytest_args += ["--peer-plugin", module]
    if args.baseline:
        pytest_args += ["--baseline", args.baseline]
    if args.workers != "0":
        pytest_args += ["-n", args.workers, "--dist", "load"]  # the hostile cells on one worker: plugin.py
    code = pytest.main(pytest_args + args.pytest_args)
    if code not in (0, 1):  # interrupted, internal error, usage error, no tests
        return 2 if code == 4 else int(code)
    loaded = Results.load(out / "results.json")
    cells = loaded.cells
    if args.bugs or args.html or args.svg:
        write_reports(loaded, args.bugs, args.html, args.svg)
    # KNOWN, NEW and stale entries are recorded in results.json by the plugin
    code = baseline.exit_code(loaded) if args.baseline else 0
    if any(c.verdict == Verdict.ERROR for c in cells):
        return 1  # a harness bug, whatever its reruns said
    if args.strict and any((c.flaky or (severity.is_finding(c) and not args.baseline)) and not severity.is_control(c)
                           for c in cells):
        return 1
    return code


def cmd_report(args: argparse.Namespace) -> int:
    check_reports(args.out, args.html, args.svg)
    try:
        loaded = Results.load(args.results)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    write_reports(loaded, args.out, args.html, args.svg)
    return 0


def write_reports(loaded: Results, bugs_md: str | None, html: str | None, svg: str | None) -> None:
    """BUGS.md, the HTML report and the heatmap image, each written whole or not at all."""
    from mtls_matrix.reports import bugs
    from mtls_matrix.reports.heatmap import render_svg
    from mtls_matrix.reports.html import render_html
    from mtls_matrix.reports.notes import NOTES

    rendered = {}  # every output rendered before any is written
    if svg:
        rendered[svg] = render_svg(loaded)
    if html:
        rendered[html] = render_html(loaded)
    if bugs_md:
        # BUGS.md links the image relative to itself, so it renders wherever the pair is committed.
        heatmap = os.path.relpath(svg, Path(bugs_md).resolve().parent) if svg else None
        rendered[bugs_md] = bugs.render(loaded, NOTES, heatmap=heatmap)
    for path, text in rendered.items():
        write_atomically(Path(path), text)
    print(f"wrote {', '.join(rendered)} from {len(loaded.cells)} cells")


def check_reports(*paths: str | None) -> None:
    """The report outputs, before a run or a load: distinct files that can be written."""
    given = [Path(p).resolve() for p in paths if p]
    if len(set(given)) < len(given):
        raise UsageError(f"two reports would be written to the same file: {', '.join(p for p in paths if p)}")


def cmd_list(args: argparse.Namespace) -> int:
    try:
        selection = build_selection(peer_plugins=args.peer_plugin)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    registry = selection.registry
    print("servers:")
    for name, peer in registry.servers.items():
        print(f"  {name:30} {peer.family:9} {peer.library} {peer.version}")
    print("clients:")
    for name, variant in registry.clients.items():
        print(f"  {name:30} {variant.peer.family:9} {variant.peer.library} {variant.peer.version}")
    print("scenarios:")
    for s in scenarios.CATALOGUE:
        print(f"  {s.name:36} {s.group:16} {s.description}")
    print(f"profiles: {', '.join(scenarios.PROFILES)}")
    return 0


def cmd_schema(args: argparse.Namespace) -> int:
    sys.stdout.write(results_mod.json_schema())
    return 0


# Subcommands that live in their own modules: each exposes `register(subparsers)` and raises
# cli.UsageError for bad input.
COMMAND_MODULES: tuple[str, ...] = (
    "mtls_matrix.baseline", "mtls_matrix.compare", "mtls_matrix.versions", "mtls_matrix.repro",
    "mtls_matrix.setup_foreign",
)


def add_selection_arguments(command: argparse.ArgumentParser) -> None:
    """Which cells: the same flags for every command that runs the matrix."""
    command.add_argument("--servers", help="comma-separated server peers (default: all)")
    command.add_argument("--clients", help="comma-separated client peers; a bare library name means all its variants")
    command.add_argument("--scenarios", help="comma-separated scenario names, groups or globs (default: all)")
    command.add_argument("--profile", default="default,tuned", help="default, tuned, or both (the default)")
    command.add_argument("--deadline", type=seconds, default=DEFAULT_DEADLINE,
                         help=f"seconds per cell before HANG (at most {MAX_DEADLINE:g})")
    command.add_argument("--all-pairs", action="store_true", help=ALL_PAIRS_HELP)


def parser() -> argparse.ArgumentParser:
    p = Parser(prog="mtls-matrix", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    for module in COMMAND_MODULES:
        importlib.import_module(module).register(sub)

    run = sub.add_parser("run", help="run the matrix through pytest; write OUT/results.json and OUT/junit.xml")
    run.add_argument("--out", required=True, type=output_dir, help="output directory (reports/latest for the main job)")
    add_selection_arguments(run)
    run.add_argument("--peer-plugin", action="append", default=[], metavar="MODULE", help="extra peers (repeatable)")
    run.add_argument("-n", "--workers", default="auto", type=workers,
                     help="pytest-xdist workers: a number, auto, or 0 for none")
    run.add_argument("--strict", action="store_true",
                     help="exit 1 when any cell is FAIL, INSECURE, HANG, ERROR or FLAKY (with --baseline: NEW, "
                          "ERROR or FLAKY); a control (verification off on purpose) never")
    run.add_argument("--repeat", type=int, default=1, metavar="N",
                     help="run every cell N times (one pytest item each); a cell whose runs disagree is FLAKY")
    run.add_argument("--confirm", type=int, default=0, metavar="N",
                     help="rerun each cell whose first run was not PASS N more times; FLAKY if they disagree")
    run.add_argument("--bugs", metavar="PATH", type=output_file, help="also render BUGS.md here once the run finished")
    run.add_argument("--html", metavar="PATH", type=output_file, help="also render the HTML report here")
    run.add_argument("--svg", metavar="PATH", type=output_file, help="also render the heatmap image here")
    run.add_argument("--baseline", metavar="FILE",
                     help="known issues (matrix/baseline.toml): a cell that would be NEW runs twice more, NEW only "
                          "if they reproduce it (else FLAKY); exit 1 on a NEW finding or a stale entry, else 0")
    run.add_argument("pytest_args", nargs="*", help="passed to pytest after --")
    run.set_defaults(func=cmd_run)

    report = sub.add_parser("report", help="render BUGS.md from a results.json")
    report.add_argument("results", help="path to results.json")
    report.add_argument("--out", default="BUGS.md", type=output_file, help="where to write (default BUGS.md)")
    report.add_argument("--html", metavar="PATH", type=output_file,
                        help="also write the self-contained HTML report there")
    report.add_argument("--svg", metavar="PATH", type=output_file,
                        help="also write the heatmap SVG there; BUGS.md then embeds it")
    report.set_defaults(func=cmd_report)

    listing = sub.add_parser("list", help="list peers, variants and scenarios")
    listing.add_argument("--peer-plugin", action="append", default=[], metavar="MODULE")
    listing.set_defaults(func=cmd_list)

    schema = sub.add_parser("schema", help="print the results JSON Schema")
    schema.set_defaults(func=cmd_schema)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.func(args)
    except UsageError as exc:
        print(f"mtls-matrix: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    # Through the package's module, not __main__: subcommand modules raise mtls_matrix.cli.UsageError,
    # which must be the class main() catches.
    from mtls_matrix.cli import main as package_main

    sys.exit(package_main())
