"""Trends domain: hourly hashtag and keyword counts (Spark), hashtag trend scores (velocity against each
tag's own baseline), trending topics (co-occurrence and post vectors, readable labels) and hashtag statistics
for suggestions, published to Postgres ``trends``.

The pure modules (logic, build) import without Dagster; the Dagster exports load on first access.
"""

_EXPORTS = ("ASSETS", "ASSET_CHECKS", "JOBS", "SCHEDULES")


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'assets.trends' has no attribute {name!r}")
    from assets.trends import assets as defs

    exports = {
        "ASSETS": list(defs.DAILY_ASSETS),
        "ASSET_CHECKS": list(defs.CHECKS),
        "JOBS": [defs.trends_job, defs.hashtag_stats_job],
        "SCHEDULES": [defs.trends_hourly_schedule, defs.hashtag_stats_schedule],
    }
    globals().update(exports)
    return exports[name]


__all__ = list(_EXPORTS)
