"""Benchmark `feed`: GET /v1/feed on the 100k-user / 1M-post / 10M-interaction world, side by side with the
peer it must beat (Feast's own online fetch of the same 500 candidates' features), the ranker alone, and
the offline side (training-set build, ranker training, serving-state build).

The world is the seed-7 synthetic world (bronze, as the loaders write it). Post vectors are planted, not
encoded: embedding a million captions with MiniLM on two cores would take hours, and the feed's latency
does not depend on how a vector was made. Each post's vector is ``normalise(c[k] + 0.9 * e)`` for its
planted cluster k, with c[k] a random unit centroid and e Gaussian noise of norm about 1 (cosine to its own
centroid about 0.7, to another about 0); they are written where the content assets write theirs (silver
post_embeddings with the current encoder version, the Postgres index with its HNSW graph), so everything
downstream (user interest on Spark, the training set, the feed) runs the platform's own code:
``user_interest``/``user_vectors``, ``engagement_features``/``online_engagement_features`` (Spark, Feast into
Redis), ``feed_training_set`` (Spark labels, Feast point in time), ``train_and_register`` (LightGBM, MLflow)
and ``publish_state``.

Load: an open-loop generator (requests sent on a fixed schedule whatever the answers, latency measured from
the scheduled send so queueing is counted) from this machine's own cores, 64 keep-alive HTTP/1.1 connections
on raw asyncio streams (httpx cost ~10 ms of CPU per request, a fifth of the 2 cores at 50 requests/s),
users drawn at random, a fresh session per request (no cursor: every request ranks its candidates).
"""

from __future__ import annotations

import datetime as dt
import json
import random
import statistics
import time

import numpy as np

from bench import auth_headers, load_world, pct, run_main, timed, token_for
from bench.platform import process_tree, service_pids

METHOD = (
    "one process per run on this machine (2 cores): embedded Postgres 18 + pgvector, Redis, Sail (Spark Connect), "
    "MLflow; the synthetic world loaded into bronze; planted post vectors (see the module docstring) written to "
    "silver post_embeddings and the Postgres index (HNSW m=16, ef_construction=64); alt-text for every image and "
    "video post in captions.post_captions (grounded composer, planted labels), read by the feed for each page; the platform's own assets for "
    "interest vectors, engagement features + Feast materialization, training sets and the ranker; then the API "
    "(uvicorn, 2 workers) under an open-loop load of GET /v1/feed?limit=10 (each request with its user's bearer token; rate limits off) at each rate for a fixed time (64 "
    "keep-alive connections, raw asyncio HTTP/1.1), latency from the scheduled send; Feast peer: "
    "FeatureStore.get_online_features(feed_ranking_v1) for the same user and 500 candidate posts, sequential calls; "
    "ranker: Ranker.score on 500 x 12 features; the feed's relations loaded into Postgres's buffer cache "
    "(vectors.prewarm, as after an index build) and a 3 s warm-up at 20/s (not recorded); cpu_ms_per_request: CPU time of each process tree (Postgres with its backends, the API, Redis, this "
    "load generator) over the rate's run, divided by its requests"
)
SCALES = {
    # a quick development run (minutes), for comparing changes; its figures are not the benchmark
    "dev": [dict(users=2_000, posts=20_000, interactions=200_000, days=7, train_days=4,
                 rates=[25, 50, 100], seconds=5, peer_calls=20, cluster_users=100)],
    "small": [dict(users=10_000, posts=100_000, interactions=1_000_000, days=14, train_days=4,
                   rates=[25, 50, 75, 100], seconds=15, peer_calls=100, cluster_users=300)],
    "full": [dict(users=100_000, posts=1_000_000, interactions=10_000_000, days=14, train_days=4,
                  rates=[25, 50, 75, 100], seconds=30, peer_calls=200, cluster_users=500)],
}
NOISE = 0.9
#: uvicorn workers of the API under load: one per core (a single Python process saturates near 50 requests/s)
API_WORKERS = 2
CANDIDATES = 500


def configs(scale: str) -> list[dict]:
    return SCALES[scale]


def _say(msg: str) -> None:
    print(msg, flush=True)


def summary_ms(values: list[float]) -> dict:
    if not values:
        return {"p50_ms": None, "p99_ms": None, "mean_ms": None}
    return {"p50_ms": pct(values, 0.5), "p99_ms": pct(values, 0.99), "mean_ms": round(statistics.mean(values) * 1000, 2)}


# --- the world's vectors -------------------------------------------------------------------------------------------
def plant_vectors(s, out: dict) -> dict:
    """Planted post vectors into silver post_embeddings and the Postgres index (with its HNSW graph)."""
    import psycopg
    import pyarrow as pa

    from assets.content.assets import _encoder
    from assets.content.embeddings import DIM, embedding_version, normalise, vectors_column
    from assets.content.tables import POST_EMBEDDINGS
    from socialpulse import lake, vectors
    from socialpulse.contracts import POSTS

    posts = lake.read(POSTS, settings=s, columns=["post_id", "author_id", "hashtags", "language", "created_at", "event_date"])
    truth = lake.read(f"{s.lake}/meta/synthetic_posts", columns=["post_id", "cluster"])
    cluster = dict(zip(truth["post_id"].to_pylist(), truth["cluster"].to_pylist()))
    ids = posts["post_id"].to_pylist()
    k = max(cluster.values()) + 1
    rng = np.random.default_rng(11)
    centroids = normalise(rng.normal(size=(k, DIM)))
    labels = np.fromiter((cluster[p] for p in ids), dtype=np.int64, count=len(ids))
    vecs = np.empty((len(ids), DIM), np.float32)
    for start in range(0, len(ids), 100_000):
        sl = slice(start, start + 100_000)
        noise = rng.normal(scale=NOISE / np.sqrt(DIM), size=(len(labels[sl]), DIM))
        vecs[sl] = normalise(centroids[labels[sl]] + noise).astype(np.float32)
    version = embedding_version(_encoder().version)
    now = dt.datetime.now(dt.timezone.utc)
    t0 = time.perf_counter()
    n = len(ids)
    table = pa.table({
        "post_id": posts["post_id"], "author_id": posts["author_id"], "language": posts["language"],
        "hashtags": posts["hashtags"], "document": pa.array(["planted"] * n), "content_hash": pa.array(["planted"] * n),
        "encoder_version": pa.array([version] * n), "embedding": vectors_column(vecs),
        "embedded_at": pa.array([now] * n, pa.timestamp("us", tz="UTC")), "created_at": posts["created_at"],
        "event_date": posts["event_date"]})
    lake.overwrite(POST_EMBEDDINGS, table.cast(POST_EMBEDDINGS.schema), settings=s)
    out["post_embeddings_write_s"] = round(time.perf_counter() - t0, 1)
    _say(f"feed bench: {n} planted post vectors in silver ({out['post_embeddings_write_s']} s)")
    authors = posts["author_id"].to_pylist()
    created = [c.isoformat() for c in posts["created_at"].to_pylist()]
    days = [d.isoformat() for d in posts["event_date"].to_pylist()]
    tags = posts["hashtags"].to_pylist()
    t0 = time.perf_counter()
    with psycopg.connect(s.postgres) as conn:
        vectors.ensure_tables(conn)
        with conn.cursor() as cur:
            with cur.copy(f"COPY {vectors.SCHEMA}.{vectors.POSTS_TABLE} (id, metadata, contents, embedding) FROM STDIN") as cp:
                for i in range(n):
                    meta = {"post_id": ids[i], "author_id": authors[i], "author_handle": authors[i], "created_at": created[i],
                            "day": days[i], "language": None, "hashtags": tags[i], "action": "allow",
                            "content_hash": "planted", "embedding_version": version}
                    cp.write_row((ids[i], json.dumps(meta), " ".join(f"#{t}" for t in tags[i]), vectors.vector_literal(vecs[i])))
        conn.commit()
        out["index_copy_s"] = round(time.perf_counter() - t0, 1)
        _say(f"feed bench: {n} rows copied into the index ({out['index_copy_s']} s); building HNSW")
        conn.execute(f"ANALYZE {vectors.SCHEMA}.{vectors.POSTS_TABLE}")
        conn.commit()
        t0 = time.perf_counter()
        vectors.ensure_hnsw(conn, build_memory="3GB" if n > 200_000 else "1GB")
        out["hnsw_build_s"] = round(time.perf_counter() - t0, 1)
    _say(f"feed bench: HNSW built in {out['hnsw_build_s']} s")
    return {"ids": ids, "cluster": cluster}


def plant_alt_text(s, out: dict) -> int:
    """Alt-text for every image and video post in ``captions.post_captions`` (what the captions asset publishes),
    so that the feed's alt-text read under load is the real lookup over a full table. Written by the grounded
    composer from the post's kind, duration and caption with one planted label per cluster (the media labeller
    over a million images would take hours on two cores; the feed's latency does not depend on how the text
    was made)."""
    import psycopg
    import pyarrow as pa
    import pyarrow.compute as pc

    from assets.captions.facts import PostFacts
    from assets.captions.grounded import alt_text
    from socialpulse import captions, lake
    from socialpulse.contracts import POSTS
    from socialpulse.stores.postgres import copy_arrow

    labels = ("espresso", "golden retriever", "seashore", "mountain bike", "pizza", "acoustic guitar", "sports car",
              "tabby cat", "volcano", "running shoe", "bookshop", "ski")
    posts = lake.read(POSTS, settings=s, columns=["post_id", "author_id", "kind", "caption", "duration_s", "event_date"])
    media = posts.filter(pc.is_in(posts["kind"], pa.array(["image", "video"])))
    truth = lake.read(f"{s.lake}/meta/synthetic_posts", columns=["post_id", "cluster"])
    cluster = dict(zip(truth["post_id"].to_pylist(), truth["cluster"].to_pylist()))
    t0 = time.perf_counter()
    texts = [alt_text(PostFacts(post_id=r["post_id"], kind=r["kind"], caption=r["caption"], duration_s=r["duration_s"],
                                labels=((labels[cluster.get(r["post_id"], 0) % len(labels)], 0.8),)))
             for r in media.to_pylist()]
    n = media.num_rows
    table = media.select(["post_id", "author_id", "kind", "event_date"]).append_column("alt_text", pa.array(texts))
    for name, value, type_ in (("captions", [], pa.list_(pa.string())), ("hashtags", [], pa.list_(pa.string())),
                               ("generator", "planted", pa.string()), ("fallback", False, pa.bool_()),
                               ("labels_version", "planted", pa.string()),
                               ("generated_at", dt.datetime.now(dt.timezone.utc), pa.timestamp("us", tz="UTC"))):
        table = table.append_column(name, pa.array([value] * n, type_))
    with psycopg.connect(s.postgres) as conn:
        captions.ensure_tables(conn)
        n = copy_arrow(conn, captions.TABLE, table)
        conn.execute(f"ANALYZE {captions.TABLE}")
        conn.commit()
    out["alt_text_rows"] = n
    out["alt_text_write_s"] = round(time.perf_counter() - t0, 1)
    _say(f"feed bench: alt-text for {n} media posts in {captions.TABLE} ({out['alt_text_write_s']} s)")
    return n


# --- load -------------------------------------------------------------------------------------------------------------
def cpu_seconds(pids: dict[str, int]) -> dict[str, float]:
    """CPU time (user + system) of each service's process tree (Postgres with its backends), and of this
    process (the load generator)."""
    import os

    import psutil

    def seconds(procs) -> float:
        total = 0.0
        for q in procs:
            try:
                t = q.cpu_times()
                total += t.user + t.system
            except psutil.Error:
                pass
        return total

    out = {name: seconds(process_tree(pid)) for name, pid in pids.items()}
    out["load_generator"] = seconds([psutil.Process(os.getpid())])
    return out


async def _http_load(host: str, port: int, paths: list[str], rate: int, connections: int) -> list[tuple]:
    """Send ``GET paths[i]`` (a path, or ``(path, bearer token)``) at ``t0 + i / rate`` over ``connections`` keep-alive HTTP/1.1 connections (raw
    asyncio streams: httpx's client cost ~10 ms of CPU per request on the cores the server needs); a request
    waits for a free connection when all are busy, its latency still counted from its scheduled time.
    Returns ``(scheduled, done, status or error name, body)`` per request; bodies are parsed afterwards."""
    import asyncio

    queue: asyncio.Queue = asyncio.Queue()
    out: list[tuple] = []

    async def send(conn, request):
        reader, writer = conn
        path, token = request if isinstance(request, tuple) else (request, None)
        auth = f"Authorization: Bearer {token}\r\n" if token else ""
        writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n{auth}\r\n".encode())
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 60)
        length = 0
        for line in head.split(b"\r\n"):
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        return int(head[9:12]), await asyncio.wait_for(reader.readexactly(length), 60)

    async def worker():
        conn = None
        while (item := await queue.get()) is not None:
            scheduled, path = item
            for attempt in (0, 1):  # a kept-alive connection the server closed meanwhile is reopened once
                reused = conn is not None
                try:
                    if conn is None:
                        conn = await asyncio.open_connection(host, port)
                    status, body = await send(conn, path)
                    out.append((scheduled, time.perf_counter(), status, body))
                    break
                except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError, asyncio.LimitOverrunError) as exc:
                    conn = None
                    if not reused or attempt:
                        out.append((scheduled, time.perf_counter(), type(exc).__name__, b""))
                        break
        if conn is not None:
            conn[1].close()

    workers = [asyncio.create_task(worker()) for _ in range(connections)]
    t0 = time.perf_counter() + 0.2
    for i, path in enumerate(paths):
        wait = t0 + i / rate - time.perf_counter()
        if wait > 0:
            await asyncio.sleep(wait)
        queue.put_nowait((t0 + i / rate, path))
    for _ in workers:
        queue.put_nowait(None)
    await asyncio.gather(*workers)
    return out


def open_loop(api: str, users: list[str], rate: int, seconds: int, connections: int = 64,
              pids: dict[str, int] | None = None) -> dict:
    """``rate`` requests/s for ``seconds``; with ``pids``, also the CPU milliseconds each process spent per
    request (where a 2-core machine's time goes)."""
    import asyncio
    from urllib.parse import urlsplit

    url = urlsplit(api)
    rng = random.Random(rate)
    n = rate * seconds
    paths = [("/v1/feed?limit=10", token_for(rng.choice(users))) for _ in range(n)]
    cpu0 = cpu_seconds(pids) if pids else {}
    t0 = time.perf_counter()
    done = asyncio.run(_http_load(url.hostname, url.port, paths, rate, connections))
    wall = time.perf_counter() - t0
    cpu1 = cpu_seconds(pids) if pids else {}
    cpu = {k: round((cpu1[k] - cpu0.get(k, 0.0)) * 1000 / max(n, 1), 2) for k in cpu1}
    lat: list[float] = []
    server: list[float] = []
    stages: dict[str, list[float]] = {}
    errors: dict[str, int] = {}
    degraded = 0
    for scheduled, finished, status, body in done:
        if status != 200:
            errors[str(status)] = errors.get(str(status), 0) + 1
            continue
        doc = json.loads(body)
        lat.append(finished - scheduled)
        server.append(doc["took_ms"] / 1000)
        for k, v in doc.get("timing_ms", {}).items():
            stages.setdefault(k, []).append(v)
        degraded += bool(doc["degraded"])
    return {"rate": rate, "seconds": seconds, "requests": n, "ok": len(lat), "errors": errors, "degraded": degraded,
            "achieved_per_s": round(len(lat) / wall, 1), **summary_ms(lat),
            "server": summary_ms(server),
            "server_stage_p50_ms": {k: round(float(np.median(v)), 2) for k, v in stages.items()},
            "cpu_ms_per_request": cpu}


def feast_peer(s, user: str, post_ids: list[str], calls: int) -> dict:
    from socialpulse import features

    features.get_feed_ranking_features(s, user, post_ids)  # warm: registry, connection
    lat = []
    for _ in range(calls):
        t0 = time.perf_counter()
        rows = features.get_feed_ranking_features(s, user, post_ids)
        lat.append(time.perf_counter() - t0)
    filled = sum(1 for r in rows if r.get("views_7d") is not None)
    return {"candidates": len(post_ids), "calls": calls, "rows_with_features": filled, **summary_ms(lat)}


def ranker_alone(ranker, calls: int = 1000) -> dict:
    from socialpulse.ranking.model import FEATURES

    rng = np.random.default_rng(5)
    X = rng.normal(size=(CANDIDATES, len(FEATURES)))
    lat = []
    for _ in range(calls):
        t0 = time.perf_counter()
        ranker.score(X)
        lat.append(time.perf_counter() - t0)
    return {"candidates": CANDIDATES, "calls": calls, **summary_ms(lat)}


def _restart_spark(s) -> None:
    """Stop Sail and start a fresh one on the same port (its socket may take a few seconds to be released)."""
    from socialpulse.services.manager import ServiceError, services_down, services_up
    from socialpulse.spark import stop_sessions

    stop_sessions()
    services_down(s, ["spark"])
    for attempt in range(30):
        try:
            services_up(s, ["spark"])
            return
        except ServiceError:
            if attempt == 29:
                raise
            time.sleep(1)


def main(cfg: dict) -> dict:
    import dagster as dg
    import httpx

    from assets.content.assets import user_interest, user_vectors
    from assets.engagement.assets import engagement_features, online_engagement_features
    from assets.ranking.assets import feed_training_set
    from assets.ranking.state_job import publish_state
    from assets.ranking.train import train_and_register
    from assets.ranking.training import cluster_recovery
    from orchestration.resources import build_resources
    from socialpulse import lake
    from socialpulse.services.manager import services_down, services_up
    from socialpulse.settings import get_settings

    s = get_settings()
    services_up(s, ["postgres", "redis", "spark", "mlflow"])
    out = dict(cfg)
    resources = build_resources(s)

    def materialize(assets_, day):
        r = dg.materialize(assets_, resources=resources, partition_key=day.isoformat(), raise_on_error=False)
        if not r.success:
            raise RuntimeError(f"{[a.key.to_user_string() for a in assets_]} {day} failed: "
                               f"{[e.message for e in r.all_events if e.is_failure][:3]}")
        return {e.asset_key.path[-1]: {k: v.value for k, v in e.event_specific_data.materialization.metadata.items()}
                for e in r.get_asset_materialization_events()}

    try:
        start, end = load_world(s, cfg, out, _say)
        planted = plant_vectors(s, out)
        plant_alt_text(s, out)
        train_days = [end - dt.timedelta(days=i) for i in range(cfg["train_days"] - 1, -1, -1)]
        feature_days = [train_days[0] - dt.timedelta(days=1)] + train_days
        out["offline"] = {"interest_s": {}, "engagement_s": {}, "training_set": {}}
        for day in feature_days:
            # Sail's memory grows run after run at this scale (the build bench was OOM-killed): a fresh server per day
            _restart_spark(s)
            _, secs = timed(materialize, [engagement_features, online_engagement_features], day, digits=1)
            out["offline"]["engagement_s"][day.isoformat()] = secs
            _, secs = timed(materialize, [user_interest, user_vectors], day, digits=1)
            out["offline"]["interest_s"][day.isoformat()] = secs
            _say(f"feed bench: features and interest of {day} done")
        for day in train_days:
            meta, secs = timed(materialize, [feed_training_set], day, digits=1)
            out["offline"]["training_set"][day.isoformat()] = {"s": secs, **meta["feed_training_set"]}
            _say(f"feed bench: training set {day}: {secs} s {meta['feed_training_set']}")
        import gc

        import pyarrow as pa

        gc.collect()  # the steps above ran in this process: hand their freed Arrow buffers back before training
        pa.default_memory_pool().release_unused()
        t0 = time.perf_counter()
        trained = train_and_register(s, log=_say)
        out["offline"]["ranker_total_s"] = round(time.perf_counter() - t0, 1)
        ranker = trained.pop("ranker")
        out["offline"]["ranker"] = {k: v for k, v in trained.items() if k != "evaluation"}
        out["offline"]["evaluation"] = trained["evaluation"]
        import redis

        state, secs = timed(publish_state, s, redis.Redis.from_url(s.redis), digits=1)
        out["offline"]["serving_state"] = {"s": secs, **state}
        out["ranker_alone"] = ranker_alone(ranker)
        _say(f"feed bench: ranker alone {out['ranker_alone']}")

        import psycopg

        from socialpulse import vectors

        with psycopg.connect(s.postgres, autocommit=True) as conn:  # the platform warms an index it builds; the
            out["prewarm_blocks"] = vectors.prewarm(conn)             # training steps since may have evicted it
        s = s.model_copy(update={"api_workers": API_WORKERS})
        services_up(s, ["api"])
        api = f"http://{s.api_host}:{s.api_port}"
        users = lake.read(f"{s.lake}/meta/synthetic_users", columns=["user_id"])["user_id"].to_pylist()
        with httpx.Client(base_url=api, timeout=60) as c:
            for _ in range(120):  # the champion loads in the background after start
                body = c.get("/v1/feed", headers=auth_headers(users[0]), params={"limit": 10}).json()
                if body.get("model_version") == ranker.version:
                    break
                time.sleep(1)
            out["model_version_served"] = body.get("model_version")
            probe = c.get("/v1/feed", headers=auth_headers(users[1]), params={"limit": 50}).json()
        # the peer: Feast's SDK fetch of the same features for one user's 500 candidates
        cand_ids = [i["post_id"] for i in probe["items"]]
        have = set(cand_ids)
        cand_ids += [p for p in planted["ids"][-5000:] if p not in have][: CANDIDATES - len(cand_ids)]
        out["feast_get_online_features_500"] = feast_peer(s, users[1], cand_ids, cfg["peer_calls"])
        _say(f"feed bench: Feast peer {out['feast_get_online_features_500']}")
        rng = random.Random(9)
        load_users = rng.sample(users, min(len(users) * 4 // 5, 20_000))
        out["load"] = []
        open_loop(api, load_users, 20, 3)  # warm-up, not recorded: the connection pool grows, caches fill
        for rate in cfg["rates"]:
            result = open_loop(api, load_users, rate, cfg["seconds"], pids=service_pids(s))
            out["load"].append(result)
            _say(f"feed bench: {result}")
        under = [r["rate"] for r in out["load"] if r["p99_ms"] is not None and r["p99_ms"] < 100 and not r["errors"]]
        out["max_rate_p99_under_100ms"] = max(under) if under else None
        truth = lake.read(f"{s.lake}/meta/synthetic_users", columns=["user_id", "cluster"])
        user_cluster = dict(zip(truth["user_id"].to_pylist(), truth["cluster"].to_pylist()))
        loaded = set(load_users)
        fresh_users = [u for u in users if u not in loaded][: cfg["cluster_users"]]
        feeds = {}
        with httpx.Client(base_url=api, timeout=60) as c:
            for u in fresh_users:
                feeds[u] = [i["post_id"] for i in c.get("/v1/feed", headers=auth_headers(u), params={"limit": 10}).json()["items"]]
        out["clusters"] = cluster_recovery(feeds, user_cluster, planted["cluster"], planted["ids"])
        _say(f"feed bench: planted clusters {out['clusters']}")
    finally:
        services_down(s)
    return out


if __name__ == "__main__":
    run_main(main)
