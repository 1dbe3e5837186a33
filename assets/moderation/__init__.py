"""Moderation domain: text / image / video scores, policy decisions, their serving copies, and the
moderators' reviews copied back as text-model labels.

The pure modules (text, media, policy, scoring) import without Dagster, so the CLI and a GPU box can use
them alone; the Dagster exports (ASSETS, JOBS, ...) load on first access.
"""

_EXPORTS = ("ASSETS", "ASSET_CHECKS", "JOBS", "SCHEDULES", "SENSORS")


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'assets.moderation' has no attribute {name!r}")
    from assets.moderation import assets as defs

    exports = {
        "ASSETS": [defs.moderation_review_labels, defs.text_model, *defs.DAILY_ASSETS],
        "ASSET_CHECKS": list(defs.CHECKS),
        "JOBS": [defs.moderation_job, defs.text_model_job, defs.review_labels_job],
        "SCHEDULES": [defs.moderation_daily_schedule, defs.review_labels_schedule],
        "SENSORS": [defs.moderation_sensor],
    }
    globals().update(exports)
    return exports[name]


__all__ = list(_EXPORTS)
