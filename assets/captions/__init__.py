"""Captions domain: what each post's media shows (EfficientNet-Lite0 labels), generated alt-text, captions and
hashtags, their copy in Postgres, and their evaluation.

The pure modules (facts, labels, grounded, guard, generators, evaluation) import without Dagster; the Dagster
exports load on first access.
"""

_EXPORTS = ("ASSETS", "ASSET_CHECKS", "JOBS", "SCHEDULES", "SENSORS")


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'assets.captions' has no attribute {name!r}")
    from assets.captions import assets as defs

    exports = {
        "ASSETS": list(defs.DAILY_ASSETS),
        "ASSET_CHECKS": list(defs.CHECKS),
        "JOBS": [defs.captions_job, defs.captions_evaluation_job],
        "SCHEDULES": [defs.captions_daily_schedule, defs.captions_evaluation_schedule],
        "SENSORS": [defs.captions_sensor],
    }
    globals().update(exports)
    return exports[name]


__all__ = list(_EXPORTS)
