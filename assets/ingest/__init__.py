"""Ingestion domain: bronze Delta tables filled from the Redis ingest streams (and by batch loaders)."""

from assets.ingest.assets import ASSET_CHECKS, ASSETS, JOBS, SCHEDULES, SENSORS, bronze_ingest_job, ingest_sensor

__all__ = ["ASSET_CHECKS", "ASSETS", "JOBS", "SCHEDULES", "SENSORS", "bronze_ingest_job", "ingest_sensor"]
