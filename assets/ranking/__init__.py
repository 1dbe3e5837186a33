"""Ranking domain: the For You feed's training set, LambdaRank ranker and Redis serving state.

The pure modules (training, state, logeval) import without Dagster; the Dagster exports load on first access.
"""

_EXPORTS = ("ASSETS", "ASSET_CHECKS", "JOBS", "SCHEDULES", "SENSORS")


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'assets.ranking' has no attribute {name!r}")
    from assets.ranking import assets as defs

    exports = {
        "ASSETS": list(defs.ASSETS),
        "ASSET_CHECKS": list(defs.ASSET_CHECKS),
        "JOBS": list(defs.JOBS),
        "SCHEDULES": list(defs.SCHEDULES),
        "SENSORS": [],
    }
    globals().update(exports)
    return exports[name]


__all__ = list(_EXPORTS)
