"""Candidate merging and the feed's re-ranking rules (pure; serving and offline evaluation share them).

Order of operations for one request:
1. :func:`merge_candidates` unions the candidate sources, remembering each post's first source;
2. :func:`eligible` drops what must never be shown: posts already seen, posts of blocked or unfollowed
   creators, the user's own posts;
3. the ranker scores the rest; :func:`adjust` standardises the scores within the request, adds a freshness
   bonus and takes away for similarity to posts the user marked ``not_interested``;
4. :func:`arrange` orders greedily under per-window author and topic caps (:func:`diversify`), the posts of
   creators the user dismissed a post of after all the others.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

#: candidate sources, in the order their posts are kept when a post comes from several
SOURCES = ("following", "interest", "trending", "fresh", "popular")
#: at most this many posts of one creator / one topic in any window of WINDOW consecutive positions
AUTHOR_CAP = 1
TOPIC_CAP = 3
WINDOW = 10
#: exploration budget: in any WINDOW positions at most this many posts from these sources (the rest of the
#: page is for posts chosen for the user: their interests and the creators they follow)
SOURCE_CAPS = {"fresh": 2, "popular": 1, "trending": 2}
#: how far down the remaining posts a position looks for one that fits the caps
LOOKAHEAD = 500  # the whole candidate set: a narrow pool still gets the best fit
#: freshness bonus (in request-standardised score units) of a post just made; it halves every FRESH_HALF_LIFE_H
FRESH_BONUS = 0.5
FRESH_HALF_LIFE_H = 24.0
#: not_interested: a candidate this similar (cosine) or more to a post the user dismissed loses up to
#: NOT_INTERESTED_PENALTY; the posts of that post's creator come after every other candidate
#: (:func:`arrange`): a score penalty alone lost to the caps, which picked the one post that fitted them
NOT_INTERESTED_SIM = 0.6
NOT_INTERESTED_PENALTY = 2.0


@dataclass(slots=True)
class Candidate:
    post_id: str
    source: str
    author_id: str | None = None
    topic: str | None = None
    age_hours: float = float("nan")
    sim_interest: float = float("nan")
    sim_not_interested: float = float("nan")  # max cosine similarity to the user's dismissed posts
    score: float = 0.0


def merge_candidates(sources: Mapping[str, Sequence[str]], limit: int) -> list[Candidate]:
    """Union of the sources' post ids, at most ``limit``: sources are interleaved round-robin in
    :data:`SOURCES` order so every source is represented when the limit cuts; a post's ``source`` is the
    first that offered it."""
    order = [s for s in SOURCES if s in sources] + [s for s in sources if s not in SOURCES]
    first: dict[str, str] = {}
    lists = [(name, list(sources[name])) for name in order]
    depth = max((len(ids) for _, ids in lists), default=0)
    for i in range(depth):
        if len(first) >= limit:
            break
        for name, ids in lists:
            if len(first) < limit and i < len(ids) and ids[i] not in first:
                first[ids[i]] = name
    return [Candidate(post_id=p, source=s) for p, s in first.items()]


def eligible(candidates: Iterable[Candidate], *, user_id: str, seen: set[str] = frozenset(),
             blocked: set[str] = frozenset(), unfollowed: set[str] = frozenset()) -> list[Candidate]:
    """Candidates that may be shown: not seen, not by a blocked or unfollowed creator, not the user's own."""
    hidden = set(blocked) | set(unfollowed) | {user_id}
    return [c for c in candidates if c.post_id not in seen and c.author_id not in hidden]


def adjust(candidates: Sequence[Candidate], scores: np.ndarray) -> None:
    """Set each candidate's final ``score``: the ranker score standardised within the request, plus the
    freshness bonus, minus the not_interested penalty."""
    s = np.asarray(scores, dtype=np.float64)
    if s.size == 0:
        return
    sd = s.std()
    z = (s - s.mean()) / sd if sd > 1e-12 else np.zeros_like(s)
    for c, zi in zip(candidates, z):
        age = c.age_hours if c.age_hours == c.age_hours else 24 * 30.0  # unknown age: a month old
        bonus = FRESH_BONUS * math.pow(0.5, max(age, 0.0) / FRESH_HALF_LIFE_H)
        penalty = 0.0
        sim = c.sim_not_interested
        if sim == sim and sim > NOT_INTERESTED_SIM:
            penalty = NOT_INTERESTED_PENALTY * min(1.0, (sim - NOT_INTERESTED_SIM) / (1 - NOT_INTERESTED_SIM) * 2)
        c.score = float(zi + bonus - penalty)


def diversify(candidates: Sequence[Candidate], *, author_cap: int = AUTHOR_CAP, topic_cap: int = TOPIC_CAP,
              window: int = WINDOW, source_caps: Mapping[str, int] = SOURCE_CAPS, limit: int | None = None,
              lookahead: int = LOOKAHEAD) -> list[Candidate]:
    """Best score first, under caps: in any ``window`` consecutive positions at most ``author_cap`` posts of a
    creator, ``topic_cap`` of a topic and ``source_caps[s]`` from source ``s``. Each position takes the best
    of the next ``lookahead`` remaining posts that fits; when none does (a narrow pool), the best remaining
    goes in anyway: the caps order the feed, they never shorten it. Stops after ``limit`` posts (the cost is
    bounded by ``limit x lookahead``, not the square of the pool)."""
    pool = sorted(candidates, key=lambda c: (-c.score, c.post_id))
    limit = len(pool) if limit is None else min(limit, len(pool))
    # authors, topics and sources as small ints with a count and a cap each (list indexing: this loop is the
    # feed's hottest Python); a missing author or topic is never capped
    ids: dict[tuple[str, object], int] = {}
    caps: list[int] = []

    def slot(kind: str, value, cap: int) -> int:
        key = (kind, value)
        if key not in ids:
            ids[key] = len(caps)
            caps.append(cap)
        return ids[key]

    unbounded = len(pool) + 1
    keys = [(slot("a", c.author_id, unbounded if c.author_id is None else author_cap),
             slot("t", c.topic, unbounded if c.topic is None else topic_cap),
             slot("s", c.source, source_caps.get(c.source, window))) for c in pool]
    counts = [0] * len(caps)
    order = list(range(len(pool)))
    out: list[Candidate] = []
    picked: list[tuple[int, int, int]] = []
    while len(out) < limit:
        pick = 0
        for i, j in enumerate(order[:lookahead]):
            a, t, src = keys[j]
            if counts[a] < caps[a] and counts[t] < caps[t] and counts[src] < caps[src]:
                pick = i
                break
        j = order.pop(pick)
        out.append(pool[j])
        picked.append(keys[j])
        for k in keys[j]:
            counts[k] += 1
        if window > 1 and len(out) >= window:  # the post leaving the window frees its slots
            for k in picked[-window]:
                counts[k] -= 1
    return out


def arrange(candidates: Sequence[Candidate], *, demoted_authors: set[str] = frozenset(),
            limit: int | None = None) -> list[Candidate]:
    """The feed's order: :func:`diversify` over the candidates, with the posts of ``demoted_authors`` (the
    creators of posts the user marked not interested) after all the others, diversified among themselves."""
    first = [c for c in candidates if c.author_id not in demoted_authors]
    out = diversify(first, limit=limit)
    left = None if limit is None else limit - len(out)
    if left is None or left > 0:
        out += diversify([c for c in candidates if c.author_id in demoted_authors], limit=left)
    return out
