"""What a hashtag is: the one rule every path uses (ingest, loaders, trends on Spark and in Python, search,
suggestions), so a tag is the same tag everywhere.

The canonical form of a tag (:func:`canonical_tag`):

1. Unicode NFKC, then surrounding whitespace and every leading ``#`` removed. NFKC folds compatibility
   forms: full-width ``ＦＬＯＯＤ`` and ``＃`` become ``FLOOD`` and ``#``, ``ﬁ`` becomes ``fi``, a decomposed
   ``e`` + combining acute becomes ``é``.
2. Unicode case folding (``str.casefold``, then NFKC again so the result is stable): ``Café``, ``CAFÉ`` and
   ``café`` are one tag; ``Straße`` is ``strasse``. Accents are kept: ``café`` and ``cafe`` stay two tags
   (in many languages the accent changes the word).
3. What is left must be 1 to :data:`MAX_TAG_CHARS` *tag characters* with at least one letter or digit. Tag
   characters are letters, combining marks and digits of any script (Unicode categories L*, M*, N*) and
   ``_``. Marks matter: ``#भारत`` holds a vowel sign (Mc), which a plain ``\\w`` regex would cut. Spaces,
   punctuation, emoji and an inner ``#`` make it not a tag (the keycap emoji ``#️⃣`` is ``#`` and two marks:
   no letter or digit, so no tag). Underscores are kept where written (``new_york`` and ``newyork`` are two
   tags, as on every platform).

Finding tags in text (:func:`find_tags`): after NFKC, a ``#`` and the run of tag characters after it, when
that run is a tag by the rule above, unless the ``#`` directly follows ``&`` (``&#39;`` is an HTML entity, not
tag ``39``). Tags written together count each (``#nyc#sandy`` is ``nyc`` and ``sandy``; ``river#flood``
holds ``flood``). On CrisisLex T6 this gives the data set's own hashtag lists for 60,072 of 60,082 tweets;
of the other 10, 8 hold HTML entities that the data set took for tags and 2 a ``™``, which NFKC reads as
``TM`` (``#SIRKENAYO™UPDATE`` is ``sirkenayotmupdate``).

Stored tags: bronze holds what the writers gave it. The API and the loaders write canonical tags (they go
through this module); readers (trends, suggestions) normalise again, which is idempotent on canonical tags.

This module must stay light: serving imports it.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Iterator

MAX_TAG_CHARS = 100
#: the tag-character rule as a regex class, for engines with Unicode properties (RE2 in Arrow, Java, Rust)
TAG_CHAR_CLASS = r"[\pL\pM\pN_]"


class TagError(ValueError):
    """Not a hashtag; the message says why."""


def is_tag_char(c: str) -> bool:
    """A letter, combining mark or digit of any script, or ``_``."""
    return c == "_" or unicodedata.category(c)[0] in "LMN"


def fold(text: str) -> str:
    """NFKC, case folding, NFKC: the case and compatibility folding of the rule (steps 1-2, without stripping)."""
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", text).casefold())


def canonical_tag(raw: object) -> str:
    """The canonical form of ``raw`` (see the module doc), or :class:`TagError` saying why it is no tag."""
    tag = "" if raw is None else fold(unicodedata.normalize("NFKC", str(raw)).strip().lstrip("#"))
    if not tag:
        raise TagError("is empty")
    if len(tag) > MAX_TAG_CHARS:
        raise TagError(f"has {len(tag)} characters; at most {MAX_TAG_CHARS} allowed")
    bad = next((c for c in tag if not is_tag_char(c)), None)
    if bad is not None:
        what = "a space" if bad.isspace() else "an inner '#'" if bad == "#" else f"{bad!r} (U+{ord(bad):04X})"
        raise TagError(f"has {what}: a hashtag is one word of letters, digits and underscores")
    if not any(unicodedata.category(c)[0] in "LN" for c in tag):
        raise TagError("has no letter or digit")
    return tag


def normalise_tag(raw: object) -> str:
    """The canonical form of ``raw``, or ``""`` when it is not a tag."""
    try:
        return canonical_tag(raw)
    except TagError:
        return ""


def canonical_tags(tags: Iterable[object], name: str = "hashtags") -> list[str]:
    """Every tag canonical, each once, in order; the first non-tag raises :class:`TagError` naming it
    (``hashtags[2] has a space: ...``). What the API validates with."""
    out: list[str] = []
    for i, raw in enumerate(tags):
        try:
            tag = canonical_tag(raw)
        except TagError as exc:
            raise TagError(f"{name}[{i}] {exc}") from None
        if tag not in out:
            out.append(tag)
    return out


def normalise_tags(tags: Iterable[object] | None) -> list[str]:
    """Canonical tags, each once, in first-occurrence order; what is not a tag is left out."""
    return list(dict.fromkeys(t for t in (normalise_tag(x) for x in (() if tags is None else tags)) if t))


def _tag_spans(text: str) -> Iterator[tuple[int, int, str]]:
    """``(start, end, canonical tag)`` of each ``#tag`` (``#`` included) in ``text`` (already NFKC)."""
    i = text.find("#")
    while i >= 0:
        j = i + 1
        if i == 0 or text[i - 1] != "&":
            while j < len(text) and is_tag_char(text[j]):
                j += 1
            tag = normalise_tag(text[i + 1:j]) if j > i + 1 else ""
            if tag:
                yield i, j, tag
        i = text.find("#", j)


def find_tags(text: str | None) -> list[str]:
    """The ``#tags`` written in ``text``, canonical, each once, in order."""
    return list(dict.fromkeys(tag for _, _, tag in _tag_spans(unicodedata.normalize("NFKC", text or ""))))


def strip_tags(text: str | None) -> str:
    """``text`` (NFKC) without its ``#tags``, whitespace collapsed (a draft before tags are chosen)."""
    text = unicodedata.normalize("NFKC", text or "")
    parts, last = [], 0
    for i, j, _ in _tag_spans(text):
        parts.append(text[last:i])
        last = j
    parts.append(text[last:])
    return " ".join(" ".join(parts).split())
