"""Ruby stacks from Debian's packages (fixtures/ruby/mtls-peer.rb) through the foreign-peer
contract (peers/foreign.py, docs/FOREIGN.md): puma serving faye-websocket or websocket-driver,
async-http's server with websocket-driver on the hijacked connection, and the EventMachine
websocket-driver and faye-websocket clients.

Puma's MiniSSL and EventMachine both sit on OpenSSL; what the application sees differs: puma
reports a failed handshake with OpenSSL's text and the X509 verify code at the end, EM gives an
`unbind` with an Errno class only (the callback variant writes its own text with the code), and
faye says "Unable to verify the server certificate" whatever the reason. Puma cannot cap TLS
versions: the program says so (exit 3) and those cells are UNSUPPORTED; async-http takes an
OpenSSL::SSL::SSLContext, which can.
"""

from __future__ import annotations

from mtls_matrix.peers.foreign import ErrorRule, ForeignClient, ForeignServer, Toolchain
from mtls_matrix.canonical import VERIFY_CODES

GEMS = "/usr/share/rubygems-integration/all/gems"  # where Debian puts gem-layout packages (async-http)
RUBY = Toolchain("ruby", executables=("ruby", "puma"),
                 apt=("ruby", "puma", "ruby-faye-websocket", "ruby-websocket-driver", "ruby-eventmachine", "ruby-rack",
                      "ruby-async-http"),
                 files=("/usr/lib/ruby/vendor_ruby/faye/websocket.rb",
                        "/usr/lib/ruby/vendor_ruby/websocket/driver.rb", "/usr/lib/ruby/vendor_ruby/eventmachine.rb",
                        f"{GEMS}/async-http-0.59.5/lib/async/http/server.rb"))
COMMAND = ("ruby", "{fixtures}/ruby/mtls-peer.rb")

# Puma: "OpenSSL certificate verification error: <text> - <X509 code>"; the EM callback variant:
# "certificate verify failed: <text> (<code>)"; async-http-driver: the SSLError's class and the
# socket's verify result before its message. The code says it all, as for Python's peers.
ERRORS = (
    *(ErrorRule(rf"verification error: .* - {code}$", canonical, own_check=True)
      for code, canonical in VERIFY_CODES.items()),
    *(ErrorRule(rf"certificate verify failed: .*\({code}\)", canonical, own_check=True)
      for code, canonical in VERIFY_CODES.items()),
    # async-http-driver: Ruby's SSLError after its type and OpenSSL's verify result (verify_error)
    *(ErrorRule(rf"^OpenSSL::SSL::SSLError {code} .*certificate verify failed", canonical, own_check=True)
      for code, canonical in VERIFY_CODES.items()),
    ErrorRule(r"peer did not return a certificate", "CERT_REQUIRED", own_check=True),
    ErrorRule(r"hostname mismatch|does not match the server certificate", "HOSTNAME_MISMATCH", own_check=True),
    ErrorRule(r"Unable to verify the server certificate", "CERT_VERIFY_FAILED", own_check=True),
    ErrorRule(r"ECONNRESET", "CONNECTION_RESET"),
    ErrorRule(r"unbind: Errno::EPROTO", "HANDSHAKE_FAILURE"),  # EM's only word for a failed TLS handshake
    ErrorRule(r"ECONNREFUSED", "CONNECTION_REFUSED"),
    ErrorRule(r"ETIMEDOUT", "TIMEOUT"),
    ErrorRule(r"unbind: connection closed", "EOF"),
)
SERVER_TIMEOUTS = {"puma first_data_timeout": 30.0, "faye/websocket-driver handshake": None}
CLIENT_TIMEOUTS = {"EM pending_connect_timeout (TCP only)": 20.0, "TLS handshake": None, "upgrade": None}
CLIENT_CLOCKS = {"handshake": ("TLS handshake",), "upgrade": ("upgrade",)}


class _PumaServer(ForeignServer):
    library, toolchain, command, errors, version_package = "puma", RUBY, COMMAND, ERRORS, "puma"
    stack = "puma MiniSSL (OpenSSL)"
    timeouts = SERVER_TIMEOUTS
    clocks = {"handshake": ("puma first_data_timeout",)}


class PumaFaye(_PumaServer):
    name, fixed_config = "puma-faye", {"variant": "puma-faye"}  # Faye::WebSocket.new(env) as faye documents for Rack
    # Every connection that reaches faye stalls after the 101 (EM.attach cannot take puma's TLS
    # socket: reference finding 2.3), so every other cell would only repeat that HANG at the cost of
    # a deadline: mtls-ok shows it, with a short one; puma's own TLS is the same in puma-driver.
    scenarios = ("mtls-ok",)
    deadline_scale = 0.4


class PumaDriver(_PumaServer):
    name, fixed_config = "puma-driver", {"variant": "puma-driver"}  # rack.hijack + WebSocket::Driver.rack
    # all but io-16mib: websocket-driver echoes 16 MiB in 6-14 s (Ruby unmasks byte by byte), which
    # would be most of the run's time for one measurement (fixtures/ruby/README.md)
    scenarios = ("works", "client-rejected", "server-rejected", "hostile-client", "io-text*", "io-binary*",
                 "io-1mib*", "io-1000-ordered*", "io-ping*", "io-close*", "io-server-close*")


class AsyncHttpDriver(ForeignServer):
    # Async::HTTP::Server on an Async::HTTP::Endpoint with an SSLContext (reference attempt 1, observation
    # 4); its app hijacks the HTTP/1.1 connection and runs websocket-driver on the stream in its own task
    name, library, toolchain, command, errors, version_package = (
        "async-http-driver", "async-http", RUBY, COMMAND, ERRORS, "ruby-async-http")
    fixed_config = {"variant": "async-http-driver"}
    stack = "Ruby openssl"
    # async-io's socket timeout (the endpoint's `timeout:`, covering the TLS accept and reads) is nil by default
    timeouts = {"async-io socket timeout": None, "websocket-driver handshake": None}
    clocks = {"handshake": ("async-io socket timeout",)}
    scenarios = PumaDriver.scenarios  # the same websocket-driver echo: all but io-16mib, as puma-driver


class EmDriver(ForeignClient):
    name, library, toolchain, command, errors, version_package = (
        "em-websocket-driver", "websocket-driver", RUBY, COMMAND, ERRORS, "ruby-websocket-driver")
    # em-driver-noverify: start_tls(verify_peer: false), insecure by design (reference finding 3.2):
    # it plays only the scenarios where accepting any server is what the cell exposes
    # em-driver-no-callback (the reference's settings, finding 3.1) refuses every server by itself:
    # the works group shows it, any other cell would only repeat it
    variants = ("em-driver-verify-callback", "em-driver-no-callback", "em-driver-noverify")
    only = {"em-driver-noverify": ("server-rejected",), "em-driver-no-callback": ("works",)}
    controls = {"em-driver-noverify": "start_tls(verify_peer: false): it verifies no server certificate, on purpose"}
    stack = "Ruby openssl"
    timeouts, clocks = CLIENT_TIMEOUTS, CLIENT_CLOCKS


class Faye(ForeignClient):
    name, library, toolchain, command, errors, version_package = (
        "faye-websocket", "faye-websocket", RUBY, COMMAND, ERRORS, "ruby-faye-websocket")
    variants = ("faye-root-cert-file", "faye-ca-file")
    only = {"faye-ca-file": ("works",)}  # the reference's `ca_file` (finding 2.1) refuses every server
    stack = "Ruby openssl"
    timeouts, clocks = CLIENT_TIMEOUTS, CLIENT_CLOCKS


PEERS = [PumaFaye(), PumaDriver(), AsyncHttpDriver(), EmDriver(), Faye()]
