"""The proxy-validated identity pattern (reference/socketio-mtls-nginx.md), group `proxy-identity`.

A TLS terminator asks for the client certificate without verifying it (nginx `ssl_verify_client
optional_no_ca`: agents bring self-signed certificates) and forwards it in `X-SSL-Client-Cert`
($ssl_client_escaped_cert, URL-escaped PEM); the Socket.IO connect handler accepts the connection
only if that certificate is byte-equal to one in the app's store and its CN is the agent id the
client claims (Socket.IO `auth` payload: {"agent": ...}).

- `socketio-aiohttp+proxy-identity` is that app (python-socketio's AsyncServer on aiohttp), tested
  alone over TLS: the client sends the headers itself, playing the proxy (`proxy-id-header-*`).
- `nginx+socketio-aiohttp+proxy-identity` puts nginx in front, configured as in the reference
  (`location /socket.io/`, the upgrade headers, proxy_http_version 1.1): the client presents a
  certificate and nginx forwards it (`proxy-id-cert-*`), including to clients that try to forge
  the headers.

Where the headers come from: a client that reaches the app directly can send any header, and the
stored certificates are public, so the app trusts X-SSL-Client-Cert only with the proxy's proof in
X-Proxy-Secret (peers.PROXY_SECRET, compared in constant time), which nginx sets on every request,
replacing what the client sent. The reference's app has no such check and relies on the app being
reachable only through nginx (a unix socket); this one listens on 127.0.0.1, so it needs one.

The app's refusal (ConnectionRefusedError, which the client receives as a Socket.IO connect error
with the reason) is reported as `app-refused` with a canonical error; verdict.rejection reads it as
the server's rejection at the handler phase. The handler reports an identity only when it accepts.
"""

from __future__ import annotations

import functools
import hmac
from urllib.parse import unquote

import socketio
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from mtls_matrix import observe
from mtls_matrix.peers import FORWARDED_CERT, FORWARDED_VERIFY, PROXY_PROOF, PROXY_SECRET, ServerFiles
from mtls_matrix.peers.nginx import Nginx
from mtls_matrix.peers.socketio import AiohttpServer
from mtls_matrix.usercode.socketio_server import SERVER_NAMESPACES, server_path


class Refused(Exception):
    def __init__(self, canonical: str, message: str):
        super().__init__(message)
        self.canonical = canonical


def _header(environ: dict, name: str) -> str | None:
    return environ.get("HTTP_" + name.upper().replace("-", "_"))


def _cn(cert: x509.Certificate) -> str | None:
    names = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    return str(names[0].value) if names else None


def validate(environ: dict, agent: object, store: dict[bytes, str]) -> str:
    """The connect handler's check; returns the agent id it accepts, raises Refused.
    `store`: DER of each registered certificate -> the agent id it was registered under."""
    proof = _header(environ, PROXY_PROOF) or ""
    if not hmac.compare_digest(proof.encode(), PROXY_SECRET.encode()):
        raise Refused("FORWARD_UNTRUSTED", f"the request did not come through the proxy (no valid {PROXY_PROOF}): "
                      f"its {FORWARDED_CERT} is not trusted")
    escaped = _header(environ, FORWARDED_CERT)
    if not escaped:  # nginx sends no header for an empty $ssl_client_escaped_cert
        raise Refused("CERT_REQUIRED", f"no client certificate forwarded ({FORWARDED_CERT} missing)")
    try:
        cert = x509.load_pem_x509_certificate(unquote(escaped).encode())
    except ValueError as exc:
        raise Refused("BAD_FORWARDED_CERT", f"{FORWARDED_CERT} holds no PEM certificate ({exc})") from None
    cn = _cn(cert)
    if cert.public_bytes(Encoding.DER) not in store:
        raise Refused("CERT_NOT_STORED", f"the forwarded certificate (CN={cn}, issuer {cert.issuer.rfc4514_string()}) "
                      "is not in the certificate store")
    if not isinstance(agent, str) or agent != cn:
        raise Refused("AGENT_MISMATCH", f"the claimed agent id {agent!r} is not the certificate's CN {cn!r}")
    return agent


class App(AiohttpServer):
    """python-socketio on aiohttp with the reference's certificate store and connect handler."""

    name = "socketio-aiohttp+proxy-identity"
    groups = ("proxy-identity",)
    scenarios = ("proxy-id-header-*",)
    # the variants whose TLS settings hold on every transport they use and whose WebSocket passes
    # engine.io's Origin check: the others fail before the app (socketio-aiohttp shows those findings)
    clients = tuple(f"socketio-asyncclient[http_session=connector+{t}]" for t in ("polling", "websocket", "upgrade")) + (
        "socketio-asyncclient[websocket_extra_options=ssl+websocket]", "socketio-client[http_session=requests+polling]")
    agent_cert = None  # set from the run's files at start (or by the proxy in front: NginxNoCA.backend_for)

    async def start(self, context, profile):
        if context is not None:
            self.agent_cert = context.mtls_files.agent_cert
        # the upload of the reference's POST /agent/certificate: the harness's client certificate,
        # under the agent id of its CN
        cert = x509.load_pem_x509_certificate(self.agent_cert.read_bytes())
        self.store = {cert.public_bytes(Encoding.DER): _cn(cert)}
        port = await super().start(context, profile)
        for namespace in SERVER_NAMESPACES:  # the reference's connect handler in place of the echo app's
            self._server.sio.on("connect", functools.partial(self._on_connect, namespace=namespace),
                                namespace=namespace)
        return port

    async def _on_connect(self, sid, environ, auth, namespace="/"):
        token = auth.get("cell") if isinstance(auth, dict) else None
        try:
            agent = validate(environ, auth.get("agent") if isinstance(auth, dict) else None, self.store)
        except Refused as refused:
            observe.server_event(token, "app-refused", canonical=refused.canonical, message=str(refused))
            raise socketio.exceptions.ConnectionRefusedError(str(refused)) from None
        handlers = self._server.handlers  # the echo app's other handlers go on with the connection
        transport = handlers.transport(sid, namespace)
        handlers.connections[sid] = {"path": server_path(environ, auth), "transport": transport}
        observe.server_event(token, "handler", peer_cn=agent, transport=transport, namespace=namespace)


class NginxNoCA(Nginx):
    """nginx in front of the app as the reference configures it: asks for a client certificate,
    verifies none (`optional_no_ca`, no CA list: an agent's self-signed certificate is fine), forwards
    it with its own proof. What nginx does with a header the client forged is the point of two scenarios."""

    location = "/socket.io/"

    def __init__(self, backend: App):
        super().__init__(backend, ("proxy-id-cert-*",))
        self.family, self.groups, self.clients = backend.family, backend.groups, backend.clients
        self.deadline_scale, self.waits = backend.deadline_scale, backend.waits

    def backend_for(self, context):
        backend = super().backend_for(context)
        backend.agent_cert = context.mtls_files.agent_cert
        return backend

    def client_verification(self, files: ServerFiles) -> list[str]:
        return ["ssl_verify_client optional_no_ca;", "ssl_verify_depth 1;"]

    def forwarded(self) -> dict[str, str]:
        return {FORWARDED_CERT: "$ssl_client_escaped_cert", FORWARDED_VERIFY: "$ssl_client_verify",
                PROXY_PROOF: PROXY_SECRET}


PEERS = [App(), NginxNoCA(App())]
