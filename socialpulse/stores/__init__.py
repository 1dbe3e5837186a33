"""Clients for the materialized stores (Postgres, Redis), shared by assets and serving."""
