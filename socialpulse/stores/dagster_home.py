"""The local DAGSTER_HOME: sqlite run/event storage under the state folder."""

from __future__ import annotations

from socialpulse.settings import Settings

DAGSTER_YAML = """\
# written by socialpulse: local instance (production uses deploy/dagster.yaml)
telemetry:
  enabled: false
run_coordinator:
  module: dagster._core.run_coordinator
  class: QueuedRunCoordinator
  config:
    max_concurrent_runs: 2
"""


def ensure_dagster_home(settings: Settings) -> str:
    home = settings.dagster_home
    home.mkdir(parents=True, exist_ok=True)
    cfg = home / "dagster.yaml"
    if not cfg.exists():
        cfg.write_text(DAGSTER_YAML)
    return str(home)
