"""Engagement weights per (user, post) for user interest vectors, with PySpark through Spark Connect.

This is the part whose cost grows with interaction volume (a 28-day window of every view, like, share
and comment), so it runs in the Spark plan like the engagement features; the per-user vector sums that
follow are a sparse matrix product in :func:`assets.content.embeddings.interest_vectors`.
"""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
from pyspark.sql import Column, SparkSession
from pyspark.sql import functions as F

from assets.content.embeddings import DWELL_FULL_S, EVENT_WEIGHTS, HALF_LIFE_DAYS, INTEREST_WINDOW_DAYS
from assets.engagement.spark_features import end_of_day, table_exists, use_utc
from socialpulse.contracts import INTERACTIONS, POSTS
from socialpulse.settings import Settings


def event_weight(event_type: Column, watch_time_s: Column, duration_s: Column) -> Column:
    """:data:`EVENT_WEIGHTS` by type; a view counts by its completion: watch time over the video's
    duration (at most 1), or over :data:`DWELL_FULL_S` for a post without a duration, 1/2 when unknown."""
    completion = (
        F.when(watch_time_s.isNull(), F.lit(0.5))
        .when(duration_s > 0, F.least(watch_time_s / duration_s, F.lit(1.0)))
        .otherwise(F.least(watch_time_s / F.lit(DWELL_FULL_S), F.lit(1.0)))
    )
    weight = F.lit(0.0)
    for name, w in EVENT_WEIGHTS.items():
        factor = completion if name == "view" else F.lit(1.0)
        weight = F.when(event_type == name, F.lit(w) * F.greatest(factor, F.lit(0.0))).otherwise(weight)
    return weight


def engagement_pairs(spark: SparkSession, settings: Settings, day: dt.date, *,
                     window_days: int = INTEREST_WINDOW_DAYS, half_life_days: float = HALF_LIFE_DAYS) -> pa.Table:
    """``user_id, post_id, weight``: each pair's decayed, summed event weights over the window ending with
    ``day`` (an event t days before the end of the day counts ``0.5 ** (t / half_life)``)."""
    use_utc(spark)
    interactions_uri = settings.table_uri(INTERACTIONS.layer, INTERACTIONS.name)
    posts_uri = settings.table_uri(POSTS.layer, POSTS.name)
    empty = pa.table({"user_id": pa.array([], pa.string()), "post_id": pa.array([], pa.string()),
                      "weight": pa.array([], pa.float64())})
    if not table_exists(spark, interactions_uri):
        return empty
    start = day - dt.timedelta(days=window_days - 1)
    events = (
        spark.read.format("delta").load(interactions_uri)
        .where(F.col("event_date").between(F.lit(start), F.lit(day)))
        .where(F.col("event_type").isin(list(EVENT_WEIGHTS)) & F.col("post_id").isNotNull())
        .select("user_id", "post_id", "event_type", "watch_time_s", "created_at")
    )
    if table_exists(spark, posts_uri):
        durations = (spark.read.format("delta").load(posts_uri).groupBy("post_id")
                     .agg(F.max("duration_s").alias("duration_s")))
        events = events.join(durations, "post_id", "left")
    else:
        events = events.withColumn("duration_s", F.lit(None).cast("float"))
    end_s = end_of_day(day).timestamp()
    age_days = (F.lit(end_s) - F.unix_micros(F.col("created_at")) / F.lit(1e6)) / F.lit(86400.0)
    decayed = event_weight(F.col("event_type"), F.col("watch_time_s"), F.col("duration_s")) * F.pow(
        F.lit(0.5), F.greatest(age_days, F.lit(0.0)) / F.lit(half_life_days))
    pairs = (events.groupBy("user_id", "post_id").agg(F.sum(decayed).alias("weight"))
             .where(F.col("weight") > 0))
    table = pairs.toArrow()
    return table.select(["user_id", "post_id", "weight"]).cast(empty.schema) if table.num_rows else empty
