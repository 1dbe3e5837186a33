"""One feed request, pure: candidate sources from the serving state, the feature matrix, scoring with the
champion ranker (or the heuristic when there is none), re-ranking, pages and cursors.

The serving route does the I/O (Redis, Postgres) and calls these in order; see ``serving/api/routes/feed.py``.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from socialpulse.ranking.model import FEATURES, POST_FEATURES, USER_FEATURES, Ranker, heuristic_scores
from socialpulse.ranking.rerank import Candidate, adjust, arrange, eligible, merge_candidates
from socialpulse.vectors import flag_pools

#: candidates ranked per request; how many each of the user's own sources (followed creators) and each global
#: pool (popular, fresh, trending: the posts of the pool nearest to the user) may offer; ANN neighbours (the
#: HNSW walk's cost grows with it: at 1M posts 300 touched ~7.5k index pages per request)
CANDIDATES = 500
PER_SOURCE = 150
K_INTEREST = 150
#: each pool also offers its first POOL_HEAD posts (the most popular, the newest, the most trending) whatever
#: their similarity: exploration that does not depend on the interest vector, and how a post made a minute ago
#: reaches feeds before anyone has engaged with it
POOL_HEAD = 30
#: posts kept, in order, for a request's later pages
MAX_RANKED = 200
HEURISTIC = "heuristic"


class CursorError(ValueError):
    """A cursor this API did not make (or made for another user)."""


def new_request_id() -> str:
    return uuid.uuid4().hex[:20]


def encode_cursor(request_id: str, offset: int, user_id: str) -> str:
    raw = json.dumps({"r": request_id, "o": offset, "u": user_id}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, user_id: str) -> tuple[str, int]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        data = json.loads(raw)
        request_id, offset, owner = str(data["r"]), int(data["o"]), str(data["u"])
    except (ValueError, KeyError, TypeError):
        raise CursorError("cursor is not one this API returned (pass next_cursor back unchanged)") from None
    if owner != user_id:
        raise CursorError("cursor belongs to another user's feed")
    if offset < 0:
        raise CursorError("cursor offset must not be negative")
    return request_id, offset


def other_sources(lists: Mapping[str, Sequence[str]]) -> dict[str, list[str]]:
    """The candidate sources a request reads from the user's state: followed creators' recent posts, cut to
    :data:`PER_SOURCE` (the global pools are picked in Postgres, nearest to the user)."""
    return {"following": list(lists.get("following", ()))[:PER_SOURCE]}


def by_similarity(post_ids: Sequence[str], sims: Sequence[float], n: int) -> list[str]:
    """The ``n`` of ``post_ids`` most similar to the user, best first (ties by id): how a global pool offers
    its posts to one user (Postgres does it online; offline evaluation calls this)."""
    order = sorted(range(len(post_ids)), key=lambda i: (-sims[i], post_ids[i]))
    return [post_ids[i] for i in order[:n]]


def pool_picks(pool: Sequence[str], sims: Sequence[float], n: int, head: int = POOL_HEAD) -> list[str]:
    """What a global pool (best first) offers one user: its first ``head`` posts, then its ``n`` nearest to
    the user not among them, each part by similarity (Postgres picks the same set online; the head comes
    first so that a cut of the merged candidates keeps it)."""
    first = by_similarity(pool[:head], sims[:head], head)
    taken = set(first)
    return first + [p for p in by_similarity(pool, sims, n) if p not in taken]


def _age_hours(created_at: str | None, now: dt.datetime) -> float:
    if not created_at:
        return float("nan")
    try:
        ts = dt.datetime.fromisoformat(created_at)
    except ValueError:
        return float("nan")
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=dt.timezone.utc)
    return max((now - ts).total_seconds() / 3600.0, 0.0)


def candidates_from_rows(rows: Sequence[Sequence], others: Mapping[str, Sequence[str]], now: dt.datetime,
                         limit: int = CANDIDATES) -> list[Candidate]:
    """Merge the sources over the servable rows Postgres returned (tuples of ``vectors.FEED_COLUMNS``; a
    post it did not return is not servable, whatever source offered it): the interest neighbours by
    similarity, each pool's picks as :func:`pool_picks` orders them (its head first), the user's own
    sources in their order. Each candidate carries its row's author, topic, age and similarities."""
    by_id = {r[0]: r for r in rows}
    sims = {p: (r[4] if r[4] is not None else -2.0) for p, r in by_id.items()}
    picked: dict[str, list[str]] = {"interest": []}
    heads: dict[str, list[str]] = {}
    for p, r in by_id.items():
        flags = r[6]
        if not flags:
            continue
        nearest, pools, headed = flag_pools(flags)
        if nearest:
            picked["interest"].append(p)
        for pool in pools:
            picked.setdefault(pool, []).append(p)
        for pool in headed:
            heads.setdefault(pool, []).append(p)
    sources = {}
    for name, ids in picked.items():
        head = heads.get(name, [])
        in_head = set(head)
        pool = head + [p for p in ids if p not in in_head]
        sources[name] = pool_picks(pool, [sims[p] for p in pool], len(pool), head=len(head))
    sources.update({name: [p for p in ids if p in by_id] for name, ids in others.items()})
    merged = merge_candidates(sources, limit)
    nan = float("nan")
    for c in merged:
        _, c.author_id, c.topic, created_at, sim, ni, _ = by_id[c.post_id]
        c.age_hours = _age_hours(created_at, now)
        c.sim_interest = float(sim) if sim is not None else nan
        c.sim_not_interested = float(ni) if ni is not None else nan
    return merged


def feature_matrix(candidates: Sequence[Candidate], post_features: np.ndarray, user_features: np.ndarray,
                   followed: set[str]) -> np.ndarray:
    """Rows of :data:`FEATURES` for the candidates (``post_features`` in the same order)."""
    n = len(candidates)
    X = np.full((n, len(FEATURES)), np.nan)
    col = {name: i for i, name in enumerate(FEATURES)}
    for i, c in enumerate(candidates):
        X[i, col["sim_interest"]] = c.sim_interest
        X[i, col["follows_author"]] = 1.0 if c.author_id in followed else 0.0
        X[i, col["age_hours"]] = c.age_hours
    if n:
        for j, name in enumerate(POST_FEATURES):
            X[:, col[name]] = post_features[:, j]
        for j, name in enumerate(USER_FEATURES):
            X[:, col[name]] = user_features[j]
    return X


@dataclass
class Ranked:
    items: list[Candidate]
    model_version: str


def rank(user_id: str, candidates: list[Candidate], post_features: np.ndarray, seen: np.ndarray,
         hidden_posts: set[str], lists: Mapping[str, Sequence[str]], user_features: np.ndarray,
         ranker: Ranker | None) -> Ranked:
    """Filter, score and re-rank one request's candidates; at most :data:`MAX_RANKED` come back, in order."""
    seen_ids = {c.post_id for c, s in zip(candidates, seen) if s} | hidden_posts
    keep_idx = {id(c) for c in eligible(candidates, user_id=user_id, seen=seen_ids,
                                        blocked=set(lists.get("blocked", ())), unfollowed=set(lists.get("unfollowed", ())))}
    rows = [i for i, c in enumerate(candidates) if id(c) in keep_idx]
    kept = [candidates[i] for i in rows]
    X = feature_matrix(kept, post_features[rows] if len(rows) else np.zeros((0, len(POST_FEATURES))),
                       user_features, set(lists.get("followed", ())))
    if ranker is not None:
        scores, version = ranker.score(X), ranker.version
    else:
        scores, version = heuristic_scores(X), HEURISTIC
    adjust(kept, scores)
    return Ranked(items=arrange(kept, demoted_authors=set(lists.get("not_interested_authors", ())), limit=MAX_RANKED),
                  model_version=version)


def item_json(c: Candidate, position: int, created_at: str | None = None) -> dict:
    return {"post_id": c.post_id, "author_id": c.author_id, "topic": c.topic, "source": c.source,
            "score": round(c.score, 4), "position": position}
