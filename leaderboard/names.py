"""Team names that cannot impersonate: no invisible, blank, control or text-direction characters, and
no name that looks like an existing one.

Refused characters (``refused_characters``):

- Unicode's ``Default_Ignorable_Code_Point`` property (characters a renderer may show as nothing:
  zero-width spaces and joiners, bidi marks, embeddings, overrides and isolates, the soft hyphen,
  the combining grapheme joiner U+034F, the Hangul fillers U+115F, U+1160, U+3164, U+FFA0, the
  variation selectors U+FE00-FE0F and U+E0100-E01EF, tag characters, ...). Python's
  ``unicodedata`` has no such property and no kept library provides it (the ``regex`` module is not
  a dependency), so it is derived here as UAX #44 defines it, from the category data of Python's
  ``unicodedata`` plus the two small tables below (``Other_Default_Ignorable_Code_Point`` and
  ``Variation_Selector`` from the Unicode 15.1 PropList.txt), minus the listed exceptions;
- the categories Cc (controls), Cf (format), Co (private use), Cs (surrogates), Cn (unassigned),
  Zl and Zp (line and paragraph separators);
- blanks that are not default-ignorable: every space but the plain U+0020 (no-break, ideographic,
  em, thin, ... spaces) and U+2800 BRAILLE PATTERN BLANK.

Look-alikes (``skeleton``): two names are refused as look-alikes when their skeletons are equal.
The skeleton is the one of Unicode's UTS #39 (section 4: NFD, default-ignorables removed, each
character replaced by its prototype from confusables.txt, NFD again), applied around two podium
extensions: NFKC first (full-width and other compatibility forms), and case folding then a
second pass (so ``ALPHA``, ``AIpha`` with a capital I, ``A1pha`` and Cyrillic ``\u0410lpha`` all
look like ``Alpha``); runs of spaces count as one. The prototypes come from the ``confusable-homoglyphs``
package's copy of confusables.txt (6,307 source-prototype pairs), which keeps each pair but not
its direction: each source has one prototype and no prototype is a source, so every group is a
star and its centre is the prototype; for a group of two single characters either may be, and
the lower code point stands for both, which gives the same equalities. Multi-character prototypes
are kept: ``Team`` and ``Tearn`` (``m`` -> ``rn``), ``ﬁ`` and ``fi`` compare equal. Not covered:
pairs that confusables.txt lacks (``cl`` against ``d``, ``vv`` against ``w``), whole-script or
mixed-script checks (UTS #39 section 5), and glyphs that only a particular font makes alike.
"""
from __future__ import annotations

import functools
import re
import unicodedata

import sqlalchemy as sa

from harness.errors import PodiumError
from leaderboard.extensions import db
from leaderboard.models import Team

# PropList.txt (Unicode 15.1): Other_Default_Ignorable_Code_Point, then Variation_Selector.
OTHER_DEFAULT_IGNORABLE = [
    (0x034F, 0x034F), (0x115F, 0x1160), (0x17B4, 0x17B5), (0x2065, 0x2065), (0x3164, 0x3164),
    (0xFFA0, 0xFFA0), (0xFFF0, 0xFFF8), (0xE0000, 0xE0000), (0xE0002, 0xE001F), (0xE0080, 0xE00FF),
    (0xE01F0, 0xE0FFF),
]
VARIATION_SELECTORS = [(0x180B, 0x180D), (0x180F, 0x180F), (0xFE00, 0xFE0F), (0xE0100, 0xE01EF)]
# UAX #44: Default_Ignorable_Code_Point = Other_DI + Cf + Variation_Selector - White_Space -
# FFF9..FFFB (interlinear annotation) - 13430..1343F (Egyptian format controls) -
# Prepended_Concatenation_Mark (format characters meant to be seen).
NOT_DEFAULT_IGNORABLE = [
    (0xFFF9, 0xFFFB), (0x13430, 0x1343F), (0x0600, 0x0605), (0x06DD, 0x06DD), (0x070F, 0x070F),
    (0x0890, 0x0891), (0x08E2, 0x08E2), (0x110BD, 0x110BD), (0x110CD, 0x110CD),
]
REFUSED_CATEGORIES = {"Cc", "Cf", "Co", "Cs", "Cn", "Zl", "Zp"}
BLANKS = {0x2800}  # BRAILLE PATTERN BLANK: a visible-width blank, not default-ignorable


def _within(code: int, ranges: list[tuple[int, int]]) -> bool:
    return any(low <= code <= high for low, high in ranges)


def is_default_ignorable(char: str) -> bool:
    """Unicode's Default_Ignorable_Code_Point, derived as UAX #44 defines it (see the module's doc)."""
    code = ord(char)
    if _within(code, NOT_DEFAULT_IGNORABLE):  # (no Cf, variation selector or Other_DI is White_Space)
        return False
    return (_within(code, OTHER_DEFAULT_IGNORABLE) or _within(code, VARIATION_SELECTORS)
            or unicodedata.category(char) == "Cf")


def refused_characters(name: str) -> list[str]:
    """The characters of ``name`` a team name may not contain, as ``U+XXXX``."""
    found = []
    for c in name:
        if (is_default_ignorable(c) or unicodedata.category(c) in REFUSED_CATEGORIES or ord(c) in BLANKS
                or (unicodedata.category(c) == "Zs" and c != " ")):
            found.append(f"U+{ord(c):04X}")
    return found




@functools.lru_cache(maxsize=1)
def _prototypes() -> dict[str, str]:
    """Each character that confusables.txt maps, to its prototype (one or more characters)."""
    from confusable_homoglyphs.confusables import confusables_data

    def clean(text: str) -> str:  # the data wraps right-to-left characters in LRM marks for display
        return text.replace("\u200e", "").replace("\u200f", "")

    neighbours: dict[str, set[str]] = {}
    for char, glyphs in confusables_data.items():
        for glyph in glyphs:
            a, b = clean(char), clean(glyph["c"])
            if a and b and a != b:
                neighbours.setdefault(a, set()).add(b)
                neighbours.setdefault(b, set()).add(a)
    table: dict[str, str] = {}
    for node, others in neighbours.items():
        if len(others) > 1 or len(node) > 1:
            continue  # a centre (a prototype): kept as it is
        (other,) = others
        if len(neighbours[other]) > 1 or len(other) > 1:
            table[node] = other  # a source: its group's centre
        elif ord(other) < ord(node):
            table[node] = other  # a pair of single characters: the lower stands for both
    return table


def _uts39(text: str) -> str:
    table = _prototypes()
    text = "".join(c for c in unicodedata.normalize("NFD", text) if not is_default_ignorable(c))
    for _ in range(3):  # a prototype's own characters are prototypes; one pass is enough for the data
        mapped = "".join(table.get(c, c) for c in text)
        if mapped == text:
            break
        text = mapped
    return unicodedata.normalize("NFD", text)


def skeleton(name: str) -> str:
    """What ``name`` looks like: equal skeletons, look-alike names (see the module's doc)."""
    folded = _uts39(unicodedata.normalize("NFKC", name)).casefold()
    return re.sub(r"\s+", " ", _uts39(folded)).strip()


def check_team_name(name: str) -> None:
    """Raise ``PodiumError`` when ``name`` may not be a new team's name (checked against the database)."""
    hidden = refused_characters(name)
    if hidden:
        raise PodiumError(f"A team name cannot contain control, blank, invisible or text-direction characters "
                          f"(found {', '.join(sorted(set(hidden)))}); use letters, digits, punctuation and plain "
                          f"spaces.")
    mine = skeleton(name)
    if not mine:
        raise PodiumError("A team name needs at least one visible character.")
    for existing in db.session.scalars(sa.select(Team.name)):
        if existing != name and skeleton(existing) == mine:
            raise PodiumError(f"The name {name!r} looks like the existing team {existing!r}; choose another name.")
