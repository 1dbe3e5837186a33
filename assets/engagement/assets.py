"""Dagster wrappers: engagement features per UTC day (Spark → Delta gold) and their Feast materialization."""

import datetime as dt

import dagster as dg

from assets.common import bronze_key, daily_backfill, daily_partitions, partition_day
from assets.engagement.spark_features import (
    GOLD_TABLES,
    POST_ENGAGEMENT,
    USER_ENGAGEMENT,
    GoldTable,
    compute_engagement,
    partition_violations,
    use_utc,
)
from orchestration.resources import SettingsResource, SparkResource

GROUP = "engagement"
OWNERS = ["team:ml"]

GOLD_KEYS = {
    POST_ENGAGEMENT.name: dg.AssetKey(["lake", "gold", POST_ENGAGEMENT.name]),
    USER_ENGAGEMENT.name: dg.AssetKey(["lake", "gold", USER_ENGAGEMENT.name]),
}
ONLINE_KEYS = {
    "post_engagement": dg.AssetKey(["feast", "online", "post_engagement"]),
    "user_engagement": dg.AssetKey(["feast", "online", "user_engagement"]),
}
#: which gold table each online feature view reads
VIEW_SOURCES = {"post_engagement": POST_ENGAGEMENT.name, "user_engagement": USER_ENGAGEMENT.name}


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            GOLD_KEYS[POST_ENGAGEMENT.name],
            deps=[bronze_key("interactions")],
            description="Per post and UTC day: views, likes, shares, comments, watch time, unique viewers (1d, 7d).",
            group_name=GROUP,
            kinds={"spark", "delta"},
            owners=OWNERS,
        ),
        dg.AssetSpec(
            GOLD_KEYS[USER_ENGAGEMENT.name],
            deps=[bronze_key("interactions")],
            description="Per user and UTC day: engagement given and follows gained (1d, 7d).",
            group_name=GROUP,
            kinds={"spark", "delta"},
            owners=OWNERS,
        ),
    ],
    partitions_def=daily_partitions,
    backfill_policy=daily_backfill,
)
def engagement_features(context: dg.AssetExecutionContext, spark: SparkResource, settings: SettingsResource):
    """Post and user engagement features of one UTC day, written by replacing that day's Delta partition."""
    day = partition_day(context)
    rows = compute_engagement(spark.session(), settings.get(), day)
    for table in GOLD_TABLES:
        yield dg.MaterializeResult(
            asset_key=GOLD_KEYS[table.name],
            metadata={
                "rows": dg.MetadataValue.int(rows[table.name]),
                "partition": dg.MetadataValue.text(day.isoformat()),
                "uri": dg.MetadataValue.path(table.uri(settings.get())),
            },
        )


def materialization_window(day: dt.date, now: dt.datetime | None = None) -> tuple[dt.datetime, dt.datetime]:
    """The Feast window of partition ``day``: its UTC day, cut at now while the day is running."""
    now = now or dt.datetime.now(dt.timezone.utc)
    start = dt.datetime.combine(day, dt.time(), dt.timezone.utc)
    return start, min(start + dt.timedelta(days=1), now)


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            ONLINE_KEYS[view],
            deps=[GOLD_KEYS[VIEW_SOURCES[view]]],
            description=f"Feast feature view {view} materialized into Redis for online serving.",
            group_name=GROUP,
            kinds={"feast", "redis"},
            owners=OWNERS,
        )
        for view in ONLINE_KEYS
    ],
    partitions_def=daily_partitions,
    backfill_policy=daily_backfill,
)
def online_engagement_features(context: dg.AssetExecutionContext, settings: SettingsResource):
    """Materialize one UTC day of the engagement feature views from Delta into the Redis online store."""
    day = partition_day(context)
    s = settings.get()
    # imported here: feast takes ~13 s to import, which every run process of every job would pay otherwise
    from socialpulse import features

    features.apply_repo(s)
    start, end = materialization_window(day)
    result = features.materialize(s, start, end, feature_views=list(ONLINE_KEYS))
    for view, key in ONLINE_KEYS.items():
        meta = result[view]
        yield dg.MaterializeResult(
            asset_key=key,
            metadata={
                "rows": dg.MetadataValue.int(meta["rows"]),
                "partition": dg.MetadataValue.text(day.isoformat()),
                "window_start": meta["start"],
                "window_end": meta["end"],
                "overwrite": meta["overwrite"],
            },
        )


# --- blocking checks on the gold tables -------------------------------------------------------------
_RULES = {
    "non_null_keys": ("null_keys", "every row has its entity key"),
    "non_negative_counts": ("negative_counts", "every count and watch time is >= 0"),
    "one_day_within_seven_days": ("one_day_above_seven_days", "every 1-day value is <= its 7-day value"),
}


def _gold_check(table: GoldTable, rule: str) -> dg.AssetChecksDefinition:
    field, what = _RULES[rule]

    @dg.asset_check(
        asset=GOLD_KEYS[table.name],
        name=rule,
        description=f"Blocking: in the day's partition of {table.name}, {what}.",
        blocking=True,
        partitions_def=daily_partitions,
    )
    def _check(context: dg.AssetCheckExecutionContext, spark: SparkResource, settings: SettingsResource):
        session = spark.session()
        use_utc(session)
        stats = partition_violations(session, table, settings.get(), partition_day(context))
        return dg.AssetCheckResult(
            passed=stats[field] == 0,
            severity=dg.AssetCheckSeverity.ERROR,
            metadata={"violations": stats[field], "rows": stats["rows"], "partition": context.partition_key},
        )

    return _check


GOLD_CHECKS = [_gold_check(table, rule) for table in GOLD_TABLES for rule in _RULES]
