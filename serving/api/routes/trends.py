"""Trending topics and hashtag suggestions, served from Postgres only (schemas ``trends`` and ``search``).

``GET /v1/trends`` reads the topics and hashtag scores the trends assets publish; counts never include
posts moderation removed. ``POST /v1/hashtags/suggest`` ranks tags for a draft from the nearest servable
posts in the vector index, the published co-occurrence statistics and the hashtags trending now.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field, field_validator
from starlette.concurrency import run_in_threadpool

from serving.api.routes.search import _read, _same_space
from serving.deps import PgPoolDep, StoresDep
from serving.errors import ApiError
from serving.security import PublicReader
from socialpulse import trends_store
from socialpulse.tags import canonical_tags

router = APIRouter(tags=["trends"])

MAX_DRAFT_CHARS = 2200
MAX_CHOSEN = 30


def _trending(pool, hours: int, limit: int) -> dict:
    with pool.connection() as conn:
        return trends_store.trending(conn, hours, limit)


@router.get(
    "/v1/trends",
    summary="Trending topics and hashtags over a recent window",
    responses={400: {"description": "malformed window"},
               503: {"description": "trends not built yet, or Postgres unavailable"}},
)
async def trends(
    pool: PgPoolDep,
    _reader: PublicReader,
    window: Annotated[str, Query(description="how far back from the latest scored hour: 1h .. 7d")] = "24h",
    limit: Annotated[int, Query(ge=1, le=50, description="topics and hashtags to return")] = 10,
) -> dict:
    try:
        hours = trends_store.window_hours(window)
    except ValueError as exc:
        raise ApiError(400, str(exc), field="window") from None
    out = await _read(_trending, pool, hours, limit, what="trends store")
    return {"window": window, "window_hours": hours, **out}


class SuggestRequest(BaseModel):
    text: str = Field(..., description=f"the draft's text (1-{MAX_DRAFT_CHARS} characters)")
    hashtags: list[str] = Field(default_factory=list, max_length=MAX_CHOSEN,
                                description="hashtags already chosen (never suggested again)")
    limit: int = Field(5, ge=1, le=20)

    @field_validator("text")
    @classmethod
    def _text(cls, v: str) -> str:
        v = v.strip()
        if not v:
            raise ValueError("text is empty")
        if len(v) > MAX_DRAFT_CHARS:
            raise ValueError(f"text is {len(v)} characters; at most {MAX_DRAFT_CHARS}")
        return v

    @field_validator("hashtags")
    @classmethod
    def _tags(cls, v: list[str]) -> list[str]:
        """The chosen tags in their canonical form (the rule of :mod:`socialpulse.tags`), each once."""
        return canonical_tags(v)


def _suggest(pool, encoder, vector, chosen: list[str], limit: int) -> dict:
    with pool.connection() as conn:
        _same_space(conn, encoder)
        return trends_store.suggest(conn, vector, chosen, limit)


@router.post(
    "/v1/hashtags/suggest",
    summary="Hashtags for a draft post (similar posts, co-occurrence with chosen tags, current trends)",
    responses={422: {"description": "empty or oversize text, malformed hashtags or limit"},
               503: {"description": "search index not built yet, or Postgres unavailable"}},
)
async def suggest(body: SuggestRequest, stores: StoresDep, pool: PgPoolDep, _reader: PublicReader) -> dict:
    encoder = stores.query_encoder
    vector = await run_in_threadpool(encoder.encode, body.text)
    return await _read(_suggest, pool, encoder, vector, body.hashtags, body.limit)
