"""Error text and peer names are data: hostile strings through both renderers (reports/text.py)."""

from __future__ import annotations

import re

import pytest

from mtls_matrix import findings
from mtls_matrix.knowledge import Knowledge, Link, Mechanism
from mtls_matrix.reports import bugs, text
from mtls_matrix.reports.html import render_html
from mtls_matrix.results import ErrorInfo, Verdict
from tests.hand_built import CLIENTS, SERVERS, grid, results

EVIL = ("boom\n# EVIL-HEADING\n| EVIL | TABLE |\n```\n<script>alert(1)</script> [click](javascript:alert(2)) "
        "*bold* _it_ ~~gone~~ $x$ &amp; `` ` `` <!-- end")


def hostile_results():
    failing = dict(verdict=Verdict.FAIL, phase="io", reason=f"failed: {EVIL}",
                   error=ErrorInfo(canonical="EOF", type="evil.Error<img src=x onerror=alert(3)>", message=EVIL,
                                   clarity="OPAQUE"),
                   upstream="javascript:alert(4)", baseline="KNOWN", baseline_reason=EVIL)
    cells = grid("io-text", {(s, c): failing for s in SERVERS for c in CLIENTS})
    return results(*cells)


@pytest.mark.parametrize("value, expected", [
    ("a*b", "a\\*b"), ("[x](javascript:y)", "\\[x\\](javascript:y)"), ("<b>", "\\<b\\>"), ("a|b", "a\\|b"),
    ("line\nbreak", "line break"), ("$x$ &", "\\$x\\$ \\&"),
])
def test_markdown_text_is_one_line_with_its_punctuation_escaped(value, expected):
    assert text.md(value) == expected


def test_code_spans_and_fences_outgrow_the_backticks_inside():
    assert text.code("a ``b`` c") == "``` a ``b`` c ```"
    assert text.fenced(["x", "````"])[0] == "`````"
    assert text.code("a|b", in_table=True) == "`a\\|b`"


@pytest.mark.parametrize("url", ["javascript:alert(1)", "data:text/html,x", "//evil.example", "ftp://x", "",
                                 "https://ok.example/a b"])
def test_only_http_links_are_links(url):
    assert text.web_url(url) is None
    assert "](" not in text.link("x", url)


def test_bugs_md_keeps_hostile_text_inert():
    res = hostile_results()
    knowledge = Knowledge(mechanisms=(Mechanism(id="evil", title="t", reason=EVIL, note=EVIL,
                                                links=(Link(url="https://example.org/ok", status=EVIL),)),))
    res.cells[0].mechanism = "evil"
    markdown = bugs.render(findings.analyse(res, knowledge))
    lines = markdown.splitlines()
    assert not any(line.startswith(("# EVIL", "| EVIL", "<script", "```")) and "EVIL" in line for line in lines)
    assert all("EVIL-HEADING" in line for line in lines if "boom " in line)  # never split across lines
    prose = "\n".join(re.sub(r"(`+)(?!`).*?(?<!`)\1(?!`)", "", line) for line in lines)  # code spans are inert
    assert "EVIL" in prose  # the curated note and the baseline's reason: in the prose, escaped
    for live in ("](javascript:", "<script", "<img", "<!--", "*bold*", "_it_", "~~gone~~", "$x$", "&amp;"):
        assert not re.search(r"(?<!\\)" + re.escape(live), prose), live  # escaped, it is text


def test_the_html_report_keeps_hostile_text_inert():
    page = render_html(findings.analyse(hostile_results()))
    assert page.count("<script") == 3  # the data, the details, the script: nothing a message wrote
    assert "<img" not in page and "javascript:" not in re.sub(r"<script.*?</script>", "", page, flags=re.S)
    assert "evil.Error&lt;img src=x onerror=alert(3)&gt;" in page or "&lt;img" in page
    assert not re.search(r'href="(?!https?:)', page)
