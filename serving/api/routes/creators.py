"""Creator analytics, served from Postgres only (schema ``metrics``, written by the metrics asset).

``GET /v1/creators/{creator_id}/analytics`` returns the creator's figures per hour or per day over a window,
every bucket present (zeros where nothing happened), and the window's totals. ``GET
/v1/creators/{creator_id}/dashboard`` returns everything the creator dashboard (``/creators/{creator_id}``)
draws, each section on its own ("not built yet" where its table is missing). Both are the creator's own: the
token's user, or an admin (403 for anyone else).
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Path, Query

from serving.deps import PgPoolDep
from serving.errors import ApiError, call_store
from serving.security import ReadUser, forbid_other_user
from socialpulse import dashboard, metrics

router = APIRouter(tags=["creators"])

CreatorId = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_\-:.]+$")]
#: the longest window one request may ask for, per granularity (a month of hours, two years of days)
MAX_BUCKETS = {"hour": 31 * 24, "day": 731}
DEFAULT_SPAN = {"hour": dt.timedelta(hours=48), "day": dt.timedelta(days=28)}


def parse_instant(value: str, name: str) -> dt.datetime:
    """An ISO date (midnight UTC) or date-time (UTC when it names no zone); a clear 400 otherwise."""
    try:
        if len(value) == 10:
            return dt.datetime.combine(dt.date.fromisoformat(value), dt.time(), dt.timezone.utc)
        ts = dt.datetime.fromisoformat(value)
    except ValueError:
        raise ApiError(400, f"{name} must be an ISO date (2026-06-01) or date-time (2026-06-01T12:00:00Z), "
                            f"not {value!r}", field=name) from None
    return ts if ts.tzinfo is not None else ts.replace(tzinfo=dt.timezone.utc)


def window(granularity: str, start: str | None, end: str | None, now: dt.datetime) -> tuple[dt.datetime, dt.datetime]:
    """The ``[from, to)`` window of a request: ``to`` defaults to the end of the current bucket, ``from`` to
    48 hours (hourly) or 28 days (daily) before ``to``; refused when empty, too long or out of range."""
    try:
        return _window(granularity, start, end, now)
    except OverflowError:
        raise ApiError(400, "from/to fall outside the dates this API can count buckets for", field="from") from None


def _window(granularity: str, start: str | None, end: str | None, now: dt.datetime) -> tuple[dt.datetime, dt.datetime]:
    if end is not None:
        stop = parse_instant(end, "to")
    elif granularity == "hour":
        stop = now.replace(minute=0, second=0, microsecond=0) + dt.timedelta(hours=1)
    else:
        stop = dt.datetime.combine(now.date() + dt.timedelta(days=1), dt.time(), dt.timezone.utc)
    begin = parse_instant(start, "from") if start is not None else stop - DEFAULT_SPAN[granularity]
    if begin >= stop:
        raise ApiError(400, f"from ({begin.isoformat()}) must be before to ({stop.isoformat()})", field="from")
    step = dt.timedelta(hours=1) if granularity == "hour" else dt.timedelta(days=1)
    if (stop - begin) / step > MAX_BUCKETS[granularity]:
        raise ApiError(400, f"a {granularity}ly window holds at most {MAX_BUCKETS[granularity]} buckets; "
                            "narrow from/to or use granularity=day", field="from")
    return begin, stop


def _series(pool, creator_id: str, begin: dt.datetime, stop: dt.datetime, granularity: str) -> list[dict]:
    with pool.connection() as conn:
        return metrics.creator_series(conn, creator_id, begin, stop, granularity)


@router.get(
    "/v1/creators/{creator_id}/analytics",
    summary="A creator's reach and engagement per hour or per day",
    responses={400: {"description": "malformed or too long window"}, 401: {"description": "no valid bearer token"},
               403: {"description": "another creator's analytics"}, 429: {"description": "rate limit exceeded"},
               503: {"description": "metrics not built yet, or Postgres unavailable"}},
)
async def creator_analytics(
    creator_id: CreatorId,
    pool: PgPoolDep,
    principal: ReadUser,
    granularity: Annotated[str, Query(pattern=f"^({'|'.join(metrics.GRANULARITIES)})$",
                                               description="bucket size: hour or day")] = "day",
    start: Annotated[str | None, Query(alias="from", description="window start (ISO date or date-time, UTC); "
                                       "default 48 h (hourly) or 28 days (daily) before to")] = None,
    end: Annotated[str | None, Query(alias="to", description="window end, exclusive; default the end of the "
                                     "current hour or day")] = None,
) -> dict:
    """Views, unique viewers, likes, shares, comments, watch time, completions and follower gains and losses
    per bucket, oldest first, every bucket present; ``totals`` adds them up over the window (unique viewers
    summed over buckets: an upper bound of the window's reach) with its completion and engagement rates."""
    forbid_other_user(principal, creator_id, "the analytics")
    begin, stop = window(granularity, start, end, dt.datetime.now(dt.timezone.utc))
    try:
        rows = await call_store("analytics store", _series, pool, creator_id, begin, stop, granularity)
    except metrics.MetricsNotBuilt as exc:
        raise ApiError(503, str(exc)) from None
    series = [{**r, "bucket": r["bucket"].isoformat()} for r in rows]
    return {"creator_id": creator_id, "granularity": granularity, "from": begin.isoformat(), "to": stop.isoformat(),
            "series": series, "totals": metrics.totals(rows)}


#: checked by :func:`socialpulse.dashboard.window` (a 400 with the range), not by FastAPI's validation (a 422)
DashboardDays = Annotated[int, Query(description=f"the last N UTC days, today included (1..{dashboard.MAX_DAYS})",
                                     json_schema_extra={"minimum": 1, "maximum": dashboard.MAX_DAYS})]


def _dashboard(pool, creator_id: str, begin: dt.datetime, stop: dt.datetime) -> dict:
    with pool.connection() as conn:
        return dashboard.creator_dashboard(conn, creator_id, begin, stop)


@router.get(
    "/v1/creators/{creator_id}/dashboard",
    summary="Everything a creator's dashboard shows: series, totals, top posts, virality, audience",
    responses={400: {"description": f"days outside 1..{dashboard.MAX_DAYS}"}, 401: {"description": "no valid bearer token"},
               403: {"description": "another creator's dashboard"}, 429: {"description": "rate limit exceeded"},
               503: {"description": "Postgres unavailable"}},
)
async def creator_dashboard(
    creator_id: CreatorId,
    pool: PgPoolDep,
    principal: ReadUser,
    days: DashboardDays = dashboard.DEFAULT_DAYS,
) -> dict:
    """Over the last ``days`` days: ``series`` (the creator's figures per day, oldest first, every day present),
    ``totals`` (as in the analytics route), ``top_posts`` (most viewed posts, with their figures and engagement
    rate), ``virality`` (the latest predicted probability that each recent post reaches the top decile of 7-day
    reach) and ``audience`` (views, unique viewers and watch time ``by_country`` and ``by_age_band``). Each
    section has a ``status``: ``ok``, or ``not_built`` with a ``message`` while its table does not exist yet."""
    forbid_other_user(principal, creator_id, "the dashboard")
    try:
        begin, stop = dashboard.window(days, dt.datetime.now(dt.timezone.utc))
    except ValueError as exc:
        raise ApiError(400, str(exc), field="days") from None
    sections = await call_store("analytics store", _dashboard, pool, creator_id, begin, stop)
    return {"creator_id": creator_id, "days": days, "from": begin.isoformat(), "to": stop.isoformat(), **sections}
