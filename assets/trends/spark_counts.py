"""Hourly hashtag and keyword counts for one UTC day, with PySpark through Spark Connect.

Per (term, kind, UTC hour) of day D: posts carrying the term, distinct known authors, posts by unknown
authors (their sum, ``effective``, is what trend scores read: one author counts once per tag and hour, so a
spammer repeating a tag cannot make it trend), posts moderation removed (``removed``: counted, but never
in ``effective``, so removed spam or hate cannot make a tag trend), and the engagement in that hour
(views, likes, shares, comments stamped in the hour) on the posts of the last
:data:`ENGAGEMENT_POST_DAYS` days that carry the term. ``kind`` is ``hashtag`` (the post's tags) or
``keyword`` (caption words, the rule of :func:`assets.trends.logic.keywords`), or ``all`` (term ``*``: every
post of the hour, tagged or not, what a tag's share of the hour is measured against). The table replaces exactly
its day partition, so a re-run or a backfill never duplicates.

Tags and keywords come from the pure functions themselves (:func:`socialpulse.tags.normalise_tag`,
:func:`assets.trends.logic.keywords`), run inside the Spark plan as pandas UDFs: Spark SQL has no Unicode
normalisation or case folding, and a second copy of the rule in SQL would drift from the Python one. Tags are
normalised once per distinct raw tag, not per post. The Spark workers need this project installed (the UDFs
are imported there by reference), as the embedded Sail server has.
"""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pyarrow as pa
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import Window
from pyspark.sql import functions as F
from pyspark.sql.types import ArrayType, StringType

from assets.engagement.spark_features import _conform, replace_partition, table_exists, use_utc
from assets.trends.logic import ANONYMOUS_AUTHORS, keywords
from socialpulse.contracts import INTERACTIONS, POSTS, TS
from socialpulse.settings import Settings
from socialpulse.tags import normalise_tag

TABLE = "term_hourly"
#: the term of the per-hour total row (kind ``all``)
ALL_POSTS = "*"
#: engagement in day D's hours is attributed to the terms of posts created in D-6 .. D
ENGAGEMENT_POST_DAYS = 7

TERM_HOURLY_SCHEMA = pa.schema([
    pa.field("term", pa.string(), nullable=False),
    pa.field("kind", pa.string(), nullable=False),
    pa.field("hour", TS, nullable=False),
    pa.field("posts", pa.int64()),
    pa.field("authors", pa.int64()),
    pa.field("anonymous", pa.int64()),
    pa.field("removed", pa.int64()),
    pa.field("effective", pa.int64()),
    pa.field("views", pa.int64()),
    pa.field("likes", pa.int64()),
    pa.field("shares", pa.int64()),
    pa.field("comments", pa.int64()),
    pa.field("computed_at", TS, nullable=False),
    pa.field("event_date", pa.date32(), nullable=False),
])


def table_uri(settings: Settings) -> str:
    return settings.table_uri("silver", TABLE)


def _latest_posts(spark: SparkSession, posts_uri: str, first: dt.date, last: dt.date) -> DataFrame:
    """The posts of days ``first .. last``, one row per post (the latest version of an edited post)."""
    posts = spark.read.format("delta").load(posts_uri).where(F.col("event_date").between(F.lit(first), F.lit(last)))
    newest = Window.partitionBy("post_id").orderBy(F.col("created_at").desc())
    return posts.withColumn("_rank", F.row_number().over(newest)).where(F.col("_rank") == 1).drop("_rank")


def _canonical_tags(raw: pd.Series) -> pd.Series:
    """:func:`socialpulse.tags.normalise_tag` over a batch of raw tags (``""``: not a tag)."""
    return raw.map(normalise_tag)


def _caption_keywords(captions: pd.Series) -> pd.Series:
    """:func:`assets.trends.logic.keywords` over a batch of captions."""
    return captions.map(keywords)


def post_terms(posts: DataFrame) -> DataFrame:
    """``post_id, author_id, created_at, term, kind``: each post's distinct hashtags and caption keywords."""
    # made here, not at import: pyspark builds a Spark Connect UDF only once a remote session exists
    canonical_tag = F.pandas_udf(_canonical_tags, StringType())
    caption_keywords = F.pandas_udf(_caption_keywords, ArrayType(StringType()))
    raw = posts.select("post_id", "author_id", "created_at", F.explode("hashtags").alias("raw"))
    canonical = raw.select("raw").distinct().select("raw", canonical_tag("raw").alias("term"))
    tags = (raw.join(canonical, "raw")
            .select("post_id", "author_id", "created_at", "term", F.lit("hashtag").alias("kind")))
    words = (posts.where(F.col("caption").isNotNull())
             .select("post_id", "author_id", "created_at", F.explode(caption_keywords("caption")).alias("term"))
             .withColumn("kind", F.lit("keyword")))
    every = posts.select("post_id", "author_id", "created_at", F.lit(ALL_POSTS).alias("term"), F.lit("all").alias("kind"))
    return (tags.unionByName(words).where(F.length("term") > 0).unionByName(every)
            .dropDuplicates(["post_id", "term", "kind"]))


def removed_posts(spark: SparkSession, settings: Settings, first: dt.date, last: dt.date) -> DataFrame | None:
    """``post_id`` of the posts of days ``first .. last`` that moderation removed (None before any decision)."""
    from assets.moderation.tables import MODERATION_DECISIONS

    uri = settings.table_uri(MODERATION_DECISIONS.layer, MODERATION_DECISIONS.name)
    if not table_exists(spark, uri):
        return None
    return (spark.read.format("delta").load(uri).where(F.col("event_date").between(F.lit(first), F.lit(last)))
            .where(F.col("action") == "remove").select("post_id").distinct())


def hourly_terms(spark: SparkSession, settings: Settings, day: dt.date, *, now: dt.datetime | None = None) -> DataFrame:
    now = now or dt.datetime.now(dt.timezone.utc)
    use_utc(spark)
    posts_uri = settings.table_uri(POSTS.layer, POSTS.name)
    first = day - dt.timedelta(days=ENGAGEMENT_POST_DAYS - 1)
    recent = post_terms(_latest_posts(spark, posts_uri, first, day))
    terms = recent.where(F.to_date("created_at") == F.lit(day))
    removed = removed_posts(spark, settings, day, day)
    if removed is None:
        terms = terms.withColumn("removed", F.lit(False))
    else:
        terms = terms.join(removed.withColumn("removed", F.lit(True)), "post_id", "left").fillna(False, subset=["removed"])
    anonymous = F.lower(F.coalesce(F.col("author_id"), F.lit(""))).isin(list(ANONYMOUS_AUTHORS))
    terms = terms.withColumn("hour", F.date_trunc("hour", "created_at")).withColumn("anon", anonymous)
    kept = terms.where(~F.col("removed"))
    authors = (kept.where(~F.col("anon")).groupBy("term", "kind", "hour", "author_id").agg(F.lit(1).alias("one"))
               .groupBy("term", "kind", "hour").agg(F.count(F.lit(1)).cast("bigint").alias("authors")))
    counts = (terms.groupBy("term", "kind", "hour")
              .agg(F.count(F.lit(1)).cast("bigint").alias("posts"),
                   F.sum((F.col("anon") & ~F.col("removed")).cast("int")).cast("bigint").alias("anonymous"),
                   F.sum(F.col("removed").cast("int")).cast("bigint").alias("removed"))
              .join(authors, ["term", "kind", "hour"], "left").fillna(0, subset=["authors"]))
    interactions_uri = settings.table_uri(INTERACTIONS.layer, INTERACTIONS.name)
    if table_exists(spark, interactions_uri):
        events = (spark.read.format("delta").load(interactions_uri).where(F.col("event_date") == F.lit(day))
                  .where(F.col("event_type").isin("view", "like", "share", "comment"))
                  .select("post_id", "event_type", F.date_trunc("hour", "created_at").alias("hour")))
        engaged = (events.join(recent.where(F.col("kind") != "all").select("post_id", "term", "kind").distinct(), "post_id")
                   .groupBy("term", "kind", "hour")
                   .agg(*[F.sum((F.col("event_type") == e).cast("int")).cast("bigint").alias(f"{e}s")
                          for e in ("view", "like", "share", "comment")]))
        counts = counts.join(engaged, ["term", "kind", "hour"], "full_outer")
    else:
        counts = counts.withColumns({f"{e}s": F.lit(0).cast("bigint") for e in ("view", "like", "share", "comment")})
    counts = counts.fillna(0, subset=["posts", "authors", "anonymous", "removed", "views", "likes", "shares", "comments"])
    counts = counts.withColumns({
        "effective": F.col("authors") + F.col("anonymous"),
        "computed_at": F.lit(now).cast("timestamp"),
        "event_date": F.lit(day).cast("date"),
    })
    return _conform(counts, TERM_HOURLY_SCHEMA)


def compute_term_hourly(spark: SparkSession, settings: Settings, day: dt.date) -> int:
    """Write day ``day`` of the hourly term counts (replacing its partition); return its rows."""
    return replace_partition(spark, hourly_terms(spark, settings, day), table_uri(settings), day, TERM_HOURLY_SCHEMA)
