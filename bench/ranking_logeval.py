"""`socialpulse ranking eval` on the synthetic world's interaction log: bench/results/ranking_eval_synthetic.json.

``python -m bench.ranking_logeval [USERS POSTS DAYS]`` builds the seed-7 synthetic world in memory (default 2,000
users, 5,000 posts, 14 days), writes its interactions that name a post as a CSV (user_id, item_id, timestamp as
ISO-8601, weight by event type as the platform's interest vectors weigh them: view 0.5, like 1, comment 1.5,
share 2), runs the CLI on it with a per-user time split, and saves the JSON with a "method" field saying so.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "bench" / "results" / "ranking_eval_synthetic.json"


def write_log(path: Path, users: int, posts: int, days: int, seed: int = 7) -> dict:
    """The world's post interactions as a ranking-eval CSV; returns counts per event type."""
    from assets.content.embeddings import EVENT_WEIGHTS
    from socialpulse.synthetic import WorldConfig, build_world, iter_days

    world = build_world(WorldConfig(users=users, posts=posts, days=days, seed=seed))
    counts: dict[str, int] = {}
    with path.open("w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["user_id", "item_id", "timestamp", "weight"])
        for batch in iter_days(world):
            t = batch.tables["interactions"]
            for etype, user, post, at in zip(*(t[c].to_pylist() for c in ("event_type", "user_id", "post_id",
                                                                           "created_at"))):
                if post is None or etype not in EVENT_WEIGHTS:
                    continue
                counts[etype] = counts.get(etype, 0) + 1
                out.writerow([user, post, at.isoformat(), EVENT_WEIGHTS[etype]])
    return counts


def main(users: int = 2000, posts: int = 5000, days: int = 14) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        log, result = Path(tmp) / "interactions.csv", Path(tmp) / "result.json"
        t0 = time.perf_counter()
        counts = write_log(log, users, posts, days)
        generate_s = time.perf_counter() - t0
        cmd = [sys.executable, "-m", "cli.main", "ranking", "eval", "--interactions", str(log), "--format", "csv",
               "--split", "time", "--ratio", "0.75", "--k", "10,20", "--out", str(result)]
        subprocess.run(cmd, cwd=REPO, check=True, stdout=subprocess.DEVNULL)
        out = json.loads(result.read_text())
    method = {
        "what": "socialpulse ranking eval on the synthetic world's interaction log",
        "world": f"socialpulse.synthetic build_world(WorldConfig(users={users}, posts={posts}, days={days}, seed=7)), "
                 "every day of iter_days",
        "log": "bronze interactions with a post_id (view, like, comment, share) as user_id,item_id,timestamp "
               "(ISO-8601 created_at),weight (view 0.5, like 1, comment 1.5, share 2: "
               "assets.content.embeddings.EVENT_WEIGHTS)",
        "events": counts,
        "command": "socialpulse ranking eval --interactions interactions.csv --format csv --split time --ratio 0.75 "
                   "--k 10,20",
        "script": "python -m bench.ranking_logeval",
        "generate_s": round(generate_s, 1),
    }
    final = {"method": method, **out}
    OUT.write_text(json.dumps(final, indent=2) + "\n")
    return final


if __name__ == "__main__":
    print(json.dumps(main(*map(int, sys.argv[1:])), indent=2))
