"""A foreign peer that leaks on purpose, for tests/test_leaks.py: a server program of the
foreign-peer contract (docs/FOREIGN.md) in plain Python that keeps every connection whose TLS
handshake failed open, descriptor and all, until it exits. It never gets as far as WebSocket: it
is meant for rejection scenarios only."""

import json
import socket
import ssl
import sys
import threading

config = json.loads(sys.stdin.readline())
context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=config["ca"])
context.verify_mode = ssl.CERT_REQUIRED
context.load_cert_chain(config["chain"], config["key"])
listener = socket.create_server(("127.0.0.1", 0))
kept = []  # the leak


def emit(**event) -> None:
    print(json.dumps(event), flush=True)


def serve() -> None:
    while True:
        conn, (_, port) = listener.accept()
        emit(event="accept", remote_port=port)
        tls = context.wrap_socket(conn, server_side=True, do_handshake_on_connect=False)
        try:
            tls.do_handshake()
        except (ssl.SSLError, OSError) as exc:
            emit(event="handshake-error", remote_port=port, type=type(exc).__name__, message=str(exc))
            kept.append(tls)  # never closed
            continue
        emit(event="handshake-ok", remote_port=port, version=tls.version())
        tls.close()


emit(event="listening", port=listener.getsockname()[1])
threading.Thread(target=serve, daemon=True).start()
sys.stdin.read()  # the contract: exit when stdin reaches EOF
