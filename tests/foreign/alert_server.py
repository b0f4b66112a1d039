"""A server program of the foreign-peer contract (docs/FOREIGN.md) in plain Python, for
tests/test_evidence.py: it answers every ClientHello with one fatal TLS alert, the config's
`alert` (an RFC name: certificate_expired, bad_certificate), through Python's ssl (an SNI callback
that returns it), and reports what it can tell: the connection, and that its handshake failed, in
its own words. It never gets as far as WebSocket: it is meant for rejection scenarios only.

tests/evidence_peers.py runs the same behaviour in-process, as a Python server peer."""

import json
import socket
import ssl
import sys
import threading

config = json.loads(sys.stdin.readline())
context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=config["ca"])
context.verify_mode = ssl.CERT_REQUIRED
context.load_cert_chain(config["chain"], config["key"])
if config.get("tls") == "tls12":
    context.maximum_version = ssl.TLSVersion.TLSv1_2
alert = getattr(ssl, f"ALERT_DESCRIPTION_{config['alert'].upper()}")
context.sni_callback = lambda *_: alert
listener = socket.create_server(("127.0.0.1", 0))


def emit(**event) -> None:
    print(json.dumps(event), flush=True)


def serve() -> None:
    while True:
        conn, (_, port) = listener.accept()
        emit(event="accept", remote_port=port)
        try:
            context.wrap_socket(conn, server_side=True).close()
        except (ssl.SSLError, OSError) as exc:
            emit(event="handshake-error", remote_port=port, type=type(exc).__name__, message=str(exc))
        finally:
            conn.close()


emit(event="listening", port=listener.getsockname()[1])
threading.Thread(target=serve, daemon=True).start()
sys.stdin.read()  # the contract: exit when stdin reaches EOF
