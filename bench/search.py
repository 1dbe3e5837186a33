"""Benchmark `search`: embedding throughput through the asset against the raw encoder, the vector index's
load and HNSW build times, recall@10 against exact search with p50/p99 latency for several HNSW settings
at two index sizes (exact search side by side), and GET /v1/search under 20 concurrent clients.

Vectors at index scale: encoding a million texts on two cores would take hours, so the index holds
vectors synthesised from real ones. The asset's MiniLM embeddings of a synthetic world's posts and the
vendored CrisisLex tweets form a base set B; each indexed or query vector is
``normalise(B[i] + 0.5 * B[j] + e)`` with random i, j and Gaussian noise e of norm about 0.5. That keeps
MiniLM's geometry (clusters, a low intrinsic dimension) while every vector is distinct; queries are drawn
the same way and are never in the index. Ground truth is exact cosine top-10 in numpy.
"""

from __future__ import annotations

import concurrent.futures as cf
import datetime as dt
import json
import random
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from bench import pct

METHOD = (
    "one process on this machine (2 cores), Postgres 18 + pgvector 0.8 embedded; embedding: post_embeddings "
    "materialized in process over N posts of a synthetic day (posts/s = N / run wall, and the encoder's share), "
    "then TextEncoder.encode on the same documents at the same batch size (64); index: vectors synthesised from "
    "real MiniLM embeddings (see the module docstring), loaded with the asset's sync (timescale-vector upsert) "
    "for the first 10k rows and COPY for the rest, HNSW built through the client's SQL with 1-3 GB "
    "maintenance_work_mem; queries: the API's nearest() SQL (metadata filter action=allow, iterative scan), "
    "recall@10 against numpy exact top-10, latency per query (p50/p99); exact: the same SQL with index scans "
    "off; API: uvicorn (1 worker) over the first index size, 20 client threads sending GET /v1/search with "
    "varied queries"
)
SCALES = {
    "small": [dict(asset_posts=500, sizes=[20_000], hnsw=[[20_000, 16, 64]], ef=[10, 20, 40, 80, 160],
                   queries=100, exact_queries=20, api_clients=20, api_requests=300)],
    "full": [dict(asset_posts=5_000, sizes=[100_000, 1_000_000],
                  hnsw=[[100_000, 8, 32], [100_000, 16, 64], [100_000, 32, 128], [1_000_000, 16, 64]],
                  ef=[10, 20, 40, 80, 160, 320], queries=200, exact_queries=30, api_clients=20, api_requests=2_000)],
}
REPO = Path(__file__).resolve().parents[1]
BUILD_MEMORY = {100_000: "1GB", 1_000_000: "3GB"}


def configs(scale: str) -> list[dict]:
    return SCALES[scale]


def _say(msg: str) -> None:
    print(msg, flush=True)


def summary_ms(values: list[float]) -> dict:
    return {"p50_ms": pct(values, 0.5), "p99_ms": pct(values, 0.99), "mean_ms": round(statistics.mean(values) * 1000, 2)}


# --- embedding throughput: the asset vs the raw encoder ---------------------------------------------------------
def bench_embedding(s, n_posts: int) -> tuple[dict, np.ndarray, list[str]]:
    import dagster as dg

    from assets.content import assets as content_assets
    from assets.content.embeddings import to_matrix
    from assets.content.tables import POST_EMBEDDINGS
    from orchestration.resources import build_resources
    from socialpulse import lake
    from socialpulse.encoder import TextEncoder
    from socialpulse.synthetic import load_synthetic

    day = dt.date(2026, 2, 1)
    load_synthetic(s, users=max(500, n_posts // 5), posts=n_posts, days=1, seed=11, start=day)
    content_assets._encoder().load()  # both sides start with the model in memory
    t0 = time.perf_counter()
    result = dg.materialize([content_assets.post_embeddings], resources=build_resources(s), partition_key=day.isoformat())
    asset_s = time.perf_counter() - t0
    assert result.success
    rows = lake.read(POST_EMBEDDINGS, settings=s, filters=[("event_date", "=", day)])
    docs = rows["document"].to_pylist()
    raw = TextEncoder(batch_size=64, max_length=256).load()
    t0 = time.perf_counter()
    raw.encode(docs)
    raw_s = time.perf_counter() - t0
    out = {
        "posts": len(docs), "batch_size": 64, "asset_run_s": round(asset_s, 2),
        "asset_posts_per_s": round(len(docs) / asset_s, 1), "encoder_s": round(raw_s, 2),
        "encoder_texts_per_s": round(len(docs) / raw_s, 1), "asset_overhead_share": round(1 - raw_s / asset_s, 3),
        "mean_document_chars": round(statistics.mean(len(d) for d in docs), 1),
    }
    return out, to_matrix(rows["embedding"]), rows["hashtags"].to_pylist()


def crisislex_vectors(limit: int = 3_000) -> np.ndarray:
    from assets.content.embeddings import post_document
    from socialpulse.encoder import TextEncoder
    from socialpulse.loaders import CRISISLEX_SAMPLE

    recs = [json.loads(line) for line in CRISISLEX_SAMPLE.read_text().splitlines() if line.strip()][:limit]
    return TextEncoder(batch_size=64).encode([post_document(r["text"], r.get("hashtags")) for r in recs])


def synthesise(base: np.ndarray, n: int, rng: np.random.Generator, noise: float = 0.5) -> np.ndarray:
    i = rng.integers(0, len(base), n)
    j = rng.integers(0, len(base), n)
    e = rng.normal(size=(n, base.shape[1])).astype(np.float32) * (noise / np.sqrt(base.shape[1]))
    v = base[i] + 0.5 * base[j] + e
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


def exact_top(queries: np.ndarray, items: np.ndarray, k: int = 10) -> np.ndarray:
    from assets.content.evaluation import top_k

    return top_k(queries, items, k)


# --- the index at scale -----------------------------------------------------------------------------------------
def load_index(conn, dsn: str, vectors_: np.ndarray, tags: list[list[str]], version: str) -> dict:
    from socialpulse import vectors

    conn.execute(f"DROP SCHEMA IF EXISTS {vectors.SCHEMA} CASCADE")
    conn.commit()
    vectors._READY.discard(conn)
    vectors.ensure_tables(conn)

    def meta(i: int) -> dict:
        return {"post_id": f"b{i}", "author_id": f"u{i % 5000}", "author_handle": f"creator_{i % 5000}",
                "day": "bench", "created_at": "2026-02-01T00:00:00+00:00", "language": "en",
                "hashtags": tags[i % len(tags)], "action": "allow", "content_hash": "-", "embedding_version": version}

    first = min(10_000, len(vectors_))
    t0 = time.perf_counter()
    vectors.sync_day(conn, dsn, "bench", [(f"b{i}", meta(i), " ".join(f"#{t}" for t in meta(i)["hashtags"]), vectors_[i])
                                          for i in range(first)])
    upsert_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    with conn.cursor() as cur:
        with cur.copy(f"COPY {vectors.SCHEMA}.{vectors.POSTS_TABLE} (id, metadata, contents, embedding) FROM STDIN") as cp:
            for i in range(first, len(vectors_)):
                m = meta(i)
                cp.write_row((f"b{i}", json.dumps(m), " ".join(f"#{t}" for t in m["hashtags"]), vectors.vector_literal(vectors_[i])))
    conn.commit()
    copy_s = time.perf_counter() - t0
    conn.execute(f"ANALYZE {vectors.SCHEMA}.{vectors.POSTS_TABLE}")
    vectors.refresh_directory(conn)
    conn.commit()
    return {"rows": len(vectors_), "client_upsert_rows": first, "client_upsert_rows_per_s": round(first / upsert_s, 1),
            "copy_rows": len(vectors_) - first,
            "copy_rows_per_s": round((len(vectors_) - first) / copy_s, 1) if len(vectors_) > first else None}


def bench_queries(conn, queries: np.ndarray, truth: np.ndarray, ef: int | None, exact: bool = False) -> dict:
    from socialpulse import vectors

    lat, recall = [], []
    for q, t in zip(queries, truth):
        t0 = time.perf_counter()
        rows = vectors.nearest(conn, q, 10, ef_search=ef or vectors.EF_SEARCH, exact=exact)
        lat.append(time.perf_counter() - t0)
        got = {int(r["post_id"][1:]) for r in rows}
        recall.append(len(got & set(t.tolist())) / len(t))
    return {"ef_search": ef, "exact": exact, "queries": len(queries), "recall_at_10": round(statistics.mean(recall), 4),
            **summary_ms(lat)}


def bench_index(s, cfg: dict, base: np.ndarray, tags: list[list[str]], version: str, api_hook) -> list[dict]:
    import psycopg

    from socialpulse import vectors

    rng = np.random.default_rng(5)
    out = []
    with psycopg.connect(s.postgres) as conn:
        for size in cfg["sizes"]:
            _say(f"index {size:,} vectors: synthesising and loading")
            items = synthesise(base, size, rng)
            queries = synthesise(base, cfg["queries"], rng)
            truth = exact_top(queries, items)
            load = load_index(conn, s.postgres, items, tags, version)
            result = {"size": size, "load": load, "hnsw": []}
            exact = bench_queries(conn, queries[:cfg["exact_queries"]], truth[:cfg["exact_queries"]], None, exact=True)
            result["exact"] = exact
            _say(f"  exact: {exact}")
            for _size, m, efc in (h for h in cfg["hnsw"] if h[0] == size):
                conn.execute(f"DROP INDEX IF EXISTS {vectors.SCHEMA}.{vectors.INDEX_NAME}")
                conn.commit()
                t0 = time.perf_counter()
                vectors.ensure_hnsw(conn, m=m, ef_construction=efc, build_memory=BUILD_MEMORY.get(size, "1GB"))
                build_s = time.perf_counter() - t0
                index_mb = conn.execute("SELECT pg_relation_size(%s) / 1048576.0",
                                        (f"{vectors.SCHEMA}.{vectors.INDEX_NAME}",)).fetchone()[0]
                setting = {"m": m, "ef_construction": efc, "build_s": round(build_s, 1), "index_mb": round(float(index_mb), 1),
                           "by_ef_search": [bench_queries(conn, queries, truth, ef) for ef in cfg["ef"]]}
                _say(f"  hnsw m={m} ef_construction={efc}: built in {build_s:.1f}s; "
                     + "; ".join(f"ef {r['ef_search']}: recall {r['recall_at_10']} p50 {r['p50_ms']} ms"
                                 for r in setting["by_ef_search"]))
                result["hnsw"].append(setting)
            plan = conn.execute(
                f"EXPLAIN SELECT id FROM {vectors.SCHEMA}.{vectors.POSTS_TABLE} WHERE metadata @> '{{\"action\": \"allow\"}}' "
                "ORDER BY embedding <=> %s::vector LIMIT 10", (vectors.vector_literal(queries[0]),)).fetchall()
            result["plan_uses_hnsw"] = any(vectors.INDEX_NAME in r[0] for r in plan)
            conn.commit()
            if size == cfg["sizes"][0]:  # the API runs over the first size, with the last HNSW setting built
                result["api"] = api_hook()
            out.append(result)
    return out


# --- the API under concurrency ----------------------------------------------------------------------------------
def bench_api(s, clients: int, requests: int) -> dict:
    import httpx

    from socialpulse.loaders import CRISISLEX_SAMPLE
    from socialpulse.services.manager import services_up
    from socialpulse.synthetic import CLUSTERS

    services_up(s, ["api"])
    api = f"http://{s.api_host}:{s.api_port}"
    words = [w for _tags, ws in CLUSTERS.values() for w in ws]
    tweets = [json.loads(line)["text"] for line in CRISISLEX_SAMPLE.read_text().splitlines()[:300] if line.strip()]
    rng = random.Random(3)
    queries = [" ".join(rng.sample(words, 2)) for _ in range(300)] + [" ".join(t.split()[:6]) for t in tweets]
    with httpx.Client(base_url=api, timeout=60) as c:
        for _ in range(60):  # the encoder warms up in the background after start
            r = c.get("/v1/search", params={"q": "warm up"})
            if r.status_code == 200:
                break
            time.sleep(1)
        r.raise_for_status()
        single = []
        for q in queries[:50]:
            t0 = time.perf_counter()
            c.get("/v1/search", params={"q": q}).raise_for_status()
            single.append(time.perf_counter() - t0)
    lat: list[float] = []
    errors: dict[str, int] = {}

    def client(n: int, seed: int) -> None:
        local = random.Random(seed)
        with httpx.Client(base_url=api, timeout=60) as c:
            for _ in range(n):
                q = local.choice(queries)
                t0 = time.perf_counter()
                try:
                    r = c.get("/v1/search", params={"q": q, "limit": 10})
                    ok = r.status_code == 200
                    key = str(r.status_code)
                except httpx.HTTPError as exc:
                    ok, key = False, type(exc).__name__
                if ok:
                    lat.append(time.perf_counter() - t0)
                else:
                    errors[key] = errors.get(key, 0) + 1

    per = requests // clients
    t0 = time.perf_counter()
    with cf.ThreadPoolExecutor(clients) as pool:
        list(pool.map(lambda i: client(per, i), range(clients)))
    wall = time.perf_counter() - t0
    return {"clients": clients, "requests": per * clients, "ok": len(lat), "errors": errors,
            "requests_per_s": round(len(lat) / wall, 1), **summary_ms(lat), "single_client": summary_ms(single)}


def main(cfg: dict) -> dict:
    from assets.content.embeddings import embedding_version
    from socialpulse.encoder import TextEncoder
    from socialpulse.services.manager import services_down, services_up
    from socialpulse.settings import get_settings

    s = get_settings()
    services_up(s, ["postgres", "redis"])
    out = dict(cfg)
    try:
        out["embedding"], asset_vectors, tags = bench_embedding(s, cfg["asset_posts"])
        _say(f"embedding: {out['embedding']}")
        base = np.vstack([asset_vectors, crisislex_vectors()])
        out["base_vectors"] = int(len(base))
        version = embedding_version(TextEncoder().version)
        out["index"] = bench_index(s, cfg, base, tags, version, lambda: bench_api(s, cfg["api_clients"], cfg["api_requests"]))
    finally:
        services_down(s)
    return out


if __name__ == "__main__":
    print(json.dumps(main(json.loads(sys.argv[1]))), flush=True)
