"""Library code as its user writes it: one module per library and side, importing only its library,
the standard library and mtls_matrix.protocol (an import-linter contract keeps it so), or another usercode
module whose code servers or clients of one library share (socketio_server.py: the reproducer copies its
source first).

The peers run these modules live; `mtls-matrix repro` copies their source into a standalone script
(repro.module_source), so what a reproducer shows is what the cell ran. A server module defines
`start_server(context, hooks, profile) -> (server, port)` and `stop_server(server)`; a client module
`connect_client(variant, url, ca, cert, key, headers, timeout, profile) -> protocol.Connection` and
`TIMEOUTS` (its library's own timeout exceptions). A reproducer holds one server and one client module
side by side, so a server module's top-level names start with `server`/`Server`, a client module's with
`client`/`Client` (tests/test_repro.py checks it).
"""
