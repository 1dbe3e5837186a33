"""Warehouse domain: bronze exported into Postgres, hourly post metrics, the dbt project."""

from assets.warehouse.assets import EXPORT_ASSETS, WAREHOUSE_ASSETS, post_metrics_hourly
from assets.warehouse.dbt_assets import dbt_project, dbt_resource, socialpulse_dbt

ASSETS = [*WAREHOUSE_ASSETS, socialpulse_dbt]
RESOURCES = {"dbt": dbt_resource()}

__all__ = [
    "ASSETS",
    "RESOURCES",
    "EXPORT_ASSETS",
    "dbt_project",
    "post_metrics_hourly",
    "socialpulse_dbt",
]
