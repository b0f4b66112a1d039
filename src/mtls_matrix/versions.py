"""The library-version axis: `mtls-matrix versions` and `mtls-matrix bisect`.

Each SPEC (`aiohttp==3.9.1`, or several pins joined by `+`: `aiohttp==3.9.1+yarl==1.9.4`; or, for a
library's maintainers, an unreleased tree as pip names it: `aiohttp @ file:///path/to/checkout`,
`aiohttp @ git+https://...@branch`, a wheel or sdist file) gets its own virtual environment: the project's dependencies at their normal versions except the pinned
ones, plus this source tree installed editable (so a cached environment always runs the current
code). Environments are cached under $MTLS_MATRIX_CACHE or ~/.cache/mtls-matrix/venvs/<hash>.

A pinned version that pip cannot install, or that the peer modules cannot import on this Python
(websockets<13 has no websockets.asyncio), is reported as such for its environment: it never
becomes a verdict; for "cannot install" the resolver's own conflict is kept, with the companion pin
that resolves it when there is one (`+python-socketio==5.7.2`). The pins may go below the project's
own floors: that is what bisecting needs. A tree (a directory, a VCS reference) is reinstalled on
every use, so the environment runs its current state; a wheel or sdist is keyed by its content.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import fcntl
import hashlib
import importlib.metadata
import json
import os
import platform
import re
import shlex
import shutil
import subprocess
import ssl
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Optional

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from mtls_matrix import options
from mtls_matrix.errors import UsageError
from mtls_matrix.options import names, output_dir
from mtls_matrix.reports.versions import base_id as _base_id
from mtls_matrix.reports.versions import counts as _counts
from mtls_matrix.reports.versions import render_table
from mtls_matrix.reports.versions import verdict_text as _verdict
from mtls_matrix.results import Environment, Results, Run, Verdict, write_atomically
from mtls_matrix.selection import build_selection

CACHE_VARIABLE = "MTLS_MATRIX_CACHE"
READY = ".mtls-matrix-ready"  # written last: a venv without it is half-built and is rebuilt
TAIL_LINES = 12


# -- specs ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Spec:
    # (canonical distribution name, version or URL), sorted; a URL (file://, git+...) is an unreleased tree
    pins: tuple[tuple[str, str], ...]

    @property
    def name(self) -> str:
        return "+".join(f"{lib} @ {pin}" if is_url(pin) else f"{lib}=={pin}" for lib, pin in self.pins)

    @property
    def slug(self) -> str:
        """The name as a directory name (a URL's slashes would nest it)."""
        if not any(is_url(pin) for _, pin in self.pins):
            return self.name
        flat = re.sub(r"[^A-Za-z0-9.=+_-]+", "_", self.name.replace(" @ ", "@"))[:80]
        return f"{flat}-{hashlib.sha256(self.name.encode()).hexdigest()[:8]}"

    @property
    def trees(self) -> list[str]:
        """Pins pip must install afresh on every use: a directory or a VCS reference can change."""
        return [pin for _, pin in self.pins if is_url(pin) and not Path(_file_path(pin) or "").is_file()]

    def __str__(self) -> str:
        return self.name


SPEC_HELP = ("write LIBRARY==VERSION (aiohttp==3.9.1), LIBRARY @ file:///path/to/checkout, LIBRARY @ git+URL@REF, "
             "or the path of a wheel or sdist (several pins for one environment joined by '+')")


def is_url(pin: str) -> bool:
    return "://" in pin


def _file_path(url: str) -> str | None:
    return url[len("file://"):] if url.startswith("file://") else None


def parse_spec(text: str) -> Spec:
    """`lib==version[+lib==version...]`, `lib @ URL`, or a wheel/sdist path; raises ValueError naming
    what was wrong."""
    pins: dict[str, str] = {}
    for part in text.split("+") if "://" not in text else _split_urls(text):
        part = part.strip()
        name, pin = _parse_pin(part)
        if name in pins:
            raise ValueError(f"bad version spec {text!r}: {name} is pinned twice")
        pins[name] = pin
    return Spec(tuple(sorted(pins.items())))


def _split_urls(text: str) -> list[str]:
    """'+' joins pins, but also appears in a URL (git+https): split only before `NAME==` or `NAME @`."""
    return re.split(r"\+(?=\s*[A-Za-z0-9][A-Za-z0-9._-]*\s*(?:==|@))", text)


def _parse_pin(part: str) -> tuple[str, str]:
    archive = Path(part).expanduser()
    if part and archive.is_file():
        return _archive_pin(archive)
    try:
        req = Requirement(part)
    except InvalidRequirement:
        req = None
    if req is not None and req.url and not (req.specifier or req.extras or req.marker):
        path = _file_path(req.url)
        if path is not None and not Path(path).exists():
            raise ValueError(f"bad version spec {part!r}: {path} does not exist")
        return canonicalize_name(req.name), req.url
    specifiers = list(req.specifier) if req else []
    if not req or len(specifiers) != 1 or specifiers[0].operator != "==" or req.extras or req.marker or req.url \
            or "*" in specifiers[0].version:
        raise ValueError(f"bad version spec {part!r}: {SPEC_HELP}")
    return canonicalize_name(req.name), specifiers[0].version


def _archive_pin(path: Path) -> tuple[str, str]:
    """A wheel or sdist file: its distribution name is in its file name."""
    from packaging.utils import InvalidSdistFilename, InvalidWheelFilename, parse_sdist_filename, parse_wheel_filename

    try:
        name = parse_wheel_filename(path.name)[0] if path.suffix == ".whl" else parse_sdist_filename(path.name)[0]
    except (InvalidWheelFilename, InvalidSdistFilename):
        raise ValueError(f"bad version spec {str(path)!r}: not a wheel or sdist file name; {SPEC_HELP}") from None
    return canonicalize_name(name), path.resolve().as_uri()


# -- environments --------------------------------------------------------------------------------

def repo_root() -> Path:
    """The source tree: where this module lives (editable install), else the current directory or
    a parent of it (tox installs a wheel, and runs from the checkout)."""
    here = Path(__file__).resolve().parents[2]
    for root in (here, *(p for p in [Path.cwd(), *Path.cwd().parents])):
        pyproject = root / "pyproject.toml"
        if pyproject.is_file() and 'name = "mtls-matrix"' in pyproject.read_text():
            return root
    raise ValueError("version environments install this project from its source tree: run from a checkout of "
                     "mtls-matrix")


def project_requirements() -> list[Requirement]:
    """The project's runtime dependencies (no extras), as this checkout declares them."""
    text = (repo_root() / "pyproject.toml").read_text()
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10: fall back to the installed metadata
        raw = [r for r in importlib.metadata.requires("mtls-matrix") or [] if "extra ==" not in r]
    else:
        raw = tomllib.loads(text)["project"]["dependencies"]
    return [Requirement(r) for r in raw]


def requirements_for(spec: Spec) -> list[str]:
    pins = dict(spec.pins)
    reqs = [str(r) for r in project_requirements() if canonicalize_name(r.name) not in pins]
    return reqs + [f"{lib} @ {pin}" if is_url(pin) else f"{lib}=={pin}" for lib, pin in spec.pins]


def cache_dir() -> Path:
    return Path(os.environ.get(CACHE_VARIABLE) or Path.home() / ".cache" / "mtls-matrix") / "venvs"


def env_key(spec: Spec) -> str:
    ident = {"python": sys.version, "prefix": sys.base_prefix, "repo": str(repo_root()),
             "requirements": requirements_for(spec)}
    # a wheel or sdist: its content too (a tree is reinstalled on every use instead)
    archives = [hashlib.sha256(Path(_file_path(pin)).read_bytes()).hexdigest()
                for _, pin in spec.pins if is_url(pin) and Path(_file_path(pin) or "").is_file()]
    if archives:
        ident["archives"] = archives
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:16]


@dataclass
class Env:
    spec: Spec
    status: str  # ok | cannot install | cannot import | run failed
    path: Path
    detail: Optional[str] = None
    versions: dict[str, str] = field(default_factory=dict)

    @property
    def python(self) -> Path:
        return self.path / "bin" / "python"

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def tail(text: str, lines: int = TAIL_LINES) -> str:
    noise = ("pip is available", "WARNING: Location")  # a newer pip; this machine's index configuration
    kept = [line for line in text.strip().splitlines() if line.strip() and not any(n in line for n in noise)]
    return "\n".join(kept[-lines:])


def _child_env() -> dict[str, str]:
    """The host's environment without what would make the child see the host's packages."""
    drop = {"PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PIP_REQUIRE_VIRTUALENV", "PYTHONSTARTUP"}
    return {k: v for k, v in os.environ.items() if k not in drop} | {"PYTHONNOUSERSITE": "1"}


def _sh(argv: list, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in argv], capture_output=True, text=True, env=_child_env(), timeout=timeout)


@contextlib.contextmanager
def _locked(path: Path):
    """One process builds a given environment; others wait for it (tests run under xdist)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def prepare(spec: Spec, log: Callable[[str], None] = print) -> Env:
    """Create (or reuse) the environment for SPEC and check the peers import in it."""
    root = repo_root()
    path = cache_dir() / env_key(spec)
    env = Env(spec, "ok", path)
    with _locked(path.with_suffix(".lock")):
        if not (path / READY).exists():
            shutil.rmtree(path, ignore_errors=True)
            log(f"{spec}: creating {path}")
            t0 = time.perf_counter()
            made = _sh([sys.executable, "-m", "venv", path])
            if made.returncode:
                raise RuntimeError(f"python -m venv {path} failed: {tail(made.stderr)}")
            pip = [env.python, "-m", "pip", "install", "--disable-pip-version-check", "-q"]
            installed = _sh(pip + requirements_for(spec))
            if installed.returncode == 0:
                # --no-deps: the requirements above are the project's, with the pins swapped in
                installed = _sh(pip + ["--no-deps", "-e", root])
            if installed.returncode:
                # pip -q hides the resolver's account: ask it again, dry, at full verbosity
                explained = _sh([env.python, "-m", "pip", "install", "--dry-run", "--ignore-installed",
                                 "--disable-pip-version-check", *requirements_for(spec)])
                said = explained.stderr + explained.stdout
                detail = conflict(said) or tail(installed.stderr or installed.stdout)
                suggestion = companion_pin(spec, said, env.python)
                shutil.rmtree(path, ignore_errors=True)  # not cached: the index may be back next time
                return Env(spec, "cannot install", path, detail + (f"\n{suggestion}" if suggestion else ""))
            (path / READY).write_text(json.dumps({"spec": spec.name, "requirements": requirements_for(spec)}))
            log(f"{spec}: installed in {time.perf_counter() - t0:.0f} s")
        elif spec.trees:  # a checkout or a branch: install its current state
            pip = [env.python, "-m", "pip", "install", "--disable-pip-version-check", "-q"]
            fresh = _sh(pip + ["--force-reinstall", "--no-deps", *(f"{lib} @ {pin}" for lib, pin in spec.pins
                                                                   if pin in spec.trees)])
            if fresh.returncode:
                return Env(spec, "cannot install", path, tail(fresh.stderr or fresh.stdout))
    # the environment has this tree installed (editable, above): its peers import as `mtls-matrix run` will
    check = _sh([env.python, "-m", "mtls_matrix.import_check", *dict(spec.pins)], timeout=120)
    if check.returncode:
        return Env(spec, "cannot import", path, tail(check.stderr or check.stdout))
    seen = json.loads(check.stdout.strip().splitlines()[-1])
    env.versions = seen["versions"]
    wrong = {lib: v for lib, v in seen["pins"].items()
             if not is_url(dict(spec.pins)[lib]) and Version(v) != Version(dict(spec.pins)[lib])}
    env.versions.update(seen["pins"])  # a tree's version, as it installed
    if wrong:  # pip resolved something else: say so rather than mislabel the cells
        return Env(spec, "cannot install", path, f"asked for {spec}, the environment has {wrong}")
    return env


_CONFLICT = re.compile(r"^The conflict is caused by:\n((?:[ \t]+\S.*\n?)+)", re.M)
_DEPENDS = re.compile(r"^\s*(\S+) (\S+) depends on ([A-Za-z0-9._-]+)(.*)$", re.M)


def conflict(pip_output: str) -> str | None:
    """The resolver's own account of a conflict ('The conflict is caused by: ...'), not pip's last line."""
    found = _CONFLICT.search(pip_output)
    if not found:
        return None
    head = next((line for line in pip_output.splitlines() if "conflicting dependencies" in line), "")
    causes = dict.fromkeys(line.strip() for line in found.group(1).splitlines() if line.strip())  # each once
    return "\n".join([head.removeprefix("ERROR: ").strip(), "The conflict is caused by:", *causes]).strip()


def companion_pin(spec: Spec, pip_output: str, python: Path) -> str | None:
    """When a library the project needs (python-socketio) depends on a pinned one (python-engineio) in a
    range that excludes the pin, the newest release of it that accepts the pin, as the resolver finds
    it: 'try python-engineio==4.3.4+python-socketio==5.7.2'."""
    pinned = dict(spec.pins)
    dependents = {canonicalize_name(m.group(1)) for m in _DEPENDS.finditer(pip_output)
                  if canonicalize_name(m.group(3)) in pinned and canonicalize_name(m.group(1)) not in pinned}
    if not dependents or not python.exists():
        return None
    others = [str(r) for r in project_requirements() if canonicalize_name(r.name) not in {*pinned, *dependents}]
    wanted = [*others, *dependents, *(f"{lib} @ {pin}" if is_url(pin) else f"{lib}=={pin}" for lib, pin in spec.pins)]
    with contextlib.suppress(OSError, subprocess.TimeoutExpired, ValueError, KeyError):
        report = _sh([python, "-m", "pip", "install", "--dry-run", "--quiet", "--ignore-installed",
                      "--disable-pip-version-check", "--report", "-", *wanted], timeout=600)
        chosen = {canonicalize_name(item["metadata"]["name"]): item["metadata"]["version"]
                  for item in json.loads(report.stdout)["install"]}
        pins = "+".join(f"{lib}=={chosen[lib]}" for lib in sorted(dependents) if lib in chosen)
        if pins:
            return f"the resolver installs it with the companion pin: try {spec.name}+{pins}"
    return None


def run_in(env: Env, out: Path, filters: list[str], workers: str = "0") -> Optional[Results]:
    """`mtls-matrix run` inside ENV; None (and env.status 'run failed') when it wrote no results."""
    proc = _sh([env.python, "-m", "mtls_matrix.cli", "run", "--out", out, *filters, "-n", workers], timeout=3600)
    results_file = out / "results.json"
    if proc.returncode not in (0, 1) or not results_file.exists():
        env.status, env.detail = "run failed", tail(proc.stderr + proc.stdout)
        return None
    return Results.load(results_file)


# -- combining environments ------------------------------------------------------------------------

def combine(envs: list[tuple[Env, Optional[Results]]], command: str) -> Results:
    """One results file for several environments: each cell keeps its `versions`, gets its
    `environment`, and an id ending in @ENVIRONMENT so ids stay unique."""
    ran = [r for _, r in envs if r is not None]
    cells, environments = [], []
    for env, res in envs:
        environments.append(Environment(
            name=env.spec.name, pins=dict(env.spec.pins), status=env.status, detail=env.detail,
            versions=res.run.versions if res else env.versions, ca_fingerprint=res.run.ca_fingerprint if res else "",
            cells=len(res.cells) if res else 0))
        for cell in res.cells if res else []:
            cells.append(cell.model_copy(update={
                "id": f"{cell.id}@{env.spec.name}", "environment": env.spec.name,
                "repro": shlex.join(["mtls-matrix", "versions", env.spec.name,
                                     "--servers", cell.server.split(":", 1)[-1], "--clients",
                                     cell.client.split(":", 1)[-1], "--scenarios", cell.scenario,
                                     "--profile", cell.profile, "--out", "reports/repro"]),
            }))
    all_versions: dict[str, list[str]] = {}
    for r in ran:
        for lib, v in r.run.versions.items():
            all_versions.setdefault(lib, [])
            if v not in all_versions[lib]:
                all_versions[lib].append(v)
    first = ran[0].run if ran else None
    now = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    return Results(run=Run(
        started=min((r.run.started for r in ran), default=now),
        finished=max((r.run.finished or r.run.started for r in ran), default=now),
        duration_s=round(sum(r.run.duration_s or 0 for r in ran), 2),
        complete=all(e.ok for e, _ in envs) and all(r.run.complete for r in ran),
        command=command,
        python=first.python if first else platform.python_version(),
        openssl=first.openssl if first else ssl.OPENSSL_VERSION,
        platform=first.platform if first else platform.platform(),
        versions={lib: ", ".join(vs) for lib, vs in sorted(all_versions.items())},
        # as `mtls-matrix merge` does: each environment built its own CA
        ca_fingerprint=ran[0].run.ca_fingerprint if len({r.run.ca_fingerprint for r in ran}) == 1 else "merged",
        ca_fingerprints=[r.run.ca_fingerprint for r in ran],
        scrubbed_env=sorted({v for r in ran for v in r.run.scrubbed_env}),
        deadline_s=first.deadline_s if first else 0,
        profiles=list(dict.fromkeys(p for r in ran for p in r.run.profiles)),
        workers=first.workers if first else 1,
        environments=environments,
    ), cells=cells)


# -- the versions command --------------------------------------------------------------------------

def _filters(args: argparse.Namespace) -> list[str]:
    argv = []
    for name in ("servers", "clients", "scenarios", "profile"):
        if getattr(args, name):
            argv += [f"--{name}", getattr(args, name)]
    return argv + ["--deadline", str(args.deadline)]


def _check_filters(args: argparse.Namespace) -> None:
    try:
        build_selection(names(args.servers), names(args.clients), names(args.scenarios), args.profile, args.deadline)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def cmd_versions(args: argparse.Namespace) -> int:
    try:
        specs = [parse_spec(s) for s in args.specs]
        repo_root()
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if len({s.name for s in specs}) != len(specs):
        raise UsageError("the same version spec is given twice")
    _check_filters(args)
    out = Path(args.out)
    envs: list[tuple[Env, Optional[Results]]] = []
    for spec in specs:
        t0 = time.perf_counter()
        env = prepare(spec, log=lambda m: print(m, file=sys.stderr))
        res = run_in(env, out / spec.slug, _filters(args), args.workers) if env.ok else None
        summary = _counts(res.cells) if res else f"{env.status}: {''.join((env.detail or '').splitlines()[-1:])}"
        print(f"{spec}: {summary} ({time.perf_counter() - t0:.0f} s)", file=sys.stderr)
        envs.append((env, res))
    combined = combine(envs, shlex.join(["mtls-matrix", "versions", *sys.argv[2:]]) if sys.argv[1:2] == ["versions"]
                       else shlex.join(["mtls-matrix", "versions", *args.specs, "--out", args.out, *_filters(args)]))
    combined.save(out / "results.json")
    table = render_table(combined)
    write_atomically(out / "versions.md", table)
    print(table)
    print(f"wrote {out / 'results.json'} ({len(combined.cells)} cells) and {out / 'versions.md'}", file=sys.stderr)
    if any(e.status == "run failed" for e, _ in envs) or any(c.verdict == Verdict.ERROR for c in combined.cells):
        return 1
    if args.fail_on_change and changed_cells(combined):
        print(f"mtls-matrix: {len(changed_cells(combined))} cells' verdicts differ between the environments",
              file=sys.stderr)
        return 1
    return 0


def changed_cells(results: Results) -> list[str]:
    """Cells whose verdict differs between the environments that ran (cells that cannot run aside)."""
    verdicts: dict[str, set[str]] = {}
    for cell in results.cells:
        if cell.verdict not in (Verdict.SKIPPED, Verdict.UNSUPPORTED):
            verdicts.setdefault(_base_id(cell.id), set()).add(cell.verdict.value)
    return [cell for cell, seen in verdicts.items() if len(seen) > 1]


# -- bisect ------------------------------------------------------------------------------------------

class BisectError(Exception):
    pass


@dataclass
class Bisection:
    good_verdict: str
    last_good: str
    first_changed: Optional[str]  # None: every version that ran has GOOD's verdict
    changed_verdict: Optional[str]
    tried: dict[str, Optional[str]]  # version -> verdict, None when it could not run (in trial order)
    untested: list[str]  # versions between last_good and first_changed that could not run

    @property
    def skipped(self) -> list[str]:
        return [v for v, verdict in self.tried.items() if verdict is None]


def bisect_versions(versions: list[str], oracle: Callable[[str], Optional[str]]) -> Bisection:
    """First version in VERSIONS (ordered from GOOD to BAD) whose verdict differs from the first's.

    oracle(version) -> verdict, or None when that version cannot run (cannot install or import):
    it is skipped, and the search tries the runnable version nearest the middle instead.
    """
    if len(versions) < 2:
        raise BisectError("need at least GOOD and BAD")
    tried: dict[str, Optional[str]] = {}

    def probe(i: int) -> Optional[str]:
        if versions[i] not in tried:
            tried[versions[i]] = oracle(versions[i])
        return tried[versions[i]]

    good = probe(0)
    if good is None:
        raise BisectError(f"GOOD {versions[0]} cannot run this cell, so there is nothing to compare with")
    lo, hi = 0, None
    for i in range(len(versions) - 1, 0, -1):  # BAD, or the runnable version nearest below it
        verdict = probe(i)
        if verdict is not None:
            lo, hi = (i, None) if verdict == good else (lo, i)
            break
    if hi is None:
        return Bisection(good, versions[lo], None, None, tried, [])
    while True:
        candidates = [i for i in range(lo + 1, hi) if versions[i] not in tried]
        if not candidates:
            break
        mid = (lo + hi) // 2
        pick = min(candidates, key=lambda i: (abs(i - mid), i))
        verdict = probe(pick)
        if verdict is None:
            continue
        if verdict == good:
            lo = pick
        else:
            hi = pick
    return Bisection(good, versions[lo], versions[hi], tried[versions[hi]], tried, versions[lo + 1:hi])


def released_versions(lib: str) -> list[str]:
    """LIB's released versions as pip's configured index lists them, oldest first."""
    proc = _sh([sys.executable, "-m", "pip", "index", "versions", lib, "--disable-pip-version-check"], timeout=120)
    found = re.search(r"^Available versions:\s*(.+)$", proc.stdout, re.M)
    if proc.returncode or not found:
        raise ValueError(f"cannot list the released versions of {lib!r} with `pip index versions`: "
                         f"{tail(proc.stderr or proc.stdout, 3) or 'no versions'}")
    return sorted((v.strip() for v in found.group(1).split(",") if v.strip()), key=Version)


def versions_between(released: list[str], good: str, bad: str) -> list[str]:
    """GOOD, the releases between, BAD: in that order (GOOD may be newer than BAD)."""
    def find(v: str, what: str) -> str:
        try:
            wanted = Version(v)
        except InvalidVersion:
            raise ValueError(f"{what} {v!r} is not a version") from None
        hits = [r for r in released if Version(r) == wanted]
        if not hits:
            raise ValueError(f"{what} {v} is not a released version; released: {', '.join(released[-15:])}"
                             + (" ..." if len(released) > 15 else ""))
        return hits[0]

    g, b = find(good, "GOOD"), find(bad, "BAD")
    if Version(g) == Version(b):
        raise ValueError(f"GOOD and BAD are the same version ({g}): give two different releases")
    low, high = sorted((Version(g), Version(b)))
    span = [r for r in released if low <= Version(r) <= high]
    return span if Version(g) < Version(b) else span[::-1]


def reference(text: str) -> str | None:
    """An unreleased tree as GOOD or BAD: a URL (file://, git+https://...), a directory or an archive."""
    if is_url(text):
        return text
    path = Path(text).expanduser()
    return path.resolve().as_uri() if path.exists() else None


def find_cell(cell_id: str):
    """The CellSpec whose id is CELL_ID (an `@environment` suffix is ignored)."""
    wanted = _base_id(cell_id)
    cells = build_selection().cells
    for spec in cells:
        if spec.id == wanted:
            return spec
    raise ValueError(f"unknown cell id {cell_id!r}: ids are SERVER-CLIENT-SCENARIO[-PROFILE], "
                     f"e.g. {cells[0].id}; `mtls-matrix list` shows the peers and scenarios")


def cmd_bisect(args: argparse.Namespace) -> int:
    try:
        spec = find_cell(args.cell)
        lib = canonicalize_name(args.lib)
        companions = parse_spec(args.with_pins) if args.with_pins else Spec(())
        if lib in dict(companions.pins):
            raise ValueError(f"--with pins {lib} itself: give the other libraries' pins")
        repo_root()
        released = released_versions(lib)
        bad_tree = reference(args.bad)
        if reference(args.good):
            raise ValueError("GOOD must be a release; BAD may be a tree (a checkout, a branch, a wheel)")
        # a tree comes after every release: the releases from GOOD on, then the tree
        span = (versions_between(released, args.good, released[-1]) + [bad_tree] if bad_tree
                else versions_between(released, args.good, args.bad))
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    involved = {spec.server.library, spec.client.peer.library}
    if lib not in {canonicalize_name(x) for x in involved}:
        print(f"note: {lib} is neither the server's nor the client's library ({', '.join(sorted(involved))}); "
              "bisecting anyway", file=sys.stderr)
    out = Path(args.out)
    filters = ["--servers", spec.server.name, "--clients", spec.client.name, "--scenarios", spec.scenario.name,
               "--profile", spec.profile, "--deadline", str(args.deadline)]
    why: dict[str, str] = {}

    def oracle(version: str) -> Optional[str]:
        pins = dict(companions.pins) | {lib: version}
        env = prepare(Spec(tuple(sorted(pins.items()))), log=lambda m: print(f"  {m}", file=sys.stderr))
        res = run_in(env, out / env.spec.slug, filters) if env.ok else None
        cell = res.cells[0] if res and res.cells else None
        if cell is None:
            why[version] = f"{env.status}: {(env.detail or 'no cell ran').splitlines()[-1]}"
            print(f"{lib}=={version}: skipped ({why[version]})")
            return None
        print(f"{lib}=={version}: {_verdict(cell)} at {cell.phase}", flush=True)
        return cell.verdict.value

    print(f"bisecting {spec.id} over {len(span)} {lib} releases: {span[0]} (GOOD) .. {span[-1]} (BAD)", flush=True)
    try:
        found = bisect_versions(span, oracle)
    except BisectError as exc:
        print(f"mtls-matrix: {exc}", file=sys.stderr)
        return 1
    print()
    if found.first_changed is None:
        print(f"no change: every {lib} version that ran gives {found.good_verdict} (last: {found.last_good})")
    else:
        print(f"first {lib} version where {spec.id} differs from {span[0]}: {found.first_changed} "
              f"({found.changed_verdict}; {span[0]} gives {found.good_verdict}); last with GOOD's verdict: "
              f"{found.last_good}")
        if found.untested:
            print(f"  the change may lie in {', '.join(found.untested)}, which could not run")
    print("tried: " + ", ".join(f"{v} {r or 'skipped'}" for v, r in found.tried.items()))
    for version in found.skipped:
        print(f"skipped {lib}=={version}: {why.get(version, '')}")
    return 0 if found.first_changed else 1


def register(subparsers) -> None:
    v = subparsers.add_parser(
        "versions", help="run a slice of the matrix once per library version, each in its own cached venv",
        description="Each SPEC (LIB==VERSION, several pins for one environment joined by '+') gets its own venv "
                    "(cached in $MTLS_MATRIX_CACHE or ~/.cache/mtls-matrix/venvs). Writes OUT/SPEC/results.json, "
                    "OUT/results.json (cells of every environment, ids ending in @SPEC) and OUT/versions.md.")
    v.add_argument("specs", nargs="+", metavar="SPEC",
                   help="e.g. aiohttp==3.9.1, 'aiohttp @ file:///path/to/checkout', 'aiohttp @ git+URL@REF', "
                        "a wheel or sdist path")
    v.add_argument("--out", required=True, type=output_dir, help="output directory")
    per_environment = replace(options.WORKERS, default="0", help="pytest-xdist workers per environment (default 0: none)")
    options.add_arguments(v, (*options.SELECTION, per_environment))
    v.add_argument("--fail-on-change", action="store_true",
                   help="exit 1 when a cell's verdict differs between the environments (a CI gate: a branch against "
                        "the last release)")
    v.set_defaults(func=cmd_versions)

    b = subparsers.add_parser(
        "bisect", help="find the first release of LIB where one cell's verdict differs from GOOD's",
        description="Lists LIB's releases with `pip index versions`, then installs only the ones a binary search "
                    "needs (cached venvs, as `versions`), running just the cell. Releases that cannot install or "
                    "import are skipped and reported. Exit 0 a change was found, 1 none, 2 bad input.")
    b.add_argument("lib", help="the distribution to bisect, e.g. aiohttp")
    b.add_argument("good", help="a release with the reference verdict")
    b.add_argument("bad", help="a release with another verdict, or a tree: file:///path/to/checkout, git+URL@REF, "
                               "a wheel or sdist path (after every release)")
    b.add_argument("--cell", required=True, help="a cell id, e.g. aiohttp-aiohttp[ssl=context]-mtls-ok")
    b.add_argument("--with", dest="with_pins", metavar="SPEC",
                   help="pins added to every tried environment (a companion that must match older releases: "
                        "python-socketio==5.10.0 while bisecting python-engineio)")
    b.add_argument("--out", default="reports/bisect", type=output_dir, help="where each tried version's results go")
    options.add_arguments(b, (options.DEADLINE,))
    b.set_defaults(func=cmd_bisect)
