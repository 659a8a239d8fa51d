"""Team names that cannot impersonate: no control, zero-width or bidi-override characters, and no name
that differs from an existing one only by look-alike characters (Unicode confusables, the data of
the ``confusable-homoglyphs`` package; case and compatibility forms count as look-alike too).

Two names are look-alikes when their skeletons are equal: NFKC, each character replaced by the
lowest code point of its homoglyph class (the pairs of the data joined into classes), case-folded, and mapped once more (so
``Alpha``, ``ALPHA``, ``AIpha`` and Cyrillic ``\u0410lpha`` share one skeleton).
"""
from __future__ import annotations

import functools
import unicodedata

import sqlalchemy as sa

from harness.errors import PodiumError
from leaderboard.extensions import db
from leaderboard.models import Team

# Cc control, Cf format (zero-width space/joiners, bidi embeddings, overrides and isolates, the BOM),
# Co private use, Cs surrogates, Cn unassigned, Zl/Zp line and paragraph separators.
REFUSED_CATEGORIES = {"Cc", "Cf", "Co", "Cs", "Cn", "Zl", "Zp"}


def invisible_characters(name: str) -> list[str]:
    return [f"U+{ord(c):04X}" for c in name if unicodedata.category(c) in REFUSED_CATEGORIES]


@functools.lru_cache(maxsize=1)
def _prototypes() -> dict[str, str]:
    from confusable_homoglyphs.confusables import confusables_data

    parent: dict[str, str] = {}

    def find(c: str) -> str:
        while parent.setdefault(c, c) != c:
            parent[c] = parent[parent[c]]
            c = parent[c]
        return c

    for char, glyphs in confusables_data.items():  # the data lists a class under its members: join them all
        for glyph in (g["c"].strip("\u200e\u200f") for g in glyphs):
            if len(char) == 1 and len(glyph) == 1:
                a, b = find(char), find(glyph)
                if a != b:
                    parent[max(a, b, key=ord)] = min(a, b, key=ord)
    return {c: find(c) for c in list(parent)}


def skeleton(name: str) -> str:
    table = _prototypes()
    mapped = "".join(table.get(c, c) for c in unicodedata.normalize("NFKC", name)).casefold()
    return "".join(table.get(c, c) for c in mapped)


def check_team_name(name: str) -> None:
    """Raise ``PodiumError`` when ``name`` may not be a new team's name (checked against the database)."""
    hidden = invisible_characters(name)
    if hidden:
        raise PodiumError(f"A team name cannot contain control, invisible or text-direction characters "
                          f"(found {', '.join(sorted(set(hidden)))}).")
    mine = skeleton(name)
    for existing in db.session.scalars(sa.select(Team.name)):
        if existing != name and skeleton(existing) == mine:
            raise PodiumError(f"The name {name!r} looks like the existing team {existing!r}; choose another name.")
