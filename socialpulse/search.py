"""Search, pure core: what a valid query is, and how semantic and keyword rankings are fused.

No stores here; :mod:`socialpulse.vectors` runs the queries and :mod:`serving.api.routes.search` serves them.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from socialpulse.tags import find_tags, fold, is_tag_char

MAX_QUERY_CHARS = 200
MAX_TERMS = 16
#: reciprocal rank fusion constant (Cormack et al. 2009): a document's fused score is sum(w / (K + rank))
RRF_K = 60
#: candidates taken from each ranking before fusion
CANDIDATES = 50

_WORD = re.compile(r"[^\W_]+(?:['_-][^\W_]+)*", re.UNICODE)


class QueryError(ValueError):
    """A search query that cannot be run; the message says why (the API answers 400 with it)."""


@dataclass(frozen=True)
class SearchQuery:
    text: str  # the query as the encoder reads it (whitespace collapsed)
    terms: tuple[str, ...]  # lower-cased words, '#' stripped, de-duplicated, in order
    hashtags: tuple[str, ...]  # words written as #tags, canonical (socialpulse.tags)

    def tsquery(self) -> str:
        """A Postgres ``to_tsquery`` string matching any term (OR): fused ranking rewards documents that
        match more terms, so an AND query would only lose recall. Terms are word characters only."""
        return " | ".join(self.terms)

    def tsquery_all(self) -> str:
        """The same terms, all required (AND): documents matching every term rank first."""
        return " & ".join(self.terms)

    @property
    def prefix(self) -> str:
        """The query as a hashtag or handle prefix: its words joined without spaces."""
        return "".join(self.terms)

    @property
    def tag_prefix(self) -> str:
        """The query as a hashtag prefix, folded as stored tags are (:mod:`socialpulse.tags`): ``CAFÉ`` finds
        ``café``, ``Straße`` finds ``strasse``."""
        return "".join(c for c in fold(self.prefix) if is_tag_char(c))


def parse_query(q: str | None, max_chars: int = MAX_QUERY_CHARS) -> SearchQuery:
    """Validate and normalise a search query, or raise :class:`QueryError` saying what is wrong."""
    if q is None or not q.strip():
        raise QueryError("q is empty: give the words to search for, e.g. ?q=street+food")
    if len(q) > max_chars:
        raise QueryError(f"q is {len(q)} characters; the limit is {max_chars}")
    bad = sorted({f"U+{ord(c):04X}" for c in q if unicodedata.category(c) in ("Cc", "Cf", "Cs", "Co") and c not in "\t\n"})
    if bad:
        raise QueryError(f"q contains control or invisible characters ({', '.join(bad[:5])})")
    text = " ".join(q.split())
    words = [w.lower() for w in _WORD.findall(text)]
    terms = tuple(dict.fromkeys(w for w in words if w))[:MAX_TERMS]
    if not terms:
        raise QueryError("q has no letters or digits to search for")
    return SearchQuery(text=text, terms=tuple(t.replace("'", "") for t in terms), hashtags=tuple(find_tags(text)))


@dataclass(frozen=True)
class Fused:
    id: str
    score: float
    ranks: Mapping[str, int]  # ranking name -> 1-based rank where the id appeared


def fuse(rankings: Mapping[str, Sequence[str]], weights: Mapping[str, float] | None = None,
         k: int = RRF_K) -> list[Fused]:
    """Reciprocal rank fusion: an id scores ``sum(weight / (k + rank))`` over the rankings it appears in.
    Ties break by the best single rank, then by id (deterministic)."""
    weights = weights or {}
    scores: dict[str, float] = {}
    ranks: dict[str, dict[str, int]] = {}
    for name, ids in rankings.items():
        w = float(weights.get(name, 1.0))
        seen: set[str] = set()
        for rank, doc in enumerate(ids, start=1):
            if doc in seen:  # a ranking lists an id once; later repeats are ignored
                continue
            seen.add(doc)
            scores[doc] = scores.get(doc, 0.0) + w / (k + rank)
            ranks.setdefault(doc, {})[name] = rank
    order = sorted(scores, key=lambda d: (-scores[d], min(ranks[d].values()), d))
    return [Fused(d, round(scores[d], 6), ranks[d]) for d in order]
