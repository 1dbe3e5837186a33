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
    # one run per lane (socialpulse/lane: ingest, moderation, content, refresh, trends, quality, training, feed,
    # analytics, notifications), lanes side by side: a long refresh or trends run never holds back the drain,
    # moderation or indexing of uploads
    max_concurrent_runs: 4
    tag_concurrency_limits:
      - key: socialpulse/lane
        value:
          applyLimitPerUniqueValue: true
        limit: 1
# the monitoring daemon fails runs stuck starting and enforces each job's dagster/max_runtime tag (a hung drain
# run would otherwise hold the ingest sensor back for ever); a run whose process dies is failed by the code server
run_monitoring:
  enabled: true
  start_timeout_seconds: 300
  poll_interval_seconds: 30
"""


def ensure_dagster_home(settings: Settings) -> str:
    home = settings.dagster_home
    home.mkdir(parents=True, exist_ok=True)
    cfg = home / "dagster.yaml"
    # ours to keep current (an operator's own file, without our header, is left alone)
    current = cfg.read_text() if cfg.exists() else None
    if current is None or (current != DAGSTER_YAML and current.startswith(DAGSTER_YAML.splitlines()[0])):
        cfg.write_text(DAGSTER_YAML)
    return str(home)
