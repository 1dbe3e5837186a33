"""Benchmark `ingest`: sustained events/s through the API into bronze Delta, and the latency from
`POST /v1/events` to the event being in Delta.

A real uvicorn API process takes event batches from concurrent HTTP clients and appends them to the
Redis stream; a drain loop (what each sensor-launched run does) commits micro-batches to Delta. A
client batch has landed when a drain that finished after the batch's response had committed stream
entries past the batch's last entry (Redis stream ids carry the server's millisecond clock).
"""

from __future__ import annotations

import datetime as dt
import json
import sys
import threading
import time
import uuid

from bench import DrainWatch, auth_headers, pct

METHOD = (
    "uvicorn API process (1 worker) on 127.0.0.1; N client threads POST /v1/events batches for a fixed "
    "time; one drain loop commits micro-batches to Delta continuously; latency per batch = time of the "
    "first 0.25 s poll at which the drain's Delta app-transaction version (its last committed stream entry) "
    "covers the batch's response time - time the POST was sent; events/s = "
    "events landed in Delta / (last landing - first send); accounting by distinct event_id: lost = accepted ids "
    "missing from Delta, duplicated = Delta rows - distinct ids in Delta"
)
SCALES = {
    "small": [dict(seconds=20, batch=100, clients=4)],
    "full": [dict(seconds=20, batch=100, clients=4), dict(seconds=60, batch=500, clients=4)],
}


def configs(scale: str) -> list[dict]:
    return SCALES[scale]


def main(cfg: dict) -> dict:
    import httpx
    import redis

    from socialpulse import lake
    from socialpulse.contracts import INTERACTIONS
    from socialpulse.drain import drain_all, stream_backlog
    from socialpulse.services.manager import services_down, services_up
    from socialpulse.settings import get_settings

    s = get_settings()
    services_up(s, ["redis", "postgres", "mlflow"])
    services_up(s, ["api"])
    rclient = redis.Redis.from_url(s.redis)
    api = f"http://{s.api_host}:{s.api_port}"
    sends: list[tuple[float, float, int]] = []  # (sent, responded, accepted)
    accepted_ids: set[str] = set()  # ids of every event the API answered 202 for
    errors: list[str] = []
    stop = threading.Event()

    def drain_loop():
        while not stop.is_set():
            if not drain_all(s, rclient).batches:
                time.sleep(0.02)

    def client_loop(worker: int):
        with httpx.Client(base_url=api, timeout=30) as http:
            n = 0
            while time.time() < deadline:
                # an app sends its own user's events, with that user's token
                user = f"u{(n * 7 + worker) % 5000:06d}"
                events = [
                    dict(event_id=f"b{worker}-{n}-{i}-{uuid.uuid4().hex[:8]}", event_type="view",
                         user_id=user, post_id=f"p{(n * 13 + i) % 50000:07d}", watch_time_s=float(i % 30))
                    for i in range(cfg["batch"])
                ]
                t0 = time.time()
                resp = http.post("/v1/events", json={"events": events}, headers=auth_headers(user))
                t1 = time.time()
                if resp.status_code != 202:
                    errors.append(f"{resp.status_code} {resp.text[:200]}")
                    continue
                sends.append((t0, t1, resp.json()["accepted"]))
                accepted_ids.update(e["event_id"] for e in events)
                n += 1

    watch = DrainWatch(s).__enter__()
    try:
        drainer = threading.Thread(target=drain_loop, daemon=True)
        drainer.start()
        deadline = time.time() + cfg["seconds"]
        clients = [threading.Thread(target=client_loop, args=(w,)) for w in range(cfg["clients"])]
        for c in clients:
            c.start()
        for c in clients:
            c.join()
        t_wait = time.time() + 180
        while sum(stream_backlog(rclient).values()) and time.time() < t_wait:
            time.sleep(0.1)
        time.sleep(0.5)
        stop.set()
        drainer.join(timeout=60)
        watch.__exit__()

        accepted = sum(a for _, _, a in sends)
        landed_ids = lake.read(INTERACTIONS, settings=s, columns=["event_id"]).column("event_id").to_pylist()
        landed_rows, landed = len(landed_ids), set(landed_ids)
        landings = [(t0, watch.landed_at(t1)) for t0, t1, _ in sends]
        latencies = [at - t0 for t0, at in landings if at is not None]
        first_send = min(t0 for t0, _, _ in sends)
        last_landing = max(at for _, at in landings if at is not None)
        api_s = max(t1 for _, t1, _ in sends) - first_send
        return {
            **cfg,
            "batches": len(sends),
            "events_accepted": accepted,
            "events_in_delta": landed_rows,
            "distinct_ids_accepted": len(accepted_ids),
            "distinct_ids_in_delta": len(landed),
            # by distinct id: a loss and a duplicate never cancel out
            "lost": len(accepted_ids - landed),
            "duplicated": landed_rows - len(landed),
            "unexpected": len(landed - accepted_ids),
            "api_events_per_s": round(accepted / api_s, 1),
            "end_to_end_events_per_s": round(landed_rows / (last_landing - first_send), 1),
            "post_latency_p50_ms": pct([t1 - t0 for t0, t1, _ in sends], 0.5),
            "post_latency_p99_ms": pct([t1 - t0 for t0, t1, _ in sends], 0.99),
            "post_to_delta_p50_ms": pct(latencies, 0.5),
            "post_to_delta_p99_ms": pct(latencies, 0.99),
            "batches_seen_landing": len(latencies),
            "http_errors": errors[:5],
            "measured_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        }
    finally:
        stop.set()
        services_down(s)


if __name__ == "__main__":
    print(json.dumps(main(json.loads(sys.argv[1]))), flush=True)
