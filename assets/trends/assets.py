"""Dagster wrappers: hourly term counts (Spark) → hashtag trend scores → trending topics, and hashtag
co-occurrence, each published to Postgres ``trends`` for the API. The logic lives in
:mod:`assets.trends.spark_counts`, :mod:`assets.trends.build` and :mod:`assets.trends.logic`."""

import datetime as dt

import dagster as dg
import pyarrow as pa
import pyarrow.compute as pc

from assets.common import (
    blocking_result,
    bronze_key,
    daily_backfill,
    daily_partitions,
    day_table,
    lane,
    partition_day,
)
from assets.content.assets import EMBEDDINGS_KEY
from assets.moderation.assets import DECISIONS_KEY
from orchestration.resources import PostgresResource, SettingsResource, SparkResource
from socialpulse import lake
from socialpulse.settings import Settings

GROUP = "trends"
OWNERS = ["team:data"]

TERM_HOURLY_KEY = dg.AssetKey(["lake", "silver", "term_hourly"])
SCORES_KEY = dg.AssetKey(["lake", "gold", "trend_scores"])
TOPICS_KEY = dg.AssetKey(["lake", "gold", "trending_topics"])
COOCCURRENCE_KEY = dg.AssetKey(["lake", "gold", "hashtag_cooccurrence"])
PG_SCORES_KEY = dg.AssetKey(["postgres", "trends", "hashtag_scores"])
PG_TOPICS_KEY = dg.AssetKey(["postgres", "trends", "topics"])
PG_COOCCURRENCE_KEY = dg.AssetKey(["postgres", "trends", "hashtag_cooccurrence"])


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _days(contract, settings: Settings, first: dt.date, last: dt.date, columns=None) -> pa.Table:
    return lake.read(contract, settings=settings, columns=columns,
                     filters=[("event_date", ">=", first), ("event_date", "<=", last)])


def removed_post_ids(settings: Settings, first: dt.date, last: dt.date) -> set[str]:
    from assets.moderation.tables import MODERATION_DECISIONS

    t = lake.read(MODERATION_DECISIONS, settings=settings, columns=["post_id"],
                  filters=[("event_date", ">=", first), ("event_date", "<=", last), ("action", "=", "remove")])
    return set(t["post_id"].to_pylist())


def servable_posts(settings: Settings, first: dt.date, last: dt.date, columns: list[str]) -> list[dict]:
    """The latest version of each post of days ``first .. last``, less those moderation removed."""
    from assets.warehouse.export import latest_per_key
    from socialpulse.contracts import POSTS

    posts = _days(POSTS, settings, first, last, columns=sorted({"post_id", "created_at", *columns}))
    if posts.num_rows == 0:
        return []
    removed = removed_post_ids(settings, first, last)
    return [r for r in latest_per_key(posts, ("post_id",)).to_pylist() if r["post_id"] not in removed]


@dg.asset(
    key=TERM_HOURLY_KEY,
    deps=[bronze_key("posts"), bronze_key("interactions"), DECISIONS_KEY],
    description="Per hashtag / caption keyword and UTC hour of the day: posts, distinct authors, anonymous and "
    "removed posts, effective count and engagement (PySpark over Spark Connect; replaces its day).",
    partitions_def=daily_partitions,
    backfill_policy=daily_backfill,
    group_name=GROUP,
    kinds={"spark", "delta"},
    owners=OWNERS,
)
def term_hourly(context: dg.AssetExecutionContext, settings: SettingsResource,
                spark: SparkResource) -> dg.MaterializeResult:
    from assets.trends.spark_counts import compute_term_hourly
    from assets.trends.tables import TERM_HOURLY
    from socialpulse.contracts import POSTS

    s = settings.get()
    day = partition_day(context)
    if lake.open_table(lake.table_uri(POSTS, s)) is None:  # a fresh platform: nothing posted yet
        lake.replace_partitions(TERM_HOURLY, TERM_HOURLY.schema.empty_table(), [day], settings=s)
        return dg.MaterializeResult(metadata={"rows": 0})
    n = compute_term_hourly(spark.session(), s, day)
    return dg.MaterializeResult(metadata={"rows": n})


@dg.asset(
    key=SCORES_KEY,
    deps=[TERM_HOURLY_KEY],
    description="Per hashtag and UTC hour: velocity z-score against the tag's own 24-hour baseline (floor for "
    "new tags; one author counts once, removed posts never), and whether it trends.",
    partitions_def=daily_partitions,
    backfill_policy=daily_backfill,
    group_name=GROUP,
    kinds={"delta", "python"},
    owners=OWNERS,
)
def trend_scores(context: dg.AssetExecutionContext, settings: SettingsResource) -> dg.MaterializeResult:
    from assets.trends.build import score_rows
    from assets.trends.tables import TERM_HOURLY, TREND_SCORES

    s = settings.get()
    day = partition_day(context)
    terms = _days(TERM_HOURLY, s, day - dt.timedelta(days=1), day)
    rows = score_rows(terms.to_pylist(), day, now=_now())
    lake.replace_partitions(TREND_SCORES, rows or TREND_SCORES.schema.empty_table(), [day], settings=s)
    flagged = [r for r in rows if r["flagged"]]
    top = sorted(flagged, key=lambda r: -r["score"])[:5]
    return dg.MaterializeResult(metadata={
        "rows": len(rows), "flagged": len(flagged), "tags_flagged": len({r["tag"] for r in flagged}),
        "top": ", ".join(f"#{r['tag']} {r['hour']:%H}h z={r['score']:.1f}" for r in top) or "none",
    })


@dg.asset(
    key=TOPICS_KEY,
    deps=[SCORES_KEY, EMBEDDINGS_KEY, DECISIONS_KEY],
    description="Trending topics with a flag on the day: co-trending hashtags grouped by co-occurrence and by "
    "their posts' vectors, labelled with distinctive keywords, top tags and a headline post.",
    partitions_def=daily_partitions,
    backfill_policy=daily_backfill,
    group_name=GROUP,
    kinds={"delta", "python"},
    owners=OWNERS,
)
def trending_topics(context: dg.AssetExecutionContext, settings: SettingsResource) -> dg.MaterializeResult:
    from collections import Counter

    from assets.content.embeddings import to_matrix
    from assets.content.tables import POST_EMBEDDINGS
    from assets.trends.build import detect_topics, flags_from_rows, topic_rows
    from assets.trends.tables import TREND_SCORES, TRENDING_TOPICS

    s = settings.get()
    day = partition_day(context)
    first = day - dt.timedelta(days=1)
    flags = flags_from_rows(_days(TREND_SCORES, s, first, day).to_pylist())
    posts = servable_posts(s, first, day, ["hashtags", "caption"])
    emb = _days(POST_EMBEDDINGS, s, first, day, columns=["post_id", "encoder_version", "embedding"])
    vectors = {}
    if emb.num_rows:  # one vector space: the newest encoder version present
        version, _ = Counter(emb["encoder_version"].to_pylist()).most_common(1)[0]
        emb = emb.filter(pc.equal(emb["encoder_version"], version))
        vectors = dict(zip(emb["post_id"].to_pylist(), to_matrix(emb["embedding"])))
    topics = detect_topics(posts, flags, day, vectors_of=lambda ps: [vectors.get(p["post_id"]) for p in ps])
    rows = topic_rows(topics, day, now=_now())
    lake.replace_partitions(TRENDING_TOPICS, rows or TRENDING_TOPICS.schema.empty_table(), [day], settings=s)
    context.log.info(f"{day}: {len(rows)} topics from {len(flags)} flags; "
                     + "; ".join(r["label"] for r in sorted(rows, key=lambda r: -r["peak_score"])[:5]))
    return dg.MaterializeResult(metadata={
        "topics": len(rows), "flags": len(flags), "posts": len(posts), "posts_with_vectors": len(vectors),
        "labels": " | ".join(r["label"] for r in sorted(rows, key=lambda r: -r["peak_score"])[:5]) or "none",
    })


@dg.asset(
    key=COOCCURRENCE_KEY,
    deps=[bronze_key("posts"), DECISIONS_KEY],
    description="As of the day's end, over the last 28 days of posts not removed by moderation: posts per "
    "hashtag and each hashtag's 50 most frequent partners (what hashtag suggestions read).",
    partitions_def=daily_partitions,
    backfill_policy=daily_backfill,
    group_name=GROUP,
    kinds={"delta", "python"},
    owners=OWNERS,
)
def hashtag_cooccurrence(context: dg.AssetExecutionContext, settings: SettingsResource) -> dg.MaterializeResult:
    from assets.trends.build import COOCCURRENCE_DAYS, cooccurrence_rows
    from assets.trends.tables import HASHTAG_COOCCURRENCE

    s = settings.get()
    day = partition_day(context)
    posts = servable_posts(s, day - dt.timedelta(days=COOCCURRENCE_DAYS - 1), day, ["hashtags"])
    rows = cooccurrence_rows((p["hashtags"] for p in posts), day, now=_now())
    lake.replace_partitions(HASHTAG_COOCCURRENCE, rows or HASHTAG_COOCCURRENCE.schema.empty_table(), [day], settings=s)
    tags = sum(1 for r in rows if r["other"] == "")
    return dg.MaterializeResult(metadata={"posts": len(posts), "tags": tags, "pairs": len(rows) - tags})


@dg.asset(
    key=PG_SCORES_KEY,
    deps=[SCORES_KEY],
    description="The day's hourly hashtag trend scores in Postgres trends.hashtag_scores (replaces the day).",
    partitions_def=daily_partitions,
    backfill_policy=daily_backfill,
    group_name=GROUP,
    kinds={"postgres"},
    owners=OWNERS,
)
def pg_hashtag_scores(context: dg.AssetExecutionContext, settings: SettingsResource,
                      postgres: PostgresResource) -> dg.MaterializeResult:
    from assets.trends.tables import TREND_SCORES
    from socialpulse import trends_store

    day = partition_day(context)
    rows = day_table(TREND_SCORES, settings.get(), day).to_pylist()
    with postgres.connect() as conn:
        n = trends_store.publish_scores(conn, day, rows)
    return dg.MaterializeResult(metadata={"rows": n})


@dg.asset(
    key=PG_TOPICS_KEY,
    deps=[TOPICS_KEY],
    description="The day's trending topics in Postgres trends.topics (upserted by topic id).",
    partitions_def=daily_partitions,
    backfill_policy=daily_backfill,
    group_name=GROUP,
    kinds={"postgres"},
    owners=OWNERS,
)
def pg_topics(context: dg.AssetExecutionContext, settings: SettingsResource,
              postgres: PostgresResource) -> dg.MaterializeResult:
    from assets.trends.tables import TRENDING_TOPICS
    from socialpulse import trends_store

    day = partition_day(context)
    rows = day_table(TRENDING_TOPICS, settings.get(), day).to_pylist()
    with postgres.connect() as conn:
        counts = trends_store.publish_topics(conn, day, rows)
    return dg.MaterializeResult(metadata=counts)


@dg.asset(
    key=PG_COOCCURRENCE_KEY,
    deps=[COOCCURRENCE_KEY],
    description="Hashtag counts and partners in Postgres trends.hashtag_counts / hashtag_pairs (a backfill of "
    "an older day never replaces newer statistics).",
    partitions_def=daily_partitions,
    backfill_policy=daily_backfill,
    group_name=GROUP,
    kinds={"postgres"},
    owners=OWNERS,
)
def pg_hashtag_cooccurrence(context: dg.AssetExecutionContext, settings: SettingsResource,
                            postgres: PostgresResource) -> dg.MaterializeResult:
    from assets.trends.build import split_cooccurrence
    from assets.trends.tables import HASHTAG_COOCCURRENCE
    from socialpulse import trends_store

    day = partition_day(context)
    counts, pairs = split_cooccurrence(day_table(HASHTAG_COOCCURRENCE, settings.get(), day).to_pylist())
    with postgres.connect() as conn:
        out = trends_store.publish_cooccurrence(conn, day, counts, pairs)
    return dg.MaterializeResult(metadata=out)


# --- blocking checks ------------------------------------------------------------------------------------


@dg.asset_check(asset=SCORES_KEY, blocking=True, partitions_def=daily_partitions,
                description="Scores only for hours of the day, one per tag and hour, no flag below the rules, "
                "removed posts never in the effective count.")
def scores_valid(context: dg.AssetCheckExecutionContext, settings: SettingsResource) -> dg.AssetCheckResult:
    from assets.trends.build import trend_violations
    from assets.trends.tables import TREND_SCORES

    day = partition_day(context)
    rows = day_table(TREND_SCORES, settings.get(), day).to_pylist()
    return blocking_result(trend_violations(rows, day), context, rows=len(rows))


@dg.asset_check(asset=TOPICS_KEY, blocking=True, partitions_def=daily_partitions,
                description="Every topic has a label, at least one tag, a flag on the day, and no tag in two "
                "topics of the same hour.")
def topics_valid(context: dg.AssetCheckExecutionContext, settings: SettingsResource) -> dg.AssetCheckResult:
    from assets.trends.tables import TRENDING_TOPICS

    day = partition_day(context)
    rows = day_table(TRENDING_TOPICS, settings.get(), day).to_pylist()
    start = dt.datetime.combine(day, dt.time(), dt.timezone.utc)
    return blocking_result({
        "unlabelled": sum(1 for r in rows if not r["label"].strip()),
        "no_tags": sum(1 for r in rows if not r["tags"]),
        "no_flag_on_day": sum(1 for r in rows if r["last_flag_hour"] < start),
        "duplicate_ids": len(rows) - len({r["topic_id"] for r in rows}),
    }, context, topics=len(rows))


CHECKS = [scores_valid, topics_valid]
DAILY_ASSETS = [term_hourly, trend_scores, trending_topics, hashtag_cooccurrence, pg_hashtag_scores, pg_topics,
                pg_hashtag_cooccurrence]

HOURLY_ASSETS = [term_hourly, trend_scores, trending_topics, pg_hashtag_scores, pg_topics]
STATS_ASSETS = [hashtag_cooccurrence, pg_hashtag_cooccurrence]

trends_job = dg.define_asset_job(
    "trends_job",
    selection=dg.AssetSelection.assets(*HOURLY_ASSETS),
    partitions_def=daily_partitions,
    description="Recount one UTC day's hashtags and keywords (Spark), rescore its hours, regroup its topics, and "
    "publish them to Postgres for the API.",
    executor_def=dg.in_process_executor,  # one Spark Connect session per run
    tags=lane("trends"),
)
hashtag_stats_job = dg.define_asset_job(
    "hashtag_stats_job",
    selection=dg.AssetSelection.assets(*STATS_ASSETS),
    partitions_def=daily_partitions,
    tags=lane("trends"),
    description="Recompute the 28-day hashtag counts and co-occurrences as of one UTC day and publish them "
    "(what hashtag suggestions read; they move slowly, so daily).",
)


@dg.schedule(
    name="trends_hourly_schedule",
    cron_schedule="5 * * * *",
    job=trends_job,
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Five minutes past every hour, refresh today's trends (the hour that just closed is complete); "
    "at 00:05 the day that just closed gets its final run.",
)
def trends_hourly_schedule(context: dg.ScheduleEvaluationContext):
    at = context.scheduled_execution_time.astimezone(dt.timezone.utc)
    day = (at - dt.timedelta(hours=1)).date().isoformat()  # the day of the hour that just closed
    return dg.RunRequest(partition_key=day, run_key=f"trends-{at.isoformat()}")


hashtag_stats_schedule = dg.build_schedule_from_partitioned_job(
    hashtag_stats_job, hour_of_day=0, minute_of_hour=50, default_status=dg.DefaultScheduleStatus.RUNNING)
