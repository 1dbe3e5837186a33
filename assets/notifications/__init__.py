"""Notifications domain: the asset that feeds the outbox from derived data, and the delivery job and sensor."""

from assets.notifications.assets import (
    notification_delivery_job,
    notification_delivery_sensor,
    notifications_from_assets,
)

ASSETS = [notifications_from_assets]
JOBS = [notification_delivery_job]
SENSORS = [notification_delivery_sensor]

__all__ = ["ASSETS", "JOBS", "SENSORS", "notification_delivery_job", "notification_delivery_sensor",
           "notifications_from_assets"]
