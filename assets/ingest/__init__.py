"""Ingestion domain: bronze Delta tables filled from the Redis ingest streams (and by batch loaders)."""

from assets.ingest.assets import ASSETS, JOBS, SENSORS, bronze_ingest_job, ingest_sensor

__all__ = ["ASSETS", "JOBS", "SENSORS", "bronze_ingest_job", "ingest_sensor"]
