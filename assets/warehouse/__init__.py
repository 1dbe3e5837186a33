"""Warehouse domain: bronze exported into Postgres, the creator analytics metrics, the dbt project."""

from assets.warehouse.assets import EXPORT_ASSETS, WAREHOUSE_ASSETS, metrics_timeseries
from assets.warehouse.dbt_assets import dbt_project, dbt_resource, socialpulse_dbt

ASSETS = [*WAREHOUSE_ASSETS, socialpulse_dbt]
RESOURCES = {"dbt": dbt_resource()}

__all__ = [
    "ASSETS",
    "RESOURCES",
    "EXPORT_ASSETS",
    "dbt_project",
    "metrics_timeseries",
    "socialpulse_dbt",
]
