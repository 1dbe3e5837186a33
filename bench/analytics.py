"""Benchmark `analytics`: the creator analytics on the seed-7 synthetic world (small: 10k users / 100k posts /
1M interactions; full: 100k / 1M / 10M, 14 days): the bronze export and metrics per day, dbt builds (full,
and incremental for one day), the virality model's training and scoring beside its baseline, and the
latency of the analytics endpoints under load.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import subprocess
import time

from bench import auth_headers, load_world, pct, run_main, say, scale_configs, timed, token_for

METHOD = (
    "one process per run on this machine (2 cores): embedded Postgres 18, Redis, MLflow; the synthetic world loaded "
    "into bronze; per day, the bronze export into Postgres and metrics.write_day (the metrics_timeseries asset's "
    "work); dbt build through the dbt CLI as the socialpulse_dbt asset runs it: full (no day var: every view, "
    "table and incremental mart rebuilt, tests run) then incremental for the last day (--vars day: incremental "
    "marts replace that day); virality: assets.virality.run.train_and_register (lake read, DuckDB features at 7 "
    "observation hours, LightGBM with early stopping, Szabo-Huberman fitted and scored on the same held-out later "
    "posts, MLflow registration) and score_young_posts (posts younger than 48 h, written to Postgres); endpoints: "
    "the API (uvicorn, 2 workers) under an open-loop load (raw asyncio HTTP/1.1, 32 keep-alive connections, "
    "latency from the scheduled send, a 3 s warm-up at 10/s first) of GET /v1/creators/{id}/analytics (daily over 28 "
    "days; hourly over 48 h), GET /v1/creators/{id}/dashboard (28 days: series, top posts, virality, audience) and "
    "GET /v1/posts/{id}/virality, for the 2,000 most viewed creators and 2,000 scored posts at random"
)
SCALES = {
    "small": [dict(users=10_000, posts=100_000, interactions=1_000_000, days=14, rates=[25, 50, 100], seconds=15)],
    "full": [dict(users=100_000, posts=1_000_000, interactions=10_000_000, days=14, rates=[25, 50, 100], seconds=30)],
}
API_WORKERS = 2


def configs(scale: str) -> list[dict]:
    return scale_configs("analytics", SCALES, scale)


def dbt(settings, *args: str) -> float:
    """Run the dbt CLI on the project as the dbt asset does; seconds taken (raises with dbt's tail on failure)."""
    from assets.warehouse.dbt_assets import DBT_EXECUTABLE, DBT_PROJECT_DIR, dbt_env

    cmd = [DBT_EXECUTABLE, *args, "--project-dir", str(DBT_PROJECT_DIR), "--profiles-dir", str(DBT_PROJECT_DIR)]
    t = time.perf_counter()
    proc = subprocess.run(cmd, env={**os.environ, **dbt_env(settings)}, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"dbt {' '.join(args)} failed:\n{proc.stdout[-3000:]}")
    return round(time.perf_counter() - t, 1)


def endpoint_load(api: str, paths: list[str], rate: int, seconds: int) -> dict:
    import asyncio
    from urllib.parse import urlsplit

    from bench.feed import _http_load

    url = urlsplit(api)
    rng = random.Random(rate)
    sent = [rng.choice(paths) for _ in range(rate * seconds)]
    t0 = time.perf_counter()
    done = asyncio.run(_http_load(url.hostname, url.port, sent, rate, 32))
    wall = time.perf_counter() - t0
    lat = [finished - scheduled for scheduled, finished, status, _ in done if status == 200]
    errors: dict[str, int] = {}
    for _, _, status, _ in done:
        if status != 200:
            errors[str(status)] = errors.get(str(status), 0) + 1
    return {"rate": rate, "seconds": seconds, "requests": len(sent), "ok": len(lat), "errors": errors,
            "achieved_per_s": round(len(lat) / wall, 1), "p50_ms": pct(lat, 0.5), "p99_ms": pct(lat, 0.99)}


def main(cfg: dict) -> dict:
    import psycopg

    from assets.virality.run import score_young_posts, train_and_register
    from assets.warehouse.dbt_assets import ensure_sources
    from assets.warehouse.export import PARTITIONED_TABLES, export_bronze_partition, export_bronze_table
    from socialpulse import metrics
    from socialpulse.services.manager import services_down, services_up
    from socialpulse.settings import get_settings

    s = get_settings()
    services_up(s, ["postgres", "redis", "mlflow"])
    out = dict(cfg)
    try:
        start, end = load_world(s, cfg, out, _say)
        days = [start + dt.timedelta(days=i) for i in range((end - start).days + 1)]
        out["export_s"], out["metrics_s"] = {}, {}
        _, out["export_s"]["users"] = timed(export_bronze_table, s, "users")
        for day in days:
            _, out["export_s"][day.isoformat()] = timed(
                lambda d: [export_bronze_partition(s, t, d) for t in PARTITIONED_TABLES], day)
            rows, out["metrics_s"][day.isoformat()] = timed(metrics.write_day, s, day)
            say(f"analytics bench: {day} exported in {out['export_s'][day.isoformat()]} s, metrics {rows} in "
                 f"{out['metrics_s'][day.isoformat()]} s")
        ensure_sources(s)
        out["dbt_full_build_s"] = dbt(s, "build")
        say(f"analytics bench: dbt build (full) {out['dbt_full_build_s']} s")
        out["dbt_incremental_day_s"] = dbt(s, "build", "--vars", json.dumps({"day": end.isoformat()}))
        say(f"analytics bench: dbt build (incremental, {end}) {out['dbt_incremental_day_s']} s")

        trained, secs = timed(train_and_register, s, log=_say)
        model = trained.pop("model")
        out["virality"] = {"train_total_s": secs, **{k: v for k, v in trained.items() if k != "evaluation"},
                           "evaluation": trained["evaluation"]}
        with psycopg.connect(s.postgres) as conn:
            scored, secs = timed(score_young_posts, s, conn, model=model, log=_say)
        out["virality"]["scoring"] = {**scored, "total_s": secs}

        s = s.model_copy(update={"api_workers": API_WORKERS})
        services_up(s, ["api"])
        api = f"http://{s.api_host}:{s.api_port}"
        with psycopg.connect(s.postgres) as conn:
            creators = [r[0] for r in conn.execute(
                "SELECT creator_id FROM metrics.creator_metrics_daily GROUP BY creator_id ORDER BY sum(views) DESC "
                "LIMIT 2000").fetchall()]
            scored_posts = [r[0] for r in conn.execute("SELECT post_id FROM virality.predictions LIMIT 2000").fetchall()]
        import httpx

        with httpx.Client(base_url=api, timeout=60) as c:  # the first requests open the pool
            for _ in range(60):
                if c.get(f"/v1/creators/{creators[0]}/analytics", headers=auth_headers(creators[0])).status_code == 200:
                    break
                time.sleep(1)
        endpoints = {
            # each creator's own token: the analytics are personal reads
            "analytics_daily_28d": [(f"/v1/creators/{c}/analytics?granularity=day", token_for(c)) for c in creators],
            "analytics_hourly_48h": [(f"/v1/creators/{c}/analytics?granularity=hour", token_for(c)) for c in creators],
            "dashboard_28d": [(f"/v1/creators/{c}/dashboard", token_for(c)) for c in creators],
            "virality": [f"/v1/posts/{p}/virality" for p in scored_posts],
        }
        out["load"] = {name: [] for name in endpoints}
        for name, paths in endpoints.items():
            endpoint_load(api, paths, 10, 3)  # warm-up, not recorded: the pool's connections open, caches fill
            for rate in cfg["rates"]:
                r = endpoint_load(api, paths, rate, cfg["seconds"])
                out["load"][name].append(r)
                say(f"analytics bench: {name} {r}")
    finally:
        services_down(s)
    return out


if __name__ == "__main__":
    run_main(main)
