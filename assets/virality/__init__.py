"""Virality domain: the model that predicts a post's top-decile 7-day reach from its first hours, and its hourly
predictions for young posts in Postgres.

The pure parts live in :mod:`socialpulse.virality_model` and :mod:`assets.virality.run`; the Dagster exports
load on first access.
"""

_EXPORTS = ("ASSETS", "ASSET_CHECKS", "JOBS", "SCHEDULES", "SENSORS")


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'assets.virality' has no attribute {name!r}")
    from assets.virality import assets as defs

    exports = {"ASSETS": list(defs.ASSETS), "ASSET_CHECKS": [], "JOBS": list(defs.JOBS),
               "SCHEDULES": list(defs.SCHEDULES), "SENSORS": []}
    globals().update(exports)
    return exports[name]


__all__ = list(_EXPORTS)
