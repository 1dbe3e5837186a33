"""Benchmark `privacy`: how long a user's deletion (GDPR) takes, per store step, on the seed-7 synthetic world
(small: the demo's world, 2k users / 20k posts / 9 days; full: 100k users / 1M posts / 10M interactions / 14
days), loaded into the lake and exported into Postgres (bronze tables and the metrics), with Redis holding
per-user feed state for every user (the keys a deletion must scan), and the export archive of the same user.
"""

from __future__ import annotations

import datetime as dt
import time

from bench import load_world, run_main, say, scale_configs, timed

METHOD = (
    "one process per run on this machine (2 cores): embedded Postgres 18 and Redis; the seed-7 synthetic world loaded "
    "into bronze Delta (one replace per day partition, so tables carry their load history), exported into Postgres "
    "(bronze.* tables and metrics.* per day, as the warehouse assets do); Redis filled with feed state for every "
    "user (feed:user:<id> hash, feed:seen:<id> set of 20 posts) and the feed:post hash of every post; the target is "
    "the creator with the most posts. Timed: the export archive (assets.privacy.run.build_export), then the "
    "deletion through assets.privacy.run.run_deletion as the privacy job runs it, step by step (plan, streams, "
    "lake delete over every Delta table, vacuum with no retention + checkpoint + log cleanup over every table, "
    "Postgres sweep over every table, Redis scan, media, exports), then a second deletion of the same user (a "
    "no-op: nothing is found, every step still scans)"
)
SCALES = {
    "small": [dict(users=2_000, posts=20_000, interactions=None, days=9)],
    "full": [dict(users=100_000, posts=1_000_000, interactions=10_000_000, days=14)],
}


def configs(scale: str) -> list[dict]:
    return scale_configs("privacy", SCALES, scale)


def _fill_redis(settings, client, batch: int = 5_000) -> int:
    """Feed-state-shaped keys for every user and post (what the deletion's key scan walks through)."""
    import numpy as np

    from socialpulse import lake
    from socialpulse.contracts import POSTS, USERS

    users = lake.read(USERS, settings=settings, columns=["user_id"]).column("user_id").to_pylist()
    posts = lake.read(POSTS, settings=settings, columns=["post_id"]).column("post_id").to_pylist()
    rng = np.random.default_rng(7)
    features = np.zeros(8, dtype=np.float32).tobytes()
    pipe = client.pipeline(transaction=False)
    for i, uid in enumerate(users):
        pipe.hset(f"feed:user:{uid}", mapping={"features": features, "followed": "[]"})
        seen = [posts[j] for j in rng.integers(0, len(posts), 20)]
        pipe.sadd(f"feed:seen:{uid}", *seen)
        if i % batch == batch - 1:
            pipe.execute()
    for i in range(0, len(posts), batch):
        pipe.hset("feed:post", mapping={p: features for p in posts[i:i + batch]})
        pipe.execute()
    pipe.execute()
    return client.dbsize()


def main(cfg: dict) -> dict:
    import psycopg
    import pyarrow.compute as pc
    import redis

    from assets.privacy.run import build_export, run_deletion
    from assets.warehouse.export import PARTITIONED_TABLES, export_bronze_partition, export_bronze_table
    from socialpulse import lake, metrics, privacy
    from socialpulse.contracts import POSTS
    from socialpulse.services.manager import services_down, services_up
    from socialpulse.settings import get_settings

    s = get_settings()
    services_up(s, ["postgres", "redis"])
    out = dict(cfg)
    try:
        start, end = load_world(s, cfg, out, _say)
        days = [start + dt.timedelta(days=i) for i in range((end - start).days + 1)]
        t = time.perf_counter()
        export_bronze_table(s, "users")
        for day in days:
            for table in PARTITIONED_TABLES:
                export_bronze_partition(s, table, day)
            metrics.write_day(s, day)
        out["postgres_load_s"] = round(time.perf_counter() - t, 1)
        client = redis.Redis.from_url(s.redis)
        out["redis_keys"], out["redis_fill_s"] = timed(_fill_redis, s, client)
        say(f"privacy bench: world loaded ({out['rows']}), Postgres {out['postgres_load_s']} s, "
             f"Redis {out['redis_keys']} keys")

        authors = lake.read(POSTS, settings=s, columns=["author_id"]).column("author_id")
        counts = pc.value_counts(authors).to_pylist()
        target = max(counts, key=lambda c: c["counts"])["values"]
        out["target_posts"] = max(c["counts"] for c in counts)
        with psycopg.connect(s.postgres) as conn:
            out["postgres_tables"] = conn.execute(
                "SELECT count(*) FROM information_schema.tables WHERE table_schema NOT IN "
                "('pg_catalog', 'information_schema')").fetchone()[0]
            out["postgres_rows_before"] = {
                t: conn.execute(f"SELECT count(*) FROM bronze.{t}").fetchone()[0]
                for t in ("interactions", "posts", "users")}

        archive = privacy.exports_dir(s) / "bench.zip"
        export_counts, out["export_s"] = timed(build_export, s, target, archive)
        out["export"] = {**export_counts, "archive_bytes": archive.stat().st_size}
        archive.unlink()
        say(f"privacy bench: export {out['export_s']} s {out['export']}")

        for label in ("deletion", "second_run"):
            with psycopg.connect(s.postgres, autocommit=True) as conn:
                row, _ = privacy.request(conn, s, kind="delete", user_id=target, actor="bench-admin",
                                         actor_role="admin")
            done, secs = timed(run_deletion, s, row["request_id"])
            steps = {k: {kk: vv for kk, vv in v.items() if kk != "tables"} for k, v in done["counts"].items()}
            out[label] = {"total_s": secs, "steps": steps}
            say(f"privacy bench: {label} {secs} s: "
                 + ", ".join(f"{k} {v.get('seconds')} s" for k, v in steps.items()))
    finally:
        services_down(s)
    return out


if __name__ == "__main__":
    run_main(main)
