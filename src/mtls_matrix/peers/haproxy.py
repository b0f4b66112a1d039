"""HAProxy terminating mutual TLS in front of each Python WebSocket server (`haproxy+websockets`, ...).

`bind ... ssl crt ... ca-file ... verify required`, HTTP mode (WebSocket upgrades are tunnelled
natively), and the verified identity forwarded in headers deleted and set again on every request,
so nothing the client sends under those names reaches the backend. Timeouts are those of Debian's
shipped haproxy.cfg (connect 5 s, client and server 50 s): HAProxy has no defaults of its own.

How HAProxy rejects a client certificate: `verify required` fails the TLS handshake with the alert
OpenSSL chose (certificate expired, unknown ca, certificate required...). Its log (2.6) says only
"SSL client certificate not trusted" / "SSL client CA chain cannot be verified" for a refused
certificate and "SSL handshake failure" for anything else, a missing certificate included: the
first is its own check refusing the certificate, for no reason it names (BAD_CERTIFICATE); the
precise reason is in the alert the client received, which verdict.rejection reads as it does for
every server (evidence.py).
"""

from __future__ import annotations

import re
from pathlib import Path

from mtls_matrix.peers import FORWARDED_CN, FORWARDED_VERIFY, ServerFiles
from mtls_matrix.peers.aiohttp import Server as AiohttpServer
from mtls_matrix.peers.proxy import BEHIND, FRONT, ProxiedServer
from mtls_matrix.peers.tornado import Server as TornadoServer
from mtls_matrix.peers.websockets import Server as WebsocketsServer

TIMEOUTS = {"connect": 5.0, "client": 50.0, "server": 50.0}  # Debian's /etc/haproxy/haproxy.cfg
# the HTTP log line, written when the stream (a WebSocket tunnel) ends
LOG_FORMAT = '%cp %ST %{+Q}HU %{+Q}sslv %{+Q}sslc %[ssl_c_verify] %{+Q}[ssl_c_s_dn(cn)]'
_HTTP = re.compile(r'^(\d+) (-?\d+) "([^"]*)" "([^"]*)" "([^"]*)" (\d+) "([^"]*)"$')
# what HAProxy logs for a connection that failed before any request (no log-format for it before 2.9)
_CONNECTION_ERROR = re.compile(r"^[\d.]+:(\d+) \[[^\]]*\] \S+: (.*)$")
REFUSED_CERT = ("SSL client certificate not trusted", "SSL client CA chain cannot be verified")


def _token(uri: str) -> str | None:
    match = re.match(r"/cell/([\w.-]+)$", uri.split("?", 1)[0])
    return match.group(1) if match else None


class HAProxy(ProxiedServer):
    program = package = "haproxy"
    version_prefix = "HAProxy version "
    template = "haproxy.cfg.j2"
    inherits_listener = True  # bind fd@N: the socket we bound to port 0, no race for a port

    clocks = {"handshake": ("timeout client",)}  # the client side's inactivity, the TLS handshake included

    def own_timeouts(self):
        return {f"timeout {name}": value for name, value in TIMEOUTS.items()}

    def command(self, config: Path) -> list[str]:
        return ["haproxy", "-db", "-f", str(config)]  # -db: foreground, one process, no daemon

    def config(self, files: ServerFiles, versions: list[str], listen: str, backend_port: int, workdir: Path) -> str:
        # HAProxy reads the key from <crt>.key next to the certificate: links, no copy of the key
        (workdir / "server.pem").symlink_to(files.chain)
        (workdir / "server.pem.key").symlink_to(files.key)
        return self.render(timeouts=TIMEOUTS, listen=listen, workdir=workdir, files=files, versions=versions,
                           log_format=LOG_FORMAT, forwarded_cn=FORWARDED_CN, forwarded_verify=FORWARDED_VERIFY,
                           backend_port=backend_port)

    def parse(self, line: str) -> list[tuple[str | None, str, dict]]:
        http = _HTTP.match(line)
        if http:
            remote_port, status, uri, version, cipher, verify, cn = http.groups()
            token = _token(uri)
            return [(token, "handshake-ok", {"version": version, "cipher": cipher, "peer_cn": cn or None,
                                             "verify": verify, "remote_port": int(remote_port)}),
                    (token, "proxy-response", {"status": int(status), "verify": verify,
                                               "remote_port": int(remote_port)}),
                    (token, "proxy-done", {})]
        error = _CONNECTION_ERROR.match(line)
        if error:
            message = error.group(2)
            refused = {"own_check": True, "canonical": "BAD_CERTIFICATE"} if message in REFUSED_CERT else {}
            return [(None, "handshake-error", {"message": message, "remote_port": int(error.group(1)), **refused}),
                    (None, "proxy-done", {})]
        return []


PEERS = [HAProxy(WebsocketsServer(), FRONT), HAProxy(AiohttpServer(), BEHIND), HAProxy(TornadoServer(), BEHIND)]
