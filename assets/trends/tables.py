"""Trends tables: hourly term counts (Delta silver, written by Spark), hourly hashtag trend scores, trending
topics and the hashtag co-occurrence statistics (Delta gold)."""

from __future__ import annotations

import pyarrow as pa

from assets.trends.spark_counts import TABLE as TERM_HOURLY_TABLE
from assets.trends.spark_counts import TERM_HOURLY_SCHEMA
from socialpulse.contracts import TS, TableContract


def _f(name: str, type_: pa.DataType, nullable: bool = False) -> pa.Field:
    return pa.field(name, type_, nullable=nullable)


TERM_HOURLY = TableContract(
    name=TERM_HOURLY_TABLE,
    layer="silver",
    key=("term", "kind", "hour"),
    partition_by=("event_date",),
    allowed={"kind": ("hashtag", "keyword", "all")},
    description="Per hashtag or caption keyword (and kind 'all': every post) and UTC hour: posts, distinct authors, anonymous and removed "
    "posts, the effective count (authors + anonymous, removed left out) and the hour's engagement on the "
    "last 7 days' posts carrying it (Spark).",
    schema=TERM_HOURLY_SCHEMA,
)

TREND_SCORES = TableContract(
    name="trend_scores",
    layer="gold",
    key=("tag", "hour"),
    partition_by=("event_date",),
    description="Per hashtag and UTC hour of the day: the effective count, the tag's own baseline (mean of "
    "its previous 24 hours), the z-score (count - baseline) / sqrt(baseline + floor) and whether it trends.",
    schema=pa.schema([
        _f("tag", pa.string()),
        _f("hour", TS),
        _f("effective", pa.int64()),
        _f("posts", pa.int64()),
        _f("removed", pa.int64()),
        _f("baseline", pa.float64()),
        _f("score", pa.float64()),
        _f("flagged", pa.bool_()),
        _f("views", pa.int64()),
        _f("likes", pa.int64()),
        _f("shares", pa.int64()),
        _f("comments", pa.int64()),
        _f("computed_at", TS),
        _f("event_date", pa.date32()),
    ]),
)

TRENDING_TOPICS = TableContract(
    name="trending_topics",
    layer="gold",
    key=("topic_id",),
    partition_by=("event_date",),
    description="Topics with a flag on the day: co-trending hashtags grouped by co-occurrence and post "
    "vectors, with a readable label (distinctive keywords and top tags), keywords and a headline post.",
    schema=pa.schema([
        _f("topic_id", pa.string()),
        _f("label", pa.string()),
        _f("headline", pa.string(), True),
        _f("tags", pa.list_(pa.string())),
        _f("keywords", pa.list_(pa.string())),
        _f("first_flag_hour", TS),
        _f("last_flag_hour", TS),
        _f("peak_score", pa.float64()),
        _f("flags", pa.int64()),
        _f("posts", pa.int64()),
        _f("computed_at", TS),
        _f("event_date", pa.date32()),
    ]),
)

HASHTAG_COOCCURRENCE = TableContract(
    name="hashtag_cooccurrence",
    layer="gold",
    key=("tag", "other"),
    partition_by=("event_date",),
    description="As of the end of the day, over the last 28 days of posts not removed by moderation: per "
    "hashtag its post count (other = '') and its most frequent partner tags with the posts carrying both.",
    schema=pa.schema([
        _f("tag", pa.string()),
        _f("other", pa.string()),
        _f("posts", pa.int64()),
        _f("computed_at", TS),
        _f("event_date", pa.date32()),
    ]),
)
