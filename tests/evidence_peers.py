"""Servers that answer every ClientHello with one fatal TLS alert, each in two forms: a Python server
peer in the harness's process (tornado, which sends the alerts of a failed handshake where asyncio's
servers drop them; its context's SNI callback returns the alert) and an external process speaking
the foreign-peer contract (tests/foreign/alert_server.py, Python's ssl the same way). The same
behaviour on the wire must get the same verdict in both forms. And a client that tries once more
when it is refused.

Loaded with `--peer-plugin tests.evidence_peers`."""

from __future__ import annotations

import ssl
import sys
from pathlib import Path

from mtls_matrix.peers import tornado as tornado_peer
from mtls_matrix.peers import websockets as ws_peer
from mtls_matrix.peers.foreign import ForeignServer, Toolchain


class AlertServer(tornado_peer.Server):
    """tornado whose TLS handshake always fails with `alert` (an RFC alert name)."""

    alert: str
    groups = ("client-rejected",)

    async def start(self, context, profile):
        alert = getattr(ssl, f"ALERT_DESCRIPTION_{self.alert.upper()}")
        context.sni_callback = lambda *_: alert
        return await super().start(context, profile)


class AlertProcess(ForeignServer):
    """The same in another process: tests/foreign/alert_server.py."""

    alert: str
    library = "mtls-matrix"
    toolchain = Toolchain("python", executables=(sys.executable,))
    command = (sys.executable, str(Path(__file__).with_name("foreign") / "alert_server.py"))
    groups = ("client-rejected",)

    @property
    def fixed_config(self):
        return {"alert": self.alert}


class ExpiredAlertServer(AlertServer):
    name, alert = "selftest-alert-expired", "certificate_expired"


class ExpiredAlertProcess(AlertProcess):
    name, alert = "selftest-alert-expired-process", "certificate_expired"


class BadCertificateAlertServer(AlertServer):
    name, alert = "selftest-alert-bad-certificate", "bad_certificate"


class BadCertificateAlertProcess(AlertProcess):
    name, alert = "selftest-alert-bad-certificate-process", "bad_certificate"


class RetryingClient(ws_peer.Client):
    """websockets that connects once more when its first attempt fails, as a retry policy would: a
    server that refuses it sees the refusal repeated."""

    name = "selftest-retrying"
    variants = ("ssl=context",)  # the asyncio client only (the websockets peer also has a sync variant)

    async def connect(self, variant, url, tls, profile, timeout):
        try:
            return await super().connect(variant, url, tls, profile, timeout)
        except Exception:
            return await super().connect(variant, url, tls, profile, timeout)


PEERS = [ExpiredAlertServer(), ExpiredAlertProcess(), BadCertificateAlertServer(), BadCertificateAlertProcess(),
         RetryingClient()]
