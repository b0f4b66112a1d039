"""Text from results.json is data: library error messages, peer names and curated notes must render
as what they say, never as markup. Markdown: one line, its punctuation escaped, code spans and
fences longer than any backtick run inside. Links: only http and https.
"""

from __future__ import annotations

import re
from typing import Optional

# the ASCII punctuation that can open markup in running text (emphasis, code, links, HTML, entities,
# tables, strikethrough, GitHub's math), backslash-escaped; a line of ours never starts with data
MARKDOWN_PUNCTUATION = re.compile(r"([\\`*_\[\]<>|~&$])")
BACKTICKS = re.compile(r"`+")


def one_line(text: Optional[str]) -> str:
    return " ".join((text or "").split())


def shorten(text: Optional[str], limit: int) -> str:
    text = one_line(text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def md(text: Optional[str], limit: int = 0) -> str:
    """Plain text for Markdown: one line, nothing in it can become markup or break a table."""
    return _escape(shorten(text, limit) if limit else one_line(text))


def _escape(text: str) -> str:
    return MARKDOWN_PUNCTUATION.sub(r"\\\1", text)


def code(text: Optional[str], limit: int = 0, in_table: bool = False) -> str:
    """An inline code span of `text`, whatever backticks it holds (in a table, `|` escaped too)."""
    text = shorten(text, limit) if limit else one_line(text)
    if not text:
        return "` `"
    fence = "`" * (max((len(run) for run in BACKTICKS.findall(text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") or fence != "`" else ""
    span = f"{fence}{pad}{text}{pad}{fence}"
    return span.replace("|", "\\|") if in_table else span


def curated(text: Optional[str], in_table: bool = False) -> str:
    """Curated prose (matrix/*.toml): its `code spans` kept, everything else escaped like data."""
    parts = re.split(r"(`[^`]+`)", one_line(text))
    return "".join(code(p[1:-1], in_table=in_table) if p.startswith("`") and len(p) > 1 else _escape(p)
                   for p in parts)


def fenced(lines: list[str], language: str = "") -> list[str]:
    """A fenced code block holding `lines` verbatim, its fence longer than any backtick run inside."""
    longest = max((len(run) for line in lines for run in BACKTICKS.findall(line)), default=0)
    fence = "`" * max(3, longest + 1)
    return [fence + language, *lines, fence]


def web_url(url: Optional[str]) -> Optional[str]:
    """The URL if it is an http(s) link; None for anything else (javascript:, data:, relative...)."""
    if url and re.match(r"https?://[^\s<>\"'`]+\Z", url, re.I):
        return url
    return None


def link(text: str, url: Optional[str]) -> str:
    """A Markdown link when the URL is http(s); the text alone (escaped) otherwise."""
    safe = web_url(url)
    if not safe:
        return md(text)
    return f"[{md(text)}](<{safe}>)" if re.search(r"[()\s]", safe) else f"[{md(text)}]({safe})"


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    """A Markdown table of cells already made safe (md, code, link)."""
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header),
            *("| " + " | ".join(row) + " |" for row in rows)]
