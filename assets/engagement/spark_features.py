"""Engagement features for one UTC day, computed with PySpark through Spark Connect.

One code path: the same DataFrame code runs on the embedded Sail server here and on a Spark 4 cluster
with Delta in production. For a partition day D each gold table holds one row per entity active in the
7-day window D-6..D, with 1-day (D) and 7-day aggregates, and replaces exactly its partition D
(``replaceWhere``), so re-running a day never duplicates and never touches another day.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import pyarrow as pa
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.pandas.types import from_arrow_schema, to_arrow_schema

from socialpulse.contracts import INTERACTIONS, TS
from socialpulse.settings import Settings

WINDOW_DAYS = 7
GOLD = "gold"
POST_ENGAGEMENT_TABLE = "post_engagement_daily"
USER_ENGAGEMENT_TABLE = "user_engagement_daily"

_COUNT = pa.int64()
_SECONDS = pa.float64()


def _window_fields(spec: list[tuple[str, pa.DataType]]) -> list[pa.Field]:
    return [pa.field(f"{name}_{w}", type_) for w in ("1d", "7d") for name, type_ in spec]


_POST_METRICS = [
    ("views", _COUNT),
    ("likes", _COUNT),
    ("shares", _COUNT),
    ("comments", _COUNT),
    ("watch_time_s", _SECONDS),
    ("avg_watch_time_s", _SECONDS),
    ("unique_viewers", _COUNT),
]
_USER_METRICS = [
    ("views_given", _COUNT),
    ("likes_given", _COUNT),
    ("shares_given", _COUNT),
    ("comments_given", _COUNT),
    ("watch_time_s", _SECONDS),
    ("follows_gained", _COUNT),
    ("unfollows_gained", _COUNT),
]

#: gold/post_engagement_daily: one row per post with any post event in D-6..D
POST_ENGAGEMENT_SCHEMA = pa.schema(
    [pa.field("post_id", pa.string(), nullable=False)]
    + _window_fields(_POST_METRICS)
    + [
        pa.field("engagement_rate_7d", _SECONDS),
        pa.field("feature_ts", TS, nullable=False),
        pa.field("computed_at", TS, nullable=False),
        pa.field("event_date", pa.date32(), nullable=False),
    ]
)

#: gold/user_engagement_daily: one row per user who acted (or was followed / unfollowed) in D-6..D
USER_ENGAGEMENT_SCHEMA = pa.schema(
    [pa.field("user_id", pa.string(), nullable=False)]
    + _window_fields(_USER_METRICS)
    + [
        pa.field("feature_ts", TS, nullable=False),
        pa.field("computed_at", TS, nullable=False),
        pa.field("event_date", pa.date32(), nullable=False),
    ]
)


@dataclass(frozen=True)
class GoldTable:
    name: str
    key: str
    schema: pa.Schema

    def uri(self, settings: Settings) -> str:
        return settings.table_uri(GOLD, self.name)


POST_ENGAGEMENT = GoldTable(POST_ENGAGEMENT_TABLE, "post_id", POST_ENGAGEMENT_SCHEMA)
USER_ENGAGEMENT = GoldTable(USER_ENGAGEMENT_TABLE, "user_id", USER_ENGAGEMENT_SCHEMA)
GOLD_TABLES = (POST_ENGAGEMENT, USER_ENGAGEMENT)

#: count columns that must be >= 0 and satisfy 1d <= 7d (used by the asset checks)
POST_COUNT_COLUMNS = [n for n, t in _POST_METRICS if t == _COUNT] + ["watch_time_s"]
USER_COUNT_COLUMNS = [n for n, t in _USER_METRICS if t == _COUNT] + ["watch_time_s"]


class SchemaMismatch(RuntimeError):
    """A written gold table does not have its declared schema."""


# --- time -----------------------------------------------------------------------------------------
def end_of_day(day: dt.date) -> dt.datetime:
    """The last microsecond of a UTC day."""
    return dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), dt.timezone.utc) - dt.timedelta(microseconds=1)


def feature_timestamp(day: dt.date, now: dt.datetime | None = None) -> dt.datetime:
    """When day D's features are valid: the end of D, or now while D is still running (today)."""
    now = now or dt.datetime.now(dt.timezone.utc)
    return min(end_of_day(day), now.astimezone(dt.timezone.utc))


def window_start(day: dt.date) -> dt.date:
    return day - dt.timedelta(days=WINDOW_DAYS - 1)


def use_utc(spark: SparkSession) -> None:
    """Pin the session time zone to "UTC": days are UTC days, and Sail compares zone names literally
    (with its default "Etc/UTC" a replaceWhere into a table written under "UTC" fails to union)."""
    if spark.conf.get("spark.sql.session.timeZone") != "UTC":
        spark.conf.set("spark.sql.session.timeZone", "UTC")


# --- reads ----------------------------------------------------------------------------------------
def read_interactions(spark: SparkSession, interactions_uri: str, day: dt.date) -> DataFrame:
    """Bronze interactions of the window D-6..D; the event_date filter prunes partitions."""
    return (
        spark.read.format("delta")
        .load(interactions_uri)
        .where(F.col("event_date").between(F.lit(window_start(day)), F.lit(day)))
    )


def _count(cond: Column) -> Column:
    return F.sum(F.when(cond, 1).otherwise(0)).cast("bigint")


def _sum(cond: Column, value: Column) -> Column:
    return F.sum(F.when(cond, F.coalesce(value, F.lit(0.0))).otherwise(0.0)).cast("double")


def _stamp(df: DataFrame, day: dt.date, feature_ts: dt.datetime, computed_at: dt.datetime) -> DataFrame:
    return df.withColumns(
        {
            "feature_ts": F.lit(feature_ts).cast("timestamp"),
            "computed_at": F.lit(computed_at).cast("timestamp"),
            "event_date": F.lit(day).cast("date"),
        }
    )


def _conform(df: DataFrame, schema: pa.Schema) -> DataFrame:
    """Select the declared columns in the declared order and types."""
    spark_schema = from_arrow_schema(schema)
    return df.select(*[F.col(f.name).cast(f.dataType).alias(f.name) for f in spark_schema.fields])


def post_engagement(
    spark: SparkSession, interactions_uri: str, day: dt.date, *, now: dt.datetime | None = None
) -> DataFrame:
    """Per post: views, likes, shares, comments, watch time, unique viewers over D and D-6..D."""
    now = now or dt.datetime.now(dt.timezone.utc)
    events = read_interactions(spark, interactions_uri, day).where(
        F.col("post_id").isNotNull() & F.col("event_type").isin("view", "like", "share", "comment")
    )
    on_day = F.col("event_date") == F.lit(day)
    is_view = F.col("event_type") == "view"
    aggs = []
    for suffix, in_window in (("1d", on_day), ("7d", F.lit(True))):
        aggs += [
            _count(in_window & is_view).alias(f"views_{suffix}"),
            _count(in_window & (F.col("event_type") == "like")).alias(f"likes_{suffix}"),
            _count(in_window & (F.col("event_type") == "share")).alias(f"shares_{suffix}"),
            _count(in_window & (F.col("event_type") == "comment")).alias(f"comments_{suffix}"),
            _sum(in_window & is_view, F.col("watch_time_s").cast("double")).alias(f"watch_time_s_{suffix}"),
        ]
    # distinct viewers in two plain aggregations (post, viewer) -> post: two conditional countDistinct in the
    # same groupBy drove Sail 0.7.2 past 20 GB on a 7-day window of ~5M views over 1M posts
    viewers = (
        events.where(is_view)
        .groupBy("post_id", "user_id")
        .agg(F.max(on_day.cast("int")).alias("seen_on_day"))
        .groupBy("post_id")
        .agg(
            F.sum("seen_on_day").cast("bigint").alias("unique_viewers_1d"),
            F.count(F.lit(1)).cast("bigint").alias("unique_viewers_7d"),
        )
    )
    per_post = (
        events.groupBy("post_id")
        .agg(*aggs)
        .join(viewers, "post_id", "left")
        .fillna(0, subset=["unique_viewers_1d", "unique_viewers_7d"])
    )
    derived = {
        f"avg_watch_time_s_{s}": F.col(f"watch_time_s_{s}") / F.greatest(F.col(f"views_{s}"), F.lit(1))
        for s in ("1d", "7d")
    }
    derived["engagement_rate_7d"] = (
        F.col("likes_7d") + F.col("shares_7d") + F.col("comments_7d")
    ).cast("double") / F.greatest(F.col("views_7d"), F.lit(1))
    per_post = per_post.withColumns(derived)
    return _conform(_stamp(per_post, day, feature_timestamp(day, now), now), POST_ENGAGEMENT_SCHEMA)


def user_engagement(
    spark: SparkSession, interactions_uri: str, day: dt.date, *, now: dt.datetime | None = None
) -> DataFrame:
    """Per user: engagement given as an actor over D and D-6..D, and follows gained as a creator."""
    now = now or dt.datetime.now(dt.timezone.utc)
    events = read_interactions(spark, interactions_uri, day)
    on_day = F.col("event_date") == F.lit(day)
    actor_aggs, target_aggs = [], []
    for suffix, in_window in (("1d", on_day), ("7d", F.lit(True))):
        actor_aggs += [
            _count(in_window & (F.col("event_type") == "view")).alias(f"views_given_{suffix}"),
            _count(in_window & (F.col("event_type") == "like")).alias(f"likes_given_{suffix}"),
            _count(in_window & (F.col("event_type") == "share")).alias(f"shares_given_{suffix}"),
            _count(in_window & (F.col("event_type") == "comment")).alias(f"comments_given_{suffix}"),
            _sum(in_window & (F.col("event_type") == "view"), F.col("watch_time_s").cast("double")).alias(
                f"watch_time_s_{suffix}"
            ),
        ]
        target_aggs += [
            _count(in_window & (F.col("event_type") == "follow")).alias(f"follows_gained_{suffix}"),
            _count(in_window & (F.col("event_type") == "unfollow")).alias(f"unfollows_gained_{suffix}"),
        ]
    as_actor = events.groupBy("user_id").agg(*actor_aggs)
    as_creator = (
        events.where(F.col("target_user_id").isNotNull() & F.col("event_type").isin("follow", "unfollow"))
        .groupBy(F.col("target_user_id").alias("user_id"))
        .agg(*target_aggs)
    )
    per_user = as_actor.join(as_creator, "user_id", "full_outer")
    zero_filled = {
        f.name: F.coalesce(F.col(f.name), F.lit(0).cast(_spark_type(f.type)))
        for f in USER_ENGAGEMENT_SCHEMA
        if f.name not in ("user_id", "feature_ts", "computed_at", "event_date")
    }
    per_user = per_user.withColumns(zero_filled)
    return _conform(_stamp(per_user, day, feature_timestamp(day, now), now), USER_ENGAGEMENT_SCHEMA)


def _spark_type(type_: pa.DataType) -> str:
    return "bigint" if type_ == _COUNT else "double"


# --- writes ---------------------------------------------------------------------------------------
def table_exists(spark: SparkSession, uri: str) -> bool:
    import logging

    # a missing table is an expected answer here: keep Spark Connect's client from logging it as an ERROR
    client_log = logging.getLogger("pyspark.sql.connect.logging")
    level = client_log.level
    client_log.setLevel(logging.CRITICAL)
    try:
        spark.read.format("delta").load(uri).schema  # noqa: B018 (forces analysis)
        return True
    except Exception as exc:  # pyspark raises AnalysisException (Sail) / various on clusters
        message = str(exc)
        # Sail: "No commit files found in _delta_log"; Spark + Delta: DELTA_MISSING_DELTA_TABLE / PATH_NOT_FOUND
        if any(m in message for m in ("_delta_log", "not a Delta table", "DELTA_MISSING_DELTA_TABLE", "PATH_NOT_FOUND")):
            return False
        raise
    finally:
        client_log.setLevel(level)


def ensure_table(spark: SparkSession, uri: str, schema: pa.Schema) -> None:
    """Create the empty partitioned table if missing (Sail's replaceWhere needs an existing table)."""
    if not table_exists(spark, uri):
        # Columns are created nullable: Sail enforces NOT NULL from the plan's nullability (a grouping
        # key of a join is "nullable" even when no value is), so key completeness is an asset check.
        nullable = pa.schema([f.with_nullable(True) for f in schema])
        empty = spark.createDataFrame([], from_arrow_schema(nullable))
        empty.write.format("delta").mode("append").partitionBy("event_date").save(uri)


def check_schema(spark: SparkSession, uri: str, schema: pa.Schema) -> None:
    """Raise SchemaMismatch unless the table has exactly the declared column names and types."""
    actual = to_arrow_schema(spark.read.format("delta").load(uri).schema, timezone="UTC")
    got = [(f.name, f.type) for f in actual]
    want = [(f.name, f.type) for f in schema]
    if got != want:
        raise SchemaMismatch(f"{uri}: schema {got} differs from the declared {want}")


def replace_partition(spark: SparkSession, df: DataFrame, uri: str, day: dt.date, schema: pa.Schema) -> int:
    """Replace exactly partition ``event_date = day`` with ``df``; return the rows now in that partition."""
    ensure_table(spark, uri, schema)
    # Sail 0.7.2 does not check that written rows match replaceWhere (Delta on Spark does), so keep the
    # filter explicit: a row of another day must never land in this partition's commit.
    (
        df.where(F.col("event_date") == F.lit(day))
        .write.format("delta")
        .mode("overwrite")
        .option("replaceWhere", f"event_date = DATE'{day.isoformat()}'")
        .save(uri)
    )
    check_schema(spark, uri, schema)
    return spark.read.format("delta").load(uri).where(F.col("event_date") == F.lit(day)).count()


def compute_engagement(
    spark: SparkSession, settings: Settings, day: dt.date, *, now: dt.datetime | None = None
) -> dict[str, int]:
    """Compute and write both gold engagement tables for ``day``; return rows written per table name."""
    now = now or dt.datetime.now(dt.timezone.utc)
    use_utc(spark)
    interactions_uri = settings.table_uri(INTERACTIONS.layer, INTERACTIONS.name)
    if not table_exists(spark, interactions_uri):
        raise FileNotFoundError(f"bronze interactions table not found at {interactions_uri}")
    rows = {}
    for table, build in ((POST_ENGAGEMENT, post_engagement), (USER_ENGAGEMENT, user_engagement)):
        frame = build(spark, interactions_uri, day, now=now)
        rows[table.name] = replace_partition(spark, frame, table.uri(settings), day, table.schema)
    return rows


# --- quality --------------------------------------------------------------------------------------
def partition_violations(spark: SparkSession, table: GoldTable, settings: Settings, day: dt.date) -> dict[str, int]:
    """Rows of partition ``day`` and how many break each rule: null key, negative count, 1d above 7d."""
    counts = POST_COUNT_COLUMNS if table is POST_ENGAGEMENT else USER_COUNT_COLUMNS
    part = spark.read.format("delta").load(table.uri(settings)).where(F.col("event_date") == F.lit(day))
    negative = F.lit(False)
    over_window = F.lit(False)
    for name in counts:
        one_day, seven_days = F.col(f"{name}_1d"), F.col(f"{name}_7d")
        negative = negative | (one_day < 0) | (seven_days < 0)
        over_window = over_window | (one_day > seven_days)
    row = part.agg(
        F.count(F.lit(1)).alias("rows"),
        _count(F.col(table.key).isNull()).alias("null_keys"),
        _count(F.coalesce(negative, F.lit(True))).alias("negative_counts"),
        _count(F.coalesce(over_window, F.lit(True))).alias("one_day_above_seven_days"),
    ).first()
    return {k: int(row[k] or 0) for k in ("rows", "null_keys", "negative_counts", "one_day_above_seven_days")}
