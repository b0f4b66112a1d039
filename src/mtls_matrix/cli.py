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

from mtls_matrix import findings, knowledge, options
from mtls_matrix import results as results_mod
from mtls_matrix.errors import UsageError
from mtls_matrix.options import names, output_file
from mtls_matrix.reports import bugs
from mtls_matrix.reports.heatmap import render_svg
from mtls_matrix.reports.html import render_html
from mtls_matrix.results import Results, Verdict, check_output, write_atomically
from mtls_matrix.timing import FORKED_EXIT_S


# pytest's own plugins a matrix run does without: the cells assert nothing and judge no unraisable exception,
# and each process would pay for both (rewriting our modules on import, collecting garbage at exit)
PYTEST_PLUGINS_UNUSED = ("--assert=plain", "-p", "no:unraisableexception", "-p", "no:cacheprovider")


class Parser(argparse.ArgumentParser):
    """Bad input is one line naming the option and the problem; the usage is one `-h` away."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}\n")


def cmd_run(args: argparse.Namespace) -> int:
    # the runner, imported by the command that runs it: report, diff and the rest load no catalogue or peer
    import pytest

    from mtls_matrix import baseline, repeat, severity, suite
    from mtls_matrix.plugin import Outcome, auto_workers, fork_server
    from mtls_matrix.selection import build_selection

    check_reports(args.bugs, args.html, args.svg)
    try:
        selection = build_selection(names(args.servers), names(args.clients), names(args.scenarios), args.profile,
                                    args.deadline, args.peer_plugin, args.all_pairs)
        if args.baseline:
            baseline.load(args.baseline)  # malformed: a usage error before anything runs
        curated = load_knowledge(Path(args.baseline).parent if args.baseline else DEFAULT_KNOWLEDGE, explicit=False)
        repeat.check(args.repeat, args.confirm)
        out = Path(args.out)
        for name in ("results.json", "junit.xml"):
            check_output(out / name)
    except ValueError as exc:
        raise UsageError(str(exc)) from None

    suite_file = Path(suite.__file__)
    pytest_args = [
        str(suite_file), "--rootdir", str(suite_file.parent.parent), "-q",
        *PYTEST_PLUGINS_UNUSED,
        "--mtls-out", str(out), "--junitxml", str(out / "junit.xml"), *options.pytest_argv(args),
    ]
    plugins = []
    if args.workers != "0":
        pytest_args += ["-n", args.workers, "--dist", "load"]  # the hostile cells on one worker: plugin.py
        if args.workers != "auto" or auto_workers(selection):
            plugins.append(fork_server())  # before pytest starts a thread: its workers fork from it
    outcome = Outcome()
    try:
        code = pytest.main(pytest_args + args.pytest_args, plugins=[*plugins, outcome])
    finally:
        for server in plugins:
            server.close(FORKED_EXIT_S)  # if the plugin did not (a usage error)
    if code not in (0, 1):  # interrupted, internal error, usage error, no tests
        return 2 if code == 4 else int(code)
    loaded = outcome.results or Results.load(out / "results.json")
    cells = loaded.cells
    if args.bugs or args.html or args.svg:
        write_reports(loaded, args.bugs, args.html, args.svg, curated)
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
        if args.baseline:  # the baseline's patterns are checked against today's peers and catalogue
            from mtls_matrix import baseline
        known = baseline.load(args.baseline) if args.baseline else None
        directory = args.knowledge or (Path(args.baseline).parent if args.baseline else DEFAULT_KNOWLEDGE)
        curated = load_knowledge(directory, explicit=bool(args.knowledge or args.baseline))
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if known:  # the cells' mechanisms, for results of a run without this baseline
        baseline.classify(loaded, known)
    write_reports(loaded, args.out, args.html, args.svg, curated)
    return 0


DEFAULT_KNOWLEDGE = Path(knowledge.DEFAULT_DIR)  # matrix/: mechanisms.toml, reference.toml


def load_knowledge(directory: Path | str, explicit: bool) -> knowledge.Knowledge:
    """The curated knowledge in `directory`; none when the default directory is absent (a results
    file rendered outside the repository), an error when a directory given by hand is."""
    if not explicit and not Path(directory).is_dir():
        return knowledge.Knowledge()
    return knowledge.load(directory)


def write_reports(loaded: Results, bugs_md: str | None, html: str | None, svg: str | None,
                  curated: knowledge.Knowledge = knowledge.Knowledge()) -> None:
    """BUGS.md, the HTML report and the heatmap image, each written whole or not at all."""
    analysis = findings.analyse(loaded, curated)
    rendered = {}  # every output rendered before any is written
    if svg:
        rendered[svg] = render_svg(analysis)
    if html:
        rendered[html] = render_html(analysis)
    if bugs_md:
        # BUGS.md links the image relative to itself, so it renders wherever the pair is committed.
        heatmap = os.path.relpath(svg, Path(bugs_md).resolve().parent) if svg else None
        rendered[bugs_md] = bugs.render(analysis, heatmap=heatmap, reproducers=bugs.reproducers(analysis))
    for path, text in rendered.items():
        write_atomically(Path(path), text)
    print(f"wrote {', '.join(rendered)} from {len(loaded.cells)} cells")


def check_reports(*paths: str | None) -> None:
    """The report outputs, before a run or a load: distinct files that can be written."""
    given = [Path(p).resolve() for p in paths if p]
    if len(set(given)) < len(given):
        raise UsageError(f"two reports would be written to the same file: {', '.join(p for p in paths if p)}")


def cmd_list(args: argparse.Namespace) -> int:
    from mtls_matrix import scenarios
    from mtls_matrix.selection import build_selection

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


# Subcommands that live in their own modules, by name: each module exposes `register(subparsers)` and
# raises errors.UsageError for bad input. A command imports its own module alone.
COMMAND_MODULES: dict[str, str] = {
    "baseline": "mtls_matrix.baseline", "diff": "mtls_matrix.compare", "merge": "mtls_matrix.compare",
    "versions": "mtls_matrix.versions", "bisect": "mtls_matrix.versions", "repro": "mtls_matrix.repro",
    "setup-foreign": "mtls_matrix.setup_foreign",
}


def parser(command: str | None = None) -> argparse.ArgumentParser:
    """`command`: the one about to run (its module alone is imported); None: every command (help, a typo)."""
    p = Parser(prog="mtls-matrix", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    for module in dict.fromkeys(COMMAND_MODULES.values()):
        if command is None or COMMAND_MODULES.get(command) == module:
            importlib.import_module(module).register(sub)

    run = sub.add_parser("run", help="run the matrix through pytest; write OUT/results.json and OUT/junit.xml")
    options.add_arguments(run, (options.OUT, *options.RUN, options.WORKERS, options.STRICT, options.BUGS,
                                options.HTML, options.SVG), required=(options.OUT,))
    run.add_argument("pytest_args", nargs="*", help="passed to pytest after --")
    run.set_defaults(func=cmd_run)

    report = sub.add_parser("report", help="render BUGS.md from a results.json")
    report.add_argument("results", help="path to results.json")
    report.add_argument("--out", default="BUGS.md", type=output_file, help="where to write (default BUGS.md)")
    report.add_argument("--html", metavar="PATH", type=output_file,
                        help="also write the self-contained HTML report there")
    report.add_argument("--svg", metavar="PATH", type=output_file,
                        help="also write the heatmap SVG there; BUGS.md then embeds it")
    report.add_argument("--knowledge", metavar="DIR",
                        help=f"the curated knowledge: mechanisms.toml, reference.toml (default: the baseline's "
                             f"directory, else {DEFAULT_KNOWLEDGE}/ when it exists)")
    report.add_argument("--baseline", metavar="FILE",
                        help="classify the cells against this baseline first (KNOWN, NEW, their mechanisms): for "
                             "results of a run made without it")
    report.set_defaults(func=cmd_report)

    listing = sub.add_parser("list", help="list peers, variants and scenarios")
    options.add_arguments(listing, (options.PEER_PLUGIN,))
    listing.set_defaults(func=cmd_list)

    schema = sub.add_parser("schema", help="print the results JSON Schema")
    schema.set_defaults(func=cmd_schema)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    command = next((a for a in argv if not a.startswith("-")), None)
    known = command in COMMAND_MODULES or command in ("run", "report", "list", "schema")
    args = parser(command if known and not {"-h", "--help"} & set(argv) else None).parse_args(argv)
    try:
        return args.func(args)
    except UsageError as exc:
        print(f"mtls-matrix: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
