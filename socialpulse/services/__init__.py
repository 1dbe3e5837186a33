"""Embedded services (Postgres, Redis, Spark Connect, MLflow, and the API / Dagster UI for the demo).

Each service runs from a package on 127.0.0.1, keeps its state under the settings' state folder, and
is replaced by an external URL/DSN when its environment variable is set. Processes are started in their
own session and stopped by the PID recorded when they were started.
"""

from socialpulse.services.manager import SERVICES, ServiceStatus, services_down, services_status, services_up

__all__ = ["SERVICES", "ServiceStatus", "services_down", "services_status", "services_up"]
