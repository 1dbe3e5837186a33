"""Search and similar posts, served from the Postgres vector index (``search`` schema) only.

Search fuses two rankings of servable posts with reciprocal rank fusion: semantic (the query's MiniLM
vector against the HNSW index) and keyword (Postgres full text, any term). Hashtags and creators come from
their trigram-indexed directories. Every result is a post whose moderation action is ``allow`` in the
index, re-checked against the live Redis gate (a decision newer than the index wins).
"""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Query
from starlette.concurrency import run_in_threadpool

from serving.api.routes.posts import PostId, _gate, _plain
from serving.deps import PgPoolDep, RedisDep, StoresDep
from serving.errors import ApiError, call_store
from serving.security import PublicReader
from socialpulse import captions, moderation, trends_store, vectors
from socialpulse.search import CANDIDATES, MAX_QUERY_CHARS, QueryError, SearchQuery, parse_query

router = APIRouter(tags=["search"])

Limit = Annotated[int, Query(ge=1, le=50, description="posts to return")]

_VERSION_TTL_S = 300.0
_index_version: dict[str, tuple[float, str | None]] = {}


def _index_encoder(conn) -> str | None:
    """The encoder version the indexed vectors were made with (checked every few minutes)."""
    cached = _index_version.get("v")
    if cached and time.monotonic() - cached[0] < _VERSION_TTL_S:
        return cached[1]
    version = vectors.index_encoder_version(conn)
    _index_version["v"] = (time.monotonic(), version)
    return version


def _same_space(conn, encoder) -> None:
    indexed = _index_encoder(conn)
    if indexed is not None and indexed != encoder.version:
        raise ApiError(503, f"the search index was built with encoder {indexed} but this API has {encoder.version}: "
                       "finish the post_embeddings backfill, or deploy the matching encoder")


def _post(row: dict, score: float | None = None, ranks: dict | None = None, alt: dict | None = None) -> dict:
    meta = row["metadata"]
    out = {
        "post_id": row["post_id"],
        "author_id": meta.get("author_id"),
        "author_handle": meta.get("author_handle"),
        "hashtags": meta.get("hashtags") or [],
        "created_at": meta.get("created_at"),
        "language": meta.get("language"),
        "snippet": (row.get("contents") or "")[:200],
        "alt_text": (alt or {}).get(row["post_id"]),
    }
    if "distance" in row:
        out["similarity"] = round(1.0 - float(row["distance"]), 4)
    if score is not None:
        out["score"] = score
    if ranks is not None:
        out["matched_by"] = dict(ranks)
    return out


def _search(pool, redis, encoder, query: SearchQuery, vector, limit: int) -> dict:
    with pool.connection() as conn:
        _same_space(conn, encoder)
        fused, rows = vectors.hybrid(conn, query, vector, CANDIDATES)
        tags = vectors.hashtags(conn, query.tag_prefix, 5)
        servable = set(moderation.recommendable(redis, [f.id for f in fused]))
        kept = [f for f in fused if f.id in servable][:limit]
        alt = captions.alt_texts(conn, [f.id for f in kept])  # one statement for the page
        posts = [_post(rows[f.id], f.score, f.ranks, alt) for f in kept]
        creators = vectors.creators(conn, query.prefix, 5, also=[p["author_id"] for p in posts if p["author_id"]])
    return {"query": query.text, "terms": list(query.terms), "posts": posts, "hashtags": _plain(tags),
            "creators": _plain(creators)}


async def _read(fn, *args, what: str = "search index"):
    """A Postgres read of ``what`` (``call_store``); tables not built yet (the search index, the trends)
    are a 503 that says what to build."""
    try:
        return await call_store(what, fn, *args)
    except (vectors.IndexNotBuilt, trends_store.TrendsNotBuilt) as exc:
        raise ApiError(503, str(exc)) from None


@router.get(
    "/v1/search",
    summary="Search posts, hashtags and creators (semantic + keyword, moderation-filtered)",
    responses={400: {"description": "empty, too long or malformed query"},
               503: {"description": "search index not built yet, or Postgres unavailable"}},
)
async def search(
    stores: StoresDep, pool: PgPoolDep, redis: RedisDep, _reader: PublicReader,
    q: Annotated[str | None, Query(description=f"what to search for (1-{MAX_QUERY_CHARS} characters)")] = None,
    limit: Limit = 10,
) -> dict:
    try:
        query = parse_query(q)
    except QueryError as exc:
        raise ApiError(400, str(exc), field="q") from None
    encoder = stores.query_encoder
    vector = await run_in_threadpool(encoder.encode, query.text)
    return await _read(_search, pool, redis, encoder, query, vector, limit)


def _similar(pool, redis, post_id: str, limit: int) -> list[dict] | None:
    with pool.connection() as conn:
        found = vectors.post_vector(conn, post_id)
        if found is None:
            return None
        rows = [r for r in vectors.nearest(conn, found[0], limit + 1) if r["post_id"] != post_id]
        servable = set(moderation.recommendable(redis, [r["post_id"] for r in rows]))
        rows = [r for r in rows if r["post_id"] in servable][:limit]
        alt = captions.alt_texts(conn, [r["post_id"] for r in rows])
    return [_post(r, alt=alt) for r in rows]


@router.get(
    "/v1/posts/{post_id}/similar",
    summary="Posts most similar to a post (nearest in the vector index, moderation-filtered)",
    responses={404: {"description": "no such post in the index, or removed"},
               503: {"description": "search index not built yet, or Postgres unavailable"}},
)
async def similar(
    post_id: PostId, pool: PgPoolDep, redis: RedisDep, _reader: PublicReader,
    limit: Limit = 10,
) -> dict:
    await _gate(redis, post_id)  # 404 for a removed post
    posts = await _read(_similar, pool, redis, post_id, limit)
    if posts is None:
        raise ApiError(404, f"post {post_id} is not in the search index (unknown, not embedded yet, or removed)")
    return {"post_id": post_id, "posts": posts}
