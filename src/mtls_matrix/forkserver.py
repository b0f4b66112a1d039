"""One process that imports the run's libraries once and forks its Python processes from there.

A pytest-xdist worker and a client process (isolate.py) each spend about a second importing
pytest, the peer libraries and the matrix before their first cell, and a run starts several of
both. A run on workers starts this server first (`mtls-matrix run` as soon as it has checked the
selection, else the plugin), with the run's scrubbed environment (selection.SCRUBBED: aiohttp
builds SSL contexts at import). The server is a fork of the controller when the controller has one
thread (it then has what the controller imported, without importing it again), else a new
interpreter that imports it, in the same order. What the controller imports later, the server
imports too when told. Each process asked of it is a fork, which starts in milliseconds with the
imports done.

A request passes the requester's stdin, stdout and stderr (SCM_RIGHTS), its working directory and
environment, and what to run: `python -c CODE` or `python -m MODULE`. The child takes them over
and runs that, as the interpreter would; the server answers with the child's pid. A requester that
is a process of its own (the launcher, below, which pytest-xdist starts in place of `python`) ends
with its child, and the child is killed if the requester dies first, so killing the requester
still kills the child.

Forking is safe only in a process with one thread: the server checks before each fork and refuses
otherwise, and so does a server that is gone or unreachable. A refused request falls back to
starting the interpreter (the launcher execs it), so the server saves time and changes nothing
else. It listens on a Unix socket in a private directory (mode 0700, the caller's), so only this
user's own processes can ask it for one. It reaps its children (their CPU time stays in the run's
count) and exits once asked to and they are gone; it dies with the process that started it.

Standard library only: the launcher runs it as a script (`python -I -S forkserver.py`).
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import gc
import io
import os
import pickle
import runpy
import select
import selectors
import shlex
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import traceback

ENV = "MTLS_MATRIX_FORKSERVER"  # the server's socket path, for the launcher and isolate.py
_HEADER = struct.Struct("!I")
_REAP_S = 0.5  # how often the server reaps between requests


def python_path() -> str:
    """This process's sys.path as a child's PYTHONPATH: peer plugins import there too."""
    return os.pathsep.join(p for p in sys.path if p)


def launcher_command() -> str:
    """What pytest-xdist runs as its `python` (an `--tx popen//python=` spec)."""
    return f"{shlex.quote(sys.executable)} -I -S {shlex.quote(os.path.abspath(__file__))}"


class Server:
    """The controller's handle on the fork server process: a fork of this process if it has one thread,
    else a new interpreter; either imports what of `preload` (this process's modules) it lacks."""

    def __init__(self, directory: str, preload: list[str], environ: dict[str, str]) -> None:
        self.dir = directory  # private (mode 0700): its socket is there
        self.path = os.path.join(directory, "socket")
        if _one_thread():
            self.proc: subprocess.Popen | _ForkedServer = _ForkedServer(self.path, preload, environ)
            return
        env = dict(environ, PYTHONPATH=python_path())
        self.proc = subprocess.Popen([sys.executable, "-m", "mtls_matrix.forkserver", self.path, *preload],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
        self.proc.stdout.readline()  # listening (or gone: then every request falls back)
        self.proc.stdout.close()

    def preload(self, names: list[str]) -> None:
        """Import these too (those not imported yet), before the next request."""
        try:
            self.proc.stdin.write((" ".join(names) + "\n").encode())
            self.proc.stdin.flush()
        except OSError:
            pass  # gone: every request falls back

    def close(self, timeout: float) -> None:
        """Stop taking requests, and wait (up to `timeout` seconds) for the forked processes to end.
        Once: closing again does nothing."""
        if self.proc.stdin.closed:
            return
        try:
            self.proc.stdin.close()  # the server's stop signal
            self.proc.wait(timeout)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


class _ForkedServer:
    """The server as a fork of this process, with what subprocess.Popen gives Server: pid, stdin
    (its control pipe), wait, kill. Its socket listens before the fork: no readiness to wait for."""

    def __init__(self, path: str, preload: list[str], environ: dict[str, str]) -> None:
        listener = _listen(path)
        control, feed = os.pipe()
        parent = os.getpid()
        for stream in (sys.stdout, sys.stderr):
            stream.flush()  # or the child would write what is buffered a second time
        self.pid = os.fork()
        if self.pid == 0:
            code = 1
            try:
                os.close(feed)
                os.dup2(control, 0)
                os.close(control)
                os.environ.clear()
                os.environ.update(environ)
                _serve(listener, preload, parent)  # what this process has not imported yet
                code = 0
            except BaseException:
                traceback.print_exc()
            finally:
                os._exit(code)  # never back into the caller's code, nor its exit handlers
        listener.close()
        os.close(control)
        self.stdin = io.open(feed, "wb")
        self.returncode: int | None = None
        self._pidfd = os.pidfd_open(self.pid)

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is None:
            ended = select.poll()
            ended.register(self._pidfd, select.POLLIN)
            if not ended.poll(None if timeout is None else timeout * 1000):
                raise subprocess.TimeoutExpired("the fork server", timeout)
            self.returncode = os.waitstatus_to_exitcode(os.waitpid(self.pid, 0)[1])  # reaped: its CPU is ours
            os.close(self._pidfd)
        return self.returncode

    def kill(self) -> None:
        if self.returncode is None:
            signal.pidfd_send_signal(self._pidfd, signal.SIGKILL)


def _one_thread() -> bool:
    """Forking is safe only here: no other thread can hold a lock the child would need."""
    return len(os.listdir("/proc/self/task")) == 1


@contextlib.contextmanager
def _address(path: str):
    """`path` as a socket address, through a descriptor of its directory: an address has at most
    107 bytes, and the temp dir may be deep."""
    directory = os.open(os.path.dirname(path), os.O_PATH)
    try:
        yield f"/proc/self/fd/{directory}/{os.path.basename(path)}"
    finally:
        os.close(directory)


def spawn(path: str, fds: tuple[int, int, int], run: tuple[str, str, list[str]], environ: dict[str, str],
          unbuffered: bool = True) -> tuple[socket.socket, int] | None:
    """A child of the server at `path` on these stdin, stdout and stderr, running `run`
    (("code", CODE, ARGS) or ("module", NAME, ARGS)): the connection it holds and its pid, or None
    if the server cannot fork one (gone, refused). The child is killed when the connection closes."""
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        with _address(path) as address:
            conn.connect(address)
        request = pickle.dumps((run, os.getcwd(), environ, unbuffered))
        socket.send_fds(conn, [_HEADER.pack(len(request)) + request], list(fds))
        answer = _receive_exactly(conn, _HEADER.size)
    except OSError:
        answer = b""
    if len(answer) < _HEADER.size:
        conn.close()
        return None
    return conn, _HEADER.unpack(answer)[0]


class Forked:
    """A child of the server, for its requester, as the subprocess.Popen it replaces: pid, stdin,
    stdout, poll, kill, wait. Not the requester's child: a pidfd tells when it has ended (its exit
    status is the server's to read, so `returncode` is 0 once it has ended, or -SIGKILL if killed)."""

    def __init__(self, conn: socket.socket, pid: int, stdin, stdout) -> None:
        self.conn, self.pid, self.stdin, self.stdout = conn, pid, stdin, stdout
        self.returncode: int | None = None
        try:
            self._pidfd: int | None = os.pidfd_open(pid)
        except OSError:  # already gone (and reaped)
            self._pidfd, self.returncode = None, 0

    @classmethod
    def start(cls, path: str, module: str, environ: dict[str, str]) -> Forked | None:
        """`python -m MODULE` with pipes to its stdin and stdout, or None if the server cannot."""
        child_in, stdin = os.pipe()
        stdout, child_out = os.pipe()
        forked = spawn(path, (child_in, child_out, 2), ("module", module, []), environ, unbuffered=False)
        os.close(child_in)
        os.close(child_out)
        if forked is None:
            os.close(stdin)
            os.close(stdout)
            return None
        return cls(*forked, io.open(stdin, "wb"), io.open(stdout, "rb"))

    def poll(self) -> int | None:
        return self.wait(0)

    def wait(self, timeout: float | None = None) -> int | None:
        if self.returncode is None:
            ended = select.poll()  # not select(): a worker's descriptors go past FD_SETSIZE
            ended.register(self._pidfd, select.POLLIN)
            if ended.poll(None if timeout is None else timeout * 1000):
                self._ended(0)
        return self.returncode

    def kill(self) -> None:
        if self.returncode is None:
            try:
                signal.pidfd_send_signal(self._pidfd, signal.SIGKILL)  # never another process that took its pid
            except ProcessLookupError:
                pass  # it has ended
            self.wait()
            self.returncode = -signal.SIGKILL

    def _ended(self, code: int) -> None:
        self.returncode = code
        os.close(self._pidfd)
        self.conn.close()


def _receive_exactly(conn: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        if not chunk:
            break
        data += chunk
    return data


def serve(path: str, preload: list[str]) -> None:
    """`python -m mtls_matrix.forkserver SOCKET MODULE...`: the server as a new interpreter."""
    listener = _listen(path)
    print("listening", flush=True)
    _serve(listener, preload, os.getppid())


def _listen(path: str) -> socket.socket:
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    with _address(path) as address:
        listener.bind(address)
    listener.listen(64)  # requests wait here while it imports
    return listener


def _serve(listener: socket.socket, preload: list[str], controller_pid: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)  # a Ctrl-C to the process group ends it quietly
    ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: dies with the controller
    if os.getppid() != controller_pid:
        return  # the controller was gone before the signal was set
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.close(devnull)
    _import(preload)
    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ)
    # stdin, by descriptor (in a fork of pytest, sys.stdin is its stand-in): lines of modules to import
    # too; its end: the controller is done
    controller = 0
    selector.register(controller, selectors.EVENT_READ)
    children: set[int] = set()
    pending = b""
    while True:
        events = selector.select(_REAP_S)
        _reap(children, block=False)
        if any(key.fileobj == controller for key, _ in events):  # before any request
            data = os.read(controller, 1 << 16)
            if not data:
                break
            *lines, pending = (pending + data).split(b"\n")
            _import([name.decode() for line in lines for name in line.split()])
        elif events:
            conn, _ = listener.accept()
            pid = _fork(conn, listener)
            if pid:
                children.add(pid)
    listener.close()
    _reap(children, block=True)  # so their CPU time counts in the controller's


def _import(names: list[str]) -> None:
    for name in names:
        if name not in sys.modules:
            try:
                __import__(name)
            except Exception:
                pass  # a process that needs it imports it itself, and meets the same error there


def _reap(children: set[int], block: bool) -> None:
    for pid in list(children):
        try:
            done, _ = os.waitpid(pid, 0 if block else os.WNOHANG)
        except ChildProcessError:
            done = pid
        if done:
            children.discard(pid)


def _fork(conn: socket.socket, listener: socket.socket) -> int:
    """Fork the child a request asks for; its pid (0 when refused)."""
    with conn:
        try:
            header, fds, _, _ = socket.recv_fds(conn, _HEADER.size, 3)
            request = pickle.loads(_receive_exactly(conn, _HEADER.unpack(header)[0]))
        except (OSError, struct.error, pickle.UnpicklingError, EOFError):
            return 0
        if len(fds) != 3 or not _one_thread():
            for fd in fds:
                os.close(fd)
            return 0
        # what the server holds, out of the children's collections: each would walk all of it, and
        # so copy every page it shares with the server (about 0.1 s of a worker's CPU)
        gc.freeze()
        pid = os.fork()
        if pid == 0:
            listener.close()
            _child(conn, fds, *request)  # never returns
        for fd in fds:
            os.close(fd)
        conn.sendall(_HEADER.pack(pid))
        return pid


def _child(conn: socket.socket, fds: list[int], run: tuple[str, str, list[str]], cwd: str, environ: dict[str, str],
           unbuffered: bool) -> None:
    code = 1
    try:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)
        os.chdir(cwd)
        os.environ.clear()
        os.environ.update(environ)
        _standard_streams(unbuffered)
        threading.Thread(target=_die_with_requester, args=(conn.detach(),), daemon=True).start()
        kind, what, args = run
        if kind == "code":
            sys.argv = ["-c", *args]
            exec(compile(what, "<string>", "exec"), {"__name__": "__main__", "__builtins__": __builtins__})
        else:
            sys.argv = [what, *args]
            runpy.run_module(what, run_name="__main__", alter_sys=True)
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (exc.code is not None)
    except BaseException:
        traceback.print_exc()
    finally:
        atexit._run_exitfuncs()
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        os._exit(code)


def _standard_streams(unbuffered: bool) -> None:
    """sys.stdin, stdout and stderr on the requester's descriptors, as `python [-u]` makes them."""
    sys.stdin = sys.__stdin__ = io.TextIOWrapper(io.open(0, "rb", closefd=False))
    for fd, name in ((1, "stdout"), (2, "stderr")):
        raw = io.open(fd, "wb", buffering=0 if unbuffered else -1, closefd=False)
        stream = io.TextIOWrapper(raw, write_through=unbuffered or fd == 2, line_buffering=fd == 2,
                                  errors="backslashreplace" if fd == 2 else None)
        setattr(sys, name, stream)
        setattr(sys, f"__{name}__", stream)


def _program(argv: list[str]) -> tuple[list[str], tuple[str, str, list[str]] | None]:
    """`python ARGV`'s options, and what it runs: ("code", CODE, ARGS) for `-c`, ("module", NAME,
    ARGS) for `-m` (None for anything else: a script, the REPL)."""
    for i, arg in enumerate(argv[:-1]):
        if arg in ("-c", "-m"):
            return argv[:i], ("code" if arg == "-c" else "module", argv[i + 1], argv[i + 2:])
    return argv, None


def _die_with_requester(fd: int) -> None:
    conn = socket.socket(fileno=fd)
    while conn.recv(1):
        pass
    os.kill(os.getpid(), signal.SIGKILL)


def launch(argv: list[str]) -> None:
    """Run `python ARGV` (pytest-xdist's `-u [-B] -c CODE`; or `-m MODULE ARGS`) as a child of the
    fork server, and end with it; when the server cannot, exec the interpreter itself."""
    path = os.environ.get(ENV)
    options, run = _program(argv)
    forked = path and run and spawn(path, (0, 1, 2), run, dict(os.environ), unbuffered="-u" in options)
    if not forked:
        os.execv(sys.executable, [sys.executable, *argv])
    conn, pid = forked
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, lambda signum, frame: os.kill(pid, signum))
    while conn.recv(1):
        pass
    os._exit(0)


if __name__ == "__main__":
    if __spec__ is None:  # run as a script: the launcher
        launch(sys.argv[1:])
    else:  # python -m mtls_matrix.forkserver SOCKET MODULE...
        serve(sys.argv[1], sys.argv[2:])
