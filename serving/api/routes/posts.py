"""Post reads: engagement stats from the online feature store."""

from __future__ import annotations

import datetime as dt
import decimal
import logging
from typing import Annotated, Any

from fastapi import APIRouter, Path
from starlette.concurrency import run_in_threadpool

from serving.deps import SettingsDep
from serving.errors import ApiError
from socialpulse.ingest import ID_PATTERN

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


def _unreachable(exc: BaseException) -> bool:
    """Whether an error means the feature store could not be reached (503) rather than a bug (500)."""
    try:
        import redis

        if isinstance(exc, (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)):
            return True
    except ImportError:  # pragma: no cover
        pass
    return isinstance(exc, (ConnectionError, TimeoutError, OSError))


@router.get(
    "/{post_id}/stats",
    summary="Engagement stats of a post (from the online feature store)",
    responses={404: {"description": "no stats for this post"}, 503: {"description": "feature store unavailable"}},
)
async def post_stats(post_id: PostId, settings: SettingsDep) -> dict:
    try:
        # imported here: the feature module pulls in the feature store client only when stats are asked for
        from socialpulse.features import FeatureStoreNotReady, get_post_stats
    except ImportError as exc:
        log.error("post stats unavailable: %s", exc)
        raise ApiError(503, "post stats are unavailable: the feature store client is not installed") from None
    try:
        stats = await run_in_threadpool(get_post_stats, settings, post_id)
    except FeatureStoreNotReady as exc:
        raise ApiError(503, f"post stats are not available yet: {exc}") from None
    except Exception as exc:
        if _unreachable(exc):
            log.warning("feature store unreachable for post %s: %s", post_id, exc)
            raise ApiError(503, f"the feature store is unreachable: {type(exc).__name__}: {exc}") from None
        raise
    if stats is None:
        raise ApiError(404, f"no stats for post {post_id}")
    return {"post_id": post_id, "stats": _plain(stats)}
