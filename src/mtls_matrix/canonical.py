"""The canonical error vocabulary: a library's error -> one word every peer and the verdict share.

The bottom of the layers (docs/ARCHITECTURE.md): peers map their library's errors with it, verdict.py
judges with it; it imports the standard library only.
"""

from __future__ import annotations

import asyncio
import ssl

# nginx's words for a client that sent no certificate: its 400 page ("No required SSL certificate
# was sent") and its error log ("client sent no required SSL certificate")
NGINX_NO_CERT = "no required SSL certificate"

# a failed step's detail starting with this: the client accepted what it must refuse (a reconnect
# to a server whose certificate it must not trust): INSECURE, not FAIL
INSECURE_STEP = "accepted what it must refuse: "

# OpenSSL X509_V_ERR_* codes, as SSLCertVerificationError.verify_code carries them.
VERIFY_CODES = {
    2: "UNKNOWN_CA", 18: "UNKNOWN_CA", 19: "UNKNOWN_CA", 20: "UNKNOWN_CA", 21: "UNKNOWN_CA",
    9: "CERT_NOT_YET_VALID", 10: "CERT_EXPIRED", 23: "CERT_REVOKED", 26: "BAD_EKU",
    62: "HOSTNAME_MISMATCH", 64: "HOSTNAME_MISMATCH", 3: "CRL_MISSING",
}
# Message fragments, most specific first: TLS alerts as OpenSSL words them, then verify texts.
TEXTS = (
    ("certificate required", "CERT_REQUIRED"),
    ("peer did not return a certificate", "CERT_REQUIRED"),
    (NGINX_NO_CERT.lower(), "CERT_REQUIRED"),  # nginx's 400 page, which some clients show
    ("certificate has expired", "CERT_EXPIRED"),
    ("certificate expired", "CERT_EXPIRED"),
    ("not yet valid", "CERT_NOT_YET_VALID"),
    ("unknown ca", "UNKNOWN_CA"),
    ("unable to get local issuer", "UNKNOWN_CA"),
    ("self-signed", "UNKNOWN_CA"),
    ("self signed", "UNKNOWN_CA"),
    ("hostname mismatch", "HOSTNAME_MISMATCH"),
    ("ip address mismatch", "HOSTNAME_MISMATCH"),
    ("doesn't match", "HOSTNAME_MISMATCH"),
    ("certificate revoked", "CERT_REVOKED"),
    ("unsuitable certificate purpose", "BAD_EKU"),
    ("unsupported certificate", "BAD_EKU"),
    ("bad certificate", "BAD_CERTIFICATE"),
    ("certificate verify failed", "CERT_VERIFY_FAILED"),
    ("wrong version number", "PROTOCOL_VERSION"),
    ("protocol version", "PROTOCOL_VERSION"),
    ("unsupported protocol", "PROTOCOL_VERSION"),
    ("no protocols available", "PROTOCOL_VERSION"),
    ("handshake failure", "HANDSHAKE_FAILURE"),
    ("eof occurred", "EOF"),
    ("unexpected eof", "EOF"),
    # the client's own certificate or key file (the local-config scenarios)
    ("no such file or directory", "FILE_NOT_FOUND"),
    ("is a directory", "FILE_UNREADABLE"),
    ("permission denied", "FILE_UNREADABLE"),
    ("key values mismatch", "KEY_MISMATCH"),
    ("no certificate assigned", "KEY_MISMATCH"),
)
# Canonical errors that name what is wrong with a certificate: the user can act on them.
CERT_REASONS = {
    "CERT_REQUIRED", "CERT_EXPIRED", "CERT_NOT_YET_VALID", "UNKNOWN_CA", "HOSTNAME_MISMATCH",
    "CERT_REVOKED", "BAD_EKU",
}
# Canonical errors that name what is wrong with the client's own certificate or key file
CONFIG_REASONS = {"FILE_NOT_FOUND", "FILE_UNREADABLE", "KEY_MISMATCH"}
# Canonical errors of an application that validates the identity a proxy forwards
# (peers/proxy_identity.py), refusing the connection in its connect handler; CERT_REQUIRED when
# none was forwarded. They name the problem: CLEAR when the client's user sees them.
APP_REASONS = {
    "FORWARD_UNTRUSTED": "the forwarded-certificate header did not come from the proxy",
    "BAD_FORWARDED_CERT": "the forwarded-certificate header holds no certificate",
    "CERT_NOT_STORED": "the forwarded certificate is not in the app's certificate store",
    "AGENT_MISMATCH": "the claimed agent id is not the certificate's CN",
}
TEXTS = (  # the app's own words, before the generic fragments they contain ("certificate")
    ("did not come through the proxy", "FORWARD_UNTRUSTED"),
    ("holds no pem certificate", "BAD_FORWARDED_CERT"),
    ("not in the certificate store", "CERT_NOT_STORED"),
    ("is not the certificate's cn", "AGENT_MISMATCH"),
    ("no client certificate forwarded", "CERT_REQUIRED"),
) + TEXTS
CLOSE_CODES = {1009: "MESSAGE_TOO_BIG", 1006: "ABNORMAL_CLOSE", 1011: "SERVER_ERROR", 1002: "PROTOCOL_ERROR"}


def canonical_from_text(text: str) -> str | None:
    lowered = text.lower()
    return next((canonical for fragment, canonical in TEXTS if fragment in lowered), None)


def canonical_from_tls(data: dict) -> str | None:
    """A recorded TLS error (see observe.describe_ssl_error) -> canonical. A peer outside Python's
    ssl (a foreign peer: peers/foreign.py; a browser: peers/chromium.py) names it already."""
    if data.get("canonical"):
        return data["canonical"]
    if data.get("verify_code") in VERIFY_CODES:
        return VERIFY_CODES[data["verify_code"]]
    return canonical_from_text(" ".join(str(data.get(k) or "") for k in ("reason", "message")).replace("_", " "))


def chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    while exc is not None and exc not in seen:
        seen.append(exc)
        exc = exc.__cause__ or exc.__context__
    return seen


def canonical_from_exception(exc: BaseException, peer_hint: str | None = None) -> str:
    if peer_hint:
        return peer_hint
    for e in chain(exc):
        if isinstance(e, ssl.SSLError):
            found = canonical_from_tls({"verify_code": getattr(e, "verify_code", None),
                                        "reason": getattr(e, "reason", None), "message": str(e)})
            if found:
                return found
    for e in chain(exc):
        found = canonical_from_text(str(e))
        if found:
            return found
        if isinstance(e, ConnectionRefusedError):
            return "CONNECTION_REFUSED"
        if isinstance(e, (ConnectionResetError, BrokenPipeError)):
            return "CONNECTION_RESET"
        if isinstance(e, (asyncio.IncompleteReadError, EOFError, ssl.SSLEOFError)):
            return "EOF"
        if isinstance(e, (TimeoutError, asyncio.TimeoutError)):
            return "TIMEOUT"
    return "OTHER"
