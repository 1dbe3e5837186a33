"""The For You feed: ``GET /v1/feed``, ranked from materialized outputs only (Redis serving state,
Postgres/pgvector candidates, the registered ranker).

Per first page: one pipelined Redis read (user state), one Postgres statement (nearest posts to the interest
vector, each global pool's posts nearest to it, the followed creators' posts' servability, similarities), one
pipelined Redis read
(packed post features, seen flags, live moderation gate), scoring and re-ranking in process; after the
response, one Redis write (the rest of the ranking for later pages, seen posts, impressions on the ingest
stream). Later pages read the kept ranking. Degraded modes answer 200 and say so in ``degraded``:
``redis`` (no user state: the interest and pool candidates from Postgres ranked by the heuristic, pages cut by offset
from that deterministic order, nothing remembered or logged) and ``model`` (no champion ranker loaded:
the heuristic ranks).
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Annotated

import numpy as np
import redis as redis_lib
from fastapi import APIRouter, BackgroundTasks, Query
from starlette.concurrency import run_in_threadpool

from serving.deps import SettingsDep, StoresDep
from serving.errors import ApiError, call_store, is_unreachable
from serving.security import ReadUser
from socialpulse import captions, vectors
from socialpulse.ingest import IMPRESSIONS_STREAM, ImpressionIn, impression_items
from socialpulse.ranking import feed as feed_logic
from socialpulse.ranking import store as feed_store
from socialpulse.ranking.model import POST_FEATURES, USER_FEATURES

router = APIRouter(tags=["feed"])

Limit = Annotated[int, Query(ge=1, le=50, description="posts on this page")]


def _redis_call(fn, *args):
    """A Redis call whose unreachability degrades the feed instead of failing it: (result, ok)."""
    try:
        return fn(*args), True
    except Exception as exc:
        if is_unreachable(exc) or isinstance(exc, redis_lib.exceptions.RedisError):
            return None, False
        raise


def _first_page(stores, user_id: str, limit: int, state, redis_ok: bool, degraded: list[str], timing: dict):
    t0 = time.perf_counter()
    pool = stores.pg_pool
    lists = state.lists if state is not None else {}
    others = feed_logic.other_sources(lists)
    with pool.connection() as conn:
        extra = sorted({p for ids in others.values() for p in ids})
        rows = vectors.feed_candidates(conn, user_id, extra, lists.get("not_interested", [])[:20],
                                       feed_logic.K_INTEREST, feed_logic.PER_SOURCE, feed_logic.POOL_HEAD)
    t1 = time.perf_counter()
    now = dt.datetime.now(dt.timezone.utc)
    cands = feed_logic.candidates_from_rows(rows, others, now)
    ids = [c.post_id for c in cands]
    post_feats, seen, held = np.full((len(ids), len(POST_FEATURES)), np.nan), np.zeros(len(ids), bool), set()
    t2 = time.perf_counter()
    if redis_ok:
        got, ok = _redis_call(feed_store.read_candidate_state, stores.redis, user_id, ids)
        if ok:
            post_feats, seen, held = got
        else:
            degraded.append("redis")
    t3 = time.perf_counter()
    # without Redis there are no post features for the model, and no kept ranking for later pages: the
    # heuristic ranks, so that every page of the session is cut from the same deterministic order
    ranker = stores.ranker.get() if redis_ok else None
    if ranker is None and redis_ok:
        degraded.append("model")
    user_feats = state.user_features if state is not None else np.full(len(USER_FEATURES), np.nan)
    ranked = feed_logic.rank(user_id, cands, post_feats, seen, held, lists, user_feats, ranker)
    t4 = time.perf_counter()
    timing.update(postgres=(t1 - t0) * 1000, merge=(t2 - t1) * 1000, redis_candidates=(t3 - t2) * 1000,
                  rank=(t4 - t3) * 1000)
    return ranked, len(cands)


def _alt_texts(stores, post_ids: list[str]) -> dict[str, str | None]:
    """The page's alt-text in one Postgres statement; a Postgres that fails here leaves it null (the feed is
    served without it rather than failing)."""
    try:
        with stores.pg_pool.connection() as conn:
            return captions.alt_texts(conn, post_ids)
    except Exception as exc:  # noqa: BLE001 - alt-text is decoration: any store error degrades to null
        if is_unreachable(exc) or type(exc).__module__.startswith("psycopg"):
            return {}
        raise


def _log_served(stores, settings, user_id: str, request_id: str, page: list[dict], rest: dict | None,
                model_version: str) -> None:
    now = dt.datetime.now(dt.timezone.utc)
    imps = [ImpressionIn(impression_id=f"{request_id}:{it['position']}", request_id=request_id, user_id=user_id,
                         post_id=it["post_id"], position=it["position"], source=it["source"],
                         model_version=model_version, score=it["score"], served_at=now) for it in page]
    try:
        feed_store.write_served(stores.redis, user_id, request_id, [it["post_id"] for it in page], rest,
                                impression_items(imps), IMPRESSIONS_STREAM, settings.ingest_dedupe_ttl_s)
    except redis_lib.exceptions.RedisError:
        pass  # Redis went away after the state read: the page was served; nothing to remember it in


@router.get("/v1/feed", summary="The For You feed of a user, one page at a time",
            responses={401: {"description": "no valid bearer token"}, 429: {"description": "rate limit exceeded"},
                       422: {"description": "malformed parameters, or a cursor this API did not return for this user"},
                       503: {"description": "the search index or the feed's candidate pools not built yet, or "
                                            "Postgres unavailable"}})
async def get_feed(principal: ReadUser, stores: StoresDep, settings: SettingsDep, background: BackgroundTasks,
                   limit: Limit = 10, cursor: Annotated[str | None, Query(max_length=400)] = None) -> dict:
    """Ranked posts for the token's user; pass ``next_cursor`` back as ``cursor`` for the next page (a post is
    never repeated within a feed session). ``degraded`` lists what the answer had to do without."""
    t0 = time.perf_counter()
    user_id = principal.user_id
    request_id, offset = feed_logic.new_request_id(), 0
    if cursor is not None:
        try:
            request_id, offset = feed_logic.decode_cursor(cursor, user_id)
        except feed_logic.CursorError as exc:
            raise ApiError(422, f"cursor: {exc}") from None
    degraded: list[str] = []
    timing: dict[str, float] = {}
    state, redis_ok = await run_in_threadpool(_redis_call, feed_store.read_request_state, stores.redis, user_id,
                                              request_id if cursor else None)
    timing["redis_state"] = (time.perf_counter() - t0) * 1000
    if not redis_ok:
        degraded.append("redis")
    kept = state.page if (state is not None and cursor is not None) else None
    if kept is not None and kept.get("offset") == offset:
        items, model_version, candidates = kept["items"], kept["model_version"], kept.get("candidates", 0)
        held = (await run_in_threadpool(_redis_call, feed_store.read_candidate_state, stores.redis, user_id,
                                        [it["post_id"] for it in items[:limit * 2]]))[0]
        if held is not None:
            items = [it for it in items if it["post_id"] not in held[2]]
    else:
        if cursor is not None and redis_ok:
            offset = 0  # the kept ranking expired: rank afresh (seen posts are left out, so nothing repeats)
        try:
            ranked, candidates = await call_store("feed", _first_page, stores, user_id, limit, state, redis_ok,
                                                  degraded, timing)
        except vectors.IndexNotBuilt as exc:
            raise ApiError(503, f"feed not ready: {exc}") from None
        items = [feed_logic.item_json(c, offset + i) for i, c in enumerate(ranked.items)]
        model_version = ranked.model_version
        if not redis_ok:
            items = items[offset:]  # no kept ranking: the deterministic re-ranking, skipping pages served
    page, rest_items = items[:limit], items[limit:]
    for i, it in enumerate(page):
        it["position"] = offset + i
    t_alt = time.perf_counter()
    alt = await run_in_threadpool(_alt_texts, stores, [it["post_id"] for it in page]) if page else {}
    timing["alt_text"] = (time.perf_counter() - t_alt) * 1000
    page = [{**it, "alt_text": alt.get(it["post_id"])} for it in page]
    next_offset = offset + len(page)
    rest = {"offset": next_offset, "items": rest_items, "model_version": model_version, "candidates": candidates}
    if redis_ok and page:
        background.add_task(_log_served, stores, settings, user_id, request_id, page, rest if rest_items else None,
                            model_version)
    return {
        "user_id": user_id,
        "request_id": request_id,
        "items": page,
        "next_cursor": feed_logic.encode_cursor(request_id, next_offset, user_id) if rest_items else None,
        "model_version": model_version,
        "candidates": candidates,
        "degraded": sorted(set(degraded)),
        "took_ms": round((time.perf_counter() - t0) * 1000, 2),
        "timing_ms": {k: round(v, 2) for k, v in timing.items()},
    }
