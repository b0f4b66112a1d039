"""nginx terminating mutual TLS in front of each Python WebSocket server (`nginx+websockets`, ...).

The configuration is the usual one (the one in reference/socketio-mtls-nginx.md): `ssl_verify_client
on` with `ssl_client_certificate`, the WebSocket upgrade headers, `proxy_set_header Host $host`, and
the verified identity forwarded in headers that replace any the client sent (proxy_set_header:
nginx drops client headers of the same name). Everything else is at nginx's defaults, on purpose
(client_header_timeout 60 s, which also bounds the TLS handshake); only `ssl_protocols` follows
the scenario, because nginx 1.22's default leaves TLS 1.3 out.

How nginx rejects a client certificate: its verify callback never fails the handshake. OpenSSL's
verdict is kept, the handshake completes (whatever the client sent, or did not send), and nginx
refuses the first HTTP request with 400 ("No required SSL certificate was sent" / "The SSL
certificate error"), logging "client sent no required SSL certificate" or "client SSL certificate
verify error: (CODE:TEXT)" at info level. That is an `upgrade-refused` event here, a rejection at
the upgrade phase: verdict.judge weighs it against the scenario's latest phase.
"""

from __future__ import annotations

import re
from pathlib import Path

from mtls_matrix.peers import FORWARDED_CN, FORWARDED_VERIFY, ServerFiles
from mtls_matrix.peers.aiohttp import Server as AiohttpServer
from mtls_matrix.peers.proxy import BEHIND, FRONT, ProxiedServer
from mtls_matrix.peers.tornado import Server as TornadoServer
from mtls_matrix.peers.websockets import Server as WebsocketsServer
from mtls_matrix.canonical import NGINX_NO_CERT, VERIFY_CODES, canonical_from_text

# the access log: one line per request, written when the connection (a WebSocket tunnel) ends
ACCESS_FORMAT = '$remote_port $status "$request_uri" "$ssl_protocol" "$ssl_cipher" "$ssl_client_verify" "$ssl_client_cn"'
_ACCESS = re.compile(r'^(\d+) (\d{3}) "([^"]*)" "([^"]*)" "([^"]*)" "([^"]*)" "([^"]*)"$')
_ERROR = re.compile(r"^\S+ \S+ \[(\w+)\] \d+#\d+: (?:\*(\d+) )?(.*)$")  # *N: nginx's connection number
_REQUEST = re.compile(r'request: "\S+ (\S+) HTTP')
_VERIFY_ERROR = re.compile(r"client SSL certificate verify error: \((\d+):([^)]*)\)")
_NO_CERT = f"client sent {NGINX_NO_CERT}"


def _token(uri: str) -> str | None:
    """The cell a request belongs to: /cell/TOKEN (ws), or ?cell=TOKEN (Socket.IO: peers/socketio.py)."""
    path, _, query = uri.partition("?")
    match = re.match(r"/cell/([\w.-]+)$", path) or re.search(r"(?:^|&)cell=([\w.-]+)", query)
    return match.group(1) if match else None


class Nginx(ProxiedServer):
    program = package = "nginx"
    version_prefix = "nginx/"
    template = "nginx.conf.j2"
    location = "/"  # what it proxies

    clocks = {"handshake": ("client_header_timeout (also bounds the TLS handshake)",)}

    def own_timeouts(self):
        return {"client_header_timeout (also bounds the TLS handshake)": 60.0, "proxy_read_timeout": 60.0}

    def ready(self) -> bool:
        return (self.workdir / "nginx.pid").exists()  # written once the listening socket is bound

    def command(self, config: Path) -> list[str]:
        # -e: where nginx writes before it has read the configuration (not /var/log/nginx)
        return ["nginx", "-e", "stderr", "-p", str(config.parent), "-c", str(config)]

    def client_verification(self, files: ServerFiles) -> list[str]:
        """The server block's client-certificate directives."""
        crl = [f"ssl_crl {files.crl};"] if files.crl else []
        return [f"ssl_client_certificate {files.ca};", "ssl_verify_client on;", *crl]

    def forwarded(self) -> dict[str, str]:
        """The headers set on every proxied request (replacing any the client sent): name -> nginx value."""
        return {FORWARDED_CN: "$ssl_client_cn", FORWARDED_VERIFY: "$ssl_client_verify"}

    def config(self, files: ServerFiles, versions: list[str], listen: str, backend_port: int, workdir: Path) -> str:
        return self.render(workdir=workdir, listen=listen, files=files, versions=versions, location=self.location,
                           backend_port=backend_port, access_format=ACCESS_FORMAT,
                           verification=self.client_verification(files), forwarded=self.forwarded())

    def parse(self, line: str) -> list[tuple[str | None, str, dict]]:
        access = _ACCESS.match(line)
        if access:
            remote_port, status, uri, version, cipher, verify, cn = access.groups()
            token = _token(uri)
            events = []
            if version:
                events.append((token, "handshake-ok", {"version": version, "cipher": cipher, "peer_cn": cn or None,
                                                       "verify": verify, "remote_port": int(remote_port)}))
            response = {"status": int(status), "verify": verify, "remote_port": int(remote_port)}
            return events + [(token, "proxy-response", response), (token, "proxy-done", {})]
        error = _ERROR.match(line)
        if not error:
            return []
        message = error.group(3).split(", client: ", 1)[0]
        request = _REQUEST.search(line)
        verify = _VERIFY_ERROR.search(message)
        if request and (verify or message.startswith(_NO_CERT)):
            said = message.removesuffix(" while reading client request headers")
            data = {"message": f"nginx completed the TLS handshake, then refused the request: {said}"}
            if verify:
                data |= {"verify_code": int(verify.group(1)), "canonical": VERIFY_CODES.get(int(verify.group(1)))
                         or canonical_from_text(verify.group(2))}
            else:
                data["canonical"] = "CERT_REQUIRED"
            return [(_token(request.group(1)), "upgrade-refused", data)]
        if message.endswith("while SSL handshaking"):
            connection = {"connection": int(error.group(2))} if error.group(2) else {}
            return [(None, "handshake-error", {"message": message, "canonical": canonical_from_text(message),
                                               **connection}),
                    (None, "proxy-done", {})]
        return []


PEERS = [Nginx(WebsocketsServer(), FRONT), Nginx(AiohttpServer(), BEHIND), Nginx(TornadoServer(), BEHIND)]
