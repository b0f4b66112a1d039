"""What the two peers of a rejected connection left behind once the cell settled.

Observed, never judged: a leak does not change a verdict. Measured after every rejection cell
(groups client-rejected and server-rejected) by cell.run_cell:

- open TCP sockets on the cell's connection, by side, of this process and of the cell's
  out-of-process peers (a foreign server or client process, a proxy, a browser: Peer.processes(),
  read from outside through /proc/PID/fd; such a process serves this worker only, one cell at a
  time but for the hostile batch beside, whose cells have listeners of their own: what is new on
  the cell's port during the cell is that cell's): the client's are those whose
  remote port is the listener's, the server's those whose local port is the listener's (not the
  listening socket). /proc/net/tcp lists the whole network namespace: only entries whose inode is
  one of this process's descriptors count (TIME_WAIT holds none), and only those that were not
  there when the cell started (a listener serves many cells);
- pending tasks on the client's loop right before it is closed, and the increase of the server
  loop's pending tasks over the cell;
- ResourceWarnings emitted while the cell was current (unclosed sockets, transports), which the
  default filters would drop. A warning emitted later (an object in a reference cycle, collected
  by a later gc) is attributed to the cell current then: no gc.collect per cell, it costs too much.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import re
import socket
import stat
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import psutil

from mtls_matrix import isolate
from mtls_matrix.results import EARLIER_CELL

EARLIER = EARLIER_CELL  # prefix of a warning about a socket of another listener
LISTEN = "0A"  # TCP states in /proc/net/tcp
TIME_WAIT = "06"
CLOSE = "07"  # a reset connection's socket: /proc/net/tcp lists it no more, its descriptor still holds it


@dataclass(frozen=True)
class TCPSocket:
    address: str  # local address
    port: int  # local port
    remote_port: int
    state: str  # hex, as /proc prints it
    inode: str


def _sockets_of(pid: int | str) -> dict[str, int]:
    """inode -> descriptor of every socket process `pid` holds."""
    if pid == "self":  # fstat is a plain system call; readlink walks /proc for each descriptor
        return _own_sockets()
    mine = {}
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return mine  # it ended meanwhile
    for fd in fds:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            mine[target[8:-1]] = int(fd)
    return mine


def _own_sockets() -> dict[str, int]:
    mine = {}
    for fd in os.listdir("/proc/self/fd"):
        try:
            info = os.fstat(int(fd))
        except OSError:
            continue  # the listing's own descriptor, or closed meanwhile
        if stat.S_ISSOCK(info.st_mode):
            mine[str(info.st_ino)] = int(fd)
    return mine


def _my_sockets() -> dict[str, int]:
    return _sockets_of("self")


def _children(pid: int) -> list[int] | None:
    """The processes `pid` started, from its threads' /proc children lists: psutil would read every
    process's /proc entry on the machine to find them, twice per cell. None without those lists
    (a kernel built without them); [] for a process that ended."""
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return []
    children = []
    for task in tasks:
        try:
            children += [int(child) for child in Path(f"/proc/{pid}/task/{task}/children").read_text().split()]
        except FileNotFoundError:
            if not Path(f"/proc/{pid}/task/{task}").exists():
                continue  # a thread that ended
            return None
        except OSError:
            continue
    return children


def with_children(pids: tuple[int, ...]) -> list[int]:
    """`pids` and every process they started, transitively (nginx's workers, a browser's network
    service); a process that ended meanwhile is left out."""
    found = []
    for pid in pids:
        if not Path(f"/proc/{pid}").exists():
            continue
        tree, i = [pid], 0
        while i < len(tree):
            children = _children(tree[i])
            if children is None:
                tree = _psutil_tree(pid)
                break
            tree += [child for child in children if child not in tree]
            i += 1
        found += [p for p in tree if p not in found]
    return found


def _psutil_tree(pid: int) -> list[int]:
    try:
        return [pid, *(child.pid for child in psutil.Process(pid).children(recursive=True))]
    except psutil.Error:
        return []


def _my_socket_inodes(own: dict[str, int] | None = None, peers: Iterable[int] = ()) -> set[str]:
    """The sockets of this process and of its client processes (isolate.py): a blocking client
    runs there, and what it leaves open is its own leak all the same; and those of the cell's
    out-of-process peers (`peers`: with_children(Peer.processes()))."""
    inodes = set(_my_sockets() if own is None else own)
    for pid in (*isolate.POOL.pids(), *peers):
        inodes |= set(_sockets_of(pid))
    return inodes


def tcp_sockets(mine: set[str] | None = None, pid: int | str = "self") -> list[TCPSocket]:
    """This process's (or process `pid`'s, a proxy's) TCP sockets (IPv4 and IPv6), from
    /proc/PID/net/tcp{,6}; `mine`: the socket inodes that count, if known already."""
    if mine is None:
        mine = _my_socket_inodes() if pid == "self" else set(_sockets_of(pid))
    if not mine:
        return []
    # the table lists the whole network namespace, thousands of TIME_WAIT lines late in a run: only
    # the lines naming one of these inodes are split (a field that merely equals one is dropped below)
    naming = re.compile(r"^.* (?:%s) .*$" % "|".join(sorted(mine)), re.M)
    found = []
    for table, size in ((f"/proc/{pid}/net/tcp", 4), (f"/proc/{pid}/net/tcp6", 16)):
        try:
            text = Path(table).read_text()
        except OSError:
            continue
        for line in naming.findall(text):
            fields = line.split()
            if len(fields) < 10 or fields[9] not in mine:
                continue
            address, port = fields[1].split(":")
            raw = bytes.fromhex(address)
            ordered = b"".join(raw[i:i + 4][::-1] for i in range(0, size, 4))  # host-order 32-bit words
            found.append(TCPSocket(str(ipaddress.ip_address(ordered)), int(port, 16),
                                   int(fields[2].split(":")[1], 16), fields[3], fields[9]))
    return found


def own_tcp_sockets(mine: dict[str, int]) -> list[TCPSocket]:
    """This process's TCP sockets among `mine` (inode -> descriptor), looked at through their
    descriptors (TCP_INFO's state, as /proc/net/tcp prints it): a few system calls per socket
    instead of reading the namespace's whole table. A reset connection's socket shows state CLOSE."""
    found = []
    for inode, fd in mine.items():
        try:
            if str(os.fstat(fd).st_ino) != inode:
                continue  # closed meanwhile, the descriptor reused
            probe = socket.socket(fileno=os.dup(fd))
        except OSError:
            continue
        with probe:
            if probe.family not in (socket.AF_INET, socket.AF_INET6) or probe.type != socket.SOCK_STREAM:
                continue
            try:
                state = probe.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)[0]
                address, port = probe.getsockname()[:2]
            except OSError:
                continue
            try:
                remote_port = probe.getpeername()[1]
            except OSError:
                remote_port = 0  # not connected (any more)
        found.append(TCPSocket(address, port, remote_port, f"{state:02X}", inode))
    return found


def listening_addresses(pid: int | str = "self") -> set[tuple[str, int]]:
    """(address, port) of the TCP sockets this process (or process `pid`: a proxy, a foreign server) listens on."""
    return {(s.address, s.port) for s in tcp_sockets(pid=pid) if s.state == LISTEN}


def socket_inodes(peers: Iterable[int] = ()) -> set[str]:
    """What connection_sockets compares with: every socket this process (and the processes of the
    cell's out-of-process peers, `peers`: with_children(...)) holds, at cell start."""
    return _my_socket_inodes(peers=peers)


def connection_sockets(port: int, before: set[str], peers: Iterable[int] = ()) -> tuple[int, int]:
    """Open sockets on connections to the listener at `port` that were not there `before`, of this
    process and of the cell's out-of-process peers (`peers`: with_children(...), found once by a
    caller that polls): (client side, server side). A socket whose connection was reset is no longer
    in /proc/net/tcp but still holds its descriptor: a TCP socket of this process new to the cell in
    state CLOSE counts as the server's if its local port is the listener's, else as the client's (a
    process runs one cell at a time, and the listener was started before the cell). Another
    process's socket is looked up in /proc/net/tcp, and not counted when it is not listed there:
    from outside, nothing says which connection it was."""
    mine = _my_sockets()
    new = _my_socket_inodes(mine, peers) - before
    if not new:
        return 0, 0
    client = server = 0
    own = own_tcp_sockets({inode: mine[inode] for inode in new if inode in mine})
    others = tcp_sockets(new - set(mine)) if new - set(mine) else []
    for s in own + others:
        if s.state in (LISTEN, TIME_WAIT):
            continue
        if s.state == CLOSE:
            server += s.port == port
            client += bool(s.port) and s.port != port
        elif s.remote_port == port:
            client += 1
        elif s.port == port:
            server += 1
    return client, server


def open_on(port: int) -> tuple[int, int]:
    """This process's sockets of live connections to the listener at `port` (a port only one cell
    uses): (client side, server side). TIME_WAIT holds no descriptor; a CLOSE_WAIT socket (the
    other side closed, this one did not) counts: it is exactly what a peer forgot to close."""
    client = server = 0
    for s in own_tcp_sockets(_my_sockets()):
        if s.state in (LISTEN, TIME_WAIT, CLOSE):
            continue
        client += s.remote_port == port
        server += s.port == port
    return client, server


def server_tasks(loop: asyncio.AbstractEventLoop) -> int | None:
    """Pending tasks on a ServerHost's loop, counted from another thread: all_tasks() copes with
    the task set changing while it reads it (it retries), and a round trip through the loop costs
    a thread switch per call. None if it cannot tell."""
    try:
        return len(asyncio.all_tasks(loop))
    except RuntimeError:
        return None


def short_warning(message) -> str:
    text = str(message)
    return text if len(text) <= 200 else text[:197] + "..."


@contextlib.contextmanager
def resource_warnings(sink: list[str]):
    """Within the block, every ResourceWarning (from any thread: warnings are process-wide, and
    a process runs one cell at a time) goes to `sink` instead of being dropped by the default
    filter; other warnings go where they went before (pytest's capture)."""
    with warnings.catch_warnings():
        warnings.simplefilter("always", ResourceWarning)
        previous = warnings.showwarning

        def show(message, category, filename, lineno, file=None, line=None):
            if issubclass(category, ResourceWarning):
                sink.append(short_warning(message))
            else:
                previous(message, category, filename, lineno, file, line)

        warnings.showwarning = show
        yield sink
