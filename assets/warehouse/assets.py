"""Dagster wrappers for the warehouse: bronze exports into Postgres and the creator analytics' metrics."""

import datetime as dt

import dagster as dg
from dagster import AssetExecutionContext

from assets.common import bronze_key, daily_backfill, daily_partitions
from assets.warehouse.export import (
    PARTITIONED_TABLES,
    export_bronze_partition,
    export_bronze_table,
)
from orchestration.resources import SettingsResource
from socialpulse import metrics
from socialpulse.contracts import BRONZE

GROUP = "warehouse"
OWNERS = ["team:data-eng"]


def postgres_bronze_key(table: str) -> dg.AssetKey:
    return dg.AssetKey(["postgres", "bronze", table])


def _days(context: AssetExecutionContext) -> list[dt.date]:
    return [dt.date.fromisoformat(k) for k in context.partition_keys]


def _export_partition_asset(table: str) -> dg.AssetsDefinition:
    @dg.asset(
        key=postgres_bronze_key(table),
        deps=[bronze_key(table)],
        partitions_def=daily_partitions,
        backfill_policy=daily_backfill,
        group_name=GROUP,
        kinds={"postgres", "delta"},
        owners=OWNERS,
        description=f"bronze.{table} in Postgres: one UTC day of the lake table per partition. "
        + BRONZE[table].description,
    )
    def _export(context: AssetExecutionContext, settings: SettingsResource) -> dg.MaterializeResult:
        s = settings.get()
        per_day = {day.isoformat(): export_bronze_partition(s, table, day) for day in _days(context)}
        context.log.info(f"exported bronze.{table}: {per_day}")
        return dg.MaterializeResult(
            metadata={
                "dagster/row_count": sum(per_day.values()),
                "rows_per_day": dg.MetadataValue.json(per_day),
                "table": f"bronze.{table}",
            }
        )

    return _export


@dg.asset(
    key=postgres_bronze_key("users"),
    deps=[bronze_key("users")],
    group_name=GROUP,
    kinds={"postgres", "delta"},
    owners=OWNERS,
)
def postgres_bronze_users(settings: SettingsResource) -> dg.MaterializeResult:
    """bronze.users in Postgres: the latest lake row per user_id, replaced as a whole."""
    n = export_bronze_table(settings.get(), "users")
    return dg.MaterializeResult(metadata={"dagster/row_count": n, "table": "bronze.users"})


@dg.multi_asset(
    name="metrics_timeseries",
    specs=[
        dg.AssetSpec(
            ["postgres", "metrics", t.name],
            deps=[bronze_key("interactions"), bronze_key("follows"), bronze_key("posts")],
            group_name=GROUP,
            kinds={"postgres", "delta"},
            owners=OWNERS,
            description=f"{t.qualified}: per {t.key.removesuffix('_id')} and {t.bucket} (UTC), views, unique viewers, "
            "likes, shares, comments, watch time, completions"
            + (", followers gained and lost" if t.key == "creator_id" else "")
            + f"; native partitions, {t.retention_days} days kept.",
        )
        for t in metrics.ALL
    ],
    partitions_def=daily_partitions,
    backfill_policy=daily_backfill,
)
def metrics_timeseries(context: AssetExecutionContext, settings: SettingsResource):
    """The creator analytics' four tables, computed together from one UTC day of bronze per partition (one
    read of the day's events; the four replaced in one transaction; partitions past retention dropped)."""
    s = settings.get()
    per_day = {day.isoformat(): metrics.write_day(s, day) for day in _days(context)}
    context.log.info(f"metrics written: {per_day}")
    for t in metrics.ALL:
        yield dg.MaterializeResult(
            asset_key=["postgres", "metrics", t.name],
            metadata={
                "dagster/row_count": sum(c[t.name] for c in per_day.values()),
                "rows_per_day": dg.MetadataValue.json({d: c[t.name] for d, c in per_day.items()}),
                "table": t.qualified,
            },
        )


EXPORT_ASSETS: list[dg.AssetsDefinition] = [_export_partition_asset(t) for t in PARTITIONED_TABLES] + [
    postgres_bronze_users
]
WAREHOUSE_ASSETS: list[dg.AssetsDefinition] = [*EXPORT_ASSETS, metrics_timeseries]
