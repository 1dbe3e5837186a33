"""A post's generated alt-text, caption and hashtag suggestions (Postgres ``captions.post_captions`` only)."""

from __future__ import annotations

from fastapi import APIRouter

from serving.api.routes.posts import PostId, _gate, _plain
from serving.deps import PgPoolDep, RedisDep
from serving.errors import ApiError, call_store
from serving.security import PublicReader
from socialpulse import captions, moderation

router = APIRouter(prefix="/v1/posts", tags=["posts"])


def _captions_read(pool, post_id: str) -> dict | None:
    with pool.connection() as conn:
        return captions.for_post(conn, post_id)


@router.get(
    "/{post_id}/captions",
    summary="Generated alt-text, caption and hashtag suggestions of a post",
    responses={
        404: {"description": "no captions for this post yet (or no such post, or removed by moderation)"},
        503: {"description": "captions not built yet, or Postgres unavailable"},
    },
)
async def post_captions(post_id: PostId, reader: PublicReader, pool: PgPoolDep, redis: RedisDep) -> dict:
    """``alt_text`` describes the image or video from what was detected in it (null for text posts, or when
    nothing was); ``captions`` and ``hashtags`` are suggestions, best first; ``generator`` is the version that
    wrote them and ``fallback`` says the grounded generator stood in for the configured one."""
    action = await _gate(redis, post_id)
    try:
        row = await call_store("captions store", _captions_read, pool, post_id)
    except captions.CaptionsNotBuilt as exc:
        raise ApiError(503, str(exc)) from None
    if row is None:
        raise ApiError(404, f"no captions for post {post_id} yet: captions are written after the post is moderated")
    return {**_plain(row), "restricted": action in moderation.NOT_RECOMMENDED}
