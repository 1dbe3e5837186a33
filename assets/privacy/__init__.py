"""Privacy domain (GDPR): a user's export and deletion across every store, run by a job per request."""

from assets.privacy.assets import privacy_job, privacy_request_sensor

ASSETS: list = []
JOBS = [privacy_job]
SENSORS = [privacy_request_sensor]

__all__ = ["ASSETS", "JOBS", "SENSORS", "privacy_job", "privacy_request_sensor"]
