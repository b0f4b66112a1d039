"""Curated knowledge, as data: what the project knows about the mechanisms behind its findings.

Read from a directory (the repository's `matrix/`):

- `mechanisms.toml`: one `[[mechanism]]` per known root cause: its id (the finding's stable id is
  `F-<id>`), a title, the reason in a sentence or two, an optional longer note and workaround, and
  the upstream links, each with its status. Baseline entries name the mechanism that explains
  their cells (`mechanism = "cn-fallback"`); `clarity` names the clarity findings it explains
  (`"GROUP PEER"` globs: `"client-rejected server:websockets"`), whose cells all pass, and
  `advisories` the advisories of passing cells it explains (`"KIND PEER"` globs).
- `reference.toml`: the findings of a reference report (reference/ruby-mtls-BUGS.md) and the cells
  that would reproduce each one, so BUGS.md can say whether this run reproduces it.

Nothing here runs a peer or reads today's catalogue: findings apply it to results.json.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from mtls_matrix.results import NOT_OBSERVED, Cell

DEFAULT_DIR = "matrix"  # where the curated knowledge sits beside the baseline, from the repository's root
MECHANISMS = "mechanisms.toml"
REFERENCE = "reference.toml"
ID_PATTERN = r"^[a-z0-9]+(-[a-z0-9]+)*$"


def glob(pattern: str) -> re.Pattern[str]:
    """A glob in which only `*` and `?` are wildcards: cell ids hold `[variant]` brackets."""
    return re.compile(re.escape(pattern).replace(r"\*", ".*").replace(r"\?", ".") + r"\Z")


def web_link(url: str) -> str:
    if not re.match(r"https?://[^\s]+\Z", url):
        raise ValueError(f"{url!r} is not an http(s) link")
    return url


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Link(Strict):
    url: str
    status: str = Field(description="open | fixed | closed | documented | by design | ...: what upstream made of it")

    _http = field_validator("url")(web_link)


class Mechanism(Strict):
    id: str = Field(pattern=ID_PATTERN)
    title: str = Field(min_length=1, description="what goes wrong, in a line: the finding's title")
    reason: str = Field(min_length=1, description="why, in a sentence or two: also the baseline's reason")
    note: str = ""
    workaround: str = ""
    links: tuple[Link, ...] = ()
    clarity: tuple[str, ...] = Field((), description="'GROUP PEER' globs: the clarity findings it explains")
    advisories: tuple[str, ...] = Field(
        (), description="'KIND PEER' globs: the advisories of passing cells it explains")

    @property
    def upstream(self) -> Optional[str]:
        return self.links[0].url if self.links else None

    def explains_clarity(self, group: str, peer: str) -> bool:
        return any(glob(pattern).match(f"{group} {peer}") for pattern in self.clarity)

    def explains_advisory(self, kind: str, cell: Cell) -> bool:
        """An advisory of this kind on a cell of a peer the patterns name (either side)."""
        return any(glob(pattern).match(f"{kind} {peer}") for pattern in self.advisories
                   for peer in (cell.server, cell.client))


class CellPattern(Strict):
    """Cells by pattern and what they must show (a reference finding's evidence or contrast)."""

    server: str = "*"  # over the server's name without "server:"
    client: str = "*"  # over the client's name with its variant, without "client:"
    scenarios: tuple[str, ...] = ("*",)  # scenario names, globs or groups
    verdicts: tuple[str, ...] = ()  # the cell's verdict is one of these (empty: any)
    phase: Optional[str] = None
    text: Optional[str] = None  # a regex searched in the cell's reason, error and rejection messages
    handler_ran: Optional[bool] = None
    shows: str = ""  # the observation in words
    exclude: tuple[str, ...] = ()  # client patterns whose cells test nothing here

    def selects(self, cell: Cell) -> bool:
        client = cell.client.split(":", 1)[-1]
        return (glob(self.server).match(cell.server.split(":", 1)[-1]) is not None
                and glob(self.client).match(client) is not None
                and not any(glob(pattern).match(client) for pattern in self.exclude)
                and any(cell.group == s or glob(s).match(cell.scenario) for s in self.scenarios))

    def seen_in(self, cell: Cell) -> bool:
        return ((not self.verdicts or cell.verdict.value in self.verdicts)
                and (self.phase is None or cell.phase == self.phase)
                and (self.text is None or re.search(self.text, said(cell), re.I) is not None)
                and (self.handler_ran is None or cell.server_saw.handler_ran == self.handler_ran))

    def tested(self, cells) -> list[Cell]:
        return [c for c in cells if self.selects(c) and c.verdict not in NOT_OBSERVED]


def said(cell: Cell) -> str:
    """Everything a cell reports in words: its reason, the client's error, the rejection, the server's TLS error."""
    parts = [cell.reason, cell.error.message, cell.rejection.message if cell.rejection else None,
             cell.server_saw.tls.error.message if cell.server_saw.tls.error else None]
    return " | ".join(dict.fromkeys(p for p in parts if p))


class ReferenceFinding(Strict):
    id: str
    title: str
    claimed: str
    evidence: Optional[CellPattern] = None  # None: not testable here
    untestable: Optional[str] = None
    contrast: Optional[CellPattern] = None
    comment: str = ""
    mechanism: Optional[str] = None
    links: tuple[str, ...] = ()

    _http = field_validator("links")(lambda links: tuple(web_link(url) for url in links))


class Reference(Strict):
    source: str = ""
    finding: tuple[ReferenceFinding, ...] = ()


class Knowledge(Strict):
    mechanisms: tuple[Mechanism, ...] = ()
    reference: Reference = Reference()

    def mechanism(self, id: Optional[str]) -> Optional[Mechanism]:
        return next((m for m in self.mechanisms if m.id == id), None) if id else None


def load(directory: str | Path) -> Knowledge:
    """The knowledge in `directory`; a file that is absent contributes nothing. Raises ValueError
    naming the file and the problem."""
    directory = Path(directory)
    if not directory.is_dir():
        raise ValueError(f"{directory}: no such directory of curated knowledge (mechanisms.toml, reference.toml)")
    mechanisms = _validated(directory / MECHANISMS, lambda data: tuple(
        _record(Mechanism, number, item) for number, item in enumerate(_tables(data, "mechanism"), 1)))
    reference = _validated(directory / REFERENCE, lambda data: Reference(**data))
    found = Knowledge(mechanisms=mechanisms or (), reference=reference or Reference())
    seen: set[str] = set()
    for mechanism in found.mechanisms:
        if mechanism.id in seen:
            raise ValueError(f"{directory / MECHANISMS}: mechanism {mechanism.id!r} is defined twice")
        seen.add(mechanism.id)
    unknown = [f.id for f in found.reference.finding if f.mechanism and f.mechanism not in seen]
    if unknown:
        raise ValueError(f"{directory / REFERENCE}: finding {unknown[0]} names an unknown mechanism")
    return found


def _validated(path: Path, build):
    """`build(data)` from the file's TOML, or None when the file is absent."""
    if not path.exists():
        return None
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ValueError(f"{path}: not valid TOML: {exc}") from None
    try:
        return build(data)
    except ValidationError as exc:  # the first problem, where it is
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error["loc"])
        raise ValueError(f"{path}: {exc.title.lower()} {where}: {error['msg']}") from None
    except ValueError as exc:  # a record's own problem (_record, _tables)
        raise ValueError(f"{path}: {exc}") from None


def _record(model, number: int, item: dict):
    """One [[record]], its number and id named when it is not valid."""
    try:
        return model(**item)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error["loc"])
        name = f" ({item['id']})" if isinstance(item.get("id"), str) else ""
        raise ValueError(f"{exc.title.lower()} {number}{name}: {where}: {error['msg']}") from None


def _tables(data: dict, name: str) -> list[dict]:
    extra = sorted(set(data) - {name})
    if extra:
        raise ValueError(f"unknown top-level key {', '.join(extra)}; it holds only [[{name}]] tables")
    items = data.get(name, [])
    if not isinstance(items, list):
        raise ValueError(f"{name!r} must be an array of tables, written [[{name}]]")
    return items
