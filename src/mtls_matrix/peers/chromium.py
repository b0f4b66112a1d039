"""Headless Chromium (Debian's `chromium`) as a WebSocket client that presents a client certificate.

The browser is driven over the DevTools protocol (CDP) through --remote-debugging-pipe: no port,
and the browser exits when the pipe reaches EOF, so it dies with the run. One long-lived browser
per (client certificate, worker process) serves many cells; every cell gets a fresh browser
context (Target.createBrowserContext): its own SSL session cache and client-certificate decisions
(Chromium caches them per host:port for the life of a context), so cells stay independent.

How the certificate reaches the browser: an NSS database ($HOME/.pki/nssdb under a private temp
HOME per browser) holds the run's root CA as a trusted anchor and the scenario's client
certificate and key; the browser's own profile (its --user-data-dir, as private) holds the
content setting the managed policy AutoSelectCertificateForUrls would set machine-wide, filtered
on that one certificate's issuer and subject, so Chromium picks it without a dialog and nothing
outside this browser changes. Headless mode honours it, but only on Chromium's HTTP path: a
WebSocket's own TLS handshake never asks for a certificate; Chromium cancels it at the server's
CertificateRequest ("WebSocket opening handshake was canceled", crbug.com/993907) unless a
certificate was already chosen for that host:port in the same context.
Two variants show both sides of that:
- "page=same-origin": the page just runs `new WebSocket(url)`.
- "page=same-origin+fetch": the page first fetches https://host:port/ (the documented workaround:
  the HTTP request selects the certificate through the policy, the WebSocket reuses the decision).

The page's origin is the server's own (https://host:port/): the page is served by CDP
(Fetch.fulfillRequest, no network), as a web app served by the same site would be; servers that
check Origin (tornado) accept it (from about:blank, Origin: null, tornado answers 403).
Chromium's Local Network Access check does not count a page served by CDP as loopback and would
block its WebSocket (net::ERR_BLOCKED_BY_LOCAL_NETWORK_ACCESS_CHECKS): each cell's context grants
that one origin the loopback-network permission (what the policy LocalNetworkAccessAllowedForUrls
would allow machine-wide).

What the page can tell is what the WebSocket API shows: "error", then close 1006, whatever went
wrong. What the browser knew comes from CDP (webSocketFrameError, loadingFailed errorText,
Security.certificateError): a failed cell raises PageSaw(...) from BrowserKnew(...), so the
results keep both, and `canonical` maps the browser's net::ERR_* to the canonical error.
"""

from __future__ import annotations

import asyncio
import atexit
import base64
import functools
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import threading
from pathlib import Path
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives.serialization import BestAvailableEncryption, load_pem_private_key, pkcs12
from cryptography.x509.oid import NameOID

from mtls_matrix import observe
from mtls_matrix.peers import ClientPeer, ClientTLS, Closed, Connection, cell_token
from mtls_matrix.peers.foreign import FIXTURES_DIR, SETUP_HINT, Leftover, Toolchain
from mtls_matrix.peers.socketio import closed_canonical
from mtls_matrix.pki import private_dir
from mtls_matrix.timing import BROWSER_OWN_TIMEOUT_S, BROWSER_START_S

CHROMIUM = "/usr/bin/chromium"
LOOPBACK_ORIGINS = ("https://localhost:*", "https://127.0.0.1:*")  # where the servers listen
# The managed policy an earlier mtls-matrix setup installed machine-wide (any certificate to any
# listener on loopback, for every profile of every user): setup-foreign removes it when unchanged.
LEGACY_POLICY = Leftover("/etc/chromium/policies/managed/mtls-matrix.json", json.dumps({
    "AutoSelectCertificateForUrls": [json.dumps({"pattern": origin, "filter": {}}) for origin in LOOPBACK_ORIGINS],
    "LocalNetworkAccessAllowedForUrls": list(LOOPBACK_ORIGINS),
}, indent=2) + "\n")
FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--remote-debugging-pipe",
)
PAGES = FIXTURES_DIR / "chromium"  # the page scripts: function expressions, each evaluated called with its arguments
PAGE = b'<!doctype html><link rel="icon" href="data:,"><title>mtls-matrix</title>'  # no favicon request
PREFLIGHT = "preflight"  # the path the +fetch variant requests first: no server routes it (and no "tls" in
# the page's error text, which clarity grading reads)

# Net errors (net/base/net_error_list.h) as the browser names them -> canonical errors.
NET_ERRORS = {
    "ERR_CERT_AUTHORITY_INVALID": "UNKNOWN_CA",
    "ERR_CERT_DATE_INVALID": "CERT_EXPIRED",
    "ERR_CERT_COMMON_NAME_INVALID": "HOSTNAME_MISMATCH",
    "ERR_CERT_INVALID": "CERT_INVALID",
    "ERR_CERT_REVOKED": "CERT_REVOKED",
    "ERR_SSL_CLIENT_AUTH_CERT_NEEDED": "CERT_REQUIRED",
    "ERR_BAD_SSL_CLIENT_AUTH_CERT": "BAD_CERTIFICATE",
    "ERR_SSL_PROTOCOL_ERROR": "HANDSHAKE_FAILURE",
    "ERR_SSL_VERSION_OR_CIPHER_MISMATCH": "PROTOCOL_VERSION",
    "ERR_CONNECTION_RESET": "CONNECTION_RESET",
    "ERR_CONNECTION_CLOSED": "EOF",
    "ERR_EMPTY_RESPONSE": "EOF",
    "ERR_CONNECTION_REFUSED": "CONNECTION_REFUSED",
    "ERR_TIMED_OUT": "TIMEOUT",
    "ERR_SOCKET_NOT_CONNECTED": "SOCKET_NOT_CONNECTED",  # TLS 1.3: the server refused after the client finished
}
# WebSocket-level texts (webSocketFrameError.errorMessage) that carry no net::ERR_*.
WS_TEXTS = (
    ("opening handshake was canceled", "CANCELED"),
    ("connection closed before receiving a handshake response", "EOF"),
    ("opening handshake timed out", "TIMEOUT"),
)


def availability() -> str | None:
    """Why this peer cannot run here (None: it can): the browser and NSS's tools."""
    if not os.access(CHROMIUM, os.X_OK):
        return f"{CHROMIUM} not found (Debian package chromium); {SETUP_HINT}"
    for tool in ("certutil", "pk12util"):
        if shutil.which(tool) is None:
            return f"{tool} not found (Debian package libnss3-tools); {SETUP_HINT}"
    if not PAGES.is_dir():
        return f"{PAGES} not found: the page scripts live in the checkout's fixtures/ ($MTLS_MATRIX_FIXTURES)"
    return None


def _name_filter(name: x509.Name) -> dict[str, str]:
    """A certificate filter's half (ISSUER or SUBJECT) in the words of AutoSelectCertificateForUrls."""
    fields = {"CN": NameOID.COMMON_NAME, "O": NameOID.ORGANIZATION_NAME, "OU": NameOID.ORGANIZATIONAL_UNIT_NAME,
              "L": NameOID.LOCALITY_NAME}
    return {key: found[0].value for key, oid in fields.items() if (found := name.get_attributes_for_oid(oid))}


def preferences(tls: ClientTLS) -> dict:
    """The profile's preferences: the auto-select-certificate content setting (what the managed
    policy sets) for the loopback origins, filtered on the one client certificate this browser
    holds; nothing when the scenario presents none."""
    if tls.cert is None:
        return {}
    leaf = x509.load_pem_x509_certificates(tls.cert.read_bytes())[0]
    setting = {"filters": [{"ISSUER": _name_filter(leaf.issuer), "SUBJECT": _name_filter(leaf.subject)}]}
    return {"profile": {"content_settings": {"exceptions": {"auto_select_certificate": {
        f"{origin},*": {"setting": setting} for origin in LOOPBACK_ORIGINS}}}}}


@functools.cache
def chromium_version() -> str:
    try:
        out = subprocess.run([CHROMIUM, "--version"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.split()[1] if out.startswith("Chromium ") else "unknown"


class PageSaw(Exception):
    """What the page's WebSocket API showed (the user's view): `shown`, (the page API's events, what they
    said), is what the cell records as the user's error (cell.user_error)."""

    def __init__(self, saw: str, api: str):
        super().__init__(f"the page saw: {saw}")
        self.shown = (api, saw)


class BrowserKnew(Exception):
    """What the browser knew about the failure, from the DevTools protocol."""

    def __init__(self, text: str, canonical: str | None):
        super().__init__(text)
        self.canonical = canonical


def canonical_of(text: str) -> str | None:
    found = re.search(r"\b(ERR_[A-Z_]+)", text)
    if found and found.group(1) in NET_ERRORS:
        return NET_ERRORS[found.group(1)]
    if "Unexpected response code: " in text:
        return "HTTP_" + text.rsplit("Unexpected response code: ", 1)[1].split()[0]
    lowered = text.lower()
    return next((canonical for fragment, canonical in WS_TEXTS if fragment in lowered), None)


class _CDP:
    """A DevTools protocol client over the pipe: NUL-separated JSON, both ways."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.WriteTransport):
        self.reader, self.writer = reader, writer
        self.ids = iter(range(1, 1 << 62))
        self.pending: dict[int, asyncio.Future] = {}
        self.listeners: dict[str, list] = {}  # sessionId -> [callback(method, params)]
        self.pump = asyncio.ensure_future(self._pump())

    async def _pump(self) -> None:
        try:
            while True:
                message = json.loads((await self.reader.readuntil(b"\0"))[:-1])
                if "id" in message:
                    future = self.pending.pop(message["id"], None)
                    if future and not future.done():
                        future.set_result(message)
                else:
                    for callback in self.listeners.get(message.get("sessionId", ""), []):
                        callback(message["method"], message.get("params", {}))
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            for future in self.pending.values():
                if not future.done():
                    future.set_exception(ConnectionError("the browser closed the DevTools pipe"))

    async def send(self, method: str, params: dict | None = None, session: str | None = None) -> dict:
        if self.pump.done():
            raise ConnectionError("the browser closed the DevTools pipe")
        ident = next(self.ids)
        message = {"id": ident, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        self.pending[ident] = future = asyncio.get_running_loop().create_future()
        self.writer.write(json.dumps(message).encode() + b"\0")
        reply = await future
        if "error" in reply:
            raise RuntimeError(f"DevTools {method}: {reply['error'].get('message')}")
        return reply["result"]


class ClientKeyRefused(Exception):
    """NSS, where Chromium on Linux takes client certificates from, would not import the key."""


def _nss_database(home: Path, tls: ClientTLS) -> None:
    """$HOME/.pki/nssdb with the run's root as a trusted anchor, plus the client certificate and
    key when the scenario presents one (PKCS#12 with a throwaway password, removed after import)."""
    db = home / ".pki" / "nssdb"
    db.mkdir(parents=True, mode=0o700)
    store = f"sql:{db}"
    run = lambda *args: subprocess.run(args, check=True, capture_output=True, timeout=30)  # noqa: E731
    run("certutil", "-N", "-d", store, "--empty-password")
    run("certutil", "-A", "-d", store, "-n", "mtls-matrix root", "-t", "CT,C,C", "-i", str(tls.ca))
    if tls.cert:
        leaf, *chain = x509.load_pem_x509_certificates(tls.cert.read_bytes())
        key = load_pem_private_key(tls.key.read_bytes(), None)
        password = secrets.token_hex(16).encode()
        bundle = home / "client.p12"
        fd = os.open(bundle, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(pkcs12.serialize_key_and_certificates(
                b"mtls-matrix client", key, leaf, chain or None, BestAvailableEncryption(password)))
        try:
            run("pk12util", "-i", str(bundle), "-d", store, "-W", password.decode())
        except subprocess.CalledProcessError as exc:
            words = (exc.stderr or exc.stdout or b"").decode(errors="replace").strip()
            raise ClientKeyRefused(f"NSS cannot import the client certificate's {type(key).__name__} key, so "
                                   f"Chromium cannot present it: {words}") from None
        finally:
            bundle.unlink()


class Browser:
    """One headless Chromium with one NSS database, on its own thread and event loop."""

    def __init__(self, tls: ClientTLS):
        self.tls = tls
        self.home = private_dir("chromium")  # 0700
        self.proc: subprocess.Popen | None = None
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="chromium-cdp", daemon=True)
        self.thread.start()
        try:
            _nss_database(self.home, tls)
            self.cdp = asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(BROWSER_START_S)
        except BaseException:
            self.close()
            raise

    async def _start(self) -> _CDP:
        to_browser_r, to_browser_w = os.pipe()
        from_browser_r, from_browser_w = os.pipe()
        profile = self.home / "profile"
        (profile / "Default").mkdir(mode=0o700, parents=True)
        (profile / "Default" / "Preferences").write_text(json.dumps(preferences(self.tls)))
        # the browser wants the pipe on fds 3 and 4; bash puts it there (dash takes single digits only).
        # The log is the child's copy only: ours, left to the gc, was a ResourceWarning blamed on a cell.
        with open(self.home / "chromium.log", "wb") as log:
            self.proc = subprocess.Popen(
                ["/bin/bash", "-c", f'exec "$0" "$@" 3<&{to_browser_r} 4>&{from_browser_w}', CHROMIUM, *FLAGS,
                 f"--user-data-dir={profile}", "about:blank"],
                env={**os.environ, "HOME": str(self.home)}, stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, pass_fds=(to_browser_r, from_browser_w),
                start_new_session=True,  # its own process group
            )
        os.close(to_browser_r)
        os.close(from_browser_w)
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=1 << 30)
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(from_browser_r, "rb", 0))
        writer, _ = await loop.connect_write_pipe(asyncio.Protocol, os.fdopen(to_browser_w, "wb", 0))
        cdp = _CDP(reader, writer)
        self.version = (await cdp.send("Browser.getVersion"))["product"]
        self.cdp = cdp
        self.spare = asyncio.ensure_future(_Page(self).prepare())
        return cdp

    async def page(self) -> _Page:
        """A fresh context and page, and start preparing the next one: a new context's renderer
        takes longer to start than the rest of a cell (docs/USAGE.md, Speed)."""
        spare, self.spare = self.spare, asyncio.ensure_future(_Page(self).prepare())
        try:
            return await spare
        except Exception:  # a spare that failed (browser under strain): one more try, now
            return await _Page(self).prepare()

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None and self.thread.is_alive()

    def run(self, coro, timeout: float | None):
        """Run a coroutine on the browser's loop from a cell's own loop."""
        return asyncio.wait_for(asyncio.wrap_future(self.start(coro)), timeout)

    def start(self, coro):
        """Start a coroutine on the browser's loop; its concurrent Future. Coroutines started in
        order write their DevTools commands in order (send writes before its first await)."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def close(self) -> None:
        """EOF on the pipe ends the browser; its process group is killed if it lingers."""
        if self.proc is not None:
            cdp = getattr(self, "cdp", None)
            if cdp is not None and self.loop.is_running():
                self.loop.call_soon_threadsafe(cdp.writer.close)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait(5)
        if self.loop.is_running():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(2)
        shutil.rmtree(self.home, ignore_errors=True)  # the NSS database holds the client key


_browsers: dict[tuple, Browser] = {}
_failed: dict[tuple, Exception] = {}  # browsers that cannot start (a key NSS refuses): not retried per cell
_lock = threading.Lock()


def browser_for(tls: ClientTLS) -> Browser:
    key = (str(tls.ca), str(tls.cert) if tls.cert else None)
    with _lock:
        if isinstance(_failed.get(key), ClientKeyRefused):
            raise _failed[key]
        browser = _browsers.get(key)
        if browser is None or not browser.alive:
            if browser is not None:
                browser.close()
            try:
                _browsers[key] = browser = Browser(tls)
            except ClientKeyRefused as exc:
                _failed[key] = exc
                raise
        return browser


@atexit.register
def close_browsers() -> None:
    with _lock:
        for browser in _browsers.values():
            browser.close()
        _browsers.clear()


def page_script(name: str, *args: object) -> str:
    """The page script `name` of fixtures/chromium/, called with `args` (as JSON)."""
    return f"{(PAGES / name).read_text().rstrip()}({', '.join(json.dumps(arg) for arg in args)})"


class _Page:
    """One cell's browser context and page, living on the browser's loop."""

    def __init__(self, browser: Browser):
        self.cdp = browser.cdp
        self.events: asyncio.Queue = asyncio.Queue()
        self.page_saw: list[str] = []
        self.knew: list[str] = []  # what CDP reported, in order
        self.security: dict | None = None  # the preflight response's TLS details
        self.context = self.session = None

    def _on_event(self, method: str, params: dict) -> None:
        if method == "Runtime.bindingCalled" and params.get("name") == "__mtlsEvent":
            self.events.put_nowait(json.loads(params["payload"]))
        elif method == "Network.webSocketFrameError":
            self.knew.append(params.get("errorMessage", ""))
        elif method == "Network.loadingFailed" and params.get("type") != "Document":
            self.knew.append(params.get("errorText", ""))
        elif method == "Security.certificateError":
            url = params.get("requestURL", "")
            target = ("the WebSocket" if url.startswith("wss:") else "the preflight" if url.endswith(PREFLIGHT)
                      else "the polling request")
            self.knew.append(f"certificate error {params.get('errorType')} for {target}")  # no port: findings group
        elif method == "Network.responseReceived" and params.get("type") in ("Fetch", "XHR"):
            self.security = params["response"].get("securityDetails")
        elif method == "Fetch.requestPaused":
            asyncio.ensure_future(self.cdp.send("Fetch.fulfillRequest", {
                "requestId": params["requestId"], "responseCode": 200,
                "responseHeaders": [{"name": "Content-Type", "value": "text/html"}],
                "body": base64.b64encode(PAGE).decode()}, self.session))

    async def prepare(self) -> _Page:
        """A new browser context (its own caches and client-certificate decisions) with one blank
        page, listening to the events the cell needs."""
        send = self.cdp.send
        self.context = (await send("Target.createBrowserContext", {"disposeOnDetach": True}))["browserContextId"]
        target = (await send("Target.createTarget", {"url": "about:blank", "browserContextId": self.context}))["targetId"]
        self.session = (await send("Target.attachToTarget", {"targetId": target, "flatten": True}))["sessionId"]
        self.cdp.listeners[self.session] = [self._on_event]
        for method, params in (("Network.enable", {}), ("Security.enable", {}), ("Runtime.enable", {}),
                               ("Runtime.addBinding", {"name": "__mtlsEvent"}), ("Page.enable", {})):
            await self.cdp.send(method, params, self.session)
        return self

    async def open(self, url: str, scripts: tuple[str, ...]) -> dict:
        """Open the page at the server's origin and run the scripts that start the connection; the
        first page event."""
        origin = f"https://{urlsplit(url).netloc}/"
        loaded = asyncio.get_running_loop().create_future()
        self.cdp.listeners[self.session].append(
            lambda method, params: method == "Page.loadEventFired" and not loaded.done() and loaded.set_result(True))
        await self.cdp.send("Browser.setPermission", {  # this origin of this context may reach loopback
            "permission": {"name": "loopback-network"}, "setting": "granted", "origin": origin.rstrip("/"),
            "browserContextId": self.context})
        await self.cdp.send("Fetch.enable", {"patterns": [{"urlPattern": origin}]}, self.session)
        await self.cdp.send("Page.navigate", {"url": origin}, self.session)
        await loaded  # the pattern matches the page's URL only: the preflight and the WebSocket go to the network
        for script in scripts:
            await self.evaluate(script)
        while True:
            event = await self.events.get()
            if event["event"] == "preflight":
                self.page_saw.append(f"fetch /{PREFLIGHT}: " + (
                    f"HTTP {event['status']}" if "status" in event else event["error"]))
                continue
            if event["event"] == "error" and event.get("message"):  # the socket.io page says what it saw
                self.page_saw.append(f"error: {event['message']}")
                continue
            return event

    async def evaluate(self, expression: str) -> None:
        reply = await self.cdp.send("Runtime.evaluate", {"expression": expression}, self.session)
        if "exceptionDetails" in reply:
            raise RuntimeError(f"page script failed: {reply['exceptionDetails'].get('text')}")

    async def next_event(self) -> dict:
        return await self.events.get()

    async def dispose(self) -> None:
        if self.context:
            self.cdp.listeners.pop(self.session, None)
            context, self.context = self.context, None
            await self.cdp.send("Target.disposeBrowserContext", {"browserContextId": context})


class _Conn(Connection):
    def __init__(self, browser: Browser, page: _Page, timeout: float):
        self.browser, self.page, self.timeout = browser, page, timeout
        self.closed: Closed | None = None
        self.sending: list = []  # sends in flight: checked on the next recv or close

    async def send(self, message):
        """Pipelined like a page's own ws.send(): the command is on its way, in order; its reply
        is checked at the next recv or close (a burst of 1000 then costs no 1000 round trips)."""
        self._check_sent()
        if isinstance(message, str):
            expression = f"window.__mtlsSocket.send({json.dumps(message)})"
        else:
            expression = f"window.__mtlsSendBinary({json.dumps(base64.b64encode(message).decode())})"
        self.sending.append(self.browser.start(self.page.evaluate(expression)))

    def _check_sent(self) -> None:
        while self.sending and self.sending[0].done():
            self.sending.pop(0).result()  # raises what the page raised

    async def recv(self):
        if self.closed:
            raise self.closed
        while True:
            event = await self.browser.run(self.page.next_event(), self.timeout)
            self._check_sent()
            if event["event"] == "message":
                return event["data"] if event["type"] == "text" else base64.b64decode(event["data"])
            if event["event"] == "close":  # the page's WebSocket reports it with a close event
                self.closed = Closed(event["code"], event["reason"], (
                    "WebSocket close event", f"code {event['code']}, reason {event['reason']!r}"))
                self.browser.start(self.page.dispose())
                raise self.closed

    async def ping(self, payload):
        raise NotImplementedError("the WebSocket API in a page cannot send pings")

    async def close(self, code, reason):
        try:
            if not self.closed:
                await self.browser.run(self.page.evaluate(
                    f"window.__mtlsSocket.close({int(code)}, {json.dumps(reason)})"), self.timeout)
                while not self.closed:  # the close handshake completes when the page sees "close"
                    event = await self.browser.run(self.page.next_event(), self.timeout)
                    if event["event"] == "close":
                        self.closed = Closed(event["code"], event["reason"])
        finally:
            self.browser.start(self.page.dispose())  # in the background: the cell is over


def _tls_version(details: dict | None) -> str | None:
    """CDP says "TLS 1.3"; the harness, like Python's ssl, "TLSv1.3"."""
    protocol = (details or {}).get("protocol") or ""
    return protocol.replace("TLS ", "TLSv") if protocol.startswith("TLS ") else None


def _record_tls(page: _Page, opened: bool) -> None:
    """The browser's side of the TLS story, as far as CDP tells it (called on the cell's thread)."""
    version = _tls_version(page.security)
    if version:  # only HTTP responses (the preflight, socket.io's polling) carry TLS details; a WebSocket's does not
        observe.thread_event("client", "handshake-ok", version=version, cipher=page.security.get("cipher"),
                             peer_cn=page.security.get("subjectName"))
    if opened or version:  # a refusal after a response came through TLS: not a TLS failure
        return
    for text in page.knew:
        canonical = canonical_of(text)
        if "ERR_CERT_" in text or text.startswith("certificate error"):
            # the browser's own verification refused the server's certificate
            observe.thread_event("client", "handshake-error", type="net", message=text, canonical=canonical,
                                 own_check=True)
            return
        if canonical in ("BAD_CERTIFICATE", "HANDSHAKE_FAILURE", "PROTOCOL_VERSION", "CERT_REQUIRED"):
            observe.thread_event("client", "handshake-error", type="net", message=text, canonical=canonical)
            return


# `mtls-matrix setup-foreign`: the browser and NSS's tools; nothing else outside the run's own dirs
TOOLCHAIN = Toolchain("chromium", executables=("chromium", "certutil", "pk12util"), apt=("chromium", "libnss3-tools"),
                      leftovers=(LEGACY_POLICY,))


class Client(ClientPeer):
    name = "chromium"
    stack = "Chromium (BoringSSL)"
    library = "chromium"
    foreign = True
    toolchain = TOOLCHAIN
    variants = ("page=same-origin", "page=same-origin+fetch")
    unsupported = {"ping": "the WebSocket API in a page cannot send pings (the browser answers the server's)",
                   "headers": "the WebSocket API in a page cannot set request headers (a token goes in the URL: "
                              "token-query-*)"}
    side_by_side = False  # one browser per certificate: a batch of hostile cells would queue on it
    requests = {"page=same-origin+fetch": 2}  # the page's fetch, then its WebSocket
    # A cell costs a browser context (1-4 s): the default matrix runs the cells that show what a
    # browser adds, against the Python servers; docs/BROWSER.md has the findings of the full set.
    variant_scenarios = {
        # a WebSocket alone never presents the certificate; the token group without one: the URL carries
        # the token, a header cannot (UNSUPPORTED, declared: costs no browser)
        "page=same-origin": ("mtls-ok", "token-query-ok", "token-header-ok"),
        "page=same-origin+fetch": ("mtls-ok", "mtls-chain", "client-no-cert", "server-untrusted-ca", "io-close"),
    }
    servers = ("websockets", "aiohttp", "tornado")

    @property
    def version(self) -> str:
        return chromium_version()

    async def connect(self, variant, url, tls: ClientTLS, profile, timeout):
        timeout = timeout or BROWSER_OWN_TIMEOUT_S
        browser = await asyncio.to_thread(browser_for, tls)
        page = await browser.run(browser.page(), timeout)
        try:
            first = await browser.run(page.open(url, self.scripts(variant, url)), timeout)
            if first["event"] == "open":
                _record_tls(page, opened=True)
                conn = _Conn(browser, page, timeout)
                conn.transport = first.get("transport")  # socketio family: the transport that carried the session
                return conn
            while first["event"] != "close":  # "error" always comes before "close"
                page.page_saw.append(first["event"])
                first = await browser.run(page.next_event(), timeout)
            await asyncio.sleep(0.05)  # CDP's account of the failure may trail the page's close event
        except BaseException:
            browser.start(page.dispose())
            raise
        browser.start(page.dispose())
        _record_tls(page, opened=False)
        saw = "; ".join(page.page_saw + [f"close {first['code']} {first['reason']!r} (clean: {first['clean']})"])
        knew = "; ".join(dict.fromkeys(page.knew)) or "nothing"
        raise PageSaw(saw, self.page_api) from BrowserKnew(
            f"the browser knew: {knew}", next((c for c in map(canonical_of, page.knew) if c), None))

    page_api = "the page's WebSocket events"  # what tells the page's code of a failure

    def scripts(self, variant: str, url: str) -> tuple[str, ...]:
        """The page scripts that start this variant's connection to `url`."""
        preflight = f"https://{urlsplit(url).netloc}/{PREFLIGHT}" if variant.endswith("+fetch") else None
        return (page_script("ws-page.js", url, preflight),)

    def missing(self) -> str | None:
        return availability()

    def resident(self, variant, scenario):
        return ("chromium", scenario.client_cert)  # browser_for's key: the run's one root, this certificate

    def prepare(self, variant, tls):
        try:
            browser_for(tls)  # boots the browser for this certificate once; its first spare page follows
        except Exception:
            pass  # connect() meets the same problem and reports it in its cell

    def processes(self):
        """The browsers of this worker (their network service is a child process)."""
        with _lock:
            return tuple(b.proc.pid for b in _browsers.values() if b.proc is not None and b.proc.poll() is None)

    def canonical(self, exc):
        if isinstance(exc, PageSaw) and isinstance(exc.__cause__, BrowserKnew):
            return exc.__cause__.canonical or "OTHER"
        if isinstance(exc, ClientKeyRefused):
            return "CLIENT_KEY_UNSUPPORTED"
        return None


SOCKETIO_BUNDLE = FIXTURES_DIR / "node" / "node_modules" / "socket.io-client" / "dist" / "socket.io.min.js"


class SocketioClient(Client):
    """The same browser as a socket.io client: the page runs socket.io-client's browser bundle (from
    the npm package fixtures/node installs; never fetched at run time) against the Python socketio
    servers. Its polling requests are XHRs, Chromium's HTTP path, where the certificate policy
    applies; its WebSocket is not (crbug.com/993907), unless polling chose the certificate first."""

    name = "chromium-socketio"
    family = "socketio"
    variants = ("page=same-origin+polling", "page=same-origin+websocket", "page=same-origin+upgrade")
    unsupported = {"ping": "Socket.IO has no application ping: Engine.IO's heartbeat is internal, no API sends one"}
    variant_scenarios = {
        "page=same-origin+polling": ("mtls-ok",),
        "page=same-origin+websocket": ("mtls-ok",),  # a WebSocket alone: does the browser present the certificate?
        "page=same-origin+upgrade": ("mtls-ok", "client-no-cert", "server-untrusted-ca", "io-close"),
    }
    servers = ("socketio-aiohttp", "socketio-tornado", "socketio-uvicorn")
    page_api = "the page's socket.io-client events"
    # the socketio servers halve the deadline (their cells take milliseconds); a polling session from
    # a fresh browser context takes 2-3 s (two handshakes: the first is dropped at the CertificateRequest)
    deadline_scale = 2.0

    def scripts(self, variant, url):
        parts = urlsplit(url)
        transports = {"polling": ["polling"], "websocket": ["websocket"], "upgrade": ["polling", "websocket"]}
        return (SOCKETIO_BUNDLE.read_text(), page_script("socketio-page.js", f"https://{parts.netloc}",
                                                         cell_token(parts.path), transports[variant.rsplit("+", 1)[1]]))

    def missing(self) -> str | None:
        if not SOCKETIO_BUNDLE.exists():
            return (f"{SOCKETIO_BUNDLE} not found (npm package socket.io-client); "
                    "run `mtls-matrix setup-foreign --only node`")
        return availability()

    def canonical(self, exc):
        if isinstance(exc, PageSaw) and "NoUpgrade" in str(exc):
            return "NO_UPGRADE"
        # a polling request the server answered with an error status: an HTTP refusal, which CDP
        # does not count as a failed load (socket.io-client: "xhr post error: 400")
        refused = re.search(r"xhr (?:post|poll) error: ([45]\d\d)\b", str(exc))
        if isinstance(exc, PageSaw) and refused:
            return f"HTTP_{refused.group(1)}"
        if isinstance(exc, Closed):
            return closed_canonical(exc)
        return super().canonical(exc)


PEERS = [Client(), SocketioClient()]
