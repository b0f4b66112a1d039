"""`mtls-matrix setup-foreign`: install the foreign peers' toolchains, idempotently, leaving the
machine as it found it apart from the packages; `--undo` removes what it added, but the packages.

Each foreign peer module declares its `Toolchain` (peers/foreign.py): the executables it needs, the
Debian packages that provide them (and the library files they install), the steps that build it in
fixtures/<stack>/ (`npm ci --ignore-scripts`, fixtures/go/build.sh) and what they create there, the
system services its packages bring, and what an earlier setup left elsewhere. This command only
runs those declarations:
- apt-get when an executable is missing, with no service started meanwhile (Debian's policy-rc.d
  hook, removed however setup ends: an error, Ctrl-C, SIGTERM, SIGHUP; a command in progress is
  stopped first);
- the services of the packages it installed (apt's own history says which) are kept from
  starting at boot: the matrix starts its own processes, and nginx's default site would listen on
  port 80 on every interface;
- the steps when what they build is missing or older than their inputs;
- what an earlier setup left outside the checkout is removed while it is as that setup left it.
Run it again and it does nothing. `--undo` removes what the steps created and those leftovers; the
packages stay installed and their services stay off at boot. Exit codes: 0 every selected stack is
ready (or undone), 1 a step failed, 2 an unknown stack, 128+N stopped by signal N.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

from mtls_matrix.errors import UsageError
from mtls_matrix.options import PEER_PLUGIN, add_arguments, names
from mtls_matrix.peers import Registry
from mtls_matrix.peers.foreign import Leftover, Toolchain
from mtls_matrix.timing import SETUP_STOP_GRACE_S

APT_INSTALL = ("apt-get", "install", "-y", "-qq", "--no-install-recommends")
APT_HISTORY = Path("/var/log/apt")  # history.log and its rotations, history.log.N.gz
HOOK = Path("/usr/sbin/policy-rc.d")
HOOK_TEXT = "#!/bin/sh\n# mtls-matrix setup-foreign: no service starts while it installs\nexit 101\n"


class Stopped(BaseException):
    """A signal stopped setup: unwinds like Ctrl-C, so the hook goes and the command is stopped."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


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


# --- running commands, stopping cleanly -----------------------------------------------------------

@contextlib.contextmanager
def _signals_stop_setup():
    def stop(signum, frame):
        raise Stopped(signum)

    previous = {signum: signal.signal(signum, stop) for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _run(argv: list[str], cwd=None) -> None:
    """The command in its own process group: a signal to setup reaches it through `_end`, which
    lets it finish its step (dpkg) before the hook is removed."""
    print("+ " + " ".join(argv) + (f"  (in {cwd})" if cwd else ""), flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    proc = subprocess.Popen(argv, cwd=cwd, env=env, start_new_session=True)
    try:
        code = proc.wait()
    except BaseException:
        _end(proc)
        raise
    if code:
        raise subprocess.CalledProcessError(code, argv)


def _end(proc: subprocess.Popen) -> None:
    for signum in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, signum)
        except ProcessLookupError:
            return
        try:
            proc.wait(SETUP_STOP_GRACE_S)
            return
        except subprocess.TimeoutExpired:
            continue


def _ours(hook: Path) -> bool:
    try:
        return hook.read_text() == HOOK_TEXT
    except OSError:
        return False


@contextlib.contextmanager
def _no_service_starts():
    """Packages such as nginx and haproxy start a system service on install, listening on every
    interface: Debian's policy-rc.d hook (exit 101) forbids it for the duration, unless another
    hook is in place (it decides). Ours, left by a setup that was killed (SIGKILL), is taken over."""
    if HOOK.exists() and not _ours(HOOK):
        yield
        return
    HOOK.write_text(HOOK_TEXT)
    HOOK.chmod(0o755)
    try:
        yield
    finally:
        HOOK.unlink(missing_ok=True)


# --- services --------------------------------------------------------------------------------------

def installed_by_setup(history: Path = APT_HISTORY) -> set[str]:
    """The packages an `apt-get install` with setup-foreign's options installed (this setup's or an
    earlier one's), by apt's own history."""
    found: set[str] = set()
    for log in sorted(history.glob("history.log*")):
        try:
            data = log.read_bytes()
            text = (gzip.decompress(data) if log.suffix == ".gz" else data).decode(errors="replace")
        except (OSError, EOFError, gzip.BadGzipFile):
            continue
        for entry in text.split("\n\n"):
            fields = dict(line.split(": ", 1) for line in entry.strip().splitlines() if ": " in line)
            if fields.get("Commandline", "").startswith(" ".join(APT_INSTALL) + " "):
                # "Install: nginx:amd64 (1.22.1-9), libnginx-mod-stream:amd64 (1.22.1-9, automatic), ..."
                found |= set(re.findall(r"(?:^|\), )([a-z0-9][a-z0-9+.-]*):", fields.get("Install", "")))
    return found


def enabled_at_boot(service: str) -> list[Path]:
    """What starts `service` at boot: systemd's wants links and SysV's rc2-5.d start links."""
    return sorted([*Path("/etc/systemd/system").glob(f"*.wants/{service}.service"),
                   *Path("/etc").glob(f"rc[2-5].d/S[0-9][0-9]{service}")])


def _keep_from_boot(chains: list[Toolchain]) -> None:
    """Raises CalledProcessError or OSError when a service it must disable stays enabled."""
    ours = installed_by_setup()
    for chain in chains:
        for service in chain.services if set(chain.apt) & ours else ():
            if not enabled_at_boot(service):
                continue
            if os.geteuid() != 0:
                print(f"setup-foreign: {service} (installed by setup-foreign) starts at boot; run setup-foreign as "
                      "root to keep it from starting", file=sys.stderr)
                continue
            if shutil.which("systemctl"):
                _run(["systemctl", "disable", "--quiet", f"{service}.service"])  # its init.d links too
            if enabled_at_boot(service) and shutil.which("update-rc.d"):
                _run(["update-rc.d", service, "disable"])
            if enabled_at_boot(service):
                raise OSError(f"{service} still starts at boot: {', '.join(map(str, enabled_at_boot(service)))}")


# --- what an earlier setup left -------------------------------------------------------------------------

def remove_leftover(leftover: Leftover) -> bool:
    """Removes it if it is as an earlier setup left it; True if it did. Raises OSError."""
    path = Path(leftover.path)
    if leftover.content is None:
        if path.is_symlink() or not path.is_dir() or path.stat().st_uid != os.geteuid():
            return False
        shutil.rmtree(path)
        return True
    try:
        if path.is_symlink() or path.read_text() != leftover.content:
            return False
    except (OSError, UnicodeDecodeError):
        return False
    path.unlink()
    return True


def _remove_leftovers(chains: list[Toolchain], strict: bool) -> None:
    """Raises OSError when `strict` (--undo); setup itself only says what it could not remove."""
    for leftover in (leftover for chain in chains for leftover in chain.leftovers):
        try:
            if remove_leftover(leftover):
                print(f"removed {leftover.path} (left by an earlier setup-foreign)")
        except OSError as exc:
            if strict:
                raise
            print(f"setup-foreign: cannot remove {leftover.path}, left by an earlier setup-foreign ({exc.strerror}); "
                  "run `mtls-matrix setup-foreign --undo` as root", file=sys.stderr)


# --- the commands ------------------------------------------------------------------------------------

def setup(chains: list[Toolchain]) -> int:
    apt = [pkg for chain in chains if _needs_packages(chain) for pkg in chain.apt]
    try:
        with _signals_stop_setup():
            if apt:
                if shutil.which("apt-get") is None:
                    print(f"setup-foreign: need {', '.join(dict.fromkeys(apt))} but apt-get is not available; "
                          "install them by hand", file=sys.stderr)
                    return 1
                _run(["apt-get", "update", "-qq"])
                with _no_service_starts():
                    _run([*APT_INSTALL, *dict.fromkeys(apt)])
            _keep_from_boot(chains)
            _remove_leftovers(chains, strict=False)
            for chain in chains:
                if chain.steps and _stale(chain):
                    for step in chain.steps:
                        _run(list(step), cwd=chain.dir if chain.dir.is_dir() else None)
    except (subprocess.CalledProcessError, OSError) as exc:
        print(f"setup-foreign: failed: {exc}", file=sys.stderr)
        return 1
    except Stopped as stop:
        print(f"setup-foreign: stopped by {stop}; no service was left starting, nothing left running", file=sys.stderr)
        return 128 + stop.signum
    missing = [(chain.name, chain.missing()) for chain in chains if chain.missing()]
    for name, why in missing:
        print(f"setup-foreign: {name} is still not ready: {why}", file=sys.stderr)
    for chain in chains:
        if not chain.missing():
            print(f"{chain.name}: ready")
    return 1 if missing else 0


def undo(chains: list[Toolchain]) -> int:
    try:
        for chain in chains:
            for name in chain.created:
                path = chain.dir / name
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path)
                elif path.exists() or path.is_symlink():
                    path.unlink()
                else:
                    continue
                print(f"removed {path}")
        _remove_leftovers(chains, strict=True)
        if _ours(HOOK):  # a setup killed while it installed
            HOOK.unlink()
            print(f"removed {HOOK}")
    except OSError as exc:
        print(f"setup-foreign --undo: failed: {exc}", file=sys.stderr)
        return 1
    print("setup-foreign --undo: done; the packages stay installed, and the services setup-foreign kept from "
          "starting at boot stay so")
    return 0


def cmd_setup_foreign(args) -> int:
    try:
        known = toolchains(args.peer_plugin)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    chosen = names(args.only) or list(known)
    unknown = [n for n in chosen if n not in known]
    if unknown:
        raise UsageError(f"unknown stack {', '.join(unknown)}; valid: {', '.join(known)}")
    return (undo if args.undo else setup)([known[n] for n in chosen])


def register(subparsers) -> None:
    command = subparsers.add_parser(
        "setup-foreign", help="install the foreign peers' toolchains (apt packages, npm modules), idempotently",
        description=__doc__.splitlines()[0])
    command.add_argument("--only", metavar="STACK,...", help="comma-separated stacks (default: all)")
    command.add_argument("--undo", action="store_true",
                         help="remove what setup-foreign added (built files, what earlier versions left), "
                              "apart from the packages")
    add_arguments(command, (PEER_PLUGIN,))
    command.set_defaults(func=cmd_setup_foreign)
