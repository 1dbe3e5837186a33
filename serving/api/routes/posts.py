"""Post reads: engagement stats from the online feature store, moderation decisions from Postgres.

Every read honours moderation: a removed post is answered 404 as if it did not exist; a limited or
in-review post is served by direct id with ``"restricted": true`` (it is never recommended). The one exception:
the moderation details of a removed post are shown to its author (so they can appeal) and to moderators.
Every route takes an optional token (``PublicReader``): reads are rate-limited per token and per client IP.
"""

from __future__ import annotations

import datetime as dt
import decimal
import logging
from typing import Annotated, Any

from fastapi import APIRouter, Path

from serving.deps import PgPoolDep, RedisDep, SettingsDep
from serving.errors import ApiError, call_store
from serving.security import PublicReader
from socialpulse import moderation, virality
from socialpulse.ingest import ID_PATTERN, POSTS_STREAM, seen_key

log = logging.getLogger("serving")

router = APIRouter(prefix="/v1/posts", tags=["posts"])

PostId = Annotated[str, Path(min_length=1, max_length=64, pattern=ID_PATTERN, description="the post's id")]


def _plain(value: Any) -> Any:
    """JSON-ready values (feature stores hand back numpy scalars, timestamps and decimals)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return float(value)
    if hasattr(value, "item") and callable(value.item):  # numpy scalar
        try:
            return value.item()
        except (TypeError, ValueError):
            pass
    if isinstance(value, float) and value != value:  # NaN is not JSON
        return None
    return value


@router.get(
    "/{post_id}/stats",
    summary="Engagement stats of a post (from the online feature store)",
    responses={404: {"description": "no stats for this post"}, 503: {"description": "feature store unavailable"}},
)
async def post_stats(post_id: PostId, reader: PublicReader, settings: SettingsDep, redis: RedisDep) -> dict:
    action = await _gate(redis, post_id)
    try:
        # imported here: the feature module pulls in the feature store client only when stats are asked for
        from socialpulse.features import FeatureStoreNotReady, get_post_stats
    except ImportError as exc:
        log.error("post stats unavailable: %s", exc)
        raise ApiError(503, "post stats are unavailable: the feature store client is not installed") from None
    try:
        stats = await call_store("feature store", get_post_stats, settings, post_id)
    except FeatureStoreNotReady as exc:
        raise ApiError(503, f"post stats are not available yet: {exc}") from None
    if stats is None:
        raise ApiError(404, f"no stats for post {post_id}")
    return {"post_id": post_id, "stats": _plain(stats), "restricted": action in moderation.NOT_RECOMMENDED}


def _virality_read(pool, post_id: str) -> dict | None:
    with pool.connection() as conn:
        return virality.for_post(conn, post_id)


@router.get(
    "/{post_id}/virality",
    summary="The predicted chance that a post reaches the top decile of 7-day reach",
    responses={
        404: {"description": "no prediction for this post (older than 48 h when predictions began, not yet an hour "
                             "old, or no such post)"},
        503: {"description": "predictions not built yet, or Postgres unavailable"},
    },
)
async def post_virality(post_id: PostId, reader: PublicReader, pool: PgPoolDep, redis: RedisDep) -> dict:
    """The virality champion's latest prediction for the post (refreshed hourly while it is younger than 48 h):
    ``probability`` of reaching more than ``reach_threshold`` unique viewers in its first 7 days (the top
    decile when the model was trained), made after ``observed_hours`` of its life with ``views_so_far``."""
    action = await _gate(redis, post_id)
    try:
        row = await call_store("analytics store", _virality_read, pool, post_id)
    except virality.ViralityNotBuilt as exc:
        raise ApiError(503, str(exc)) from None
    if row is None:
        raise ApiError(404, f"no virality prediction for post {post_id}: posts are scored hourly from their first hour "
                            "until they are 48 hours old")
    return {**_plain(row), "top_share": virality.TOP_SHARE, "likely_viral": row["probability"] >= virality.LIKELY,
            "restricted": action in moderation.NOT_RECOMMENDED}


async def _gate(redis, post_id: str) -> str | None:
    """The post's non-allow moderation action (None when allowed or not moderated); 404 when removed."""
    action = (await call_store("moderation store", moderation.actions_for, redis, [post_id])).get(post_id)
    if action in moderation.HIDDEN:
        raise ApiError(404, f"post {post_id} is not available (removed by moderation)")
    return action


#: how the moderation policy words a reason for media it could not analyse: ``<this><code>: <detail>``
MEDIA_REASON = "media could not be analysed: "


def public_reason(reason: str) -> str:
    """A decision's reason as clients see it. Media that could not be analysed is named by its short code
    (``corrupt_image``, ``unreadable``, ...): the detail holds decoder errors and the stored file's location,
    which stay with the decision in Postgres for reviewers."""
    if reason.startswith(MEDIA_REASON):
        return MEDIA_REASON + reason[len(MEDIA_REASON):].split(":", 1)[0].strip()
    return reason


def may_see_removed(reader, author_id: str | None) -> bool:
    """Whether ``reader`` (a principal, or None without a token) may see a removed post's moderation details:
    its author and moderators only."""
    return reader is not None and (reader.has_role("moderator") or (author_id is not None and reader.user_id == author_id))


def _moderation_read(pool, redis, post_id: str, reader) -> dict:
    with pool.connection() as conn:
        decision = moderation.get_decision(conn, post_id)
    if decision is not None:
        author_id = decision.pop("author_id", None)
        if decision["action"] in moderation.HIDDEN and not may_see_removed(reader, author_id):
            return {}  # as if it did not exist
        decision["reasons"] = [public_reason(r) for r in decision.get("reasons") or ()]
        review, appeal = decision.pop("review", None), decision.pop("appeal", None)
        if reader is not None and (reader.has_role("moderator") or reader.user_id == author_id):
            decision["review"], decision["appeal"] = review, appeal  # the author's and reviewers' business
        return {"post_id": post_id, "status": "decided", **_plain(decision)}
    # accepted by the ingest API but not yet through the moderation run: say so rather than 404
    if redis.exists(seen_key(POSTS_STREAM, post_id)):
        return {"post_id": post_id, "status": "pending", "action": None}
    return {}


@router.get(
    "/{post_id}/moderation",
    summary="The moderation decision on a post: action, reasons, scores and model versions",
    responses={
        200: {"description": "decided (action allow/limit/review/remove) or pending (accepted, not yet moderated)"},
        404: {"description": "no such post (or removed, and the reader is neither its author nor a moderator)"},
        503: {"description": "Postgres or Redis unavailable"},
    },
)
async def post_moderation(post_id: PostId, reader: PublicReader, pool: PgPoolDep, redis: RedisDep) -> dict:
    """The decision with its reasons and scores; ``source`` says who decided (``asset``/``live``: the model,
    ``review``: a moderator). A removed post answers only its author and moderators (everyone else: 404); they
    also see the latest ``review`` and the ``appeal``."""
    body = await call_store("moderation store", _moderation_read, pool, redis, post_id, reader)
    if not body:
        raise ApiError(404, f"no post {post_id} (never accepted, or older than the ingest window and undecided)")
    return body
