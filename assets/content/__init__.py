"""Content domain: post embeddings, the vector index behind search and similar posts, user interest vectors.

The pure module (embeddings) imports without Dagster; the Dagster exports load on first access.
"""

_EXPORTS = ("ASSETS", "ASSET_CHECKS", "JOBS", "SCHEDULES", "SENSORS")


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'assets.content' has no attribute {name!r}")
    from assets.content import assets as defs

    exports = {
        "ASSETS": list(defs.DAILY_ASSETS),
        "ASSET_CHECKS": list(defs.CHECKS),
        "JOBS": [defs.content_job, defs.interest_job],
        "SCHEDULES": [defs.content_daily_schedule, defs.interest_daily_schedule],
        "SENSORS": [defs.content_sensor],
    }
    globals().update(exports)
    return exports[name]


__all__ = list(_EXPORTS)
