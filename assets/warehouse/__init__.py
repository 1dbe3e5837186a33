"""Warehouse domain: bronze exported into Postgres, the creator analytics metrics, the dbt project."""

import dagster as dg

from assets.common import daily_partitions, lane
from assets.warehouse.assets import EXPORT_ASSETS, WAREHOUSE_ASSETS, metrics_timeseries
from assets.warehouse.dbt_assets import dbt_project, dbt_resource, socialpulse_dbt

ASSETS = [*WAREHOUSE_ASSETS, socialpulse_dbt]
RESOURCES = {"dbt": dbt_resource()}
#: the dbt models alone for one day (daily_refresh_job builds them after that day's exports): the demo runs it
#: once moderation has published, so the moderation outcomes mart is current when it ends
dbt_job = dg.define_asset_job(
    "dbt_job",
    selection=dg.AssetSelection.assets(socialpulse_dbt),
    partitions_def=daily_partitions,
    description="Build the dbt models (views, incremental marts for the day, full marts) for one UTC day.",
    tags=lane("refresh"),
)
JOBS = [dbt_job]

__all__ = [
    "ASSETS",
    "JOBS",
    "RESOURCES",
    "EXPORT_ASSETS",
    "dbt_project",
    "metrics_timeseries",
    "socialpulse_dbt",
]
