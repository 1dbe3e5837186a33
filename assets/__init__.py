"""Software-defined assets, one package per domain: pure functions for the logic, thin Dagster wrappers beside them.

Each domain package exports ``ASSETS`` (and, where it has them, ``ASSET_CHECKS``, ``JOBS``, ``SENSORS``,
``SCHEDULES``, ``RESOURCES``); ``orchestration.definitions`` only loads and merges them.
"""
