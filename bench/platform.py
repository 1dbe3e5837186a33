"""A running platform, started the way `make demo` leaves it, for the live test tier and the soak bench.

`LivePlatform` runs `socialpulse demo` in its own state folder on free 127.0.0.1 ports (services, data,
every asset, then the API, the Dagster webserver and daemon, and the live moderation worker), and from
then on only *observes*: the API over HTTP, the Dagster instance's run records, the lake, and the
processes' PIDs and memory. Nothing here launches a job: the platform's sensors and schedules do.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from functools import cached_property
from pathlib import Path

from socialpulse.services.manager import SERVICES, isolated_env
from socialpulse.settings import Settings

BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parents[1]
#: a real photograph that ships with scikit-learn (CC BY 2.0, danielbuechele on Flickr; see its README.txt)
PHOTO = Path(importlib.util.find_spec("sklearn").origin).parent / "datasets" / "images" / "china.jpg"
_PID = re.compile(r"Started process for run \(pid: (\d+)\)")


def real_photo() -> bytes:
    return PHOTO.read_bytes()


def process_tree(pid: int | None) -> list:
    """``pid``'s process and all its children (psutil processes; empty when it is gone or None)."""
    import psutil

    try:
        root = psutil.Process(pid) if pid else None
        return [root, *root.children(recursive=True)] if root else []
    except psutil.Error:
        return []


def service_pids(settings: Settings) -> dict[str, int]:
    """The main pid of each running service of ``settings``' home."""
    return {name: pid for name, cls in SERVICES.items() if (pid := cls(settings).pid())}


class LivePlatform:
    """One private platform instance. ``start`` brings it up through the demo; ``stop`` takes every service
    down by the PIDs it recorded."""

    def __init__(self, home: Path, *, sensor_interval_s: int = 2, intraday_cron: str = "* * * * *",
                 extra_env: dict[str, str] | None = None):
        self.home = Path(home)
        self.home.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SOCIALPULSE_", "PROMETHEUS_MULTIPROC"))}
        env.update(isolated_env(self.home))
        env.update({
            "SOCIALPULSE_SENSOR_INTERVAL_S": str(sensor_interval_s),
            "SOCIALPULSE_INTRADAY_REFRESH_CRON": intraday_cron,
            **(extra_env or {}),
        })
        self.env = env
        self.log = self.home.parent / f"{self.home.name}-demo.log"

    # --- lifecycle ----------------------------------------------------------------------------------------
    @cached_property
    def settings(self) -> Settings:
        """The platform's settings, as its processes read them from their environment."""
        values = {k.removeprefix("SOCIALPULSE_").lower(): v for k, v in self.env.items() if k.startswith("SOCIALPULSE_")}
        return Settings(**values)

    def cli(self, *args: str, timeout: float = 300, check: bool = True) -> subprocess.CompletedProcess:
        proc = subprocess.run([str(BIN / "socialpulse"), *args], env=self.env, cwd=REPO, capture_output=True,
                              text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise RuntimeError(f"socialpulse {' '.join(args)} exited {proc.returncode}: {proc.stderr[-2000:]}")
        return proc

    def start(self, *, users: int = 200, posts: int = 1000, days: int = 2, hatexplain: Path | None = None,
              timeout: float = 1500) -> float:
        """Run the demo (``hatexplain``: the folder its text model trains on, default the full split); returns
        its seconds. On failure the error carries the tail of its log."""
        args = ["demo", "--users", str(users), "--posts", str(posts), "--days", str(days)]
        if hatexplain is not None:
            args += ["--hatexplain", str(hatexplain)]
        t0 = time.monotonic()
        with open(self.log, "w") as log:
            proc = subprocess.run([str(BIN / "socialpulse"), *args], env=self.env, cwd=REPO, stdout=log,
                                  stderr=subprocess.STDOUT, timeout=timeout)
        if proc.returncode != 0:
            tail = "\n".join(self.log.read_text(errors="replace").splitlines()[-40:])
            raise RuntimeError(f"socialpulse demo exited {proc.returncode}; last lines of {self.log}:\n{tail}")
        return time.monotonic() - t0

    def stop(self) -> None:
        self.cli("services", "down", timeout=180, check=False)

    # --- what a client sees -------------------------------------------------------------------------------
    @property
    def api_url(self) -> str:
        return f"http://{self.settings.api_host}:{self.settings.api_port}"

    # --- what a data engineer sees in the Dagster UI ------------------------------------------------------
    @cached_property
    def instance(self):
        import dagster as dg

        return dg.DagsterInstance.from_config(str(self.settings.dagster_home))

    def runs(self, job_name: str | None = None, statuses: Iterable | None = None, limit: int = 1000) -> list:
        import dagster as dg

        return list(self.instance.get_runs(
            filters=dg.RunsFilter(job_name=job_name, statuses=list(statuses) if statuses else None), limit=limit))

    def failed_runs(self, ignore: Iterable[str] = ()) -> list:
        """Runs in FAILURE, except those in ``ignore`` (run ids a fault test failed on purpose)."""
        import dagster as dg

        skip = set(ignore)
        return [r for r in self.runs(statuses=[dg.DagsterRunStatus.FAILURE]) if r.run_id not in skip]

    def failure_messages(self, run_id: str) -> list[str]:
        """What a run's failure events say, with the error each carries (what the UI shows on the run)."""
        out = []
        for e in self.instance.all_logs(run_id):
            event = e.dagster_event
            if (event is not None and event.is_failure) or e.level >= logging.ERROR:
                error = getattr(getattr(event, "event_specific_data", None), "error", None)
                out.append(f"{e.message} {error.to_string() if error is not None else ''}".strip())
        return out

    def run_pid(self, run_id: str) -> int | None:
        """The PID of a run's own process (the code server's child that executes it), from its event log."""
        for entry in self.instance.all_logs(run_id):
            m = _PID.search(entry.message or "")
            if m:
                return int(m.group(1))
        return None

    def wait_idle(self, job_names: Iterable[str], timeout: float) -> bool:
        """Wait until no run of ``job_names`` is queued or running."""
        from assets.common import ACTIVE_RUN_STATUSES

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not any(self.runs(job, ACTIVE_RUN_STATUSES, limit=1) for job in job_names):
                return True
            time.sleep(1)
        return False

    # --- processes ----------------------------------------------------------------------------------------
    def service_pid(self, name: str) -> int | None:
        return SERVICES[name](self.settings).pid()

    def rss_mb(self) -> dict[str, float]:
        """Resident memory of every service's process tree (the service and all its children), in MB."""
        import psutil

        out = {}
        for name in SERVICES:
            try:
                procs = process_tree(self.service_pid(name))
                out[name] = round(sum(p.memory_info().rss for p in procs if p.is_running()) / 2**20, 1)
            except psutil.Error:
                out[name] = 0.0
        return out


def wait_for(what: str, probe: Callable[[], object], timeout: float, interval: float = 2.0):
    """Poll ``probe`` until it returns something truthy; returns (value, seconds); raises on timeout."""
    t0 = time.monotonic()
    while True:
        value = probe()
        if value:
            return value, time.monotonic() - t0
        if time.monotonic() - t0 > timeout:
            raise TimeoutError(f"{what}: not within {timeout:.0f} s")
        time.sleep(interval)
