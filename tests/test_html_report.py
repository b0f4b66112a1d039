"""The HTML report and the heatmap SVG, on small hand-built results.

The SVG and the JSON embedding are checked as text. The page itself is checked in a real headless
Chromium driven over the DevTools protocol through --remote-debugging-pipe (no port): it must load
without a JS error, list the findings and open one with its cells, draw the heatmap coloured by the
worst severity, open a cell's drill-down from a click (its record decompressed on demand), and
recount on a filter.
"""

from __future__ import annotations

import base64
import contextlib
import gzip
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

import pytest

from mtls_matrix import findings
from mtls_matrix.knowledge import Knowledge, Link, Mechanism
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
TOO_BIG = dict(verdict=Verdict.FAIL, phase="io", reason="binary: " + HOSTILE, mechanism="too-big",
               error=ErrorInfo(canonical="MESSAGE_TOO_BIG", type="lib.Closed", message="1009 " + HOSTILE,
                               clarity=Clarity.OPAQUE,
                               chain=["Closed: 1009", "ConnectionResetError: reset"]),
               steps=[Step(op="binary", ok=False, detail="closed 1009", ms=51.9)])
INSECURE = dict(verdict=Verdict.INSECURE, phase="io", reason="accepted although the server must reject")
LATE = dict(verdict=Verdict.FAIL, phase="upgrade", reason="rejected late",
            error=ErrorInfo(canonical="CONNECTION_RESET", type="ConnectionResetError", message=""),
            rejection=Rejection(by="server", canonical="CERT_EXPIRED", phase="verification"))
KNOWLEDGE = Knowledge(mechanisms=(Mechanism(id="too-big", title="The 1 MiB echo is refused", reason="max_size",
                                            links=(Link(url="https://example.org/limit", status="documented"),)),))


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
        ("server:alpha", "client:one[a=1]", "mtls-ok", "default"): TOO_BIG,
        ("server:alpha", "client:one[a=1]", "client-expired-tls12", "default"): INSECURE,
        ("server:beta", "client:two", "client-expired", "default"): LATE,
        ("server:beta", "client:two", "tls12-only", "default"): dict(verdict=Verdict.UNSUPPORTED, phase="tcp"),
    }
    cells = [make_cell(s, c, sit, **special.get((s, c, sit[0], sit[3]), {}))
             for s in SERVERS for c in CLIENTS for sit in SITUATIONS]
    run = Run(started="2030-01-01T00:00:00+00:00", python="3.12.0", openssl="OpenSSL 3.0.0", platform="Linux",
              versions={"alpha": "1.0"}, ca_fingerprint="ab" * 32, deadline_s=5.0, profiles=["default", "tuned"])
    return Results(run=run, cells=cells)


def analysed(results: Results | None = None) -> findings.Analysis:
    return findings.analyse(results or sample(), KNOWLEDGE)


def expected_counts(results: Results, keep=lambda c: True) -> dict[tuple[str, str], Counter]:
    tallies: dict[tuple[str, str], Counter] = {(s, c): Counter() for s in SERVERS for c in CLIENTS}
    for c in results.cells:
        if keep(c):
            tallies[(c.server, c.client)][c.verdict.value] += 1
    return tallies


# --------------------------------------------------------------------------- SVG and embedding

def test_svg_is_wellformed_with_one_square_per_pair_coloured_by_worst_severity():
    root = ET.fromstring(render_svg(analysed()))
    ns = "{http://www.w3.org/2000/svg}"
    squares = root.findall(f"{ns}rect[@class='pair']")
    assert len(squares) == len(SERVERS) * len(CLIENTS)
    states = Counter(sq.get("data-state") for sq in squares)
    # alpha x one[a=1]: INSECURE outranks FAIL; beta x two: a late refusal is advisory; io-1mib passes
    assert states == {"insecure": 1, "works with advisories": 1, "works": 4}
    fills = Counter(sq.get("fill") for sq in squares)
    assert fills[COLOURS["insecure"][0]] == 1 and fills[COLOURS["works"][0]] == 4
    titles = [sq.find(f"{ns}title").text for sq in squares]
    assert "alpha x one[a=1]: insecure; 1 critical, 1 broken, 4 ok" in titles
    texts = [t.text for t in root.iter(f"{ns}text")]
    assert all(state in texts for state in ("insecure", "broken", "works with advisories", "works", "not run"))


def test_a_control_variant_never_colours_the_heatmap():
    results = sample()
    root = ET.fromstring(render_svg(findings.analyse(results)))
    before = len(root.findall("{http://www.w3.org/2000/svg}rect[@class='pair']"))
    results.run.peers = [*findings.Matrix(results).peers.values()]
    for info in results.run.peers:
        if info.name == "client:one[a=1]":
            info.control = "verify off on purpose"
    root = ET.fromstring(render_svg(findings.analyse(results)))
    squares = root.findall("{http://www.w3.org/2000/svg}rect[@class='pair']")
    assert len(squares) == before - len(SERVERS) and all(sq.get("data-state") != "insecure" for sq in squares)


def test_svg_escapes_names():
    results = sample()
    results.cells[0].client = "client:x<&>"
    ET.fromstring(render_svg(findings.analyse(results)))  # raises on unescaped markup


def test_embedded_json_cannot_close_the_script_and_reads_back_unchanged():
    data = {"reason": HOSTILE, "n": 0, "ok": True}
    text = embed_json(data)
    assert "<" not in text and ">" not in text and "&" not in text and "\u2028" not in text
    assert json.loads(text) == data


def test_page_indexes_every_cell_once_and_loads_nothing_external():
    results = sample()
    page = render_html(analysed(results))
    assert page.count("</script>") == 3  # the index, the details and the script: the hostile reason added none
    data = json.loads(re.search(r'<script type="application/json" id="data">(.*?)</script>', page, re.S).group(1))
    assert len(data["cells"]) == len(results.cells)
    details = json.loads(gzip.decompress(base64.b64decode(
        re.search(r'<script type="application/octet-stream" id="details">(.*?)</script>', page, re.S).group(1))))
    assert sorted(c["id"] for c in details) == sorted(c.id for c in results.cells)
    fail = next(c for c in details if c["verdict"] == "FAIL" and c["scenario"] == "mtls-ok")
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
    missing = mtls_matrix("report", str(source), "--out", str(tmp_path / "x.md"), "--knowledge", str(tmp_path / "no"))
    assert missing.returncode == 2 and "no such directory of curated knowledge" in missing.stderr
    assert not (tmp_path / "x.md").exists()


# --------------------------------------------------------------------------- the page in Chromium

class Browser:
    """Headless Chromium driven over the DevTools protocol through --remote-debugging-pipe: commands
    on the child's fd 3, replies and events on its fd 4, each message a JSON text ended by NUL."""

    def __init__(self) -> None:
        self.profile = tempfile.mkdtemp(prefix="mtls-matrix-chromium-")
        commands_read, self._commands = os.pipe()
        self._replies, replies_write = os.pipe()
        flags = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--remote-debugging-pipe",
                 f"--user-data-dir={self.profile}", "--window-size=1400,1000"]
        # Chromium reads the pipe on fd 3 and writes on fd 4: bash puts them there, then becomes the launcher
        self.proc = subprocess.Popen(
            ["bash", "-c", f'exec "$0" "$@" 3<&{commands_read} 4>&{replies_write}', str(CHROMIUM), *flags],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            pass_fds=(commands_read, replies_write), start_new_session=True)
        os.close(commands_read)
        os.close(replies_write)
        self.next_id = 0
        self.buffer = b""
        self.events: list[dict] = []

    def send(self, method: str, session: str | None = None, timeout: float = 20, **params) -> dict:
        self.next_id += 1
        message = {"id": self.next_id, "method": method, "params": params} | ({"sessionId": session} if session else {})
        os.write(self._commands, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self.receive(deadline)
            if reply.get("id") == self.next_id:
                assert "error" not in reply, f"{method}: {reply['error']}"
                return reply["result"]
            self.events.append(reply)

    def receive(self, deadline: float) -> dict:
        while b"\0" not in self.buffer:
            assert time.monotonic() < deadline, "no message from chromium in time"
            assert self.proc.poll() is None, f"chromium exited with {self.proc.returncode}"
            chunk = os.read(self._replies, 1 << 16)
            assert chunk, "chromium closed its DevTools pipe"
            self.buffer += chunk
        message, self.buffer = self.buffer.split(b"\0", 1)
        return json.loads(message)

    def close(self) -> None:
        os.close(self._commands)  # EOF on its pipe: the browser exits
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=10)
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)  # the Debian launcher is a shell script that does not exec
            self.proc.wait(timeout=10)
        os.close(self._replies)
        shutil.rmtree(self.profile, ignore_errors=True)


class Page:
    """One page of the browser, attached by session: run JavaScript, click like a user, collect errors."""

    def __init__(self, browser: Browser, session: str):
        self.browser, self.session = browser, session

    def call(self, method: str, **params) -> dict:
        return self.browser.send(method, self.session, **params)

    def events(self) -> list[dict]:
        return [e for e in self.browser.events if e.get("sessionId") == self.session]

    def wait_for(self, event: str, timeout: float = 15) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            found = next((e for e in self.events() if e.get("method") == event), None)
            if found:
                self.browser.events.remove(found)
                return found
            self.browser.events.append(self.browser.receive(deadline))

    def js(self, expression: str, wait: bool = False):
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=wait)
        assert "exceptionDetails" not in result, f"{expression}: {result['exceptionDetails']}"
        return result["result"].get("value")

    def click(self, selector: str) -> None:
        """A real mouse click at the element's centre, as a user would."""
        box = self.js(f"(() => {{ const e = document.querySelector({json.dumps(selector)}); e.scrollIntoView(); "
                      f"const r = e.getBoundingClientRect(); return [r.x + r.width / 2, r.y + r.height / 2]; }})()")
        for kind in ("mousePressed", "mouseReleased"):
            self.call("Input.dispatchMouseEvent", type=kind, x=box[0], y=box[1], button="left", clickCount=1)

    def settle(self) -> None:
        """Let the page's pending promises (a drill-down decompressing its records) finish."""
        self.js("new Promise((done) => setTimeout(done, 50))", wait=True)

    def errors(self) -> list[dict]:
        return [e for e in self.events() if e.get("method") == "Runtime.exceptionThrown"
                or (e.get("method") == "Runtime.consoleAPICalled" and e["params"]["type"] == "error")
                or (e.get("method") == "Log.entryAdded" and e["params"]["entry"]["level"] == "error")]


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} not found: install it with `apt-get update && apt-get install -y chromium`")
    started = Browser()
    try:
        yield started
    finally:
        started.close()


@contextlib.contextmanager
def open_report(browser: Browser, path: Path, fragment: str = ""):
    """The report at `path`, loaded in a new page (`#fragment` appended); yields the Page."""
    target = browser.send("Target.createTarget", url="about:blank")["targetId"]
    session = browser.send("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
    page = Page(browser, session)
    try:
        for domain in ("Page", "Runtime", "Log"):
            page.call(f"{domain}.enable")
        page.call("Page.navigate", url=path.as_uri() + fragment)
        page.wait_for("Page.loadEventFired")
        page.settle()  # a #cell= fragment opens its drill-down once its record is decompressed
        yield page
    finally:
        browser.send("Target.closeTarget", targetId=target)


@pytest.fixture
def page(browser, tmp_path):
    """The sample report, freshly loaded in a page; returns (Page, results)."""
    results = sample()
    path = tmp_path / "report.html"
    path.write_text(render_html(analysed(results)))
    with open_report(browser, path) as tools:
        yield tools, results


def entry_counts(tools: Page) -> dict[tuple[str, str], Counter]:
    raw = tools.js("[...document.querySelectorAll('.heatmap td.entry')].map((td) => [td.dataset.server, "
                   "td.dataset.client, [...td.querySelectorAll('span[data-verdict]')]"
                   ".map((s) => [s.dataset.verdict, +s.dataset.count])])")
    return {(server, client): Counter(dict(spans)) for server, client, spans in raw}


def test_page_loads_lists_the_findings_and_draws_the_heatmap(page):
    tools, results = page
    assert tools.errors() == []
    ids = tools.js("[...document.querySelectorAll('#finding-table tbody tr td:first-child')]"
                   ".map((td) => td.textContent)")
    assert ids == [f.id for f in analysed(results).findings] and "F-too-big" in ids
    assert tools.js("document.querySelectorAll('.heatmap tbody tr').length") == len(CLIENTS)
    assert tools.js("[...document.querySelectorAll('.heatmap tbody th')].map((th) => th.textContent)") == \
        [short(c) for c in CLIENTS]
    assert entry_counts(tools) == expected_counts(results)
    worst = tools.js("getComputedStyle(document.querySelector('td.entry[data-server=\"server:alpha\"]"
                     "[data-client=\"client:one[a=1]\"]')).backgroundColor")
    assert worst == "rgb(106, 27, 154)"  # insecure's purple: the worst severity dominates
    assert tools.js("performance.getEntriesByType('resource').length") == 0  # nothing fetched


def test_clicking_a_finding_then_its_cell_opens_the_drilldown(page):
    tools, results = page
    target = next(c for c in results.cells if c.verdict == Verdict.FAIL and c.scenario == "mtls-ok")
    index = [f.id for f in analysed(results).findings].index("F-too-big")
    tools.click(f'#finding-table tr[data-finding="{index}"]')
    assert tools.js("document.getElementById('finding-title').textContent") == "F-too-big: The 1 MiB echo is refused"
    assert tools.js("document.querySelector('#finding-detail a').href") == "https://example.org/limit"
    cells = tools.js("[...document.querySelectorAll('#finding-cells tbody tr')].map((tr) => tr.dataset.id)")
    assert cells == [target.id]
    tools.click(f"#finding-cells tbody tr[data-id={json.dumps(target.id)}]")
    tools.settle()
    assert tools.js("document.getElementById('drill').hidden") is False
    assert tools.js("document.getElementById('drill-id').textContent") == target.id
    assert tools.js("document.getElementById('drill-canonical').textContent") == "MESSAGE_TOO_BIG"
    assert tools.js("document.getElementById('drill-repro').textContent") == target.repro
    drill = tools.js("document.getElementById('drill').innerText")
    for shown in ("as the catalogue says", "lib.Closed", "ConnectionResetError: reset", "closed 1009", "1.5 ms",
                  "outcome decided here", "nobody rejected", "TLS_AES_256_GCM_SHA384", "F-too-big"):
        assert shown in drill, shown
    # The hostile message is shown as text; nothing it contains ran or became an element.
    assert tools.js("document.getElementById('drill-reason').textContent") == target.reason
    assert tools.js("[window.pwned, document.getElementById('pwned')]") == [None, None]
    assert tools.js("decodeURIComponent(location.hash)") == "#cell=" + target.id  # a link to this cell
    assert tools.errors() == []


def test_clicking_a_pair_then_a_cell_opens_its_drilldown(page):
    tools, results = page
    target = next(c for c in results.cells if c.verdict == Verdict.INSECURE)
    tools.click('td.entry[data-server="server:alpha"][data-client="client:one[a=1]"]')
    assert tools.js("document.querySelectorAll('#cells tbody tr').length") == len(SITUATIONS)
    tools.click(f"#cells tbody tr[data-id={json.dumps(target.id)}]")
    tools.settle()
    assert tools.js("document.querySelector('#drill .badge').textContent") == "INSECURE"
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
