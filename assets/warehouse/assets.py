"""Dagster wrappers for the warehouse: bronze exports into Postgres and the hourly post metrics."""

import datetime as dt

import dagster as dg
from dagster import AssetExecutionContext

from assets.common import bronze_key, daily_backfill, daily_partitions
from assets.warehouse.export import (
    PARTITIONED_TABLES,
    export_bronze_partition,
    export_bronze_table,
)
from assets.warehouse.metrics import QUALIFIED, write_hourly_post_metrics
from orchestration.resources import SettingsResource
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


@dg.asset(
    key=["postgres", "metrics", "post_metrics_hourly"],
    deps=[bronze_key("interactions")],
    partitions_def=daily_partitions,
    backfill_policy=daily_backfill,
    group_name=GROUP,
    kinds={"postgres", "delta"},
    owners=OWNERS,
)
def post_metrics_hourly(context: AssetExecutionContext, settings: SettingsResource) -> dg.MaterializeResult:
    """Views, likes, shares, comments, watch time and unique viewers per post per UTC hour."""
    s = settings.get()
    per_day = {day.isoformat(): write_hourly_post_metrics(s, day) for day in _days(context)}
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": sum(per_day.values()),
            "rows_per_day": dg.MetadataValue.json(per_day),
            "table": QUALIFIED,
        }
    )


EXPORT_ASSETS: list[dg.AssetsDefinition] = [_export_partition_asset(t) for t in PARTITIONED_TABLES] + [
    postgres_bronze_users
]
WAREHOUSE_ASSETS: list[dg.AssetsDefinition] = [*EXPORT_ASSETS, post_metrics_hourly]
