"""The process environment every SocialPulse process sets up before it imports anything heavy.

Two things must hold in every process the platform starts (CLI, API, Dagster webserver, daemon, code
server and the run workers it spawns, the moderation worker, tests and benches):

* offline defaults: no hub downloads, no telemetry, Spark on loopback;
* a stable Prometheus multiprocess folder. Feast's metrics module, on import, points
  ``PROMETHEUS_MULTIPROCESS_DIR`` at a ``feast_metrics_*`` temporary folder that it deletes when that
  process exits. Every process started later inherits the variable and fails on its first Feast import
  with ``FileNotFoundError: .../feast_metrics_.../gauge_liveall_N.db``: that broke every sensor- and
  schedule-launched run that touched Feast. The folder lives in the state folder instead, and files
  left by processes that have exited are pruned, so it does not grow with every run.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from socialpulse.settings import Settings, get_settings, storage_encryption_env

OFFLINE_DEFAULTS = {
    "HF_HUB_OFFLINE": "1",
    "GX_ANALYTICS_ENABLED": "false",
    "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
    "SPARK_LOCAL_IP": "127.0.0.1",
    "DAGSTER_DISABLE_TELEMETRY": "1",
}
#: both names prometheus_client reads (values and the multiprocess collector)
PROMETHEUS_VARS = ("PROMETHEUS_MULTIPROCESS_DIR", "PROMETHEUS_MULTIPROC_DIR")
#: prometheus_client names its files ``<kind>_<pid>.db`` (``gauge_liveall_1234.db``)
_PID_FILE = re.compile(r"_(\d+)\.db$")


def metrics_dir(settings: Settings) -> Path:
    return settings.home_abs / "run" / "prometheus"


def _borrowed(value: str | None) -> bool:
    """A value we must replace: unset, or a folder some other process made for itself (Feast's
    temporary one, or any folder that no longer exists)."""
    return not value or Path(value).name.startswith("feast_metrics_") or not Path(value).is_dir()


def pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie child still answers kill(0); look at its state
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


def prune_metrics_dir(folder: Path) -> int:
    """Remove the files of processes that have exited; returns how many went. (Nothing here serves
    Prometheus metrics from them; Feast writes them because it imports ``prometheus_client``.)"""
    removed = 0
    for f in folder.glob("*.db"):
        m = _PID_FILE.search(f.name)
        if m and not pid_alive(int(m.group(1))):
            f.unlink(missing_ok=True)
            removed += 1
    return removed


def prepare_process(settings: Settings | None = None, env: dict[str, str] | None = None) -> dict[str, str]:
    """Set the offline defaults and the Prometheus folder in ``env`` (default: this process's
    ``os.environ``, before anything imports Feast); returns ``env``. An operator's own
    ``PROMETHEUS_MULTIPROCESS_DIR`` that exists is kept."""
    env = os.environ if env is None else env
    settings = settings or get_settings()
    for key, value in OFFLINE_DEFAULTS.items():
        env.setdefault(key, value)
    current = env.get(PROMETHEUS_VARS[0])
    folder = metrics_dir(settings) if _borrowed(current) else Path(current)
    folder.mkdir(parents=True, exist_ok=True)
    if folder == metrics_dir(settings):
        prune_metrics_dir(folder)
    for key in PROMETHEUS_VARS:
        env[key] = str(folder)
    env.update(storage_encryption_env(settings))  # delta-rs' object store reads them when it opens an s3:// table
    return env
