"""`mtls-matrix repro CELL_ID --out DIR`: a standalone reproducer of one cell, for a bug report.

DIR gets:
- repro.py: one script that uses only the cell's two libraries and the standard library: the
  server code of the server peer and the client code of the client variant (passing TLS settings
  exactly the way the variant does), configured as the scenario configures them, both on
  127.0.0.1 under a deadline. It prints what happened in plain words, then `EXPECTED:`,
  `OBSERVED:` and `VERDICT:` lines; `verdict_of` below maps an OBSERVED summary back to the
  matrix verdict for the scenario's expectation (the script carries the same function).
- the certificates that scenario needs, from a throwaway test CA made for the reproducer
  (pki.PKI builds a fresh one in a temp dir; only the needed files are copied; keys 0600);
- requirements.txt (the installed versions of the two libraries and their dependencies) and
  README.md (how to run it, the scenario, the expectation and, with --results, what the run saw).

Library code is the peers' usercode modules (mtls_matrix.usercode), copied as source: the same
lines the cells ran. A peer whose cells run code of their own (a subclass that changes start or
connect) cannot be reproduced: a usage error (exit 2), nothing written.
A foreign peer's snippets start its program (peers/foreign.py: from fixtures/, with the run's
JSON config; openssl s_client: its command line): the script then uses only the Python side's
library, and README.md says how to get the program.
"""

from __future__ import annotations

import argparse
import ast
import difflib
import importlib.metadata
import inspect
import os
import platform
import re
import shutil
import ssl
import sys
import tempfile
import textwrap
from dataclasses import replace
from importlib import resources
from pathlib import Path
from string import Template
from types import ModuleType

from mtls_matrix import cell as matrix_cell
from mtls_matrix import peers, protocol
from mtls_matrix.options import DEADLINE, DEFAULT_DEADLINE, MAX_DEADLINE, PEER_PLUGIN, add_arguments, output_dir
from mtls_matrix.peers.foreign import FIXTURES_DIR
from mtls_matrix.pki import CLIENT_CN, PKI
from mtls_matrix.results import Cell, Results, Run, Verdict
from mtls_matrix.canonical import VERIFY_CODES
from mtls_matrix.selection import SCRUBBED, CellSpec, build_selection

# The generated script: $name placeholders are filled by script(); everything else is the script, verbatim.
SKELETON = Template(resources.files("mtls_matrix").joinpath("templates/repro.py.tmpl").read_text())
USERCODE = "mtls_matrix.usercode"

ID_FORMAT = (
    "a cell id is SERVER-CLIENT[VARIANT]-SCENARIO, with -tuned appended for an I/O scenario under the tuned "
    "profile, e.g. websockets-aiohttp[ssl=context]-client-expired-tls12 (`mtls-matrix list` shows the servers, "
    "clients and scenarios; results.json has the id of every cell it ran)"
)


class ReproError(Exception):
    """Bad input: printed as a usage error (exit 2); nothing is written."""


def verdict_of(observed: str, outcome: str, by: str | None, reason: str | None) -> str:
    """The matrix verdict an OBSERVED summary means under the scenario's expectation
    (outcome "succeed", or "reject" by one side for one reason)."""
    if observed.startswith("no outcome"):
        return "HANG"
    if observed.startswith(("works", "connected", "handler ran")):  # the connection was accepted
        if outcome == "reject":
            return "INSECURE"
        return "PASS" if observed.startswith("works") else "FAIL"
    if outcome == "reject" and observed == f"rejected by the {by}: {reason}":
        return "PASS"
    return "FAIL"  # rejected when it should work, by the wrong side, for the wrong reason, too late


# -- finding the cell ------------------------------------------------------------------------


def find_cell(cell_id: str, peer_plugins: list[str] | tuple[str, ...] = ()) -> CellSpec:
    try:
        cells = build_selection(peer_plugins=peer_plugins).cells
    except ValueError as exc:
        raise ReproError(str(exc)) from None
    by_id = {c.id: c for c in cells}
    if cell_id in by_id:
        return by_id[cell_id]
    near = difflib.get_close_matches(cell_id, list(by_id), n=5, cutoff=0.6)
    hint = f"nearest valid ids: {', '.join(near)}" if near else "no valid id is close to it"
    raise ReproError(f"unknown cell {cell_id!r}; {ID_FORMAT}; {hint}")


def module_source(module: ModuleType) -> str:
    """A usercode module (or mtls_matrix.protocol) as standalone source: its docstring as a comment, without
    `from __future__` and the mtls_matrix imports (the script defines those names: it holds protocol's source)."""
    source = inspect.getsource(module)
    lines, body = source.splitlines(), ast.parse(source).body
    for node in reversed(body):
        first, last = node.lineno - 1, node.end_lineno
        if isinstance(node, ast.ImportFrom) and (node.module == "__future__" or node.module.startswith("mtls_matrix")):
            del lines[first:last]
        elif isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and node is body[0]:
            lines[first:last] = [f"# {line}".rstrip() for line in inspect.cleandoc(node.value.value).splitlines()]
    return re.sub(r"\n{4,}", "\n\n\n", "\n".join(lines)).strip() + "\n"


def usercode_source(module: ModuleType) -> str:
    """module_source of a usercode module, after that of each usercode module it imports (the handlers that
    the servers of a family share), so the script defines every name the module takes from them."""
    modules: list[ModuleType] = []

    def add(found: ModuleType) -> None:
        for node in ast.parse(inspect.getsource(found)).body:
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(USERCODE + "."):
                add(importlib.import_module(node.module))
        if found not in modules:
            modules.append(found)

    add(module)
    return "\n\n".join(module_source(found) for found in modules)


def _runs_usercode(peer, method: str) -> bool:
    """The peer's usercode is what its cells run: `method` (start or connect) is the contract's default, or
    defined no lower than `usercode` (a subclass that changes the behaviour, tests/selftest_peers.py, must
    not borrow its parent's code for its reproducer)."""
    owner = next(k for k in type(peer).__mro__ if method in k.__dict__)
    declares = next(k for k in type(peer).__mro__ if "usercode" in k.__dict__)
    return owner in (peers.ServerPeer, peers.ClientPeer) or issubclass(declares, owner)


def _module(peer, side: str) -> ModuleType | None:
    """The peer's usercode module, if that is what its cells run."""
    method = "start" if side == "server" else "connect"
    return peer.usercode if peer.usercode is not None and _runs_usercode(peer, method) else None


def _usercode(peer, side: str, variant: str | None, profile: str) -> str | None:
    """The source of the library code a peer's cells run, for the reproducer: its usercode module; a
    program in another language builds its own from its declarations (`repro_derived`: peers/foreign.py)."""
    if _module(peer, side) is not None:
        return usercode_source(peer.usercode)
    if getattr(peer, "repro_derived", False):
        return peer.repro_server(profile) if side == "server" else peer.repro_client(variant, profile)
    return None


def scenario_refusal(scenario) -> str | None:
    """Why no standalone script reproduces a cell of this scenario, or None."""
    if scenario.environment:
        return (f"its scenario sets the client's environment ({scenario.environment}), which a script run in the "
                f"user's own does not")
    if any(op == "reconnect" for op, *_ in scenario.io):
        return ("its reconnect step is the harness's hand on the server (drop its connections, restart it), which "
                "a standalone script does not have")
    return None


def server_refusal(server) -> str | None:
    """Why no standalone script runs this server, or None."""
    if server.out_of_process and not getattr(server, "repro_derived", False):
        return (f"server {server.name!r} is a proxy process in front of a Python server (peers/proxy.py), which a "
                f"standalone script does not run")
    module = _module(server, "server")
    if module is not None and "certfile" in inspect.signature(module.start_server).parameters:
        return (f"server {server.name!r} takes its TLS settings as files and builds its own SSLContext, where a "
                f"script cannot record the server's side of the handshake")
    return None


def snippets(spec: CellSpec, modules: dict[str, str]) -> tuple[str, str]:
    refusal = server_refusal(spec.server) or scenario_refusal(spec.scenario)
    if refusal:
        raise ReproError(f"cannot write a reproducer for {spec.id}: {refusal}; rerun the cell instead: {spec.repro}")
    server_src = _usercode(spec.server, "server", None, spec.profile)
    client_src = _usercode(spec.client.peer, "client", spec.client.variant, spec.profile)
    missing = [f"{role} peer {peer.name!r} (module {modules.get(peer.name, type(peer).__module__)}) names no "
               f"usercode its cells run" for role, peer, src in (
                   ("server", spec.server, server_src), ("client", spec.client.peer, client_src)) if src is None]
    if missing:
        raise ReproError(
            f"cannot write a reproducer for {spec.id}: {'; '.join(missing)}. A peer's library code is a usercode "
            "module (start_server/stop_server, connect_client) that its own class names and runs (docs/PEERS.md)")
    return server_src, client_src


def configures(peer, role: str, variant: str | None = None, limit: int = 8) -> tuple[bool, list[str]]:
    """(whether `mtls-matrix repro` can write a reproducer with this peer, the library calls that configure
    it there): the body of its usercode's start_server / connect_client as this variant runs it (BUGS.md
    quotes them, from results.json); no lines for a program in another language."""
    if role == "server" and server_refusal(peer):
        return False, []
    source = _usercode(peer, role, variant, "default")
    if source is None:
        return False, []
    if peer.foreign:
        return True, []
    return True, _body(source, "start_server" if role == "server" else "connect_client", variant, limit)


def _body(source: str, function: str, variant: str | None, limit: int) -> list[str]:
    """The statements of the module's `function` that run for `variant` (a branch on the variant alone is
    decided), without its docstring and the functions it defines."""
    node = next((n for n in ast.walk(ast.parse(source)) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
                 and n.name == function), None)
    if node is None:
        return []
    body = [n for n in _taken(node.body, variant) if not isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
            and not (isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant))]
    returns = [i for i, n in enumerate(body) if isinstance(n, ast.Return)]
    body = body[:returns[0] + 1] if returns else body  # what follows a decided return never runs
    code = [line for n in body for line in ast.unparse(n).splitlines()]
    return code[:limit] + (["..."] if len(code) > limit else [])


def _taken(body: list[ast.stmt], variant: str | None) -> list[ast.stmt]:
    """`body` with each `if` whose test names only `variant` replaced by the branch it takes."""
    taken = []
    for node in body:
        names = {n.id for n in ast.walk(node.test) if isinstance(n, ast.Name)} if isinstance(node, ast.If) else None
        if names != {"variant"} or variant is None:
            taken.append(node)
            continue
        try:
            chosen = eval(compile(ast.Expression(node.test), "<variant test>", "eval"), {"__builtins__": {}},
                          {"variant": variant})
        except Exception:  # a test this cannot decide: the reader sees both branches
            taken.append(node)
            continue
        taken += _taken(node.body if chosen else node.orelse, variant)
    return taken


# -- what goes into DIR ----------------------------------------------------------------------


def requirements(libraries: list[str]) -> list[str]:
    """pip-freeze lines of the libraries and every dependency they pull in here (markers
    evaluated for this interpreter, extras not included), from the installed metadata."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    found: dict[str, str] = {}
    todo = list(libraries)
    while todo:
        name = todo.pop()
        if canonicalize_name(name) in found:
            continue
        try:
            dist = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            continue  # a dependency this interpreter does not need (and so does not have)
        found[canonicalize_name(name)] = f"{dist.metadata['Name']}=={dist.version}"
        for line in dist.requires or []:
            requirement = Requirement(line)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                todo.append(requirement.name)
    return sorted(found.values(), key=str.lower)


def imported_distributions(source: str) -> list[str]:
    """The installed distributions whose modules the source imports (the standard library's aside): a
    library's companions and the HTTP stacks it runs on (python-socketio on aiohttp, requests)."""
    owners = importlib.metadata.packages_distributions()
    names: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names += [alias.name.split(".")[0] for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.append(node.module.split(".")[0])
    return [dist for name in dict.fromkeys(names) if name not in sys.stdlib_module_names
            for dist in owners.get(name, [])[:1]]


def needed_files(spec: CellSpec, pki: PKI) -> dict[str, tuple[Path, bool, str]]:
    """DIR name -> (source in the PKI, is a key, what it is): only what the scenario uses."""
    scenario = spec.scenario
    server = pki[scenario.server_cert]
    files = {
        "ca.pem": (pki.root, False, "the test root CA both sides trust"),
        f"{server.name}.chain.pem": (server.chain, False, "the certificate chain the server presents"),
        f"{server.name}.key.pem": (server.key, True, "the server's private key"),
    }
    if scenario.client_cert:
        client = pki[scenario.client_cert]
        files[f"{client.name}.chain.pem"] = (client.chain, False, "the certificate chain the client presents")
        files[f"{client.name}.key.pem"] = (client.key, True, "the client's private key")
    if scenario.crl:
        files["crl.pem"] = (pki.crl, False, "the CA's CRL, which the server checks the client certificate against")
    return files


def _copy(source: Path, target: Path, key: bool) -> None:
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600 if key else 0o644)
    with os.fdopen(fd, "wb") as f:
        f.write(source.read_bytes())


def script(spec: CellSpec, files: dict[str, tuple[Path, bool, str]], deadline: float) -> str:
    server_src, client_src = snippets(spec, {})
    scenario, expect = spec.scenario, spec.scenario.expect
    names = list(files)
    server_chain = next(n for n in names if n.endswith(".chain.pem") and n.startswith(scenario.server_cert + "."))
    client_chain = (next(n for n in names if n.startswith(scenario.client_cert + ".") and n.endswith(".chain.pem"))
                    if scenario.client_cert else None)
    server_tls = {
        "tls12": "    context.maximum_version = ssl.TLSVersion.TLSv1_2  # the scenario caps the server at TLS 1.2\n",
        "tls13": "    context.minimum_version = ssl.TLSVersion.TLSv1_3  # the scenario requires TLS 1.3\n",
    }.get(scenario.server_tls, "")
    if scenario.crl:
        server_tls += ('    context.load_verify_locations(CRL)  # the scenario checks the client leaf against the CRL\n'
                       '    context.verify_flags |= ssl.VERIFY_CRL_CHECK_LEAF\n')
    client_files = (f'CLIENT_CERT = str(HERE / {client_chain!r})  # the chain the client presents\n'
                    f'CLIENT_KEY = str(HERE / {client_chain.replace(".chain.pem", ".key.pem")!r})\n'
                    if client_chain else "CLIENT_CERT = CLIENT_KEY = None  # the client presents no certificate\n")
    server_lib, client_lib = spec.server.library, spec.client.peer.library
    headers, query, auth = _token_source(scenario)
    # what a client module declares: its URL scheme (CLIENT_URL_SCHEME, else wss), whether connect_client
    # takes the connect auth payload (Socket.IO, whose URL path is the namespace)
    client_module = _module(spec.client.peer, "client")
    scheme = getattr(client_module, "CLIENT_URL_SCHEME", "wss")
    takes_auth = client_module is not None and "auth" in inspect.signature(client_module.connect_client).parameters
    environment = spec.client.peer.environment.get(spec.client.variant, ())
    return SKELETON.substitute(
        scrubbed=repr(SCRUBBED), environment=f"dict.fromkeys({environment!r}, CA)" if environment else "{}",
        headers=headers, query=query, tokens="{TOKEN: CLIENT_CN}" if scenario.token else "None",
        auth=auth, client_auth=", auth=AUTH" if takes_auth else "", url_scheme=repr(scheme),
        url_path=repr(scenario.namespace or "/" if scheme == "https" else "/cell/repro"),
        protocol=module_source(protocol).rstrip(),
        cell_id=spec.id,
        scenario=scenario.name,
        description=scenario.description,
        profile=spec.profile, profile_repr=repr(spec.profile), server_options=repr(spec.server.usercode_options),
        profile_note=("library defaults" if spec.profile == "default"
                      else "documented limits raised (message size), the rest at library defaults"),
        server=spec.server.name, server_lib=server_lib, server_version=spec.server.version,
        client=spec.client.name, client_lib=client_lib, client_version=spec.client.peer.version,
        variant=spec.client.variant,
        server_chain=repr(server_chain), server_key=repr(server_chain.replace(".chain.pem", ".key.pem")),
        client_files=client_files,
        crl='CRL = str(HERE / "crl.pem")\n' if scenario.crl else "",
        host=repr(scenario.host), server_tls_name=repr(scenario.server_tls), server_tls=server_tls,
        deadline=repr(float(deadline)), io=repr(list(matrix_cell.io_steps(spec))),
        server_label=repr(f"{server_lib} {spec.server.version}"),
        client_label=repr(f"{client_lib} {spec.client.peer.version}"), variant_repr=repr(spec.client.variant),
        expect=repr({"outcome": expect.outcome, "by": expect.by, "reason": expect.reason}),
        expected=expect.describe(), expected_repr=repr(expect.describe()), client_cn=repr(CLIENT_CN), verify_codes=repr(VERIFY_CODES),
        verdict_of=inspect.getsource(verdict_of).rstrip(),
        # the matrix's own step code, so the reproducer cannot drift from what the cell ran
        payload=inspect.getsource(matrix_cell.payload).rstrip(),
        describe=inspect.getsource(matrix_cell._describe).rstrip(),
        run_step=inspect.getsource(matrix_cell.run_step).rstrip(),
        server_src=server_src.rstrip(), client_src=client_src.rstrip(),
        about=textwrap.fill(f"{how(spec)} The certificates beside this file are throwaway test keys from a test CA "
                            "made for this reproducer. Run: pip install -r requirements.txt && python repro.py",
                            100, break_on_hyphens=False, break_long_words=False),
    )


def _token_source(scenario) -> tuple[str, str, str]:
    """HEADERS, QUERY and AUTH as source: the scenario's token presented as the cell presents it, but made
    of the script's own random TOKEN and WRONG_TOKEN (names, not values, in the generated text)."""
    carrier, value = matrix_cell.presented_token(scenario.token, valid="\0TOKEN\0", wrong="\0WRONG_TOKEN\0")
    parts = value.split("\0")  # odd items are the script's names
    expr = " + ".join(part if i % 2 else repr(part) for i, part in enumerate(parts) if part) or '""'
    headers = f'{{"Authorization": {expr}}}' if carrier == "header" else "{}"
    query = f'"?" + urlencode({{"token": {expr}}})' if carrier == "query" else '""'
    auth = f'{{"token": {expr}}}' if carrier == "auth" else "{}"
    return headers, query, auth
def _program(spec: CellSpec):
    """The cell's peer that is a program in another language (peers/foreign.py), if any."""
    return next((peer for peer in (spec.server, spec.client.peer) if peer.foreign), None)


def how(spec: CellSpec) -> str:
    """How the reproducer runs the two sides, in words."""
    program = _program(spec)
    if program is None:
        return ("Both run in this process over real TLS on 127.0.0.1, with only these two libraries and the "
                "standard library.")
    other = ("the other side runs in this process, with only its library and the standard library, over real TLS "
             "on 127.0.0.1.")
    if not hasattr(program, "command"):  # a tool the peer module drives itself (openssl s_client)
        return (f"The {program.role} is {program.library} {program.version}, run as a subprocess the way the matrix "
                f"runs it (the script prints its command line and every line it prints); {other}")
    command = " ".join(program.command).replace("{fixtures}", "FIXTURES")
    return (f"The {program.role} is the program the matrix runs for {program.library}, `{command}`, from "
            f"mtls-matrix's fixtures/ directory (FIXTURES: $MTLS_MATRIX_FIXTURES, else {FIXTURES_DIR}; build it with "
            f"`mtls-matrix setup-foreign --only {program.toolchain.name}`), started with the same JSON config as in "
            f"the run and showing every event it prints; {other}")


def readme(spec: CellSpec, files: dict[str, tuple[Path, bool, str]], pki: PKI, reqs: list[str],
           cell: Cell | None, run: Run | None, command: str) -> str:
    from cryptography import x509

    scenario = spec.scenario
    lines = [
        f"# Reproducer: `{spec.id}`",
        "",
        f"A standalone script showing how **{spec.server.library} {spec.server.version}** (server) and "
        f"**{spec.client.peer.library} {spec.client.peer.version}** (client, TLS settings passed as "
        f"`{spec.client.variant}`) behave under mutual TLS in one situation. {how(spec)}",
        "",
        "## Run it",
        "",
        "```sh",
        "python3 -m venv venv",
        "venv/bin/pip install -r requirements.txt",
        "venv/bin/python repro.py",
        "```",
        "",
        "It prints what happened (the client's handshake and upgrade, the server's TLS outcome, whether the server "
        "handler ran and the client identity it saw, each I/O step), then `EXPECTED:` (what a correct pair does), "
        "`OBSERVED:` (a one-line summary) and `VERDICT:` (what mtls-matrix calls that outcome). It exits 0 when the "
        "pair behaved as expected, 1 when not.",
        "",
        "## The cell",
        "",
        f"- cell id: `{spec.id}`",
        f"- server: `{spec.server.name}` ({spec.server.library} {spec.server.version})",
        f"- client: `{spec.client.name}` ({spec.client.peer.library} {spec.client.peer.version})",
        f"- scenario: `{scenario.name}` ({scenario.group}): {scenario.description}",
        f"- profile: `{spec.profile}`",
        f"- expected: {scenario.expect.describe()}",
        "",
    ]
    if cell is not None:
        lines += ["## What the mtls-matrix run observed", ""]
        if run is not None:
            lines.append(f"Run of {run.started}: Python {run.python}, {run.openssl}, {run.platform}.")
            lines.append("")
        lines += [
            f"- verdict: **{cell.verdict.value}** at phase `{cell.phase}`: {cell.reason}",
        ]
        if cell.error.type or cell.error.canonical:
            lines.append(f"- error the client saw: `{cell.error.canonical}` {cell.error.type or ''}: "
                         f"{cell.error.message or ''} (clarity {cell.error.clarity.value if cell.error.clarity else '-'})")
        if cell.rejection:
            lines.append(f"- rejected by the {cell.rejection.by} ({cell.rejection.canonical}) at {cell.rejection.phase}")
        saw = cell.server_saw
        lines.append(f"- server: TLS handshake {saw.tls.handshake or '-'}"
                     + (f" ({saw.tls.error.canonical}: {saw.tls.error.message})" if saw.tls.error else "")
                     + f"; handler {'ran, saw client identity ' + repr(saw.handler_peer_cn) if saw.handler_ran else 'never ran'}")
        for step in cell.steps:
            lines.append(f"- I/O `{step.op}`: {'ok' if step.ok else 'failed: ' + (step.detail or '')}")
        if cell.versions:
            lines.append(f"- versions: {', '.join(f'{k} {v}' for k, v in cell.versions.items())}")
        lines.append("")
    lines += [
        "## The certificates",
        "",
        "**These are throwaway test keys from a test CA made only for this reproducer** (generated by "
        f"`{command}` on {pki.now:%Y-%m-%d %H:%M} UTC); they protect nothing and are safe to attach to a public "
        "bug report. Only the files this scenario uses are here:",
        "",
    ]
    for name, (source, key, what) in files.items():
        if key or name == "crl.pem":
            lines.append(f"- `{name}`: {what}")
            continue
        cert = x509.load_pem_x509_certificates(source.read_bytes())[0]
        lines.append(f"- `{name}`: {what}; {cert.subject.rfc4514_string()}, valid "
                     f"{cert.not_valid_before_utc:%Y-%m-%d %H:%M} to {cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC")
    lines += [
        "",
        "Validity windows are relative to the time they were made: the good certificates expire after 30 days and a "
        "'not yet valid' one becomes valid after a day. Regenerate with the command above when that matters.",
        "",
        "## Versions (requirements.txt)",
        "",
        *[f"- {r}" for r in reqs],
        "",
        f"Generated with Python {platform.python_version()}, {ssl.OPENSSL_VERSION}, {platform.platform()}.",
        "",
    ]
    return "\n".join(lines)


def write(spec: CellSpec, out: Path, deadline: float, cell: Cell | None = None, run: Run | None = None,
          command: str = "") -> list[Path]:
    """Writes the reproducer into `out` (new or empty). Returns the files written."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ReproError(f"{out} exists and is not an empty directory; choose a new or empty one")
    sources = snippets(spec, {})  # fail before anything is built or written
    libraries = [p.library for p in (spec.server, spec.client.peer) if not p.foreign]
    reqs = requirements(list(dict.fromkeys(libraries + imported_distributions("\n".join(sources)))))
    with tempfile.TemporaryDirectory(prefix="mtls-matrix-repro-pki-") as tmp:
        pki = PKI(directory=str(Path(tmp) / "pki"))
        try:
            files = needed_files(spec, pki)
            text = script(spec, files, deadline)
            notes = readme(spec, files, pki, reqs, cell, run, command or f"mtls-matrix repro {spec.id} --out DIR")
            created = not out.exists()
            out.mkdir(mode=0o700, parents=True, exist_ok=True)
            written = []
            try:
                for name, (source, key, _) in files.items():
                    _copy(source, out / name, key)
                    written.append(out / name)
                for name, content in (("repro.py", text), ("requirements.txt", "\n".join(reqs) + "\n"),
                                      ("README.md", notes)):
                    (out / name).write_text(content)
                    written.append(out / name)
            except BaseException:
                for path in written:
                    path.unlink(missing_ok=True)
                if created:
                    shutil.rmtree(out, ignore_errors=True)
                raise
        finally:
            pki.close()
    return written


# -- the command -----------------------------------------------------------------------------


def cmd_repro(args: argparse.Namespace) -> int:
    # Errors are reported here rather than through cli.UsageError: under `python -m
    # mtls_matrix.cli` the CLI module is __main__ and a second import of it has another class.
    try:
        spec = find_cell(args.cell_id, args.peer_plugin)
        why = matrix_cell.unsupported_reason(spec)
        if why:
            raise ReproError(f"{spec.id} is UNSUPPORTED ({why}): nothing to reproduce")
        cell = run = None
        if args.results:
            try:
                loaded = Results.load(args.results)
            except ValueError as exc:
                raise ReproError(str(exc)) from None
            cell = next((c for c in loaded.cells if c.id == spec.id), None)
            if cell is None:
                raise ReproError(f"{args.results} has no cell {spec.id!r} (it has {len(loaded.cells)} cells)")
            run = loaded.run
        base = args.deadline if args.deadline is not None else run.deadline_s if run else DEFAULT_DEADLINE
        if not 0 < base <= MAX_DEADLINE:  # a results file's own deadline, unchecked by argparse
            raise ReproError(f"{args.results}: run.deadline_s {base} is not a deadline; give --deadline SECONDS")
        command = f"mtls-matrix repro {spec.id} --out {args.out}"
        # the cell's own deadline: the scenario's and the peers' scales, or the library's clock it waits on
        written = write(spec, Path(args.out), matrix_cell.cell_deadline(spec, base).seconds, cell, run, command)
    except ReproError as exc:
        print(f"mtls-matrix: error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {len(written)} files to {args.out}: {', '.join(p.name for p in written)}")
    print(f"run it: cd {args.out} && python repro.py   (needs: pip install -r requirements.txt)")
    if cell is not None and cell.verdict == Verdict.UNSUPPORTED:
        print("note: the run judged this cell UNSUPPORTED")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "repro", help="write a standalone reproducer of one cell (script, certificates, requirements, README)",
        description="Write DIR/repro.py (only the cell's two libraries and the standard library), the test "
                    "certificates it needs from a throwaway CA, DIR/requirements.txt and DIR/README.md.")
    p.add_argument("cell_id", help="the cell id, as in results.json or pytest: SERVER-CLIENT[VARIANT]-SCENARIO[-tuned]")
    p.add_argument("--out", required=True, metavar="DIR", type=output_dir, help="a new or empty directory")
    p.add_argument("--results", metavar="RESULTS.json", help="a run's results: its observation goes into the README")
    add_arguments(p, (replace(DEADLINE, default=None, help=f"seconds before a hang (default: the run's, else "
                                                          f"{DEFAULT_DEADLINE:g})"), PEER_PLUGIN))
    p.set_defaults(func=cmd_repro)
