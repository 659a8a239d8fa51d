"""Organizer Markdown to safe HTML: markdown-it-py parses, nh3 (Ammonia) sanitises.

Two locks, so that one failing does not open the door: the parser runs with raw HTML off (an
organizer's ``<script>`` or ``<iframe>`` becomes visible text, and markdown-it refuses
``javascript:``/``vbscript:``/``data:`` link targets), and its output then goes through nh3 with
an allow-list of tags and attributes, http(s)/mailto URLs only, no event handler or ``style``
attribute, and ``rel="nofollow noopener"`` on every link. Pure functions: no Flask here.
"""
from __future__ import annotations

import nh3
from markdown_it import MarkdownIt

ALLOWED_TAGS = frozenset({
    "a", "abbr", "blockquote", "br", "code", "del", "em", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "img",
    "li", "ol", "p", "pre", "s", "strong", "table", "tbody", "td", "th", "thead", "tr", "ul",
})
ALLOWED_ATTRIBUTES = {
    "a": {"href", "title"},
    "img": {"src", "alt", "title"},
    "ol": {"start"},
    "td": {"align"},
    "th": {"align"},
}
URL_SCHEMES = frozenset({"http", "https", "mailto"})
LINK_REL = "nofollow noopener"

_parser = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False}).enable(["table", "strikethrough"])


def sanitize_html(html: str) -> str:
    """Only the allowed tags and attributes survive; scripts and styles go with their content."""
    return nh3.clean(
        html,
        tags=set(ALLOWED_TAGS),
        attributes={tag: set(attrs) for tag, attrs in ALLOWED_ATTRIBUTES.items()},
        url_schemes=set(URL_SCHEMES),
        link_rel=LINK_REL,
        strip_comments=True,
    )


def render_markdown(text: str) -> str:
    """Markdown (CommonMark plus tables and strikethrough) to sanitised HTML."""
    return sanitize_html(_parser.render(text))
