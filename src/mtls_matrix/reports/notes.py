"""Curated explanations for findings: why a library behaves so, and the upstream record.

A note is shown under a finding only when the run observed a finding it matches; it never
creates or changes a verdict. Patterns are globs over cell ids or the finding's signature text
(`VERDICT blamed phase canonical`, or `CLARITY peer group grade` for clarity findings). Keep
every link one that was read, and say when a statement depends on a version.
"""

from __future__ import annotations

from mtls_matrix.reports.bugs import Note

NOTES = [
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
        "*-io-1mib*",
        "websockets checks `max_size` (default 1 MiB) against the frame as received. With permessage-deflate "
        "on (the default of websockets, accepted by the aiohttp server), 1 MiB of incompressible data becomes a "
        "frame slightly larger than 1 MiB, so a message of exactly the documented limit is refused with 1009. "
        "Workaround: raise `max_size`, or connect with `compression=None` for incompressible payloads.",
        ("https://websockets.readthedocs.io/en/stable/reference/asyncio/client.html",),
    ),
    Note(
        "*-io-16mib",
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
        "CLARITY server:aiohttp *",
        "Same cause as for server:websockets: aiohttp serves TLS through asyncio's SSL transport, which drops "
        "the alert when the handshake fails (gh-98078).",
        ("https://github.com/python/cpython/issues/98078",),
    ),
]
