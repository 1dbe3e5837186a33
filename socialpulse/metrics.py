"""Creator analytics' time series in Postgres (schema ``metrics``): hourly and daily figures per post and
per creator, computed from one UTC day of bronze events, and the reads the API makes of them.

Tables (one row per key and time bucket):

====================================  =========  ===========================================================
table                                 bucket     figures
====================================  =========  ===========================================================
``metrics.post_metrics_hourly``       ``hour``   views, unique_viewers, likes, shares, comments, watch_time_s,
``metrics.post_metrics_daily``        ``day``    completions (a view watched to >= 90 % of the video)
``metrics.creator_metrics_hourly``    ``hour``   the same over the creator's posts (unique viewers counted once
``metrics.creator_metrics_daily``     ``day``    per creator), plus followers_gained and followers_lost
====================================  =========  ===========================================================

Daily rows are computed from the day's events, not summed from the hours: a viewer who watched at 9 and at
17 is one unit of the day's reach. Where TimescaleDB exists (production) the tables are hypertables with
compression and retention policies; otherwise native range partitions (a day per partition for the hourly
tables, a month for the daily), created on demand and dropped by :func:`apply_retention`. The same queries
read either layout. A day is replaced as a unit, in one transaction over the four tables.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from dataclasses import dataclass

import psycopg
import pyarrow as pa
from psycopg import sql

from socialpulse.contracts import TS
from socialpulse.stores.postgres import copy_arrow, has_extension, pg_type

SCHEMA = "metrics"
#: a view completes a video when it watched at least this share of its duration
COMPLETION_SHARE = 0.9
HYPERTABLE = "hypertable"
NATIVE = "native"

_FIGURES = [("views", pa.int64()), ("unique_viewers", pa.int64()), ("likes", pa.int64()), ("shares", pa.int64()),
            ("comments", pa.int64()), ("watch_time_s", pa.float64()), ("completions", pa.int64())]
_FOLLOWERS = [("followers_gained", pa.int64()), ("followers_lost", pa.int64())]
#: the figures a creator series carries, in order
CREATOR_FIGURES = tuple(name for name, _ in _FIGURES + _FOLLOWERS)


@dataclass(frozen=True)
class Series:
    """One metrics table: its key column, time bucket, native partition span and retention."""

    name: str
    key: str
    bucket: str  # "hour" (timestamptz) or "day" (date)
    partition: str  # "day" or "month": the span of one native partition
    retention_days: int
    schema: pa.Schema

    @property
    def qualified(self) -> str:
        return f"{SCHEMA}.{self.name}"


def _schema(key: str, bucket: str, figures) -> pa.Schema:
    time_type = TS if bucket == "hour" else pa.date32()
    extra = [pa.field("author_id", pa.string(), nullable=False)] if key == "post_id" else []
    return pa.schema([pa.field(key, pa.string(), nullable=False), *extra, pa.field(bucket, time_type, nullable=False),
                      *(pa.field(n, t, nullable=False) for n, t in figures)])


POST_HOURLY = Series("post_metrics_hourly", "post_id", "hour", "day", 90, _schema("post_id", "hour", _FIGURES))
POST_DAILY = Series("post_metrics_daily", "post_id", "day", "month", 730, _schema("post_id", "day", _FIGURES))
CREATOR_HOURLY = Series("creator_metrics_hourly", "creator_id", "hour", "day", 90,
                        _schema("creator_id", "hour", _FIGURES + _FOLLOWERS))
CREATOR_DAILY = Series("creator_metrics_daily", "creator_id", "day", "month", 730,
                       _schema("creator_id", "day", _FIGURES + _FOLLOWERS))
ALL = (POST_HOURLY, POST_DAILY, CREATOR_HOURLY, CREATOR_DAILY)
CREATOR_SERIES = {"hour": CREATOR_HOURLY, "day": CREATOR_DAILY}
GRANULARITIES = tuple(CREATOR_SERIES)


class MetricsNotBuilt(LookupError):
    """The metrics tables do not exist yet (the metrics asset has not run)."""


# --- computing one day (pure: Arrow in, Arrow out) -----------------------------------------------------------
def compute_day(interactions: pa.Table, follows: pa.Table, posts: pa.Table) -> dict[str, pa.Table]:
    """The four tables' rows for one UTC day of events.

    ``interactions``: event_type, user_id, post_id, watch_time_s, created_at (the day's). ``follows``:
    follower_id, followee_id, action, created_at (the day's). ``posts``: post_id, author_id, duration_s
    (every post the day's events may touch; an event on an unknown post is left out, as it has no creator).
    Returns ``{table name: rows}`` in each table's schema, sorted by bucket then key."""
    import duckdb

    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")  # hours and days are UTC whatever the machine's zone
        con.register("interactions", interactions)
        con.register("follows", follows)
        # one row per post (a post appended twice must not count its events twice)
        con.register("posts_in", posts)
        con.execute("CREATE TEMP VIEW posts AS SELECT post_id, any_value(author_id) AS author_id, "
                    "max(duration_s) AS duration_s FROM posts_in GROUP BY post_id")
        figures = f"""
            count(*) FILTER (WHERE e.event_type = 'view') AS views,
            count(DISTINCT e.user_id) FILTER (WHERE e.event_type = 'view') AS unique_viewers,
            count(*) FILTER (WHERE e.event_type = 'like') AS likes,
            count(*) FILTER (WHERE e.event_type = 'share') AS shares,
            count(*) FILTER (WHERE e.event_type = 'comment') AS comments,
            coalesce(sum(e.watch_time_s) FILTER (WHERE e.event_type = 'view'), 0)::DOUBLE AS watch_time_s,
            count(*) FILTER (WHERE e.event_type = 'view' AND p.duration_s > 0
                             AND e.watch_time_s >= {COMPLETION_SHARE} * p.duration_s) AS completions"""
        events = """(SELECT i.*, date_trunc('hour', i.created_at) AS hour, CAST(i.created_at AS DATE) AS day
                     FROM interactions i WHERE i.post_id IS NOT NULL) e JOIN posts p ON p.post_id = e.post_id"""
        out = {}
        for series in (POST_HOURLY, POST_DAILY):
            b = series.bucket
            out[series.name] = _arrow(con.sql(
                f"SELECT e.post_id, p.author_id, e.{b}, {figures} FROM {events} GROUP BY ALL ORDER BY 3, 1"))
        follow_counts = """SELECT followee_id AS creator_id, {b} AS bucket,
                               count(*) FILTER (WHERE action = 'follow') AS followers_gained,
                               count(*) FILTER (WHERE action = 'unfollow') AS followers_lost
                           FROM (SELECT *, date_trunc('hour', created_at) AS hour, CAST(created_at AS DATE) AS day
                                 FROM follows) GROUP BY ALL"""
        for series in (CREATOR_HOURLY, CREATOR_DAILY):
            b = series.bucket
            out[series.name] = _arrow(con.sql(
                f"""WITH e AS (SELECT p.author_id AS creator_id, e.{b} AS bucket, {figures} FROM {events} GROUP BY ALL),
                         f AS ({follow_counts.format(b=b)})
                    SELECT coalesce(e.creator_id, f.creator_id) AS creator_id, coalesce(e.bucket, f.bucket) AS {b},
                           {', '.join(f'coalesce(e.{n}, 0) AS {n}' for n, _ in _FIGURES)},
                           coalesce(f.followers_gained, 0) AS followers_gained,
                           coalesce(f.followers_lost, 0) AS followers_lost
                    FROM e FULL JOIN f ON e.creator_id = f.creator_id AND e.bucket = f.bucket
                    ORDER BY 2, 1"""))
        return {name: _conform(out[name], series.schema) for series in ALL for name in [series.name]}
    finally:
        con.close()


def _arrow(relation) -> pa.Table:
    """A DuckDB result as an Arrow table, read now (a streamed result is gone once the next query runs)."""
    out = relation.arrow()
    return out.read_all() if hasattr(out, "read_all") else out


def _conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    return table.rename_columns(schema.names).cast(schema)


# --- the store: layout, partitions, a day's replacement, retention ----------------------------------------------
def _ddl(series: Series) -> str:
    cols = ",\n".join(f"    {f.name} {pg_type(f.type)} NOT NULL{' DEFAULT 0' if f.type in (pa.int64(), pa.float64()) else ''}"
                      for f in series.schema)
    return f"{cols},\n    PRIMARY KEY ({series.key}, {series.bucket})"


def _layout(conn: psycopg.Connection, series: Series) -> str | None:
    row = conn.execute(
        "SELECT c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = %s AND c.relname = %s", (SCHEMA, series.name)).fetchone()
    if row is None:
        return None
    return NATIVE if row[0] == "p" else HYPERTABLE


def ensure_schema(conn: psycopg.Connection) -> str:
    """Create the metrics tables that are missing; return the layout (``hypertable`` where TimescaleDB
    exists, else ``native``). An existing table keeps its layout; the hourly post table of an earlier version
    (without ``author_id`` and ``completions``) gains them."""
    conn.execute(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}")
    conn.execute("SELECT pg_advisory_xact_lock(hashtext('metrics.ddl'))")  # concurrent day runs race on DDL
    timescale = has_extension(conn, "timescaledb")
    if timescale:
        conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
    for series in ALL:
        if _layout(conn, series) is not None:
            continue
        if timescale:
            conn.execute(f"CREATE TABLE {series.qualified} (\n{_ddl(series)}\n)")
            interval = "1 day" if series.bucket == "hour" else "1 month"
            conn.execute(f"SELECT create_hypertable(%s::regclass, '{series.bucket}', "
                         f"chunk_time_interval => INTERVAL '{interval}', if_not_exists => TRUE)", (series.qualified,))
            conn.execute(f"ALTER TABLE {series.qualified} SET (timescaledb.compress, "
                         f"timescaledb.compress_segmentby = '{series.key}')")
            conn.execute("SELECT add_compression_policy(%s::regclass, INTERVAL '7 days', if_not_exists => TRUE)",
                         (series.qualified,))
            conn.execute(f"SELECT add_retention_policy(%s::regclass, INTERVAL '{series.retention_days} days', "
                         "if_not_exists => TRUE)", (series.qualified,))
        else:
            conn.execute(f"CREATE TABLE {series.qualified} (\n{_ddl(series)}\n) PARTITION BY RANGE ({series.bucket})")
    # the hourly post table of the first version had neither column
    conn.execute(f"ALTER TABLE {POST_HOURLY.qualified} ADD COLUMN IF NOT EXISTS author_id text NOT NULL DEFAULT ''")
    conn.execute(f"ALTER TABLE {POST_HOURLY.qualified} ADD COLUMN IF NOT EXISTS completions bigint NOT NULL DEFAULT 0")
    # a creator's posts (the dashboard's top posts): without it each read scanned every post of the window
    # (~250 ms at a million posts); on a partitioned table the index is made on every partition
    for series in (POST_HOURLY, POST_DAILY):
        conn.execute(f"CREATE INDEX IF NOT EXISTS {series.name}_author_idx ON {series.qualified} "
                     f"(author_id, {series.bucket})")
    return HYPERTABLE if timescale and _layout(conn, POST_HOURLY) == HYPERTABLE else NATIVE


def _span(series: Series, day: dt.date) -> tuple[dt.date, dt.date]:
    if series.partition == "day":
        return day, day + dt.timedelta(days=1)
    start = day.replace(day=1)
    return start, (start + dt.timedelta(days=32)).replace(day=1)


def partition_name(series: Series, day: dt.date) -> str:
    start, _ = _span(series, day)
    return f"{series.name}_p{start:%Y%m%d}" if series.partition == "day" else f"{series.name}_p{start:%Y%m}"


def _bound(series: Series, day: dt.date):
    return dt.datetime.combine(day, dt.time(), dt.timezone.utc) if series.bucket == "hour" else day


def _day_range(series: Series, day: dt.date) -> tuple:
    """``[start, end)`` of one UTC day in the series' bucket type (timestamps for hours, dates for days)."""
    return _bound(series, day), _bound(series, day + dt.timedelta(days=1))


def ensure_partitions(conn: psycopg.Connection, day: dt.date) -> list[str]:
    """Create each native table's partition holding ``day`` (UTC) if missing; none on a hypertable."""
    made = []
    for series in ALL:
        if _layout(conn, series) != NATIVE:
            continue
        start, end = _span(series, day)
        name = partition_name(series, day)
        conn.execute(sql.SQL("CREATE TABLE IF NOT EXISTS {}.{} PARTITION OF {} FOR VALUES FROM ({}) TO ({})").format(
            sql.Identifier(SCHEMA), sql.Identifier(name), sql.SQL(series.qualified),
            sql.Literal(_bound(series, start)), sql.Literal(_bound(series, end))))
        made.append(name)
    return made


def replace_day(conn: psycopg.Connection, day: dt.date, rows: dict[str, pa.Table]) -> dict[str, int]:
    """In one transaction: the day's partitions exist, the day's rows of each table are deleted and
    ``rows[table]`` copied in. Rows outside the day are refused (nothing is written)."""
    for series in ALL:
        table = rows[series.name]
        if table.num_rows:
            times = table[series.bucket].to_pylist()
            low, high = _day_range(series, day)
            outside = sum(1 for t in times if not (low <= t < high))
            if outside:
                raise ValueError(f"{outside} row(s) of {series.name} fall outside {day} (UTC)")
    counts = {}
    with conn.transaction():
        ensure_schema(conn)
        ensure_partitions(conn, day)
        for series in ALL:
            low, high = _day_range(series, day)
            conn.execute(f"DELETE FROM {series.qualified} WHERE {series.bucket} >= %s AND {series.bucket} < %s",
                         (low, high))
            table = rows[series.name]
            counts[series.name] = table.num_rows
            if not table.num_rows:
                continue
            copy_arrow(conn, series.qualified, table)
    return counts


_PARTITION = re.compile(r"_p(\d{6}|\d{8})$")


def apply_retention(conn: psycopg.Connection, today: dt.date) -> dict[str, list[str]]:
    """Drop the native partitions wholly older than each table's retention (hourly 90 days, daily 730) as of
    ``today``; TimescaleDB's retention policies do the same for hypertables. Returns the dropped partitions."""
    dropped: dict[str, list[str]] = {}
    with conn.transaction():
        for series in ALL:
            if _layout(conn, series) != NATIVE:
                continue
            cutoff = today - dt.timedelta(days=series.retention_days)
            parts = [r[0] for r in conn.execute(
                "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                "WHERE i.inhparent = %s::regclass", (series.qualified,))]
            for name in sorted(parts):
                m = _PARTITION.search(name)
                if m is None:
                    continue
                digits = m.group(1)
                start = dt.date(int(digits[:4]), int(digits[4:6]), int(digits[6:]) if len(digits) == 8 else 1)
                _, end = _span(series, start)
                if end <= cutoff:
                    conn.execute(sql.SQL("DROP TABLE {}.{}").format(sql.Identifier(SCHEMA), sql.Identifier(name)))
                    dropped.setdefault(series.name, []).append(name)
    return dropped


# --- reads (the API) ------------------------------------------------------------------------------------------
def creator_series(conn: psycopg.Connection, creator_id: str, start: dt.datetime, end: dt.datetime,
                   granularity: str) -> list[dict]:
    """A creator's figures per ``granularity`` bucket (``hour`` or ``day``) in ``[start, end)``, every bucket
    present (a bucket without activity is zeros), oldest first."""
    if granularity not in CREATOR_SERIES:
        raise ValueError(f"granularity must be one of {GRANULARITIES}, not {granularity!r}")
    series = CREATOR_SERIES[granularity]
    if _layout(conn, series) is None:
        raise MetricsNotBuilt("the creator metrics are not built yet (the metrics asset has not run)")
    figures = ", ".join(f"coalesce(m.{n}, 0) AS {n}" for n in CREATOR_FIGURES)
    if granularity == "hour":
        buckets = ("SELECT generate_series(date_trunc('hour', %(start)s::timestamptz), %(end)s::timestamptz "
                   "- interval '1 microsecond', interval '1 hour') AS b")
    else:
        buckets = ("SELECT d::date AS b FROM generate_series(%(start)s::timestamptz::date, "
                   "(%(end)s::timestamptz - interval '1 microsecond')::date, interval '1 day') d")
    with conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        return cur.execute(
            f"""SELECT b.b AS bucket, {figures}
                FROM ({buckets}) b LEFT JOIN {series.qualified} m ON m.{series.bucket} = b.b
                                                                  AND m.creator_id = %(creator)s
                ORDER BY b.b""", {"start": start, "end": end, "creator": creator_id}).fetchall()


def totals(rows: Sequence[dict]) -> dict[str, float]:
    """Sums of a series' figures (unique viewers summed over buckets: an upper bound of the period's reach)
    and the period's completion and engagement rates."""
    out = {n: sum(r[n] for r in rows) for n in CREATOR_FIGURES}
    views = out["views"]
    out["completion_rate"] = out["completions"] / views if views else 0.0
    out["engagement_rate"] = (out["likes"] + out["shares"] + out["comments"]) / views if views else 0.0
    return out


# --- one day from the lake ------------------------------------------------------------------------------------
def read_day(settings, day: dt.date) -> tuple[pa.Table, pa.Table, pa.Table]:
    """The day's interactions and follow events from bronze, and every post's author and duration."""
    from socialpulse.contracts import FOLLOWS, INTERACTIONS, POSTS
    from socialpulse.lake import open_table, table_uri

    def read(contract, columns, day_only=True):
        delta = open_table(table_uri(contract, settings))
        if delta is None:
            return contract.schema.empty_table().select(columns)
        parts = [("event_date", "=", day.isoformat())] if day_only else None
        return delta.to_pyarrow_table(partitions=parts, columns=columns)

    return (read(INTERACTIONS, ["event_type", "user_id", "post_id", "watch_time_s", "created_at"]),
            read(FOLLOWS, ["follower_id", "followee_id", "action", "created_at"]),
            read(POSTS, ["post_id", "author_id", "duration_s"], day_only=False))


def write_day(settings, day: dt.date | str) -> dict[str, int]:
    """Recompute one UTC day of every metrics table from bronze and replace it in Postgres; then drop the
    partitions past retention as of that day. Returns rows written per table (and partitions dropped)."""
    day = dt.date.fromisoformat(day) if isinstance(day, str) else day
    rows = compute_day(*read_day(settings, day))
    with psycopg.connect(settings.postgres, connect_timeout=5) as conn:
        counts = replace_day(conn, day, rows)
        dropped = apply_retention(conn, day)
    return {**counts, "partitions_dropped": sum(len(v) for v in dropped.values())}


# --- reads (the creator dashboard) ----------------------------------------------------------------------------


def top_posts(conn: psycopg.Connection, creator_id: str, start: dt.datetime, end: dt.datetime,
              limit: int = 10) -> list[dict]:
    """A creator's posts ranked by views over the days of ``[start, end)`` (UTC), from the daily post series:
    each post's summed figures (unique viewers summed over days: an upper bound of its reach) and its
    engagement rate, most viewed first (ties by post id). Posts without a view in the window are left out."""
    if _layout(conn, POST_DAILY) is None:
        raise MetricsNotBuilt("the post metrics are not built yet (the metrics asset has not run)")
    figures = ", ".join(f"sum({n})::{pg_type(t)} AS {n}" for n, t in _FIGURES)
    with conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        rows = cur.execute(
            f"""SELECT post_id, {figures}
                FROM {POST_DAILY.qualified}
                WHERE author_id = %(creator)s AND day >= (%(start)s::timestamptz AT TIME ZONE 'UTC')::date
                  AND day <= (%(end)s::timestamptz AT TIME ZONE 'UTC' - interval '1 microsecond')::date
                GROUP BY post_id HAVING sum(views) > 0
                ORDER BY views DESC, post_id LIMIT %(limit)s""",
            {"creator": creator_id, "start": start, "end": end, "limit": limit}).fetchall()
    for row in rows:
        row["engagement_rate"] = (row["likes"] + row["shares"] + row["comments"]) / row["views"]
    return rows


def busiest_creator(conn: psycopg.Connection, start: dt.date, end: dt.date) -> str | None:
    """The creator with the most views over the days ``[start, end)`` (the demo's dashboard link), or None."""
    if _layout(conn, CREATOR_DAILY) is None:
        raise MetricsNotBuilt("the creator metrics are not built yet (the metrics asset has not run)")
    row = conn.execute(f"SELECT creator_id FROM {CREATOR_DAILY.qualified} WHERE day >= %s AND day < %s "
                       "GROUP BY creator_id ORDER BY sum(views) DESC, creator_id LIMIT 1", (start, end)).fetchone()
    return row[0] if row else None
