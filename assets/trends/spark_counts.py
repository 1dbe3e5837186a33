"""Hourly hashtag and keyword counts for one UTC day, with PySpark through Spark Connect.

Per (term, kind, UTC hour) of day D: posts carrying the term, distinct known authors, posts by unknown
authors (their sum, ``effective``, is what trend scores read: one author counts once per tag and hour, so a
spammer repeating a tag cannot make it trend), and the engagement on those posts in that hour (views,
likes, shares, comments of events stamped in the hour). ``kind`` is ``hashtag`` (the post's tags) or
``keyword`` (caption words of 3+ letters, less stop words; topic labels read them). The table replaces
exactly its day partition, so a re-run or a backfill never duplicates.
"""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import Window
from pyspark.sql import functions as F

from assets.engagement.spark_features import _conform, replace_partition, table_exists, use_utc
from assets.trends.logic import ANONYMOUS_AUTHORS
from socialpulse.contracts import INTERACTIONS, POSTS, TS
from socialpulse.settings import Settings

TABLE = "term_hourly"

#: short English stop words (3+ letters; shorter words never become keywords)
STOP_WORDS = (
    "the and for are but not you all any can had her was one our out day get has him his how man new now old see "
    "two way who boy did its let put say she too use that with have this will your from they know want been good "
    "much some time very when come here just like long make many more only over such take than them well were what "
    "about after again could every first great other right their there these thing think those three under where "
    "which while would being going really still today into back then also just because should through https http "
    "amp rt via"
).split()

TERM_HOURLY_SCHEMA = pa.schema([
    pa.field("term", pa.string(), nullable=False),
    pa.field("kind", pa.string(), nullable=False),
    pa.field("hour", TS, nullable=False),
    pa.field("posts", pa.int64()),
    pa.field("authors", pa.int64()),
    pa.field("anonymous", pa.int64()),
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


def _latest_posts(spark: SparkSession, posts_uri: str, day: dt.date) -> DataFrame:
    """The day's posts, one row per post (the latest version of an edited post)."""
    posts = spark.read.format("delta").load(posts_uri).where(F.col("event_date") == F.lit(day))
    newest = Window.partitionBy("post_id").orderBy(F.col("created_at").desc())
    return posts.withColumn("_rank", F.row_number().over(newest)).where(F.col("_rank") == 1).drop("_rank")


def post_terms(posts: DataFrame) -> DataFrame:
    """``post_id, author_id, created_at, term, kind``: each post's distinct hashtags and caption keywords."""
    tags = (posts.select("post_id", "author_id", "created_at", F.explode("hashtags").alias("raw"))
            .select("post_id", "author_id", "created_at",
                    F.lower(F.trim(F.regexp_replace("raw", "^#+", ""))).alias("term"), F.lit("hashtag").alias("kind")))
    words = (posts.where(F.col("caption").isNotNull())
             .select("post_id", "author_id", "created_at",
                     F.explode(F.split(F.lower(F.regexp_replace("caption", r"(#\w+)|[^\p{L}\p{N}]+", " ")), " ")).alias("term"))
             .where((F.length("term") >= 3) & ~F.col("term").isin(STOP_WORDS) & ~F.col("term").rlike(r"^\d+$"))
             .withColumn("kind", F.lit("keyword")))
    return tags.unionByName(words).where(F.length("term") > 0).dropDuplicates(["post_id", "term", "kind"])


def hourly_terms(spark: SparkSession, settings: Settings, day: dt.date, *, now: dt.datetime | None = None) -> DataFrame:
    now = now or dt.datetime.now(dt.timezone.utc)
    use_utc(spark)
    posts_uri = settings.table_uri(POSTS.layer, POSTS.name)
    terms = post_terms(_latest_posts(spark, posts_uri, day))
    anonymous = F.lower(F.coalesce(F.col("author_id"), F.lit(""))).isin(list(ANONYMOUS_AUTHORS))
    terms = terms.withColumn("hour", F.date_trunc("hour", "created_at")).withColumn("anon", anonymous)
    authors = (terms.where(~F.col("anon")).groupBy("term", "kind", "hour", "author_id").agg(F.lit(1).alias("one"))
               .groupBy("term", "kind", "hour").agg(F.count(F.lit(1)).cast("bigint").alias("authors")))
    counts = (terms.groupBy("term", "kind", "hour")
              .agg(F.count(F.lit(1)).cast("bigint").alias("posts"),
                   F.sum(F.col("anon").cast("int")).cast("bigint").alias("anonymous"))
              .join(authors, ["term", "kind", "hour"], "left").fillna(0, subset=["authors"]))
    interactions_uri = settings.table_uri(INTERACTIONS.layer, INTERACTIONS.name)
    if table_exists(spark, interactions_uri):
        events = (spark.read.format("delta").load(interactions_uri).where(F.col("event_date") == F.lit(day))
                  .where(F.col("event_type").isin("view", "like", "share", "comment"))
                  .select("post_id", "event_type", F.date_trunc("hour", "created_at").alias("hour")))
        engaged = (events.join(terms.select("post_id", "term", "kind").distinct(), "post_id")
                   .groupBy("term", "kind", "hour")
                   .agg(*[F.sum((F.col("event_type") == e).cast("int")).cast("bigint").alias(f"{e}s")
                          for e in ("view", "like", "share", "comment")]))
        counts = counts.join(engaged, ["term", "kind", "hour"], "full_outer")
    else:
        counts = counts.withColumns({f"{e}s": F.lit(0).cast("bigint") for e in ("view", "like", "share", "comment")})
    counts = counts.fillna(0, subset=["posts", "authors", "anonymous", "views", "likes", "shares", "comments"])
    counts = counts.withColumns({
        "effective": F.col("authors") + F.col("anonymous"),
        "computed_at": F.lit(now).cast("timestamp"),
        "event_date": F.lit(day).cast("date"),
    })
    return _conform(counts, TERM_HOURLY_SCHEMA)


def compute_term_hourly(spark: SparkSession, settings: Settings, day: dt.date) -> int:
    """Write day ``day`` of the hourly term counts (replacing its partition); return its rows."""
    return replace_partition(spark, hourly_terms(spark, settings, day), table_uri(settings), day, TERM_HOURLY_SCHEMA)
