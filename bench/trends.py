"""Benchmark `trends`: replay throughput of the trend code (posts/s) and the time to refresh trends for one
hour of the synthetic world (the hourly trends_job run), per step.

* Replay: ``assets.trends.logic.replay`` (counts, scores, co-occurrence topics; no embeddings) over every
  post of the loaded synthetic world in time order, and over the CrisisLex T6 stream; posts/s = posts /
  replay wall time (reading the records is not timed).
* Refresh: the hourly schedule runs trends_job on the day of the hour that just closed, so refreshing one
  hour costs one trends_job run over that day. The daily hashtag statistics (hashtag_stats_job, 28 days of
  posts) are timed once after it. The world's last day is run once untimed (so the day before
  has its counts: the baselines read 24 hours back) and then timed, in process on the local Dagster
  instance, with each asset's step time from the run's events. Post embeddings are not computed here
  (content_job's cost, bench search): topics group by co-occurrence only.
* Side by side, the pure-Python counts (``hourly_counts``) over the same day's posts, against the Spark
  ``term_hourly`` step.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
import time
from pathlib import Path

METHOD = (
    "one process on this machine (2 cores); services up (Postgres, Redis, Spark Connect on Sail, MLflow), "
    "`load synthetic` (seed 7, 14 days ending yesterday), then trends_job for the last day untimed (the day "
    "before's counts for the baselines) and again timed (the hourly refresh: it recomputes the day holding "
    "the hour that closed), step times from the run's STEP_SUCCESS events; replay: assets.trends.logic.replay "
    "without embeddings over all the world's posts in time order and over the CrisisLex T6 stream (wall time "
    "of the replay only); baseline: pure-Python hourly_counts over the timed day's posts"
)
SCALES = {
    "small": [dict(users=10_000, posts=100_000, interactions=1_000_000, days=14)],
    "full": [dict(users=100_000, posts=1_000_000, interactions=10_000_000, days=14)],
}
REPO = Path(__file__).resolve().parents[1]
CRISISLEX = REPO.parent / "shared" / "data" / "crisislex_t6" / "stream.jsonl"
CRISISLEX_SAMPLE = REPO / "data" / "samples" / "crisislex_t6" / "stream.jsonl"


def configs(scale: str) -> list[dict]:
    return SCALES[scale]


def _say(msg: str) -> None:
    print(msg, flush=True)


def _step_seconds(result) -> dict[str, float]:
    out = {}
    for e in result.all_events:
        if e.event_type_value == "STEP_SUCCESS":
            out[e.step_key] = round(e.event_specific_data.duration_ms / 1000, 2)
    return out


def replay_throughput(records: list[dict]) -> dict:
    from assets.trends.logic import replay

    t0 = time.perf_counter()
    topics = replay(records)
    s = time.perf_counter() - t0
    return {"posts": len(records), "seconds": round(s, 2), "posts_per_s": round(len(records) / s, 1),
            "topics": len(topics)}


def world_records(settings) -> list[dict]:
    from socialpulse import lake
    from socialpulse.contracts import POSTS

    t = lake.read(POSTS, settings=settings, columns=["created_at", "hashtags", "author_id", "caption"])
    rows = [{"created_at": c, "hashtags": h, "author_id": a, "text": x}
            for c, h, a, x in zip(*(t[k].to_pylist() for k in ("created_at", "hashtags", "author_id", "caption")))]
    rows.sort(key=lambda r: r["created_at"])
    return rows


def main(cfg: dict) -> dict:
    from bench import load_world
    from orchestration.runner import QUIET, _instance, quiet_warnings
    from socialpulse.services.manager import services_down, services_up
    from socialpulse.settings import get_settings
    from assets.trends.stream import read_stream

    quiet_warnings()
    s = get_settings()
    out = dict(cfg)
    t = time.perf_counter()
    services_up(s)
    out["services_up_s"] = round(time.perf_counter() - t, 1)
    try:
        _, end = load_world(s, cfg, out, _say)

        from orchestration.definitions import defs

        instance = _instance(s)
        job = defs.resolve_job_def("trends_job")
        runs = {}
        for label, day in (("warmup_day_before", end - dt.timedelta(days=1)), ("timed", end)):
            t = time.perf_counter()
            result = job.execute_in_process(partition_key=day.isoformat(), instance=instance, raise_on_error=False,
                                            run_config=QUIET)
            runs[label] = {"day": day.isoformat(), "success": result.success,
                           "seconds": round(time.perf_counter() - t, 2), "steps_s": _step_seconds(result)}
            _say(f"trends_job {day}: {runs[label]}")
            if not result.success:
                raise RuntimeError(f"trends_job {day} failed (run {result.run_id})")
        out["refresh_one_hour"] = runs["timed"]
        out["warmup"] = runs["warmup_day_before"]
        t = time.perf_counter()
        result = defs.resolve_job_def("hashtag_stats_job").execute_in_process(
            partition_key=end.isoformat(), instance=instance, raise_on_error=False, run_config=QUIET)
        out["hashtag_stats_daily"] = {"day": end.isoformat(), "success": result.success,
                                      "seconds": round(time.perf_counter() - t, 2), "steps_s": _step_seconds(result)}
        _say(f"hashtag_stats_job {end}: {out['hashtag_stats_daily']}")

        records = world_records(s)
        day_records = [r for r in records if r["created_at"].date() == end]
        from assets.trends.logic import hourly_counts

        t = time.perf_counter()
        hourly_counts(day_records)
        out["python_hourly_counts_day"] = {"posts": len(day_records), "seconds": round(time.perf_counter() - t, 2)}
        out["replay_world"] = replay_throughput(records)
        _say(f"replay world: {out['replay_world']}")
        stream = CRISISLEX if CRISISLEX.exists() else CRISISLEX_SAMPLE
        cl, _ = read_stream(stream)
        out["replay_crisislex"] = {"file": stream.name if stream == CRISISLEX_SAMPLE else str(stream),
                                   **replay_throughput(cl)}
        _say(f"replay crisislex: {out['replay_crisislex']}")
    finally:
        from socialpulse.spark import stop_sessions

        stop_sessions()
        services_down(s)
    return out


if __name__ == "__main__":
    print(json.dumps(main(json.loads(sys.argv[1])), default=str), flush=True)
