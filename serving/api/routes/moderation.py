"""Human review of moderation: the review queue, a moderator's decision, the post's media for reviewers, and an
author's one appeal.

These routes write to Postgres (``moderation.reviews``, ``moderation.appeals``, the decision and its queue item,
the audit log) and then to the Redis gate: like notification read marks, a reviewer's decision and an author's
appeal have no other door into the platform, so this is a write path of the serving tier besides ingestion and
media. Each write is one Postgres transaction, committed before the Redis gate changes (a retry repairs a crash
in between). Reviewers' decisions flow back as training labels (the ``lake/silver/moderation_review_labels``
asset reads ``moderation.reviews``).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path as FsPath
from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query
from fastapi.responses import FileResponse
from pydantic import BaseModel, ConfigDict, Field

from serving.api.routes.posts import PostId, _plain
from serving.deps import PgPoolDep, RedisDep, SettingsDep
from serving.errors import ApiError, call_store
from serving.security import IngestUser, Moderator, ModeratorWrite
from socialpulse import captions, moderation
from socialpulse.media import SNIFF_BYTES, local_path, media_root, sniff

router = APIRouter(prefix="/v1/moderation", tags=["moderation"])

STORE = "moderation store"


def _queue(pool, limit: int, offset: int) -> dict:
    with pool.connection() as conn:
        page = moderation.review_queue(conn, limit=limit, offset=offset)
        alt = captions.alt_texts(conn, [r["post_id"] for r in page["items"]])
    return {**page, "items": [{**r, "alt_text": alt.get(r["post_id"])} for r in page["items"]]}


def queue_item(row: dict) -> dict:
    """A queue row as the API answers it: scores grouped, the media as this API's URL (never the store's)."""
    row = dict(row)
    has_media = row.pop("has_media", False)
    item = {
        "post_id": row["post_id"],
        "author_id": row["author_id"],
        "kind": row["kind"],
        "text": row["caption"],
        "action": row["action"],
        "decided_by": "moderator" if row["source"] == "review" else "model",
        "reasons": list(row["reasons"] or ()),
        "scores": {k: row[k] for k in ("hatespeech", "offensive", "nsfw")},
        "media_status": row["media_status"],
        "media_url": f"/v1/moderation/{row['post_id']}/media" if has_media else None,
        "alt_text": row.get("alt_text"),
        "appeal": bool(row["appeal"]),
        "appeal_message": row["appeal_message"],
        "enqueued_at": row["enqueued_at"],
        "created_at": row["created_at"],
    }
    return _plain(item)


@router.get(
    "/queue",
    summary="The open review queue (moderators)",
    responses={401: {"description": "no or invalid token"}, 403: {"description": "not a moderator"},
               503: {"description": "Postgres unavailable"}},
)
async def review_queue(
    principal: Moderator,
    pool: PgPoolDep,
    limit: Annotated[int, Query(ge=1, le=200, description="items on this page")] = 50,
    offset: Annotated[int, Query(ge=0, le=100_000, description="items to skip")] = 0,
) -> dict:
    """Open items, oldest first (appealed posts included, with the author's message): each with the model's
    action, every reason (media errors in full), the scores (hatespeech, offensive, nsfw), the post's author,
    kind and text, and ``media_url`` (this API's moderator-only stream of the post's media) when it has any."""
    page = await call_store(STORE, _queue, pool, limit, offset)
    return {"items": [queue_item(r) for r in page["items"]], "total": page["total"], "limit": limit, "offset": offset}


def _media_file(pool, settings, post_id: str) -> tuple[FsPath, str]:
    with pool.connection() as conn:
        uri = moderation.media_uri_of(conn, post_id)
    if not uri or not uri.startswith("file:"):
        raise ApiError(404, f"post {post_id} has no stored media (none, synthetic, or not yet decided)")
    try:
        path = local_path(uri).resolve()
    except ValueError:
        raise ApiError(404, f"post {post_id} has no stored media") from None
    if not path.is_relative_to(media_root(settings)):
        raise ApiError(404, f"post {post_id}'s media is not in the media store")
    try:
        with path.open("rb") as fh:
            head = fh.read(SNIFF_BYTES)
    except OSError:
        raise ApiError(404, f"post {post_id}'s media file is missing from the media store") from None
    fmt = sniff(head)
    return path, fmt[1] if fmt else "application/octet-stream"


@router.get(
    "/{post_id}/media",
    summary="The post's media as stored (moderators)",
    responses={200: {"description": "the image or video bytes", "content": {"image/*": {}, "video/*": {}}},
               401: {"description": "no or invalid token"}, 403: {"description": "not a moderator"},
               404: {"description": "no stored media for this post"}},
)
async def review_media(post_id: PostId, principal: Moderator, pool: PgPoolDep, settings: SettingsDep) -> FileResponse:
    """Streams the media file of a post that has a decision, with the content type its bytes show (a removed
    post's media included: reviewers need to see it). Never cached."""
    path, content_type = await call_store(STORE, _media_file, pool, settings, post_id)
    return FileResponse(path, media_type=content_type,
                        headers={"Cache-Control": "private, no-store", "X-Content-Type-Options": "nosniff"})


class ReviewIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    decision: Literal["allow", "limit", "remove"] = Field(description="the reviewer's decision; overrides the model's")
    note: str | None = Field(default=None, max_length=2000, description="why (kept with the review, not in the audit log)")


def _review(pool, redis, settings, post_id: str, principal, body: ReviewIn) -> dict:
    with pool.connection() as conn:
        result = moderation.review(conn, settings, post_id=post_id, reviewer_id=principal.user_id,
                                   reviewer_role=principal.role, decision=body.decision, note=body.note,
                                   now=dt.datetime.now(dt.timezone.utc))
    moderation.set_gate(redis, post_id, body.decision)  # after the commit: a retry repairs a crash in between
    return result


@router.post(
    "/{post_id}/review",
    summary="Decide on a post (moderators): allow, limit or remove, with a note",
    responses={401: {"description": "no or invalid token"}, 403: {"description": "not a moderator"},
               404: {"description": "no decision on this post"},
               409: {"description": "the post's appeal was already decided (that review is final)"},
               503: {"description": "Postgres or Redis unavailable"}},
)
async def review_post(post_id: PostId, body: ReviewIn, principal: ModeratorWrite, pool: PgPoolDep, redis: RedisDep,
                      settings: SettingsDep) -> dict:
    """Records the decision (audited), makes it the post's (``source = review``: the model's later runs never
    overwrite it), resolves its queue item (and decides its appeal), and updates the gate: ``remove`` hides the
    post, ``limit`` keeps it out of recommendations, ``allow`` clears it."""
    try:
        result = await call_store(STORE, _review, pool, redis, settings, post_id, principal, body)
    except moderation.ReviewError as exc:
        raise ApiError(exc.status, str(exc)) from None
    return _plain(result)


class AppealIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    message: str = Field(min_length=1, max_length=2000, description="why the decision is wrong, for the reviewer")


def _appeal(pool, settings, post_id: str, principal, body: AppealIn) -> dict:
    with pool.connection() as conn:
        return moderation.appeal(conn, settings, post_id=post_id, author_id=principal.user_id,
                                 author_role=principal.role, message=body.message,
                                 now=dt.datetime.now(dt.timezone.utc))


@router.post(
    "/{post_id}/appeal",
    status_code=201,
    summary="Appeal the moderation decision on one's own post (once)",
    responses={401: {"description": "no or invalid token"}, 403: {"description": "not the post's author"},
               404: {"description": "no decision on this post"},
               409: {"description": "already appealed, or the post is allowed"},
               503: {"description": "Postgres unavailable"}},
)
async def appeal_post(post_id: PostId, body: AppealIn, principal: IngestUser, pool: PgPoolDep,
                      settings: SettingsDep) -> dict:
    """The post goes back to the review queue marked as an appeal, with the message; it stays restricted until a
    moderator decides, and that decision is final."""
    try:
        result = await call_store(STORE, _appeal, pool, settings, post_id, principal, body)
    except moderation.ReviewError as exc:
        raise ApiError(exc.status, str(exc)) from None
    return _plain(result)
