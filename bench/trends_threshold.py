"""How the trend threshold was chosen: the synthetic world as a validation set (CrisisLex T6 stays the test).

``python -m bench.trends_threshold [POSTS]`` builds the seed-7 synthetic world in memory (POSTS posts, default
100k, over 14 days, 3 planted one-day bursts of x5-10), scores every hashtag-hour with the trend code
(counts, daily-cycle baselines) at several z thresholds, and writes ``bench/results/trends_threshold_synthetic.json``:
per threshold, the planted bursts found on their day, the delay from the day's start, and the false flags
((tag, day) pairs flagged that were not a planted burst). The first day is left out (every tag is new).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

THRESHOLDS = (2.0, 2.5, 3.0, 3.5, 4.0, 5.0)
OUT = Path(__file__).resolve().parent / "results" / "trends_threshold_synthetic.json"


def main(posts: int = 100_000) -> dict:
    from assets.trends.evaluation import burst_eval
    from assets.trends.logic import hourly_counts, hourly_totals, trend_scores
    from socialpulse.synthetic import WorldConfig, build_world, iter_days, truth_bursts

    cfg = WorldConfig(users=posts // 10, posts=posts, days=14, seed=7, interactions=posts)
    world = build_world(cfg)
    records, counts = [], []
    for batch in iter_days(world):
        t = batch.tables["posts"]
        records += [{"created_at": c, "hashtags": h, "author_id": a}
                    for c, h, a in zip(*(t[k].to_pylist() for k in ("created_at", "hashtags", "author_id")))]
        counts += batch.burst_counts
    bursts = truth_bursts(world, counts).to_pylist()
    hourly, totals = hourly_counts(records), hourly_totals(records)
    first_day = min(r["created_at"] for r in records).date()
    results = []
    for threshold in THRESHOLDS:
        t0 = time.perf_counter()
        rows = [{"tag": f.tag, "hour": f.hour, "flagged": f.flagged}
                for f in trend_scores(hourly, totals=totals, threshold=threshold, include_all=True)
                if f.hour.date() > first_day]
        out = burst_eval(rows, bursts)
        results.append({"threshold": threshold, "seconds": round(time.perf_counter() - t0, 2),
                        **{k: out[k] for k in ("recall", "median_delay_hours", "false_flag_tag_days",
                                               "scored_tag_days", "false_flag_share")}})
        print(results[-1], flush=True)
    return {"posts": posts, "days": 14, "seed": 7, "tag_hours_scored": len(hourly),
            "bursts": [{k: str(b[k]) if k == "day" else b[k] for k in ("hashtag", "day", "multiplier",
                                                                        "baseline_count", "burst_count")}
                       for b in bursts], "thresholds": results}


if __name__ == "__main__":
    result = main(int(sys.argv[1]) if len(sys.argv) > 1 else 100_000)
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {OUT}")
