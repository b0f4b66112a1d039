"""Every wait the harness chooses, in seconds, one name each. A library's own timers are facts about
that library and stay in its peer module (tornado's CLOSE_ABORT_S, Ruby's and HAProxy's TIMEOUTS)."""

from __future__ import annotations

# -- judging: what the verdict counts as prompt, slow, or the library's own timer ------------------

# `fail`: noticing a broken peer takes no timeout; later than this, a timeout noticed it. No library's
# default timeout is this short (the shortest the matrix reads is websocket-client's 3 s close), and a
# client in another process, on a loaded machine, reports a prompt failure over a second late
PROMPT_S = 2.0
ADVISORY_WAIT_S = 10.0  # an outcome that took the user this long, on the library's own clock, is worth an advisory
# A cell that waits on a timer of the library's own waits its documented default plus this margin (the
# larger one): the timer starts after the connection's own setup, and fires and its error reaches the
# user late on a loaded machine
CLOCK_MARGIN_S = 5.0
CLOCK_MARGIN = 0.25
# the longest library timeout the matrix waits out: a longer one (aiohttp's 300 s session total) is
# recorded with the cell, which then waits the harness's deadline
LONGEST_WAIT_S = 75.0
# The one slowdown factor for a busy machine: a HANG that only the harness's own deadline decided is
# rerun (--confirm, --baseline: repeat.py) with this many times that deadline, so a busy machine's
# slowness is told apart from a library that never ends
HARNESS_HANG_STRETCH = 4

# -- a cell -----------------------------------------------------------------------------------------

SETTLE_S = 0.5  # how long to wait for the server's side of a story the client already finished
CLIENT_STOP_GRACE_S = 0.5  # how long a stopped client gets to unwind after the deadline
LEAK_SETTLE_S = 0.1  # rejection cells: how long the peers get to close what they opened before it counts as left
# ... when a peer runs in another process: its close travels through its own scheduler (and a
# loaded machine's) before /proc shows it; only a cell that still sees a socket waits this long
FOREIGN_LEAK_SETTLE_S = 0.5
RESTART_GAP_S = 0.3  # how long a restarting server is away: a reconnect attempt or two meet a closed port

# -- the hostile and waiting batches (hostile.py) ---------------------------------------------------

RELEASE_S = 0.5  # after the connection ended: how long the peer under test gets to close its socket
BATCH_CLOSE_GRACE_S = 0.1  # closing the batch: its threads end an instant after the last cell was taken
# A batch starts this long after the one before it: by then that one's start (handshakes, server and
# process starts, the hostile faults and the reactions judged within PROMPT_S) is over, and the cells
# that remain only wait
BATCH_STAGGER_S = 8.0
# the waiting cells each start a server of their own (a Node process, an nginx): they start this far
# apart, so their start-up does not starve the opening handshakes of the cells running meanwhile
WAITS_PACE_S = 0.1

# -- servers and processes --------------------------------------------------------------------------

# how long a server the harness stops waits for the handlers still running (a long-poll, a client that
# hangs) before it cancels them: the libraries' own defaults (aiohttp: 60 s) would outlast the cell
HANDLER_STOP_GRACE_S = 0.25
CLIENT_PROCESS_START_S = 60.0  # importing the libraries in a new client process (isolate.py), on a loaded machine
CLIENT_PROCESS_REPLY_GRACE_S = 2.0  # after the cell's own deadline and stop grace: the round trip, pickling
FOREIGN_START_S = 15.0  # a foreign server process must report `listening` within this
FOREIGN_STOP_GRACE_S = 1.0  # after stdin EOF: how long a foreign process gets to exit before its group is killed
FOREIGN_RESPONSIVE_S = 0.5  # a foreign client process must answer the close of an abandoned connection within this
PROXY_START_S = 5.0  # a proxy (nginx, HAProxy) must accept connections within this
PROXY_STOP_GRACE_S = 2.0  # after SIGTERM: how long a proxy gets to exit before it is killed
BROWSER_START_S = 30.0  # Chromium must answer on its DevTools pipe within this
# a page cannot set a WebSocket timeout; with none from the harness (hostile groups) the browser's
# own timers decide and the cell's deadline ends the wait
BROWSER_OWN_TIMEOUT_S = 600.0
SERVE_POLL_S = 0.05  # werkzeug's serve_forever polls its stop flag this often (its default: 0.5 s)
FORKED_EXIT_S = 10.0  # for the fork server's last processes to end once the run is done (pytest-xdist's own wait)
KILLED_WAIT_S = 0.5  # a SIGKILLed process is gone within milliseconds, even on a loaded machine
SETUP_STOP_GRACE_S = 10.0  # a stopped setup-foreign gives the command in progress this long to end before killing it
