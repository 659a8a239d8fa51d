"""Team names that cannot impersonate: no control, zero-width or bidi-override characters, and no name
that differs from an existing one only by look-alike characters (Unicode confusables, the
``confusables`` package; case counts as look-alike too)."""
from __future__ import annotations

import unicodedata

import sqlalchemy as sa
from confusables import is_confusable

from harness.errors import PodiumError
from leaderboard.extensions import db
from leaderboard.models import Team

# Cc control, Cf format (zero-width space/joiners, bidi embeddings, overrides and isolates, the BOM),
# Co private use, Cs surrogates, Cn unassigned, Zl/Zp line and paragraph separators.
REFUSED_CATEGORIES = {"Cc", "Cf", "Co", "Cs", "Cn", "Zl", "Zp"}


def invisible_characters(name: str) -> list[str]:
    return [f"U+{ord(c):04X}" for c in name if unicodedata.category(c) in REFUSED_CATEGORIES]


def check_team_name(name: str) -> None:
    """Raise ``PodiumError`` when ``name`` may not be a new team's name (checked against the database)."""
    hidden = invisible_characters(name)
    if hidden:
        raise PodiumError(f"A team name cannot contain control, invisible or text-direction characters "
                          f"(found {', '.join(sorted(set(hidden)))}).")
    for existing in db.session.scalars(sa.select(Team.name)):
        if existing != name and is_confusable(existing, name):
            raise PodiumError(f"The name {name!r} looks like the existing team {existing!r}; choose another name.")
