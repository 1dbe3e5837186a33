"""The SocialPulse serving API (FastAPI).

It reads only the materialized stores (Redis, Postgres, registered models) and writes only the ingest
streams and the media store. It never imports deltalake, dagster, dbt or pyspark (a test checks it).
"""
