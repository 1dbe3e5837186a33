"""The feed's serving state, built from the lake and the index (pure given its inputs): what the feed state
asset publishes into Postgres (the candidate pools, :func:`socialpulse.vectors.publish_feed_pool`) and Redis
(:mod:`socialpulse.ranking.store`).

- global candidate pools of :data:`POOL_SIZE` posts: ``popular`` (yesterday's views, then the week's, weighted by
  engagement), ``fresh`` (newest), ``trending`` (posts carrying a currently flagged hashtag, by the tag's score
  then recency); servable posts only. A request takes from each pool the posts nearest to the user;
- packed post features: the latest engagement row of each servable post (:data:`POST_FEATURES`);
- per user: the latest engagement features, the follow graph's current state (followed, unfollowed), blocks,
  posts marked not interested (and their creators), the recent posts of followed creators, and the posts
  viewed in the last :data:`SEEN_DAYS` days.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from socialpulse.ranking.model import POST_FEATURES, USER_FEATURES

POOL_SIZE = 1000
FOLLOWING_POSTS = 100
NOT_INTERESTED_KEPT = 50
SEEN_DAYS = 7
FEEDBACK_DAYS = 30


def latest_rows(table: pa.Table, key: str, ts: str = "feature_ts") -> pa.Table:
    """One row per ``key``: the one with the greatest ``ts``."""
    if table.num_rows == 0:
        return table
    order = pc.sort_indices(table, sort_keys=[(key, "ascending"), (ts, "descending")])
    t = table.take(order)
    keys = t[key].combine_chunks()
    first = pa.concat_arrays([pa.array([True]), pc.not_equal(keys[1:], keys[:-1])])
    return t.filter(first)


def global_lists(posts: Sequence[Mapping], post_features: Mapping[str, np.ndarray], trend_scores: Mapping[str, float],
                 size: int = POOL_SIZE) -> dict[str, list[str]]:
    """``posts``: servable posts (post_id, created_at ISO, hashtags). Returns popular, fresh and trending."""
    col = {n: i for i, n in enumerate(POST_FEATURES)}

    def popularity(pid: str) -> float:
        f = post_features.get(pid)
        if f is None:
            return 0.0
        views = np.nan_to_num(f[col["views_1d"]]) + 0.1 * np.nan_to_num(f[col["views_7d"]])
        rate = np.nan_to_num(f[col["engagement_rate_7d"]])
        return float(np.log1p(views) * (1.0 + rate))

    by_new = sorted(posts, key=lambda p: (p["created_at"] or "", p["post_id"]), reverse=True)
    popular = sorted((p["post_id"] for p in posts), key=lambda pid: (-popularity(pid), pid))
    trending = []
    if trend_scores:
        scored = [(max((trend_scores.get(t, 0.0) for t in (p.get("hashtags") or [])), default=0.0), p) for p in by_new]
        trending = [p["post_id"] for s, p in sorted((x for x in scored if x[0] > 0), key=lambda x: -x[0])]
    return {"popular": popular[:size], "fresh": [p["post_id"] for p in by_new[:size]], "trending": trending[:size]}


def follow_state(follows: pa.Table) -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """(followed creators per user, creators each user unfollowed and has not followed again), from the
    latest action per (follower, followee)."""
    followed: dict[str, set[str]] = {}
    unfollowed: dict[str, set[str]] = {}
    if follows.num_rows == 0:
        return followed, unfollowed
    t = follows.sort_by([("created_at", "ascending"), ("event_id", "ascending")])
    last: dict[tuple[str, str], str] = {}
    for a, b, act in zip(t["follower_id"].to_pylist(), t["followee_id"].to_pylist(), t["action"].to_pylist()):
        last[(a, b)] = act
    for (a, b), act in last.items():
        (followed if act == "follow" else unfollowed).setdefault(a, set()).add(b)
    return followed, unfollowed


def user_states(users_features: Mapping[str, np.ndarray], followed: Mapping[str, set[str]],
                unfollowed: Mapping[str, set[str]], feedback: pa.Table, views: pa.Table,
                posts: Sequence[Mapping]) -> dict[str, dict]:
    """Per user, everything :func:`socialpulse.ranking.store.publish_users` writes. ``feedback``: recent
    interactions of type block / not_interested (user_id, event_type, post_id, target_user_id, created_at);
    ``views``: recent (user_id, post_id) views; ``posts``: servable posts (post_id, author_id, created_at)."""
    by_author: dict[str, list[tuple[str, str]]] = {}
    author_of: dict[str, str] = {}
    for p in posts:
        by_author.setdefault(p["author_id"], []).append((p["created_at"] or "", p["post_id"]))
        author_of[p["post_id"]] = p["author_id"]
    for lst in by_author.values():
        lst.sort(reverse=True)
    blocked: dict[str, set[str]] = {}
    dismissed: dict[str, list[str]] = {}
    if feedback.num_rows:
        fb = feedback.sort_by([("created_at", "descending")])
        for u, kind, post, target in zip(fb["user_id"].to_pylist(), fb["event_type"].to_pylist(),
                                         fb["post_id"].to_pylist(), fb["target_user_id"].to_pylist()):
            if kind == "block" and target:
                blocked.setdefault(u, set()).add(target)
            elif kind == "not_interested" and post:
                lst = dismissed.setdefault(u, [])
                if post not in lst and len(lst) < NOT_INTERESTED_KEPT:
                    lst.append(post)
    seen: dict[str, set[str]] = {}
    for u, p in zip(views["user_id"].to_pylist(), views["post_id"].to_pylist()):
        seen.setdefault(u, set()).add(p)
    users = set(users_features) | set(followed) | set(unfollowed) | set(blocked) | set(dismissed) | set(seen)
    out = {}
    for u in users:
        follows_u = followed.get(u, set()) - blocked.get(u, set())
        recent = sorted((x for a in follows_u for x in by_author.get(a, [])[:FOLLOWING_POSTS]), reverse=True)
        ni = dismissed.get(u, [])
        out[u] = {
            "features": users_features.get(u),
            "following": [pid for _, pid in recent[:FOLLOWING_POSTS]],
            "followed": sorted(follows_u),
            "blocked": sorted(blocked.get(u, set())),
            "unfollowed": sorted(unfollowed.get(u, set()) - follows_u),
            "not_interested": ni,
            "not_interested_authors": sorted({author_of[p] for p in ni if p in author_of}),
            "seen": sorted(seen.get(u, set())),
        }
    return out


def feature_map(table: pa.Table, key: str, names: Sequence[str]) -> dict[str, np.ndarray]:
    """key -> float array of ``names`` (the latest row per key)."""
    t = latest_rows(table, key)
    if t.num_rows == 0:
        return {}
    mat = np.column_stack([t[n].to_numpy(zero_copy_only=False).astype(np.float64) for n in names])
    return dict(zip(t[key].to_pylist(), mat))


def since(day: dt.date, days: int) -> dt.date:
    return day - dt.timedelta(days=days - 1)
