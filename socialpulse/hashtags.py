"""Hashtag suggestions for a draft post, pure core: candidates from three sources, one ranking.

Sources, each giving a score in [0, 1] per candidate tag:

* ``semantic``: the draft's nearest posts (MiniLM cosine) vote for their hashtags, each vote weighted by
  the neighbour's similarity; the votes are normalised by the top vote. Posts like the draft carry tags
  that fit it.
* ``cooccurrence``: for the tags already chosen, how often each other tag appears with them
  (``P(tag | chosen)``, the best over the chosen tags).
* ``trending``: tags trending now (their latest trend score, squashed to [0, 1)), counted only when the
  draft is about them (semantic score above :data:`TREND_RELEVANCE`): a trending tag unrelated to the
  draft is never pushed.

The ranking is a weighted sum (:data:`WEIGHTS`) plus a small popularity prior that breaks ties; chosen
tags are never suggested again. :func:`rank` is what the API serves and what the evaluation measures.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from socialpulse.tags import normalise_tag, normalise_tags

#: weights of the sources in the final score (chosen on the synthetic validation days, not on test)
WEIGHTS: dict[str, float] = {"semantic": 1.0, "cooccurrence": 0.8, "trending": 0.3, "popularity": 0.05}
#: a trending tag counts only for drafts whose semantic score for it reaches this
TREND_RELEVANCE = 0.2
#: neighbours that vote
NEIGHBOURS = 30

@dataclass(frozen=True)
class Suggestion:
    tag: str
    score: float
    sources: Mapping[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"tag": self.tag, "score": round(self.score, 4),
                "sources": {k: round(v, 4) for k, v in self.sources.items() if v}}


def neighbour_votes(neighbours: Iterable[tuple[float, Sequence[str]]]) -> dict[str, float]:
    """``(similarity, hashtags)`` of the nearest posts -> tag -> vote in [0, 1] (the top tag scores 1)."""
    votes: dict[str, float] = {}
    for sim, tags in neighbours:
        w = max(float(sim), 0.0)
        for t in normalise_tags(tags):
            votes[t] = votes.get(t, 0.0) + w
    top = max(votes.values(), default=0.0)
    return {t: v / top for t, v in votes.items()} if top > 0 else {}


def cooccurrence_scores(chosen: Sequence[str], pairs: Mapping[str, Mapping[str, int]],
                        counts: Mapping[str, int]) -> dict[str, float]:
    """tag -> best ``P(tag | c)`` over the chosen tags ``c`` (``pairs[c][tag]`` posts carry both)."""
    out: dict[str, float] = {}
    for c in chosen:
        n = counts.get(c, 0)
        if n <= 0:
            continue
        for t, both in pairs.get(c, {}).items():
            out[t] = max(out.get(t, 0.0), min(both / n, 1.0))
    return out


def trend_strength(score: float) -> float:
    """A trend z-score squashed to [0, 1): 2 -> 0.5, 6 -> 0.75, 18 -> 0.9."""
    return max(score, 0.0) / (max(score, 0.0) + 2.0)


def rank(*, semantic: Mapping[str, float], cooccurrence: Mapping[str, float] | None = None,
         trending: Mapping[str, float] | None = None, popularity: Mapping[str, float] | None = None,
         chosen: Sequence[str] = (), limit: int = 5, weights: Mapping[str, float] | None = None) -> list[Suggestion]:
    """Rank candidate tags from the sources (each tag -> score in [0, 1]); ``trending`` holds raw trend
    z-scores, ``popularity`` a share in [0, 1]. Candidates are the tags any of semantic, co-occurrence or
    (relevant) trending proposes; popularity only breaks ties among them."""
    w = {**WEIGHTS, **(weights or {})}
    cooccurrence, trending, popularity = cooccurrence or {}, trending or {}, popularity or {}
    taken = {normalise_tag(c) for c in chosen}
    relevant_trends = {t: trend_strength(s) for t, s in trending.items() if semantic.get(t, 0.0) >= TREND_RELEVANCE}
    out = []
    for t in (set(semantic) | set(cooccurrence) | set(relevant_trends)) - taken:
        parts = {"semantic": semantic.get(t, 0.0), "cooccurrence": cooccurrence.get(t, 0.0),
                 "trending": relevant_trends.get(t, 0.0), "popularity": popularity.get(t, 0.0)}
        out.append(Suggestion(t, sum(w[k] * v for k, v in parts.items()), parts))
    out.sort(key=lambda s: (-s.score, s.tag))
    return out[:limit]


def popularity_shares(counts: Mapping[str, int]) -> dict[str, float]:
    """tag -> its post count relative to the most used tag, on a log scale (in [0, 1])."""
    top = max(counts.values(), default=0)
    if top <= 0:
        return {}
    return {t: math.log1p(n) / math.log1p(top) for t, n in counts.items() if n > 0}


def tag_statistics(posts: Iterable, *, top_pairs: int | None = None) -> tuple[Counter, dict[str, Counter]]:
    """(posts per tag, tag -> co-occurring tag -> posts carrying both) over posts given as hashtag lists or
    records with ``hashtags``; ``top_pairs`` keeps each tag's most frequent partners only (what is served)."""
    counts: Counter = Counter()
    pairs: dict[str, Counter] = defaultdict(Counter)
    for p in posts:
        tags = normalise_tags(p.get("hashtags") if isinstance(p, Mapping) else p)
        counts.update(tags)
        for a in tags:
            for b in tags:
                if a != b:
                    pairs[a][b] += 1
    if top_pairs is not None:
        pairs = defaultdict(Counter, {t: Counter(dict(c.most_common(top_pairs))) for t, c in pairs.items()})
    return counts, pairs
