"""The feed's serving state in Redis: the layout, its writers (the feed state asset) and its readers (the
API), in one place so the two sides cannot drift.

Per feed request the API makes one pipelined Redis round trip for the user's state
(:func:`read_request_state`), one for the candidates' packed features and seen flags
(:func:`read_candidate_state`), and one, after answering, to remember the page and log impressions
(:func:`write_served`). Values are packed float32 (features) or JSON (id lists).

Keys::

    feed:meta                    hash   as_of, posts, users, version
    feed:post                    hash   post_id -> float32[len(POST_FEATURES)]
    feed:user:<user_id>          hash   features (float32[len(USER_FEATURES)]), following (posts of followed
                                        creators, newest first), followed, blocked, unfollowed,
                                        not_interested (post ids), not_interested_authors   (JSON lists)
    feed:seen:<user_id>          set    posts the user viewed or was served (expires SEEN_TTL_S after last use)
    feed:page:<request_id>       string JSON: the ranked rest of a request, for its next pages (PAGE_TTL_S)
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from socialpulse.ranking.model import POST_FEATURES, USER_FEATURES

PREFIX = "feed:"
META = PREFIX + "meta"
POSTS = PREFIX + "post"
USER_LISTS = ("following", "followed", "blocked", "unfollowed", "not_interested", "not_interested_authors")
SEEN_TTL_S = 7 * 24 * 3600
PAGE_TTL_S = 30 * 60
USER_TTL_S = 30 * 24 * 3600


def user_key(user_id: str) -> str:
    return f"{PREFIX}user:{user_id}"


def seen_key(user_id: str) -> str:
    return f"{PREFIX}seen:{user_id}"


def page_key(request_id: str) -> str:
    return f"{PREFIX}page:{request_id}"


def pack(values: Sequence[float] | np.ndarray) -> bytes:
    return np.asarray(values, dtype=np.float32).tobytes()


def unpack_rows(blobs: Sequence[bytes | None], width: int) -> np.ndarray:
    """``(len(blobs), width)`` float64; a missing or malformed blob is a row of NaN."""
    out = np.full((len(blobs), width), np.nan)
    size = 4 * width
    for i, b in enumerate(blobs):
        if b is not None and len(b) == size:
            out[i] = np.frombuffer(b, dtype=np.float32)
    return out


# --- writers (the feed state asset) ------------------------------------------------------------------------
def publish_posts(redis, post_ids: Sequence[str], features: np.ndarray, chunk: int = 5000) -> int:
    """Packed post features (rows of :data:`POST_FEATURES`), replacing those of the same posts."""
    for start in range(0, len(post_ids), chunk):
        redis.hset(POSTS, mapping={p: pack(f) for p, f in zip(post_ids[start:start + chunk], features[start:start + chunk])})
    return len(post_ids)


def prune_posts(redis, keep: Iterable[str]) -> int:
    """Drop packed features of posts no longer servable."""
    keep = set(keep)
    gone = [p.decode() if isinstance(p, bytes) else p for p in redis.hkeys(POSTS)]
    gone = [p for p in gone if p not in keep]
    for start in range(0, len(gone), 5000):
        redis.hdel(POSTS, *gone[start:start + 5000])
    return len(gone)


def publish_users(redis, users: Mapping[str, Mapping], chunk: int = 2000) -> int:
    """Per user: ``{"features": array | None, <USER_LISTS name>: list, "seen": list}``; lists replace, seen
    posts are added to the seen set (which the API also feeds as it serves)."""
    items = list(users.items())
    for start in range(0, len(items), chunk):
        pipe = redis.pipeline(transaction=False)
        for user_id, state in items[start:start + chunk]:
            mapping = {name: json.dumps(list(state.get(name, ()))) for name in USER_LISTS}
            if state.get("features") is not None:
                mapping["features"] = pack(state["features"])
            key = user_key(user_id)
            pipe.hset(key, mapping=mapping)
            pipe.expire(key, USER_TTL_S)
            seen = list(state.get("seen", ()))
            if seen:
                pipe.sadd(seen_key(user_id), *seen)
                pipe.expire(seen_key(user_id), SEEN_TTL_S)
        pipe.execute()
    return len(items)


def publish_meta(redis, **meta) -> None:
    redis.hset(META, mapping={k: str(v) for k, v in meta.items()})


# --- readers (the API) ---------------------------------------------------------------------------------------
@dataclass
class RequestState:
    """What one pipelined read returns for a user: their lists and features, the state's meta, a kept page."""

    user_features: np.ndarray
    lists: dict[str, list[str]] = field(default_factory=dict)
    meta: dict[str, str] = field(default_factory=dict)
    page: dict | None = None

    @property
    def ready(self) -> bool:
        return bool(self.meta)


def _s(value) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _json_list(value) -> list[str]:
    if value is None:
        return []
    try:
        out = json.loads(value)
    except ValueError:
        return []
    return [str(x) for x in out] if isinstance(out, list) else []


def read_request_state(redis, user_id: str, request_id: str | None = None) -> RequestState:
    """Round trip 1: the user's hash, the state's meta (and a page, when asked)."""
    pipe = redis.pipeline(transaction=False)
    pipe.hgetall(user_key(user_id))
    pipe.hgetall(META)
    if request_id is not None:
        pipe.get(page_key(request_id))
    replies = pipe.execute()
    user = {_s(k): v for k, v in (replies[0] or {}).items()}
    meta = {_s(k): _s(v) for k, v in (replies[1] or {}).items()}
    page = None
    if request_id is not None and replies[-1] is not None:
        try:
            page = json.loads(replies[-1])
        except ValueError:
            page = None
    feats = unpack_rows([user.get("features")], len(USER_FEATURES))[0]
    return RequestState(user_features=feats, lists={name: _json_list(user.get(name)) for name in USER_LISTS},
                        meta=meta, page=page)


def read_candidate_state(redis, user_id: str, post_ids: Sequence[str]) -> tuple[np.ndarray, np.ndarray, set[str]]:
    """Round trip 2: packed post features ``(n, len(POST_FEATURES))``, a seen flag per post, and the posts
    the live moderation gate holds back (a decision newer than the vector index wins)."""
    from socialpulse.moderation import NOT_RECOMMENDED, REDIS_ACTIONS_KEY

    if not post_ids:
        return np.zeros((0, len(POST_FEATURES))), np.zeros(0, bool), set()
    ids = list(post_ids)
    pipe = redis.pipeline(transaction=False)
    pipe.hmget(POSTS, ids)
    pipe.smismember(seen_key(user_id), ids)
    pipe.hmget(REDIS_ACTIONS_KEY, ids)
    blobs, seen, actions = pipe.execute()
    held = {p for p, a in zip(ids, actions) if a is not None and _s(a) in NOT_RECOMMENDED}
    return unpack_rows(blobs, len(POST_FEATURES)), np.asarray([bool(int(x)) for x in seen], bool), held


def write_served(redis, user_id: str, request_id: str, served: Sequence[str], rest: Mapping | None,
                 impressions: Sequence[tuple[str, str]], stream: str, dedupe_ttl_s: int) -> None:
    """Round trip 3 (after answering): mark the page's posts seen, keep the rest of the ranking for the next
    page, and log the impressions on the ingest stream (each id once, like every ingest record)."""
    from socialpulse.ingest import enqueue

    pipe = redis.pipeline(transaction=False)
    if served:
        pipe.sadd(seen_key(user_id), *served)
        pipe.expire(seen_key(user_id), SEEN_TTL_S)
    if rest is not None:
        pipe.set(page_key(request_id), json.dumps(rest), ex=PAGE_TTL_S)
    pipe.execute()
    if impressions:
        enqueue(redis, stream, impressions, dedupe_ttl_s, user_id)
