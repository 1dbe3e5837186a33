"""Impressions joined with the engagement that followed them, with PySpark through Spark Connect.

This is the feed's training-set join (its cost grows with impressions x interactions), so it runs in the
Spark plan like the engagement features. Per impression: the viewer's watch completion of the post, and
whether they liked, commented, shared it or followed its creator within :data:`LABEL_WINDOW_H` hours
after it was served; the grade itself is :func:`socialpulse.ranking.model.relevance_grade`.
"""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from assets.content.embeddings import DWELL_FULL_S
from assets.engagement.spark_features import table_exists, use_utc
from socialpulse.contracts import IMPRESSIONS, INTERACTIONS, POSTS, TS
from socialpulse.settings import Settings

#: engagement counts for an impression when it happens within this many hours after serving
LABEL_WINDOW_H = 6

LABELS_SCHEMA = pa.schema([
    ("impression_id", pa.string()), ("request_id", pa.string()), ("user_id", pa.string()), ("post_id", pa.string()),
    ("author_id", pa.string()), ("position", pa.int32()), ("source", pa.string()), ("model_version", pa.string()),
    ("served_at", TS), ("post_created_at", TS), ("completion", pa.float64()), ("liked", pa.bool_()),
    ("commented", pa.bool_()), ("shared", pa.bool_()), ("followed", pa.bool_()),
])


def impression_labels(spark: SparkSession, settings: Settings, day: dt.date) -> pa.Table:
    """The impressions served on ``day`` (one row each, first serving of a post in a request) with the
    engagement that followed them; impressions of posts not in bronze posts are left out."""
    use_utc(spark)
    uris = {c.name: settings.table_uri(c.layer, c.name) for c in (IMPRESSIONS, INTERACTIONS, POSTS)}
    if not all(table_exists(spark, u) for u in uris.values()):
        return LABELS_SCHEMA.empty_table()
    window_s = LABEL_WINDOW_H * 3600
    imps = (spark.read.format("delta").load(uris["impressions"]).where(F.col("event_date") == F.lit(day))
            .dropDuplicates(["request_id", "post_id"])
            .select("impression_id", "request_id", "user_id", "post_id", "position", "source", "model_version",
                    "served_at"))
    posts = (spark.read.format("delta").load(uris["posts"])
             .groupBy("post_id").agg(F.first("author_id").alias("author_id"), F.max("duration_s").alias("duration_s"),
                                     F.min("created_at").alias("post_created_at")))
    events = (spark.read.format("delta").load(uris["interactions"])
              .where(F.col("event_date").between(F.lit(day), F.lit(day + dt.timedelta(days=1))))
              .select("user_id", "post_id", "target_user_id", "event_type", "watch_time_s", F.col("created_at").alias("at")))
    joined = imps.join(posts, "post_id", "inner")
    served_s = F.unix_micros(F.col("served_at")) / F.lit(1e6)
    at_s = F.unix_micros(F.col("at")) / F.lit(1e6)
    in_window = (at_s >= served_s) & (at_s <= served_s + F.lit(window_s))
    on_post = events.where(F.col("post_id").isNotNull()).alias("e")
    post_events = (joined.alias("i").join(on_post, (F.col("i.user_id") == F.col("e.user_id"))
                                          & (F.col("i.post_id") == F.col("e.post_id")), "inner")
                   .where(in_window)
                   .groupBy("i.impression_id")
                   .agg(F.max(F.when(F.col("e.event_type") == "view", F.col("e.watch_time_s"))).alias("watch_s"),
                        F.max((F.col("e.event_type") == "like").cast("int")).alias("liked"),
                        F.max((F.col("e.event_type") == "comment").cast("int")).alias("commented"),
                        F.max((F.col("e.event_type") == "share").cast("int")).alias("shared")))
    follows = events.where(F.col("event_type") == "follow").alias("f")
    followed = (joined.alias("j").join(follows, (F.col("j.user_id") == F.col("f.user_id"))
                                       & (F.col("j.author_id") == F.col("f.target_user_id")), "inner")
                .where((F.unix_micros(F.col("f.at")) / F.lit(1e6) >= F.unix_micros(F.col("j.served_at")) / F.lit(1e6))
                       & (F.unix_micros(F.col("f.at")) / F.lit(1e6)
                          <= F.unix_micros(F.col("j.served_at")) / F.lit(1e6) + F.lit(window_s)))
                .select(F.col("j.impression_id").alias("impression_id")).distinct()
                .withColumn("followed", F.lit(1)))
    completion = (F.when(F.col("watch_s").isNull(), F.lit(0.0))
                  .when(F.col("duration_s") > 0, F.least(F.col("watch_s") / F.col("duration_s"), F.lit(1.0)))
                  .otherwise(F.least(F.col("watch_s") / F.lit(DWELL_FULL_S), F.lit(1.0))))
    out = (joined.join(post_events, "impression_id", "left").join(followed, "impression_id", "left")
           .select("impression_id", "request_id", "user_id", "post_id", "author_id", "position", "source",
                   "model_version", "served_at", "post_created_at", completion.alias("completion"),
                   (F.coalesce(F.col("liked"), F.lit(0)) > 0).alias("liked"),
                   (F.coalesce(F.col("commented"), F.lit(0)) > 0).alias("commented"),
                   (F.coalesce(F.col("shared"), F.lit(0)) > 0).alias("shared"),
                   (F.coalesce(F.col("followed"), F.lit(0)) > 0).alias("followed")))
    table = out.toArrow()
    if table.num_rows == 0:
        return LABELS_SCHEMA.empty_table()
    return table.select(LABELS_SCHEMA.names).cast(LABELS_SCHEMA).sort_by([("request_id", "ascending"), ("position", "ascending")])
