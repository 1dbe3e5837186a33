"""Benchmark `soak`: the demo platform with its daemon running, under a steady load for N minutes.

Load, all through the API: events at a set rate (paced batches from several clients), one image upload a
second (a real photo, a fresh caption each time), and search and post-stats reads. Nothing launches a job:
the platform's sensors and schedules do all the work, as they would in production.

Reported: events accepted vs landed in bronze by distinct id (lost, duplicated); event -> Delta latency;
upload -> searchable latency; read latencies and status codes; the resident memory of every service at the
start and at the end; the runs the automation launched, and how many failed (must be 0).
"""

from __future__ import annotations

import datetime as dt
import json
import sys
import threading
import time
import uuid
from pathlib import Path

from bench import NO_RATE_LIMITS, DrainWatch, auth_headers, pct

METHOD = (
    "`socialpulse demo` (small world) in a private state folder, daemon and sensors at their defaults; then for "
    "`minutes`: event clients POST /v1/events batches paced to `rate` events/s, one image upload (a real photo) per "
    "second, search and stats reads at `reads_per_s` each. event -> Delta: a batch has landed at the first 0.5 s "
    "poll where the drain's Delta app-transaction version (its last stream entry) covers the batch's response "
    "time. upload -> searchable: the first 1 s poll where the post is in the vector index (search.post_vectors). "
    "Accounting by distinct id: lost = accepted ids missing from Delta, duplicated = rows - distinct ids. "
    "RSS = the service's whole process tree. After the load stops, the backlog is given up to `settle_s` to land."
)
SCALES = {
    "small": dict(minutes=2, rate=5000, clients=4, batch=500, reads_per_s=2, settle_s=600),
    "full": dict(minutes=10, rate=5000, clients=4, batch=500, reads_per_s=2, settle_s=600),
}


def configs(scale: str, **overrides) -> list[dict]:
    return [{**SCALES[scale], **{k: v for k, v in overrides.items() if v is not None}}]


class Recorder:
    """Thread-safe lists of measurements."""

    def __init__(self):
        self.lock = threading.Lock()
        self.data: dict[str, list] = {}

    def add(self, key: str, value) -> None:
        with self.lock:
            self.data.setdefault(key, []).append(value)

    def get(self, key: str) -> list:
        with self.lock:
            return list(self.data.get(key, []))


def main(cfg: dict) -> dict:
    import os

    import httpx
    import psycopg
    from bench.platform import LivePlatform, real_photo
    from socialpulse import lake
    from socialpulse.contracts import INTERACTIONS

    say = lambda m: print(m, flush=True)  # noqa: E731 - progress lines for the bench runner
    platform = LivePlatform(Path(os.environ["SOCIALPULSE_HOME"]) / "platform", sensor_interval_s=5,
                            intraday_cron="*/15 * * * *", extra_env=NO_RATE_LIMITS)
    out: dict = {**cfg}
    try:
        say("starting the demo platform")
        out["demo_s"] = round(platform.start(users=500, posts=3000, days=2), 1)
        s = platform.settings
        out["rss_mb_start"] = platform.rss_mb()
        runs_before = {r.run_id for r in platform.runs()}
        rec = Recorder()
        stop = threading.Event()
        tag = uuid.uuid4().hex[:6]
        photo = real_photo()
        uploads: dict[str, float] = {}  # post id -> time its upload was answered
        searchable: dict[str, float] = {}

        def event_client(worker: int):
            interval = cfg["clients"] * cfg["batch"] / cfg["rate"]
            n, next_at = 0, time.monotonic()
            with httpx.Client(base_url=platform.api_url, timeout=30) as http:
                while not stop.is_set():
                    user = f"u{(n * 31 + worker) % 500 + 1:06d}"  # one app's batch: its user's events
                    events = [{"event_id": f"sk{tag}-{worker}-{n}-{i}", "event_type": "view",
                               "user_id": user,
                               "post_id": f"p{(n * 17 + i) % 3000 + 1:07d}",
                               "watch_time_s": float(i % 40)} for i in range(cfg["batch"])]
                    t0 = time.time()
                    try:
                        r = http.post("/v1/events", json={"events": events}, headers=auth_headers(user, settings=s))
                        t1 = time.time()
                        if r.status_code == 202:
                            rec.add("batches", (t0, t1, [e["event_id"] for e in events]))
                        else:
                            rec.add("event_errors", f"{r.status_code} {r.text[:120]}")
                    except httpx.HTTPError as exc:
                        rec.add("event_errors", type(exc).__name__)
                    n += 1
                    next_at += interval
                    time.sleep(max(0.0, next_at - time.monotonic()))

        def uploader():
            i = 0
            with httpx.Client(base_url=platform.api_url, timeout=60) as http:
                while not stop.is_set():
                    t0 = time.monotonic()
                    pid = f"sk{tag}-post-{i}"
                    post = {"post_id": pid, "author_id": f"u{i % 5000}", "kind": "image",
                            "caption": f"evening market photo number {i} from the soak"}
                    try:
                        r = http.post("/v1/posts", files={"post": (None, json.dumps(post), "application/json"),
                                                          "media": ("photo.jpg", photo, "image/jpeg")},
                                      headers=auth_headers(post["author_id"], settings=s))
                        if r.status_code == 202:
                            uploads[pid] = time.time()
                        else:
                            rec.add("upload_errors", f"{r.status_code} {r.text[:120]}")
                    except httpx.HTTPError as exc:
                        rec.add("upload_errors", type(exc).__name__)
                    i += 1
                    time.sleep(max(0.0, 1.0 - (time.monotonic() - t0)))

        def reader():
            queries = ["pasta recipe", "evening market photo", "football goal", "cat video", "travel beach"]
            i = 0
            with httpx.Client(base_url=platform.api_url, timeout=30) as http:
                while not stop.is_set():
                    for kind, url in (("search", f"/v1/search?q={queries[i % len(queries)]}"),
                                      ("stats", f"/v1/posts/p{i % 3000 + 1:07d}/stats")):
                        t0 = time.time()
                        try:
                            code = http.get(url).status_code
                        except httpx.HTTPError as exc:
                            code = type(exc).__name__
                        rec.add(f"{kind}_latency", time.time() - t0)
                        rec.add(f"{kind}_codes", code)
                    i += 1
                    time.sleep(1.0 / cfg["reads_per_s"])

        def index_poller():
            conn = None
            while not stop.is_set() or not rec.get("settled"):
                pending = [p for p in list(uploads) if p not in searchable]
                try:
                    if pending:
                        conn = conn or psycopg.connect(s.postgres, autocommit=True, connect_timeout=5)
                        for (pid,) in conn.execute("SELECT id FROM search.post_vectors WHERE id = ANY(%s)",
                                                   (pending,)).fetchall():
                            searchable[pid] = time.time()
                except psycopg.Error as exc:  # the table is created by the first content run; a busy server
                    rec.add("index_poll_errors", f"{type(exc).__name__}: {str(exc)[:120]}")
                    if conn is not None:
                        conn.close()
                    conn = None
                time.sleep(1.0)
            if conn is not None:
                conn.close()

        threads = [threading.Thread(target=event_client, args=(w,), daemon=True) for w in range(cfg["clients"])]
        threads += [threading.Thread(target=f, daemon=True) for f in (uploader, reader)]
        pollers = [threading.Thread(target=index_poller, daemon=True)]
        watch = DrainWatch(s, interval=0.5).__enter__()
        for t in threads + pollers:
            t.start()
        t_start = time.time()
        for minute in range(cfg["minutes"]):
            time.sleep(60)
            accepted = sum(len(b[2]) for b in rec.get("batches"))
            say(f"minute {minute + 1}/{cfg['minutes']}: {accepted} events accepted, {len(uploads)} uploads, "
                f"{len(searchable)} searchable")
        stop.set()
        for t in threads:
            t.join(timeout=60)
        t_load_end = time.time()
        batches = rec.get("batches")
        last_response_ms = int(max(b[1] for b in batches) * 1000) if batches else 0
        settle_deadline = time.time() + cfg["settle_s"]
        while time.time() < settle_deadline:
            if watch.committed_ms >= last_response_ms and len(searchable) >= len(uploads):
                break
            time.sleep(2)
        out["settle_s"] = round(time.time() - t_load_end, 1)
        rec.add("settled", True)
        for t in pollers:
            t.join(timeout=10)
        watch.__exit__()

        # accounting by distinct id
        accepted_ids = {i for b in batches for i in b[2]}
        landed = [i for i in lake.read(INTERACTIONS, settings=s, columns=["event_id"]).column("event_id").to_pylist()
                  if i.startswith(f"sk{tag}-")]
        landed_set = set(landed)
        landings = [(t0, watch.landed_at(t1)) for t0, t1, _ in batches]
        lat = [at - t0 for t0, at in landings if at is not None]
        up_lat = [searchable[p] - uploads[p] for p in uploads if p in searchable]
        load_s = t_load_end - t_start
        new_runs = [r for r in platform.runs() if r.run_id not in runs_before]
        by_job: dict[str, dict[str, int]] = {}
        for r in new_runs:
            by_job.setdefault(r.job_name, {}).setdefault(r.status.value, 0)
            by_job[r.job_name][r.status.value] += 1
        failed = platform.failed_runs()
        out.update({
            "load_s": round(load_s, 1),
            "events_accepted": len(accepted_ids),
            "events_accepted_per_s": round(len(accepted_ids) / load_s, 1),
            "events_in_delta": len(landed),
            "distinct_ids_in_delta": len(landed_set),
            "lost": len(accepted_ids - landed_set),
            "duplicated": len(landed) - len(landed_set),
            "unexpected": len(landed_set - accepted_ids),
            "event_errors": len(rec.get("event_errors")),
            "event_error_samples": rec.get("event_errors")[:5],
            "post_events_p50_ms": pct([t1 - t0 for t0, t1, _ in batches], 0.5),
            "post_events_p99_ms": pct([t1 - t0 for t0, t1, _ in batches], 0.99),
            "event_to_delta_p50_ms": pct(lat, 0.5),
            "event_to_delta_p99_ms": pct(lat, 0.99),
            "event_batches_landed": len(lat),
            "event_batches": len(batches),
            "uploads": len(uploads),
            "upload_errors": rec.get("upload_errors")[:5],
            "index_poll_errors": rec.get("index_poll_errors")[:5],
            "uploads_searchable": len(up_lat),
            "upload_to_searchable_p50_ms": pct(up_lat, 0.5),
            "upload_to_searchable_p99_ms": pct(up_lat, 0.99),
            "reads": {kind: {"n": len(rec.get(f"{kind}_latency")),
                             "p50_ms": pct(rec.get(f"{kind}_latency"), 0.5),
                             "p99_ms": pct(rec.get(f"{kind}_latency"), 0.99),
                             "codes": {str(c): rec.get(f"{kind}_codes").count(c) for c in set(rec.get(f"{kind}_codes"))}}
                      for kind in ("search", "stats")},
            "rss_mb_end": platform.rss_mb(),
            "runs_during_soak": by_job,
            "failed_runs": len(failed),
            "failed_run_samples": [{"job": r.job_name, "run_id": r.run_id,
                                    "errors": platform.failure_messages(r.run_id)[-2:]} for r in failed[:5]],
            "measured_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        })
        return out
    finally:
        platform.stop()


if __name__ == "__main__":
    print(json.dumps(main(json.loads(sys.argv[1]))), flush=True)
