"""`mtls-matrix setup-foreign`: install the foreign peers' toolchains, idempotently.

Each foreign peer module declares its `Toolchain` (peers/foreign.py): the executables it needs,
the Debian packages that provide them (and the library files they install), and the steps that build it in foreign/<stack>/ (`npm ci`).
This command only runs those declarations: apt-get when an executable is missing, the steps when
what they build is missing or older than their inputs (package-lock.json). Run it again and it
does nothing. Exit codes: 0 every selected stack is ready, 1 a step failed, 2 an unknown stack.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

from mtls_matrix.peers import Registry
from mtls_matrix.peers.foreign import Toolchain


def toolchains(peer_plugins: list[str] | None = None) -> dict[str, Toolchain]:
    """Every stack any registered peer declares, by name, in registry order."""
    found: dict[str, Toolchain] = {}
    registry = Registry(peer_plugins)
    for peer in [*registry.servers.values(), *(v.peer for v in registry.clients.values())]:
        chain = getattr(peer, "toolchain", None)
        if isinstance(chain, Toolchain):
            found.setdefault(chain.name, chain)
    return found


def _stale(chain: Toolchain) -> bool:
    """The steps must run: something they build is missing, or older than an input."""
    built = [chain.dir / path for path in chain.built]
    if not all(path.exists() for path in built):
        return True
    oldest = min((path.stat().st_mtime for path in built), default=None)
    inputs = [chain.dir / path for path in chain.inputs if (chain.dir / path).exists()]
    return oldest is not None and any(path.stat().st_mtime > oldest for path in inputs)


def _needs_packages(chain: Toolchain) -> bool:
    return (any(shutil.which(e) is None for e in chain.executables)
            or any(not Path(f).exists() for f in chain.files))


def _run(argv: list[str], cwd=None) -> None:
    print("+ " + " ".join(argv) + (f"  (in {cwd})" if cwd else ""), flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(argv, cwd=cwd, env=env, check=True)


@contextlib.contextmanager
def _no_service_starts():
    """Packages such as nginx and haproxy start a system service on install, listening on every
    interface: Debian's policy-rc.d hook (exit 101) forbids it for the duration, unless one is in
    place already."""
    hook = Path("/usr/sbin/policy-rc.d")
    if hook.exists():
        yield
        return
    hook.write_text("#!/bin/sh\n# mtls-matrix setup-foreign: no service starts while it installs\nexit 101\n")
    hook.chmod(0o755)
    try:
        yield
    finally:
        hook.unlink()


def setup(chains: list[Toolchain]) -> int:
    apt = [pkg for chain in chains if _needs_packages(chain) for pkg in chain.apt]
    try:
        if apt:
            if shutil.which("apt-get") is None:
                print(f"setup-foreign: need {', '.join(dict.fromkeys(apt))} but apt-get is not available; "
                      "install them by hand", file=sys.stderr)
                return 1
            _run(["apt-get", "update", "-qq"])
            with _no_service_starts():
                _run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *dict.fromkeys(apt)])
        for chain in chains:
            if chain.steps and _stale(chain):
                for step in chain.steps:
                    _run(list(step), cwd=chain.dir if chain.dir.is_dir() else None)
    except (subprocess.CalledProcessError, OSError) as exc:
        print(f"setup-foreign: failed: {exc}", file=sys.stderr)
        return 1
    missing = [(chain.name, chain.missing()) for chain in chains if chain.missing()]
    for name, why in missing:
        print(f"setup-foreign: {name} is still not ready: {why}", file=sys.stderr)
    for chain in chains:
        if not chain.missing():
            print(f"{chain.name}: ready")
    return 1 if missing else 0


def cmd_setup_foreign(args) -> int:
    from mtls_matrix.cli import UsageError, _csv  # cli imports this module: import late

    try:
        known = toolchains(args.peer_plugin)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    names = _csv(args.only) if args.only else list(known)
    unknown = [n for n in names if n not in known]
    if unknown:
        raise UsageError(f"unknown stack {', '.join(unknown)}; valid: {', '.join(known)}")
    return setup([known[n] for n in names])


def register(subparsers) -> None:
    command = subparsers.add_parser(
        "setup-foreign", help="install the foreign peers' toolchains (apt packages, npm modules), idempotently",
        description=__doc__.splitlines()[0])
    command.add_argument("--only", metavar="STACK,...", help="comma-separated stacks (default: all)")
    command.add_argument("--peer-plugin", action="append", default=[], metavar="MODULE")
    command.set_defaults(func=cmd_setup_foreign)
