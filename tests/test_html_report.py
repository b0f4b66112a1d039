"""The HTML report and the heatmap SVG, on small hand-built results.

The SVG and the JSON embedding are checked as text. The page itself is checked in a real
headless Chromium driven over the DevTools protocol: it must load without a JS error, draw the
heatmap with the right counts, open a cell's drill-down from two clicks, and recount on a filter.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
import select
import signal
import subprocess
import time
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

import pytest

from mtls_matrix.reports.heatmap import COLOURS, render_svg
from mtls_matrix.reports.html import embed_json, render_html
from mtls_matrix.results import Cell, Clarity, ErrorInfo, Rejection, Results, Run, ServerSaw, Step, TLSSide, Verdict
from tests.conftest import mtls_matrix

CHROMIUM = Path("/usr/bin/chromium")
SERVERS = ("server:alpha", "server:beta")
CLIENTS = ("client:one[a=1]", "client:one[b=2]", "client:two")
HOSTILE = "</script><script>window.pwned=1</script><!-- <img id=pwned src=x onerror=window.pwned=2> & \u2028"
# (scenario, group, tags, profile)
SITUATIONS = [
    ("mtls-ok", "works", ["tls13"], "default"),
    ("tls12-only", "works", ["tls12"], "default"),
    ("client-expired", "client-rejected", ["tls13"], "default"),
    ("client-expired-tls12", "client-rejected", ["tls12"], "default"),
    ("io-1mib", "io", ["large", "tls13"], "default"),
    ("io-1mib", "io", ["large", "tls13"], "tuned"),
]
TOO_BIG = dict(verdict=Verdict.FAIL, phase="io", reason="binary: " + HOSTILE,
               error=ErrorInfo(canonical="MESSAGE_TOO_BIG", type="lib.Closed", message="1009 " + HOSTILE,
                               clarity=Clarity.OPAQUE,
                               chain=["Closed: 1009", "ConnectionResetError: reset"]),
               steps=[Step(op="binary", ok=False, detail="closed 1009", ms=51.9)])
INSECURE = dict(verdict=Verdict.INSECURE, phase="io", reason="accepted although the server must reject")
LATE = dict(verdict=Verdict.FAIL, phase="upgrade", reason="rejected late",
            error=ErrorInfo(canonical="CONNECTION_RESET", type="ConnectionResetError", message=""),
            rejection=Rejection(by="server", canonical="CERT_EXPIRED", phase="verification"))


def short(peer: str) -> str:
    return peer.split(":", 1)[1]


def make_cell(server: str, client: str, situation: tuple, **outcome) -> Cell:
    scenario, group, tags, profile = situation
    base = {"verdict": Verdict.PASS, "phase": "io", "reason": "connected",
            "client_tls": TLSSide(handshake="ok", version="TLSv1.3", cipher="TLS_AES_256_GCM_SHA384",
                                  peer_cn="localhost"),
            "server_saw": ServerSaw(accepted_tcp=True, tls=TLSSide(handshake="ok", peer_cn="client"), handler_ran=True,
                                    handler_peer_cn="client", close_code=1000, close_reason="done"),
            "timings": {"tcp": 1.5, "tls-handshake": 4.0, "upgrade": 6.0, "handler": 6.5, "io": 9.0, "total": 9.5}}
    suffix = "-tuned" if profile == "tuned" else ""
    return Cell(id=f"{short(server)}-{short(client)}-{scenario}{suffix}", server=server, client=client,
                scenario=scenario, group=group, tags=tags, profile=profile, expectation="as the catalogue says",
                versions={"alpha": "1.0", "one": "3.0"},
                repro=f"mtls-matrix run --servers {short(server)} --clients '{short(client)}' --scenarios {scenario} "
                      f"--profile {profile} --out reports/repro",
                **{**base, **outcome})


def sample() -> Results:
    """2 servers x 3 clients x 6 situations; a few non-PASS cells in known places."""
    special = {
        ("server:alpha", "client:one[a=1]", "io-1mib", "default"): TOO_BIG,
        ("server:alpha", "client:one[a=1]", "client-expired-tls12", "default"): INSECURE,
        ("server:beta", "client:two", "client-expired", "default"): LATE,
        ("server:beta", "client:two", "tls12-only", "default"): dict(verdict=Verdict.UNSUPPORTED, phase="tcp"),
    }
    cells = [make_cell(s, c, sit, **special.get((s, c, sit[0], sit[3]), {}))
             for s in SERVERS for c in CLIENTS for sit in SITUATIONS]
    run = Run(started="2030-01-01T00:00:00+00:00", python="3.12.0", openssl="OpenSSL 3.0.0", platform="Linux",
              versions={"alpha": "1.0"}, ca_fingerprint="ab" * 32, deadline_s=5.0, profiles=["default", "tuned"])
    return Results(run=run, cells=cells)


def expected_counts(results: Results, keep=lambda c: True) -> dict[tuple[str, str], Counter]:
    tallies: dict[tuple[str, str], Counter] = {(s, c): Counter() for s in SERVERS for c in CLIENTS}
    for c in results.cells:
        if keep(c):
            tallies[(c.server, c.client)][c.verdict.value] += 1
    return tallies


# --------------------------------------------------------------------------- SVG and embedding

def test_svg_is_wellformed_with_one_square_per_pair_coloured_by_worst_verdict():
    results = sample()
    root = ET.fromstring(render_svg(results))
    ns = "{http://www.w3.org/2000/svg}"
    assert root.tag == f"{ns}svg"
    squares = root.findall(f"{ns}rect[@class='pair']")
    assert len(squares) == len(SERVERS) * len(CLIENTS)
    titles = Counter(sq.find(f"{ns}title").text for sq in squares)
    assert titles["1 INSECURE, 1 FAIL, 4 PASS"] == 1  # alpha x one[a=1]: INSECURE outranks FAIL
    assert titles["1 FAIL, 1 UNSUPPORTED, 4 PASS"] == 1  # beta x two
    assert titles["6 PASS"] == 4
    fills = Counter(sq.get("fill") for sq in squares)
    assert fills == {COLOURS[Verdict.INSECURE][0]: 1, COLOURS[Verdict.FAIL][0]: 1, COLOURS[Verdict.PASS][0]: 4}
    texts = [t.text for t in root.iter(f"{ns}text")]
    assert texts.count("6 PASS") == 4 and "1 INSECURE" in texts and "one[a=1]" in texts and "beta" in texts
    assert all(v.value in texts for v in Verdict)  # the legend


def test_svg_escapes_names():
    results = sample()
    results.cells[0].client = "client:x<&>"
    ET.fromstring(render_svg(results))  # raises on unescaped markup


def test_embedded_json_cannot_close_the_script_and_reads_back_unchanged():
    data = {"reason": HOSTILE, "n": 0, "ok": True}
    text = embed_json(data)
    assert "<" not in text and ">" not in text and "&" not in text and "\u2028" not in text
    assert json.loads(text) == data


def test_page_embeds_every_cell_once_and_loads_nothing_external():
    results = sample()
    page = render_html(results)
    assert page.count("</script>") == 2  # the data block and the script: the hostile reason did not add one
    data = json.loads(re.search(r'<script type="application/json" id="data">(.*?)</script>', page, re.S).group(1))
    assert sorted(c["id"] for c in data["cells"]) == sorted(c.id for c in results.cells)
    fail = next(c for c in data["cells"] if c["verdict"] == "FAIL" and c["scenario"] == "io-1mib")
    assert fail["error"]["message"] == "1009 " + HOSTILE and "ok" not in fail["steps"][0]
    assert "rejection" not in fail  # empty values are stripped; the page reads them as empty
    assert not re.search(r"(src|href)\s*=\s*[\"']?(https?:)?//|@import|url\(", page)


def test_report_command_writes_html_and_svg_and_bugs_embeds_the_svg(tmp_path):
    source = tmp_path / "results.json"
    sample().save(source)
    proc = mtls_matrix("report", str(source), "--out", str(tmp_path / "BUGS.md"),
                       "--html", str(tmp_path / "out" / "report.html"), "--svg", str(tmp_path / "docs" / "heatmap.svg"))
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "out" / "report.html").read_text().startswith("<!DOCTYPE html>")
    ET.fromstring((tmp_path / "docs" / "heatmap.svg").read_text())
    assert "![heatmap](docs/heatmap.svg)" in (tmp_path / "BUGS.md").read_text()  # relative to BUGS.md
    plain = mtls_matrix("report", str(source), "--out", str(tmp_path / "plain.md"))
    assert plain.returncode == 0 and "![heatmap]" not in (tmp_path / "plain.md").read_text()


# --------------------------------------------------------------------------- the page in Chromium

class Pipe:
    """Chromium's end of --remote-debugging-pipe (fds 3 and 4 in the browser): NUL-separated JSON
    both ways, as peers/chromium.py speaks it. Unlike a debugging port, no other local user can
    reach it."""

    def __init__(self, to_browser: int, from_browser: int):
        self.to_browser, self.from_browser = to_browser, from_browser
        self.ids = itertools.count(1)
        self.buffer = b""

    def send(self, method: str, params: dict, session: str | None) -> int:
        ident = next(self.ids)
        data = json.dumps({"id": ident, "method": method, "params": params,
                           **({"sessionId": session} if session else {})}).encode() + b"\0"
        while data:
            data = data[os.write(self.to_browser, data):]
        return ident

    def recv(self, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        while b"\0" not in self.buffer:
            ready, _, _ = select.select([self.from_browser], [], [], max(0.0, deadline - time.monotonic()))
            assert ready, f"no DevTools message within {timeout} s"
            chunk = os.read(self.from_browser, 1 << 16)
            assert chunk, "the browser closed the DevTools pipe"
            self.buffer += chunk
        message, _, self.buffer = self.buffer.partition(b"\0")
        return json.loads(message)


class DevTools:
    """A minimal DevTools protocol client of one session (a page target's, or the browser's when
    `session` is None) over the browser's pipe."""

    def __init__(self, pipe: Pipe, session: str | None = None, timeout: float = 20):
        self.pipe, self.session, self.timeout = pipe, session, timeout
        self.events: list[dict] = []

    def _recv(self, timeout: float) -> dict:
        while True:
            message = self.pipe.recv(timeout)
            if message.get("sessionId") == self.session:
                return message

    def call(self, method: str, **params) -> dict:
        ident = self.pipe.send(method, params, self.session)
        while True:
            message = self._recv(self.timeout)
            if message.get("id") == ident:
                assert "error" not in message, f"{method}: {message['error']}"
                return message["result"]
            self.events.append(message)

    def wait_for(self, event: str, timeout: float = 15) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = next((e for e in self.events if e.get("method") == event), None)
            if found:
                self.events.remove(found)
                return found
            self.events.append(self._recv(max(0.0, deadline - time.monotonic())))
        raise AssertionError(f"no {event} within {timeout} s")

    def js(self, expression: str):
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        assert "exceptionDetails" not in result, f"{expression}: {result['exceptionDetails']}"
        return result["result"].get("value")

    def click(self, selector: str) -> None:
        """A real mouse click at the element's centre, as a user would."""
        box = self.js(f"(() => {{ const e = document.querySelector({json.dumps(selector)}); e.scrollIntoView(); "
                      f"const r = e.getBoundingClientRect(); return [r.x + r.width / 2, r.y + r.height / 2]; }})()")
        for kind in ("mousePressed", "mouseReleased"):
            self.call("Input.dispatchMouseEvent", type=kind, x=box[0], y=box[1], button="left", clickCount=1)

    def errors(self) -> list[dict]:
        bad = {"Runtime.exceptionThrown"}
        return [e for e in self.events if e.get("method") in bad
                or (e.get("method") == "Runtime.consoleAPICalled" and e["params"]["type"] == "error")
                or (e.get("method") == "Log.entryAdded" and e["params"]["entry"]["level"] == "error")]


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """Headless Chromium driven over its DevTools pipe; its own process group, killed whole at the end."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} not found: install it with `apt-get update && apt-get install -y chromium`")
    profile = tmp_path_factory.mktemp("chromium-profile")
    to_browser_r, to_browser_w = os.pipe()
    from_browser_r, from_browser_w = os.pipe()
    # the browser wants the pipe on fds 3 and 4; bash puts it there (dash takes single digits only)
    proc = subprocess.Popen(
        ["/bin/bash", "-c", f'exec "$0" "$@" 3<&{to_browser_r} 4>&{from_browser_w}', str(CHROMIUM),
         "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--remote-debugging-pipe", f"--user-data-dir={profile}", "--window-size=1400,1000", "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, pass_fds=(to_browser_r, from_browser_w),
        start_new_session=True)
    os.close(to_browser_r)
    os.close(from_browser_w)
    try:
        yield Pipe(to_browser_w, from_browser_r)
    finally:
        os.close(to_browser_w)  # EOF on the pipe ends the browser
        os.killpg(proc.pid, signal.SIGKILL)  # and anything it left
        proc.wait(timeout=10)
        os.close(from_browser_r)


@contextlib.contextmanager
def open_report(pipe: Pipe, path: Path, fragment: str = ""):
    """The report at `path`, loaded in the browser's page (`#fragment` appended); yields DevTools."""
    browser = DevTools(pipe)
    target = next(t for t in browser.call("Target.getTargets")["targetInfos"] if t["type"] == "page")
    session = browser.call("Target.attachToTarget", targetId=target["targetId"], flatten=True)["sessionId"]
    tools = DevTools(pipe, session)
    try:
        for domain in ("Page", "Runtime", "Log"):
            tools.call(f"{domain}.enable")
        tools.call("Page.navigate", url=path.as_uri() + fragment)
        tools.wait_for("Page.loadEventFired")
        yield tools
    finally:
        browser.call("Target.detachFromTarget", sessionId=session)


@pytest.fixture
def page(browser, tmp_path):
    """The sample report, freshly loaded in a page; returns (DevTools, results)."""
    results = sample()
    path = tmp_path / "report.html"
    path.write_text(render_html(results))
    with open_report(browser, path) as tools:
        yield tools, results


def entry_counts(tools: DevTools) -> dict[tuple[str, str], Counter]:
    raw = tools.js("[...document.querySelectorAll('#heatmap td.entry')].map((td) => [td.dataset.server, "
                   "td.dataset.client, [...td.querySelectorAll('span[data-verdict]')]"
                   ".map((s) => [s.dataset.verdict, +s.dataset.count])])")
    return {(server, client): Counter(dict(spans)) for server, client, spans in raw}


def test_page_loads_and_draws_the_heatmap(page):
    tools, results = page
    assert tools.errors() == []
    assert tools.js("document.querySelectorAll('#heatmap tbody tr').length") == len(CLIENTS)
    assert tools.js("document.querySelectorAll('#heatmap thead th').length") == len(SERVERS) + 1
    assert tools.js("[...document.querySelectorAll('#heatmap tbody th')].map((th) => th.textContent)") == \
        [short(c) for c in CLIENTS]
    assert entry_counts(tools) == expected_counts(results)
    worst = tools.js("getComputedStyle(document.querySelector('td.entry[data-server=\"server:alpha\"]"
                     "[data-client=\"client:one[a=1]\"]')).backgroundColor")
    assert worst == "rgb(106, 27, 154)"  # INSECURE's purple: the worst verdict dominates
    assert tools.js("performance.getEntriesByType('resource').length") == 0  # nothing fetched


def test_clicking_a_pair_then_a_cell_opens_its_drilldown(page):
    tools, results = page
    target = next(c for c in results.cells if c.verdict == Verdict.FAIL and c.scenario == "io-1mib")
    tools.click('td.entry[data-server="server:alpha"][data-client="client:one[a=1]"]')
    assert tools.js("document.querySelectorAll('#cells tbody tr').length") == len(SITUATIONS)
    assert tools.js("document.getElementById('drill').hidden") is True
    tools.click(f"#cells tbody tr[data-id={json.dumps(target.id)}]")
    drill = tools.js("document.getElementById('drill').innerText")
    assert tools.js("document.getElementById('drill-id').textContent") == target.id
    assert tools.js("document.querySelector('#drill .badge').textContent") == "FAIL"
    assert tools.js("document.getElementById('drill-canonical').textContent") == "MESSAGE_TOO_BIG"
    assert tools.js("document.getElementById('drill-repro').textContent") == target.repro
    for shown in ("as the catalogue says", "lib.Closed", "ConnectionResetError: reset", "closed 1009", "1.5 ms",
                  "outcome decided here", "nobody rejected", "TLS_AES_256_GCM_SHA384", "handler ran"):
        assert shown in drill, shown
    # The hostile message is shown as text; nothing it contains ran or became an element.
    assert tools.js("document.getElementById('drill-reason').textContent") == target.reason
    assert tools.js("[window.pwned, document.getElementById('pwned')]") == [None, None]
    assert tools.js("decodeURIComponent(location.hash)") == "#cell=" + target.id  # a link to this cell
    assert tools.errors() == []


def test_filters_recount_the_heatmap(page):
    tools, results = page
    tools.click("#f-group-io")
    assert entry_counts(tools) == expected_counts(results, lambda c: c.group != "io")
    tools.click("#f-tls-tls12")
    assert entry_counts(tools) == expected_counts(results, lambda c: c.group != "io" and "tls12" not in c.tags)
    tools.click("#f-group-io")
    tools.click("#f-profile-default")
    assert entry_counts(tools) == expected_counts(results, lambda c: c.profile == "tuned")
    assert tools.js("document.getElementById('totals').textContent").startswith(f"{len(CLIENTS) * len(SERVERS)} of ")
    assert tools.errors() == []
