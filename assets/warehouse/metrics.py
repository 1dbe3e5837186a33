"""Hourly post metrics in Postgres (``metrics.post_metrics_hourly``).

A TimescaleDB hypertable where the extension exists (production), otherwise native declarative range
partitioning with one partition per UTC day, created on demand. A day's rows are replaced as a unit.
"""

from __future__ import annotations

import datetime as dt

import psycopg
import pyarrow as pa
import pyarrow.compute as pc
from psycopg import sql

from socialpulse.contracts import INTERACTIONS, TS
from socialpulse.settings import Settings
from socialpulse.stores.postgres import has_extension

SCHEMA = "metrics"
TABLE = "post_metrics_hourly"
QUALIFIED = f"{SCHEMA}.{TABLE}"

#: the Arrow shape of the table, also the column order of the COPY
POST_METRICS_HOURLY = pa.schema(
    [
        pa.field("post_id", pa.string(), nullable=False),
        pa.field("hour", TS, nullable=False),
        pa.field("views", pa.int64(), nullable=False),
        pa.field("likes", pa.int64(), nullable=False),
        pa.field("shares", pa.int64(), nullable=False),
        pa.field("comments", pa.int64(), nullable=False),
        pa.field("watch_time_s", pa.float64(), nullable=False),
        pa.field("unique_viewers", pa.int64(), nullable=False),
    ]
)
_PG_TYPES = ["text", "timestamptz", "bigint", "bigint", "bigint", "bigint", "float8", "bigint"]

_COLUMNS = """
    post_id        text             NOT NULL,
    hour           timestamptz      NOT NULL,
    views          bigint           NOT NULL DEFAULT 0,
    likes          bigint           NOT NULL DEFAULT 0,
    shares         bigint           NOT NULL DEFAULT 0,
    comments       bigint           NOT NULL DEFAULT 0,
    watch_time_s   double precision NOT NULL DEFAULT 0,
    unique_viewers bigint           NOT NULL DEFAULT 0,
    PRIMARY KEY (post_id, hour)
"""

HYPERTABLE = "hypertable"
NATIVE = "native"


def _layout(conn: psycopg.Connection) -> str | None:
    """How the table exists now: 'native' (partitioned), 'hypertable', or None when it is missing."""
    row = conn.execute(
        "SELECT c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = %s AND c.relname = %s",
        (SCHEMA, TABLE),
    ).fetchone()
    if row is None:
        return None
    return NATIVE if row[0] == "p" else HYPERTABLE


def ensure_metrics_schema(conn: psycopg.Connection) -> str:
    """Create ``metrics.post_metrics_hourly`` if missing; return its layout ('hypertable' or 'native').

    An existing table keeps its layout (switching would need a data migration).
    """
    conn.execute(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}")
    # one creator at a time: concurrent day partitions would race on CREATE TABLE
    conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (QUALIFIED,))
    layout = _layout(conn)
    if layout is not None:
        return layout
    if has_extension(conn, "timescaledb"):
        conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
        conn.execute(f"CREATE TABLE {QUALIFIED} ({_COLUMNS})")
        conn.execute(
            "SELECT create_hypertable(%s::regclass, 'hour', "
            "chunk_time_interval => INTERVAL '1 day', if_not_exists => TRUE)",
            (QUALIFIED,),
        )
        return HYPERTABLE
    conn.execute(f"CREATE TABLE {QUALIFIED} ({_COLUMNS}) PARTITION BY RANGE (hour)")
    return NATIVE


def partition_name(day: dt.date) -> str:
    return f"{TABLE}_p{day:%Y%m%d}"


def ensure_day_partition(conn: psycopg.Connection, day: dt.date) -> str | None:
    """Create the native partition holding ``day`` (UTC) if missing; a no-op for a hypertable."""
    if ensure_metrics_schema(conn) != NATIVE:
        return None
    name = partition_name(day)
    start = dt.datetime.combine(day, dt.time(), dt.timezone.utc)
    conn.execute(
        sql.SQL("CREATE TABLE IF NOT EXISTS {}.{} PARTITION OF {}.{} FOR VALUES FROM ({}) TO ({})").format(
            sql.Identifier(SCHEMA),
            sql.Identifier(name),
            sql.Identifier(SCHEMA),
            sql.Identifier(TABLE),
            sql.Literal(start.isoformat()),
            sql.Literal((start + dt.timedelta(days=1)).isoformat()),
        )
    )
    return name


def compute_hourly_post_metrics(interactions: pa.Table) -> pa.Table:
    """Per post and UTC hour: views, likes, shares, comments, watch time of views, unique viewers."""
    posts = interactions.filter(pc.is_valid(interactions["post_id"]))
    if posts.num_rows == 0:
        return POST_METRICS_HOURLY.empty_table()
    event_type = posts["event_type"]
    is_view = pc.equal(event_type, "view")
    created_at = posts["created_at"].cast(TS)
    watch = pc.if_else(is_view, pc.fill_null(posts["watch_time_s"].cast(pa.float64()), 0.0), 0.0)
    work = pa.table(
        {
            "post_id": posts["post_id"],
            "hour": pc.floor_temporal(created_at, unit="hour"),
            "views": is_view.cast(pa.int64()),
            "likes": pc.equal(event_type, "like").cast(pa.int64()),
            "shares": pc.equal(event_type, "share").cast(pa.int64()),
            "comments": pc.equal(event_type, "comment").cast(pa.int64()),
            "watch_time_s": watch,
            # null unless a view, so count_distinct counts viewers only
            "viewer": pc.if_else(is_view, posts["user_id"], pa.scalar(None, pa.string())),
        }
    )
    grouped = work.group_by(["post_id", "hour"]).aggregate(
        [
            ("views", "sum"),
            ("likes", "sum"),
            ("shares", "sum"),
            ("comments", "sum"),
            ("watch_time_s", "sum"),
            ("viewer", "count_distinct", pc.CountOptions(mode="only_valid")),
        ]
    )
    out = pa.table(
        {
            "post_id": grouped["post_id"],
            "hour": grouped["hour"],
            "views": grouped["views_sum"],
            "likes": grouped["likes_sum"],
            "shares": grouped["shares_sum"],
            "comments": grouped["comments_sum"],
            "watch_time_s": grouped["watch_time_s_sum"],
            "unique_viewers": grouped["viewer_count_distinct"],
        }
    ).cast(POST_METRICS_HOURLY)
    return out.sort_by([("hour", "ascending"), ("post_id", "ascending")])


def read_interactions_day(settings: Settings, day: dt.date) -> pa.Table:
    from socialpulse.lake import open_table, table_uri

    delta = open_table(table_uri(INTERACTIONS, settings))
    if delta is None:
        return INTERACTIONS.schema.empty_table()
    return delta.to_pyarrow_table(
        partitions=[("event_date", "=", day.isoformat())],
        columns=["event_type", "user_id", "post_id", "watch_time_s", "created_at"],
    )


def replace_day(conn: psycopg.Connection, day: dt.date, metrics: pa.Table) -> int:
    """In one transaction: make sure the day's partition exists, delete the day, COPY ``metrics``."""
    start = dt.datetime.combine(day, dt.time(), dt.timezone.utc)
    end = start + dt.timedelta(days=1)
    hour = metrics["hour"]
    outside = metrics.filter(pc.or_(pc.less(hour, pa.scalar(start, TS)), pc.greater_equal(hour, pa.scalar(end, TS))))
    if outside.num_rows:
        raise ValueError(f"{outside.num_rows} metric row(s) fall outside {day} (UTC)")
    with conn.transaction():
        ensure_day_partition(conn, day)
        conn.execute(f"DELETE FROM {QUALIFIED} WHERE hour >= %s AND hour < %s", (start, end))
        if metrics.num_rows:
            cols = ", ".join(POST_METRICS_HOURLY.names)
            with conn.cursor() as cur, cur.copy(f"COPY {QUALIFIED} ({cols}) FROM STDIN (FORMAT BINARY)") as copy:
                copy.set_types(_PG_TYPES)
                for batch in metrics.to_batches(max_chunksize=50_000):
                    for row in zip(*(col.to_pylist() for col in batch.columns)):
                        copy.write_row(row)
    return metrics.num_rows


def write_hourly_post_metrics(settings: Settings, day: dt.date | str) -> int:
    """Recompute one UTC day of hourly post metrics from bronze interactions and replace it in Postgres."""
    day = dt.date.fromisoformat(day) if isinstance(day, str) else day
    metrics = compute_hourly_post_metrics(read_interactions_day(settings, day))
    with psycopg.connect(settings.postgres, connect_timeout=5) as conn:
        return replace_day(conn, day, metrics)
