"""The creator dashboard's figures in one read: a creator's daily series and totals, top posts, the predicted
virality of recent posts and the audience breakdown, each section from its own table. A section whose table
is not built yet says so (``{"status": "not_built", "message": ...}``) while the others are served."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import psycopg

from socialpulse import audience, captions, metrics, virality

#: the longest window the dashboard shows, in days (its default: 28)
MAX_DAYS = 366
DEFAULT_DAYS = 28
TOP_POSTS = 10
RECENT_PREDICTIONS = 10
SECTIONS = ("series", "totals", "top_posts", "virality", "audience")
#: what the readers raise while their table does not exist (any other error, a KeyError too, stays an error)
NOT_BUILT = (metrics.MetricsNotBuilt, virality.ViralityNotBuilt, audience.AudienceNotBuilt)


def window(days: int, now: dt.datetime) -> tuple[dt.datetime, dt.datetime]:
    """``[start, end)`` of the last ``days`` UTC days, today included; ValueError when out of range."""
    if not 1 <= days <= MAX_DAYS:
        raise ValueError(f"days must be between 1 and {MAX_DAYS}, not {days}")
    end = dt.datetime.combine(now.astimezone(dt.timezone.utc).date() + dt.timedelta(days=1), dt.time(),
                              dt.timezone.utc)
    return end - dt.timedelta(days=days), end


def section(read: Callable[[], dict]) -> dict:
    """``{"status": "ok", **read()}``, or ``not_built`` with the reader's message when its table is missing."""
    try:
        return {"status": "ok", **read()}
    except NOT_BUILT as exc:
        return {"status": "not_built", "message": str(exc)}


def _iso(row: dict) -> dict:
    return {k: v.isoformat() if isinstance(v, (dt.date, dt.datetime)) else v for k, v in row.items()}


def _with_alt_text(conn: psycopg.Connection, rows: list[dict]) -> list[dict]:
    """Each post row with its generated alt-text (None where captions have not run for it yet)."""
    alt = captions.alt_texts(conn, [r["post_id"] for r in rows])
    return [{**r, "alt_text": alt.get(r["post_id"])} for r in rows]


def creator_dashboard(conn: psycopg.Connection, creator_id: str, start: dt.datetime, end: dt.datetime) -> dict:
    """Every section of a creator's dashboard over ``[start, end)`` (whole UTC days)."""
    rows: list[dict] = []

    def series() -> dict:
        rows.extend(metrics.creator_series(conn, creator_id, start, end, "day"))
        return {"rows": [_iso(r) for r in rows]}

    out = {"series": section(series)}
    out["totals"] = ({"status": "ok", **metrics.totals(rows)} if out["series"]["status"] == "ok"
                     else out["series"])
    out["top_posts"] = section(lambda: {"rows": _with_alt_text(conn, metrics.top_posts(conn, creator_id, start, end,
                                                                                         TOP_POSTS))})
    out["virality"] = section(lambda: {
        "rows": [_iso(r) for r in virality.recent_for_creator(conn, creator_id, RECENT_PREDICTIONS, since=start)],
        "top_share": virality.TOP_SHARE, "likely": virality.LIKELY})
    out["audience"] = section(lambda: audience.breakdown(conn, creator_id, start.date(), end.date()))
    return out
