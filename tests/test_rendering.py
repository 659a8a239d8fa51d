"""leaderboard.rendering: organizer Markdown to HTML that can carry no script (markdown-it-py + nh3)."""
from __future__ import annotations

import re

import pytest

from leaderboard.rendering import render_markdown, sanitize_html

HOSTILE = [
    "<script>alert(1)</script>",
    "<img src=x onerror=alert(1)>",
    "[click](javascript:alert(1))",
    "[click](JaVaScRiPt:alert(1))",
    "[click](vbscript:msgbox(1))",
    "[click](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)",
    '<iframe src="https://example.com"></iframe>',
    '<a href="https://example.com" onclick="alert(1)">x</a>',
    "<svg onload=alert(1)>",
    '<div style="background:url(javascript:alert(1))">x</div>',
    "![x](javascript:alert(1))",
    '<object data="x.swf"></object>',
    "<style>body{display:none}</style>",
]


def _tags(html: str) -> set[str]:
    return {m.lower() for m in re.findall(r"<\s*([a-zA-Z][a-zA-Z0-9]*)", html)}


@pytest.mark.parametrize("source", HOSTILE)
def test_hostile_markdown_renders_without_script_handlers_or_script_urls(source):
    html = render_markdown(source)
    assert not _tags(html) & {"script", "iframe", "svg", "object", "style", "div", "embed"}, html
    assert not re.search(r"<[^>]*\son\w+\s*=", html, re.I), html  # no event handler attribute
    assert not re.search(r"""(href|src)\s*=\s*["']?\s*(javascript|vbscript|data):""", html, re.I), html
    assert not re.search(r"<[^>]*\sstyle\s*=", html, re.I), html


@pytest.mark.parametrize("source", HOSTILE)
def test_the_sanitiser_alone_also_removes_them_from_raw_html(source):
    """The second lock: even HTML that did not come from the parser loses every script vector."""
    html = sanitize_html(source)
    assert not _tags(html) & {"script", "iframe", "svg", "object", "style", "div", "embed"}, html
    assert not re.search(r"<[^>]*\son\w+\s*=", html, re.I), html
    assert not re.search(r"""(href|src)\s*=\s*["']?\s*(javascript|vbscript|data):""", html, re.I), html


def test_raw_html_is_shown_as_text_not_markup():
    html = render_markdown("Hello <b>world</b> <script>alert(1)</script>")
    assert "&lt;b&gt;world&lt;/b&gt;" in html and "&lt;script&gt;" in html and "<b>" not in html


def test_markdown_still_renders_and_links_get_nofollow_noopener():
    html = render_markdown(
        "# Title\n\nSome *emphasis*, **strong**, `code` and [a link](https://example.com/a?b=1&c=2).\n\n"
        "- one\n- two\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n```\nx = 1\n```\n"
    )
    assert "<h1>Title</h1>" in html and "<em>emphasis</em>" in html and "<strong>strong</strong>" in html
    assert "<code>code</code>" in html and "<li>one</li>" in html and "<td>1</td>" in html and "<pre>" in html
    assert re.search(r'<a href="https://example.com/a\?b=1&amp;c=2" rel="nofollow noopener">a link</a>', html), html


def test_every_link_gets_the_rel_even_if_the_author_wrote_another():
    html = sanitize_html('<a href="https://example.com" rel="opener" target="_blank">x</a>')
    assert 'rel="nofollow noopener"' in html and "opener\"" not in html.replace('rel="nofollow noopener"', "")
    assert "target" not in html
