"""Benchmark `build`: time to materialize the full asset graph for a synthetic world.

Per scale: start the embedded services, load the synthetic world into bronze, then run the unpartitioned
assets (the users export) and the daily refresh job for every day (Spark features, Feast materialization,
Postgres exports, metrics, the day's dbt build, bronze checks). Wall-clock seconds for each step.
"""

from __future__ import annotations

import json
import sys
import time

METHOD = (
    "fresh state folder per scale; `services up`, `load synthetic` (seed 7), then every daily partition of "
    "the derived graph and the unpartitioned assets, run in process on the local Dagster instance; "
    "wall-clock seconds on this machine, one run per scale"
)
DAYS = 14
SCALES = {
    "small": [dict(users=10_000, posts=100_000, interactions=1_000_000, days=DAYS)],
    "full": [
        dict(users=10_000, posts=100_000, interactions=1_000_000, days=DAYS),
        dict(users=100_000, posts=1_000_000, interactions=10_000_000, days=DAYS),
    ],
}


def configs(scale: str) -> list[dict]:
    return SCALES[scale]


def main(cfg: dict) -> dict:
    from bench import load_world
    from orchestration.runner import materialize_all
    from socialpulse.services.manager import services_down, services_up
    from socialpulse.settings import get_settings

    s = get_settings()
    out = dict(cfg)
    t = time.perf_counter()
    services_up(s)
    out["services_up_s"] = round(time.perf_counter() - t, 1)
    try:
        start, end = load_world(s, cfg, out, print)
        t = time.perf_counter()
        summary = materialize_all(s, start, end, progress=print)
        out["materialize_s"] = round(time.perf_counter() - t, 1)
        out["per_partition_s"] = [p["seconds"] for p in summary["partitions"].values()]
        out["dimensions_s"] = summary["dimensions"]["seconds"]
        out["failed"] = summary["failed"]
        out["total_s"] = round(out["load_s"] + out["materialize_s"], 1)
    finally:
        from socialpulse.spark import stop_sessions

        stop_sessions()
        services_down(s)
    return out


if __name__ == "__main__":
    print(json.dumps(main(json.loads(sys.argv[1]))), flush=True)
