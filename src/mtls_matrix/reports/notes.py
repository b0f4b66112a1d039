"""Curated explanations for findings: why a library behaves so, and the upstream record.

A note is shown under a finding only when the run observed a finding it matches; it never
creates or changes a verdict. Patterns are globs over cell ids or the finding's signature text
(`VERDICT blamed phase canonical`, or `CLARITY peer group grade` for clarity findings). Keep
every link one that was read, and say when a statement depends on a version.
"""

from __future__ import annotations

from mtls_matrix.reports.bugs import Note, _glob


def _cells_at(phase: str, *patterns: str):
    """A note for findings at `phase` that hold a cell matching one of the globs: a pattern over
    ids alone would also attach it to another finding of the same pair (socketio notes)."""
    globs = [_glob(p) for p in patterns]
    return lambda finding: (getattr(finding, "phase", None) == phase
                            and any(g.match(i) for g in globs for i in finding.note_ids))


def _ws_family(pattern: str):
    """A note about the ws-family libraries' limits: not for socketio cells of the same scenario."""
    glob = _glob(pattern)
    return lambda finding: any(glob.match(i) and "socketio" not in i for i in finding.note_ids)


def _any_of(*patterns: str):
    """A note for findings holding a cell that matches one of the globs."""
    globs = [_glob(p) for p in patterns]
    return lambda finding: any(g.match(i) for g in globs for i in finding.note_ids)


NOTES = [
    Note(
        "*-node-ws?*?-server-cn-only*",
        "Node's `tls.checkServerIdentity` (what `ws` and `https` clients use) falls back to the subject CN "
        "when the certificate has no DNS subjectAltName, as CPython does; a maintainer states it there: it "
        "'only consults the Common Name when no SANs are present' (Node 20). Workaround: pass a "
        "`checkServerIdentity` that refuses a certificate without a DNS SAN.",
        ("https://nodejs.org/api/tls.html#tlscheckserveridentityhostname-cert",
         "https://github.com/nodejs/node/issues/11771"),
    ),
    Note(
        "CLARITY server:node-ws *",
        "A Node TLS server with `requestCert` and `rejectUnauthorized` verifies a presented client certificate "
        "only after OpenSSL's handshake (its verify callback accepts everything) and then destroys the socket: "
        "no TLS alert reaches the client, which sees a completed handshake followed by a hang-up, and the "
        "application gets `tlsClientError` 'socket hang up' with the reason only in "
        "`socket.authorizationError`. A missing certificate is refused inside the handshake, with an alert. "
        "The same behaviour, reimplemented and discussed for Bun's node:tls, is described in oven-sh/bun#33630.",
        ("https://nodejs.org/api/tls.html#tlscreateserveroptions-secureconnectionlistener",
         "https://github.com/oven-sh/bun/pull/33630"),
    ),
    Note(
        "*-server-cn-only*",
        "CPython's `ssl.SSLContext.hostname_checks_common_name` defaults to True: when a certificate has no "
        "subjectAltName, the host is matched against the subject CN. RFC 6125 (section 6.4.4) and RFC 9525 "
        "deprecate that fallback; browsers, Go and urllib3 2.x refuse it. Every Python client here verifies "
        "through a stdlib context, so all of them inherit the default, whatever variant passes the settings. "
        "Workaround: set `ctx.hostname_checks_common_name = False` on the client context (the dict and path "
        "variants build their own context and give no way to set it: pass an SSLContext instead).",
        ("https://docs.python.org/3/library/ssl.html#ssl.SSLContext.hostname_checks_common_name",
         "https://github.com/urllib3/urllib3/pull/2113"),
    ),
    Note(
        "*-*websocket-driver?em-driver-verify-callback?-server-cn-only*",
        "Ruby: `OpenSSL::SSL.verify_certificate_identity` (Ruby's openssl, which the EventMachine callback "
        "variant and faye-websocket's verifier call for the hostname) matches the subject CN when the "
        "certificate has no subjectAltName, as CPython does by default; unlike CPython it has no switch to "
        "turn the fallback off (Debian's ruby 3.1, openssl gem 3.0).",
        ("https://github.com/faye/faye-websocket-ruby/pull/129",),
    ),
    Note(
        "*-faye-websocket?faye-root-cert-file?-server-*",
        "faye-websocket 0.11 verifies the server itself (EventMachine verifies nothing: `ssl_verify_peer` is "
        "the application's), with an `OpenSSL::X509::Store` that sets no purpose, so a server certificate "
        "with EKU clientAuth only is accepted, and with `verify_certificate_identity`, which falls back to the "
        "CN. Its hostname check runs in `ssl_handshake_completed`, after the WebSocket upgrade request was "
        "queued: against a fast server (asyncio) the request reaches the handler of a server whose name does "
        "not match before the client closes (server-wrong-host INSECURE with websockets, aiohttp, tornado; "
        "rejected in time by gorilla and puma). Every verification failure reads 'Unable to verify the server "
        "certificate', whatever the reason.",
        ("https://github.com/faye/faye-websocket-ruby/pull/129",),
    ),
    Note(
        "puma-faye-*",
        "faye-websocket's Rack adapter hands the hijacked socket to `EM.attach`, which needs a file "
        "descriptor; puma's TLS socket (`Puma::MiniSSL::Socket`) is a Ruby object over OpenSSL, hence "
        "`TypeError: no implicit conversion of Puma::MiniSSL::Socket into Integer`, and the connection stalls "
        "after the 101. Known for years, closed without a fix on either side. Workaround (server:puma-driver): "
        "drive the hijacked socket with websocket-driver directly.",
        ("https://github.com/puma/puma/issues/1515", "https://github.com/puma/puma/issues/865"),
    ),
    Note(
        _ws_family("*-io-1mib*"),
        "websockets checks `max_size` (default 1 MiB) against the frame as received. With permessage-deflate "
        "on (the default of websockets, accepted by the aiohttp server), 1 MiB of incompressible data becomes a "
        "frame slightly larger than 1 MiB, so a message of exactly the documented limit is refused with 1009. "
        "Workaround: raise `max_size`, or connect with `compression=None` for incompressible payloads.",
        ("https://websockets.readthedocs.io/en/stable/reference/asyncio/client.html",),
    ),
    Note(
        _ws_family("*-io-16mib"),
        "Every server's default message limit is below 16 MiB: websockets `max_size` 1 MiB, aiohttp "
        "`max_msg_size` 4 MiB (server `WebSocketResponse` and client `ws_connect`), tornado "
        "`websocket_max_message_size` 10 MiB (server) and `max_message_size` 10 MiB (client); websocket-client "
        "has none. The server closes with 1009 (message too big). Whether the client's user learns that "
        "depends on the client: websockets and aiohttp report the 1009; tornado's client reports an empty "
        "`WebSocketClosedError` and websocket-client 'socket is already closed' (EOF), because the server "
        "drops the connection right after its close frame while the client is still sending. The `tuned` "
        "profile raises each documented limit to 64 MiB and passes.",
        ("https://websockets.readthedocs.io/en/stable/reference/asyncio/server.html",
         "https://docs.aiohttp.org/en/stable/web_reference.html#websocketresponse",
         "https://www.tornadoweb.org/en/stable/websocket.html"),
    ),
    Note(
        "*tornado?identity=open?-*",
        "In a tornado `WebSocketHandler`, `self.request.get_ssl_certificate()` raises AttributeError in "
        "`open()`: by then the stream has been detached from the request's connection. Known upstream and "
        "still open. Workaround (what `server:tornado` does): read the certificate in `prepare()`, which runs "
        "before the upgrade, and keep it on the handler.",
        ("https://github.com/tornadoweb/tornado/issues/2994",),
    ),
    Note(
        "CLARITY server:websockets *",
        "asyncio's SSL transport force-closes the connection when the server-side handshake fails without "
        "flushing the TLS alert OpenSSL wrote, so the client never learns why (no 'certificate required', "
        "'unknown ca', 'certificate expired'): it sees EOF or a reset, under TLS 1.3 only at its first read. "
        "Every asyncio server inherits it (websockets, aiohttp); tornado's server uses blocking SSL sockets, "
        "which send the alert. Fixed in CPython after this Python (gh-98078, merged 2026-07): rerun the "
        "matrix on a Python with the fix to see the alerts arrive.",
        ("https://github.com/python/cpython/issues/98078", "https://github.com/python/cpython/pull/153620",
         "https://github.com/python-websockets/websockets/issues/1503"),
    ),
    Note(
        "FAIL server:nginx+* upgrade HTTP_400",
        "nginx with `ssl_verify_client on` does not fail the TLS handshake when the client certificate is missing "
        "or invalid: its verify callback keeps OpenSSL's verdict, the handshake completes, and nginx refuses the "
        "first HTTP request with 400 ('No required SSL certificate was sent' / 'The SSL certificate error'; "
        "internally 496 / 495). That is a rejection, not a TLS alert: nothing reached the backend, but the "
        "client's user sees an HTTP 400 (the reason is only in the HTML body and in nginx's info-level log), at "
        "the upgrade instead of the handshake, under TLS 1.2 as under 1.3; code that handles TLS failures does "
        "not fire. By design, documented: `error_page 495 496` can answer differently (for instance 403 with a "
        "body naming the problem), but no setting makes nginx send the alert. HAProxy's `verify required` does "
        "fail the handshake (compare the `server:haproxy+*` cells).",
        ("https://nginx.org/en/docs/http/ngx_http_ssl_module.html#ssl_verify_client",
         "https://nginx.org/en/docs/http/ngx_http_ssl_module.html#errors"),
    ),
    Note(
        "FAIL *server:nginx+tornado* HTTP_403",
        "tornado's WebSocketHandler refuses an upgrade whose Origin header does not match its Host header (403 "
        "'Cross origin websockets not allowed'). websocket-client sends `Origin: https://host:port` by default; "
        "behind nginx with the common `proxy_set_header Host $host` (the reference configuration), the backend "
        "gets a Host without the port, so every websocket-client connection is refused. Other clients send no "
        "Origin and pass; HAProxy forwards Host unchanged and passes. Workarounds: `proxy_set_header Host "
        "$http_host` in nginx, tornado's `check_origin` / trusted origins, or websocket-client's "
        "`suppress_origin=True`.",
        ("https://www.tornadoweb.org/en/stable/websocket.html#tornado.websocket.WebSocketHandler.check_origin",
         "https://nginx.org/en/docs/http/ngx_http_core_module.html#var_host"),
    ),
    Note(
        "haproxy+*-client-not-yet-valid*",
        "HAProxy fails the handshake as it must, but nothing says why the certificate was refused: OpenSSL's alert "
        "for a certificate that is not yet valid is the generic `bad certificate`, and HAProxy 2.6 logs only 'SSL "
        "client certificate not trusted' (in 2.6 the line logged for a failed handshake has a fixed format; the "
        "verify error, `ssl_c_err`, can only be logged for a connection that reached HTTP). A server that records "
        "OpenSSL's verify result (every Python server here) knows it is CERT_NOT_YET_VALID.",
        ("https://docs.haproxy.org/2.6/configuration.html",
         "https://www.haproxy.com/blog/ssl-client-certificate-management-at-application-level"),
    ),
    Note(
        "haproxy+*-client-no-cert-tls12",
        "HAProxy refuses the client that sends no certificate, but under TLS 1.2 nothing says so: the alert is the "
        "generic `handshake failure` (TLS 1.3 has `certificate required`) and HAProxy 2.6 logs only 'SSL handshake "
        "failure', the same line as for any other handshake error.",
        ("https://docs.haproxy.org/2.6/configuration.html",),
    ),
    Note(
        "CLARITY server:aiohttp *",
        "Same cause as for server:websockets: aiohttp serves TLS through asyncio's SSL transport, which drops "
        "the alert when the handshake fails (gh-98078).",
        ("https://github.com/python/cpython/issues/98078",),
    ),
    Note(
        _cells_at("upgrade", "socketio-*-socketio-client?*+websocket?-*",
                  "socketio-*-socketio-client?http_session=requests+upgrade?-*"),
        "engine.io's async drivers (aiohttp, tornado, asgi) set `wsgi.url_scheme` to 'http' unless an "
        "X-Forwarded-Proto header says otherwise, even when the server terminates TLS itself, and the default "
        "same-origin check (`cors_allowed_origins=None`) compares the request's Origin with that. websocket-client "
        "(the sync `socketio.Client`'s websocket transport) sends `Origin: https://HOST` for wss, so the server "
        "refuses the upgrade: HTTP 400 on aiohttp, 403 under uvicorn. On tornado the refusal comes after "
        "tornado has already sent 101: engine.io's `make_response` cannot set a status any more and returns "
        "silently, the WebSocket stays open and nothing is ever sent, and the client (no timeout of its own "
        "on that read) waits forever: HANG. Polling requests carry no Origin and pass. Workaround: "
        "`cors_allowed_origins=['https://HOST:PORT']` on the server.",
        ("https://github.com/miguelgrinberg/python-socketio/issues/977",
         "https://github.com/websocket-client/websocket-client/issues/787"),
    ),
    Note(
        _any_of("socketio-*-socketio-*?websocket_extra_options=*+upgrade?-*",
                "node-socketio-socketio-*?websocket_extra_options=*+upgrade?-*"),
        "`websocket_extra_options` reaches only the websocket transport (aiohttp `ws_connect(**options)`, "
        "websocket-client `create_connection(**options)`). The polling leg that `+upgrade` (the library "
        "default: polling first) starts with uses the library's own HTTP session with the default trust store "
        "and no client certificate, so it fails verification of the private CA (UNKNOWN_CA) before any upgrade. "
        "The TLS settings hold on one transport and not the other; give them through `http_session` instead.",
        ("https://python-socketio.readthedocs.io/en/stable/api.html#socketio.AsyncClient",),
    ),
    Note(
        _cells_at("handler", "socketio-uvicorn-*"),
        "uvicorn puts no `tls` extension in the ASGI scope (the ASGI TLS extension is specified but not "
        "implemented; open PRs), so a python-socketio ASGI app under uvicorn cannot see the client certificate "
        "uvicorn itself verified: the handshake works, the connect handler sees no identity.",
        ("https://github.com/Kludex/uvicorn/issues/745", "https://github.com/Kludex/uvicorn/pull/1119",
         "https://asgi.readthedocs.io/en/latest/specs/tls.html"),
    ),
    Note(
        _cells_at("handler", "socketio-tornado-socketio-*+websocket?-*",
                  "socketio-tornado-node-socketio?*+websocket?-*"),
        "On the websocket transport python-socketio runs the connect handler from tornado's `open()`, after "
        "the upgrade, where `request.get_ssl_certificate()` raises AttributeError (tornado#2994): the app "
        "cannot see the client identity. Polling and upgrade sessions connect on a polling request first and see it.",
        ("https://github.com/tornadoweb/tornado/issues/2994",),
    ),
    Note(
        _cells_at("io", "socketio-*-socketio-*?*+polling?-io-close*"),
        "On the polling transport, `disconnect()` returns only when the client's pending long-poll GET ends. "
        "The engine.io server drops the session on the client's CLOSE packet without answering that GET "
        "(`AsyncSocket.receive`: `close(abort=True)` queues nothing), so the client waits out the GET's own "
        "timeout, max(ping_interval, ping_timeout) + 5 = 30 s with the defaults (measured: 30.2 s, websocket: "
        "0.01 s). No upstream issue found (python-engineio#127 is about requests without a timeout, a related "
        "older cause). Workaround: `sio.eio.disconnect(abort=True)`, or the websocket transport.",
        ("https://github.com/miguelgrinberg/python-engineio/issues/127",),
    ),
    Note(
        "*-socketio-*?*+polling?-proxy-id-*",
        "When the server's connect handler refuses the connection (`ConnectionRefusedError`), `connect()` calls "
        "`disconnect()` before it raises, and on the polling transport that waits out the pending long-poll GET "
        "(max(ping_interval, ping_timeout) + 5 = 30 s; measured: 30.1-31.0 s with the defaults, well under a "
        "second on websocket and polling-then-upgrade); the refusal was decided and sent at once. The reason "
        "reaches only a "
        "`connect_error` handler (python-socketio#344); `connect()` raises 'One or more namespaces failed to "
        "connect'. No upstream issue found for the wait.",
        ("https://github.com/miguelgrinberg/python-socketio/issues/344",),
    ),
    Note(
        _cells_at("io", "socketio-*-socketio-asyncclient?*+websocket?-io-close*",
                  "socketio-*-socketio-asyncclient?*+upgrade?-io-close*"),
        "`AsyncClient.disconnect()` on the websocket transport queues the namespace DISCONNECT and engine.io "
        "CLOSE packets, then closes the WebSocket at once (`engineio.AsyncClient.disconnect`: `ws.close()` "
        "right after `queue.put(None)`), before the write loop has sent them: the server's disconnect handler "
        "gets reason 'transport close', not 'client disconnect', so a server cannot tell a deliberate "
        "disconnect from a dropped connection. No upstream issue found.",
        ("https://python-socketio.readthedocs.io/en/stable/api.html#socketio.AsyncServer.reason",),
    ),
    Note(
        _cells_at("io", "socketio-werkzeug-socketio-client?*+websocket?-*",
                  "socketio-werkzeug-socketio-client?*+upgrade?-*"),
        "When the WebSocket of engine.io's threading mode (simple-websocket) ends, werkzeug's dev server goes on "
        "reading that connection as HTTP: a WebSocket frame the client sends then (its close frame, or the "
        "engine.io CLOSE packet) is parsed as a request line, werkzeug logs `code 400, message Bad request syntax "
        "('\\x88...')` and writes an HTTP 400 onto the connection. websocket-client's `close()` (the sync "
        "`socketio.Client`'s disconnect) then waits its 3 s close timeout for a close frame that never comes "
        "(measured: 3.0 s; milliseconds when the close frame arrives before the server's WebSocket ended), longer "
        "than this family's deadline. The AsyncClient (aiohttp) does not wait for the reply.",
        ("https://github.com/miguelgrinberg/flask-sock/issues/20",
         "https://github.com/miguelgrinberg/flask-sock/issues/77"),
    ),
    Note(
        _cells_at("io", "socketio-*-socketio-*?*+polling?-io-1000-ordered*",
                  "socketio-*-node-socketio?*+polling?-io-1000-ordered*"),
        "On polling, the client's write loop puts every queued packet into one POST, but the engine.io server "
        "decodes at most `Payload.max_decode_packets` = 16 packets per payload: a burst of more emits is "
        "answered with 400, the client's write loop logs a warning and ends, the events are lost without an "
        "error or a disconnect, and their acknowledgements never come. Client and server of the same library "
        "disagree. Workaround: raise `engineio.payload.Payload.max_decode_packets` on the server, or use websocket.",
        ("https://github.com/miguelgrinberg/python-engineio/issues/142",),
    ),
    Note(
        _cells_at("io", "socketio-aiohttp-socketio-*?*+polling?-io-1mib-tuned",
                  "socketio-aiohttp-node-socketio?*+polling?-io-1mib-tuned"),
        "A polling POST of about 1.4 MB (1 MiB of binary, base64-encoded) reaches the engine.io server on aiohttp "
        "truncated: `AsyncSocket.handle_post_request` reads the body with one `wsgi.input.read(length)`, and the "
        "aiohttp driver's `wsgi.input` is the request's `StreamReader`, whose `read(n)` returns at most n bytes, "
        "whatever has arrived. The server logs 'Incorrect padding' (base64), answers 400, the client's write loop "
        "ends, and the event and its ack are lost without an error to the caller (measured on plain HTTP too: "
        "no ack within 20 s). When the cut falls on a whole base64 quantum (seen with socket.io-client's POSTs), "
        "the server decodes the truncated attachment and acknowledges it: 1 MiB sent, about 120 KB echoed, no "
        "error anywhere (FAIL instead of HANG).",
        ("https://github.com/miguelgrinberg/python-socketio/issues/368",),
    ),
    Note(
        "CLARITY client:socketio-* token *",
        "A connect handler's `ConnectionRefusedError(reason)` reaches the python-socketio client as a CONNECT_ERROR "
        "packet whose data carries the reason, but `connect()` raises `ConnectionError('One or more namespaces "
        "failed to connect: /')` without it: the reason goes only to a `connect_error` event handler, which the "
        "application must register before connecting (added after python-socketio#344, which asked how a client "
        "learns that the server refused it). Workaround: `@sio.event def connect_error(data)` and read "
        "`data['message']`.",
        ("https://github.com/miguelgrinberg/python-socketio/issues/344",
         "https://python-socketio.readthedocs.io/en/stable/client.html"),
    ),
    Note(
        "CLARITY client:gorilla?* token *",
        "gorilla/websocket reports every refused upgrade as `websocket: bad handshake` (ErrBadHandshake); the "
        "status and the server's reason are only on the `*http.Response` that `Dial` returns beside the error, "
        "as documented ('so that callers can handle redirects, authentication, etcetera'). An application that "
        "logs the error alone tells its user nothing. Workaround: log `resp.Status` and the body when err is "
        "ErrBadHandshake.",
        ("https://pkg.go.dev/github.com/gorilla/websocket#Dialer.DialContext",),
    ),
    Note(
        _cells_at("upgrade", "socketio-*-socketio-*?*+polling?-token-*"),
        "On the polling transport a refused connect takes 30 s to raise: after the CONNECT_ERROR, `connect()` "
        "calls `disconnect()`, which waits for the pending long-poll GET that the engine.io server never answers "
        "once it dropped the session (the io-close note's mechanism; max(ping_interval, ping_timeout) + 5 = 30 s "
        "with the defaults, measured 30.1 s; websocket: 0.03 s). AsyncClient always waits; the sync Client only "
        "when its long-poll was already pending (a race: 31 ms or 30 s). No upstream issue found.",
        ("https://github.com/miguelgrinberg/python-engineio/issues/127",),
    ),
    Note(
        _cells_at("io", "socketio-*-io-1mib", "socketio-*-io-16mib"),
        "python-socketio's `max_http_buffer_size` defaults to 1,000,000 bytes, less than 1 MiB: a 1 MiB "
        "payload is refused (polling POST: 413; websocket on aiohttp: message too big). The `tuned` profile "
        "raises it.",
        ("https://python-socketio.readthedocs.io/en/stable/api.html#socketio.AsyncServer",),
    ),
    Note(
        _cells_at("handler", "*-node-socketio?options+polling?-*", "*-node-socketio?options+upgrade?-*"),
        "socket.io-client in Node polls through xmlhttprequest-ssl, which calls `https.request` with "
        "`agent: false` unless the application passes an `agent`: no keep-alive, every polling request is a "
        "new TLS connection (a full handshake with the client certificate), closed after its response. The "
        "server's connect handler runs on the CONNECT packet's POST, when the connection of the request that "
        "opened the session is already closed: aiohttp's request has no transport, tornado's no stream, and "
        "Node's own `socket.request.socket.getPeerCertificate()` returns null. Every connection was verified; "
        "the application cannot read the identity. Workaround: a keep-alive `https.Agent` with the TLS options "
        "in the client's `agent` option (`node-socketio[agent+polling]` passes), or read the identity on the "
        "server where the handshake request is still open (Node: `allowRequest`, a middleware).",
        ("https://github.com/driverdan/node-XMLHttpRequest/issues/61",
         "https://github.com/socketio/engine.io-client/issues/182"),
    ),
    Note(
        _cells_at("io", "node-socketio-*-io-1mib", "node-socketio-*-io-16mib"),
        "socket.io's `maxHttpBufferSize` defaults to 1e6 bytes, less than 1 MiB: on websocket the server closes "
        "the connection ('transport error' at the client); on polling it answers the POST with HTTP 413 and keeps "
        "the session, and python-engineio's client ends its write loop with a log warning ('Unexpected status code "
        "413 in server response, aborting'), raising nothing: the ack never comes (HANG). The `tuned` profile "
        "raises the limit.",
        ("https://socket.io/docs/v4/server-options/#maxhttpbuffersize",),
    ),
    Note(
        _cells_at("io", "node-socketio-socketio-*?*+polling?-io-1000-ordered*"),
        "Node's engine.io accepts the burst and answers the acknowledgements batched in one polling response of "
        "hundreds of packets; python-engineio's client decodes at most `Payload.max_decode_packets` = 16 packets "
        "per payload, logs 'Unexpected packet from server, aborting' and ends the session ('transport error'). "
        "The limit that makes python-engineio's server refuse the burst, on the client side.",
        ("https://github.com/miguelgrinberg/python-engineio/issues/142",),
    ),
    Note(
        _cells_at("io", "node-socketio-socketio-*-io-close*"),
        "python-socketio's `disconnect()` aborts the engine.io connection right after queueing the namespace "
        "DISCONNECT: Node's server reports 'transport close', not 'client namespace disconnect', on polling as on "
        "websocket (with python-socketio's own servers the polling case waits out the long-poll instead).",
        ("https://socket.io/docs/v4/server-socket-instance/#disconnect",),
    ),
    Note(
        "*-chromium-socketio?page=same-origin+polling?-*",
        "Chromium presents the client certificate for socket.io's polling requests: they are XHRs, on the HTTP "
        "path where `AutoSelectCertificateForUrls` applies (the server's handshake records the certificate). "
        "Against python-socketio the handshake GET then succeeds, but the CONNECT packet's POST carries "
        "`Origin: https://HOST:PORT` (browsers send Origin on every POST), which engine.io's async drivers "
        "compare with `http://HOST:PORT` (`wsgi.url_scheme` is 'http' when they terminate TLS): 400. A page "
        "served by the server's own HTTPS origin cannot connect until `cors_allowed_origins` names it. Against "
        "Node's socket.io server (`--all-pairs`) polling and upgrade sessions PASS with the identity seen.",
        ("https://github.com/miguelgrinberg/python-socketio/issues/977",),
    ),
    Note(
        "*-chromium-socketio?page=same-origin+upgrade?-*",
        "The default transports (polling, then the upgrade): the polling XHRs choose the client certificate, "
        "and the upgrade's WebSocket reuses that decision; against python-socketio the polling POST is refused "
        "first (Origin https:// against wsgi.url_scheme 'http', 400), so the upgrade never starts.",
        ("https://github.com/miguelgrinberg/python-socketio/issues/977",),
    ),
    Note(
        "*-chromium-socketio?page=same-origin+websocket?-*",
        "socket.io's websocket transport alone is a bare WebSocket: Chromium never asks for a client certificate "
        "for one and cancels at the server's CertificateRequest ('WebSocket opening handshake was canceled'), as "
        "`chromium[page=same-origin]` shows in the ws family.",
        ("https://crbug.com/993907",),
    ),
    Note(
        "CLARITY client:*-socketio?* *",
        "What socket.io-client tells the application about a failed connection: on polling, `connect_error` "
        "'xhr poll error' with description 0 (in Node, xmlhttprequest-ssl keeps the TLS error in its statusText, "
        "which engine.io-client does not pass on; in a browser the page is never told), whatever the cause; on "
        "websocket, 'websocket error' with Node's message ('unable to verify the first certificate', or 'socket "
        "hang up' when a TLS 1.3 server refuses the certificate after the client's handshake).",
        ("https://socket.io/docs/v4/client-socket-instance/#connect_error",),
    ),
]
