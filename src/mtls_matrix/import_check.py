"""Run inside a version environment (versions.prepare): `python -m mtls_matrix.import_check PIN...`.

The registry imports every peer module, as `mtls-matrix run` will, so a library version the peers
cannot import fails here (a traceback, exit 1) instead of as verdicts. Prints one JSON line: the
peers' library versions and the installed version of each PIN.
"""

from __future__ import annotations

import importlib.metadata
import json
import sys

from mtls_matrix.peers import Registry


def check(pins: list[str]) -> dict:
    registry = Registry()
    peers = [*registry.servers.values(), *(c.peer for c in registry.clients.values())]  # a foreign peer knows its own
    versions = {name: v for p in sorted(peers, key=lambda p: p.library) for name, v in p.versions().items()}
    return {"versions": dict(sorted(versions.items())), "pins": {p: importlib.metadata.version(p) for p in pins}}


def main(argv: list[str] | None = None) -> int:
    print(json.dumps(check(sys.argv[1:] if argv is None else argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
