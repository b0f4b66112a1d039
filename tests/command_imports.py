"""Runs one `mtls-matrix` command in this process, through the console script's entry point, then
prints the mtls_matrix modules it imported as the last line of stdout (JSON). For tests that check
what a command loads: `python tests/command_imports.py report results.json --out BUGS.md`."""

from __future__ import annotations

import importlib.metadata
import json
import sys

main = importlib.metadata.entry_points(group="console_scripts")["mtls-matrix"].load()
try:
    code = main(sys.argv[1:])
except SystemExit as exc:
    code = exc.code
print(json.dumps(sorted(name for name in sys.modules if name.split(".")[0] == "mtls_matrix")))
sys.exit(code)
