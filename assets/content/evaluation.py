"""Evaluating embeddings and search.

* :func:`interest_precision`: on the synthetic world, how many of a user's nearest posts come from the
  user's planted interest cluster (cluster precision@k), against chance (the share of candidate posts in
  that cluster). Vectors as of the end of day D-1, candidates the posts created on day D: none of them can
  have been engaged with when the vector was made, so this is held out.
* :func:`crisislex_search`: on CrisisLex T6, a query naming each event ("Hurricane Sandy") against a
  search index of the tweets; precision@k = share of the top k that are on-topic tweets of that event.
  Semantic-only, keyword-only and the API's hybrid ranking, in the same run, over the same Postgres index
  code the API serves from (in a scratch database, dropped afterwards).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import random
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Sequence

import numpy as np

from assets.content.embeddings import normalise, post_document

Progress = Callable[[str], None] | None

#: the query that names each CrisisLex T6 event (what a user would type)
EVENT_QUERIES = {
    "2012_Sandy_Hurricane": "Hurricane Sandy",
    "2013_Alberta_Floods": "Alberta floods",
    "2013_Queensland_Floods": "Queensland floods",
    "2013_Boston_Bombings": "Boston bombings",
    "2013_Oklahoma_Tornado": "Oklahoma tornado",
    "2013_West_Texas_Explosion": "West Texas explosion",
}


def _say(progress: Progress, msg: str) -> None:
    if progress:
        progress(msg)


def top_k(queries: np.ndarray, items: np.ndarray, k: int, chunk: int = 2048) -> np.ndarray:
    """Indices of the ``k`` items nearest each query by cosine (rows already unit norm), best first."""
    k = min(k, len(items))
    out = np.empty((len(queries), k), dtype=np.int64)
    for i in range(0, len(queries), chunk):
        sims = queries[i:i + chunk] @ items.T
        part = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(sims, part, axis=1), axis=1)
        out[i:i + chunk] = np.take_along_axis(part, order, axis=1)
    return out


def interest_precision(user_vectors: np.ndarray, user_clusters: Sequence[int], post_vectors: np.ndarray,
                       post_clusters: Sequence[int], k: int = 10, cold_start: np.ndarray | None = None) -> dict:
    """Mean cluster precision@k of each user's ``k`` nearest posts, the chance level (mean share of the
    candidate posts in the user's cluster), and, given the cold-start vector, what it scores for the same
    users (a non-personal baseline)."""
    user_clusters = np.asarray(user_clusters)
    post_clusters = np.asarray(post_clusters)
    if len(user_vectors) == 0 or len(post_vectors) == 0:
        raise ValueError("no users or no candidate posts to evaluate")
    nearest = top_k(normalise(user_vectors), normalise(post_vectors), k)
    hits = (post_clusters[nearest] == user_clusters[:, None]).mean(axis=1)
    share = {c: float((post_clusters == c).mean()) for c in np.unique(post_clusters)}
    chance = np.array([share.get(c, 0.0) for c in user_clusters])
    out = {
        "k": int(nearest.shape[1]), "users": int(len(user_vectors)), "candidate_posts": int(len(post_vectors)),
        "clusters": int(len(share)), "precision_at_k": round(float(hits.mean()), 4),
        "chance": round(float(chance.mean()), 4), "lift": round(float(hits.mean() / max(chance.mean(), 1e-12)), 2),
        "users_above_chance": round(float((hits > chance).mean()), 4),
    }
    if cold_start is not None and cold_start.any():
        cs = top_k(normalise(cold_start[None, :]), normalise(post_vectors), k)[0]
        out["cold_start_precision_at_k"] = round(float((post_clusters[cs][None, :] == user_clusters[:, None]).mean()), 4)
    return out


def read_event_tweets(path) -> tuple[list[dict], int]:
    """The rows of a CrisisLex-style JSONL file that have ``tweet_id``, ``text`` and ``event``, and how many
    lines were skipped (unreadable, or missing one of those)."""
    import json

    records, skipped = [], 0
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
                if not isinstance(rec, dict) or not {"tweet_id", "text", "event"} <= set(rec):
                    raise ValueError
                records.append(rec)
            except ValueError:
                skipped += 1
    return records, skipped


def sample_per_event(records: list[dict], per_event: int, seed: int = 7) -> list[dict]:
    """At most ``per_event`` records of each event, drawn at random (deterministic for a seed)."""
    by_event: dict[str, list[dict]] = defaultdict(list)
    for r in records:
        by_event[r.get("event")].append(r)
    rng = random.Random(seed)
    out = []
    for event in sorted(by_event, key=str):
        rows = by_event[event]
        out.extend(rows if len(rows) <= per_event else rng.sample(rows, per_event))
    return out


@contextlib.contextmanager
def scratch_database(dsn: str, prefix: str = "sp_eval"):
    """A fresh database on the same server, dropped afterwards (the live search index is never touched)."""
    import psycopg
    from psycopg.conninfo import make_conninfo

    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(dsn, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield make_conninfo(dsn, dbname=name)
    finally:
        with psycopg.connect(dsn, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def precision_at(ids: Sequence[str], relevant: set[str], k: int) -> float:
    top = list(ids)[:k]
    return round(sum(1 for i in top if i in relevant) / k, 4)


def crisislex_search(records: list[dict], encoder, dsn: str, *, k: int = 10, queries: dict[str, str] | None = None,
                     progress: Progress = None) -> dict:
    """Index ``records`` (``tweet_id``, ``text``, ``hashtags``, ``event``, ``on_topic``) in a scratch database
    with the API's index code, run one query per event in three modes, and report precision@k per event
    and mode (relevant: the event's on-topic tweets)."""
    import psycopg

    from socialpulse import vectors
    from socialpulse.search import parse_query

    queries = queries or EVENT_QUERIES
    ids = [str(r["tweet_id"]) for r in records]
    docs = [post_document(r.get("text"), r.get("hashtags") or []) for r in records]
    t0 = time.perf_counter()
    _say(progress, f"embedding {len(docs)} tweets")
    vecs = encoder.encode(docs, progress=progress)
    embed_s = time.perf_counter() - t0
    relevant: dict[str, set[str]] = defaultdict(set)
    for i, r in zip(ids, records):
        if r.get("on_topic") == "on-topic":
            relevant[r.get("event")].add(i)
    rows = [(i, {"post_id": i, "action": "allow", "day": "eval", "hashtags": r.get("hashtags") or [],
                 "author_id": "crisislex", "created_at": str(r.get("created_at"))}, d, v)
            for i, r, d, v in zip(ids, records, docs, vecs)]
    per_event, modes = {}, ("semantic", "keyword", "hybrid")
    with scratch_database(dsn) as scratch, psycopg.connect(scratch) as conn:
        t1 = time.perf_counter()
        vectors.sync_day(conn, scratch, "eval", rows)
        vectors.ensure_hnsw(conn)
        conn.execute("ANALYZE search.post_vectors")
        conn.commit()
        index_s = time.perf_counter() - t1
        _say(progress, f"indexed {len(rows)} tweets in {index_s:.1f}s")
        for event, text in queries.items():
            q = parse_query(text)
            qv = encoder.encode([q.text])[0]
            fused, _ = vectors.hybrid(conn, q, qv)
            ranked = {
                "semantic": [r["post_id"] for r in vectors.nearest(conn, qv, k)],
                "keyword": [r["post_id"] for r in vectors.keyword(conn, q, k)],
                "hybrid": [f.id for f in fused[:k]],
            }
            per_event[event] = {"query": text, "relevant": len(relevant[event]),
                                **{m: precision_at(ranked[m], relevant[event], k) for m in modes}}
    mean = {m: round(float(np.mean([e[m] for e in per_event.values()])), 4) for m in modes}
    return {"k": k, "tweets": len(records), "events": per_event, "mean": mean,
            "base_rate": round(float(np.mean([len(relevant[e]) / max(len(records), 1) for e in queries])), 4),
            "embed_seconds": round(embed_s, 1), "index_seconds": round(index_s, 1), "encoder": encoder.version,
            "evaluated_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}


def synthetic_interest_eval(settings, day: dt.date | None = None, k: int = 10) -> dict:
    """:func:`interest_precision` on the synthetic world in the lake: user vectors as of the end of the day
    before ``day`` (default: the latest day with posts embedded after a day of user vectors), candidates
    the posts created on ``day``, clusters from ``meta/synthetic_users`` and ``meta/synthetic_posts``."""
    from assets.content.embeddings import COLD_START_USER, to_matrix
    from assets.content.tables import POST_EMBEDDINGS, USER_INTEREST
    from socialpulse import lake

    truth_users = lake.open_table(settings.table_uri("meta", "synthetic_users"))
    truth_posts = lake.open_table(settings.table_uri("meta", "synthetic_posts"))
    if truth_users is None or truth_posts is None:
        raise LookupError("no synthetic world in the lake: run `socialpulse load synthetic` (or `make demo`) first")
    interest_days = set(lake.read(USER_INTEREST, settings=settings, columns=["event_date"])["event_date"].to_pylist())
    post_days = set(lake.read(POST_EMBEDDINGS, settings=settings, columns=["event_date"])["event_date"].to_pylist())
    usable = sorted(d for d in post_days if d - dt.timedelta(days=1) in interest_days)
    if day is None:
        if not usable:
            raise LookupError("no day D with post embeddings and user interest as of D-1: materialize content_job "
                              "and interest_job for consecutive days first")
        day = usable[-1]
    elif day not in usable:
        raise LookupError(f"{day} needs post embeddings of {day} and user interest of {day - dt.timedelta(days=1)}")
    users = lake.read(USER_INTEREST, settings=settings, filters=[("event_date", "=", day - dt.timedelta(days=1))])
    posts = lake.read(POST_EMBEDDINGS, settings=settings, columns=["post_id", "embedding"],
                      filters=[("event_date", "=", day)])
    u_cluster = dict(zip(*(truth_users.to_pyarrow_table(columns=["user_id", "cluster"]).to_pydict().values())))
    p_cluster = dict(zip(*(truth_posts.to_pyarrow_table(columns=["post_id", "cluster"]).to_pydict().values())))
    keep_posts = [i for i, p in enumerate(posts["post_id"].to_pylist()) if p in p_cluster]
    ids = users["user_id"].to_pylist()
    keep_users = [i for i, u in enumerate(ids) if u in u_cluster]
    cold = [i for i, u in enumerate(ids) if u == COLD_START_USER]
    u_mat, p_mat = to_matrix(users["embedding"]), to_matrix(posts["embedding"])
    out = interest_precision(
        u_mat[keep_users], [u_cluster[ids[i]] for i in keep_users], p_mat[keep_posts],
        [p_cluster[posts["post_id"][i].as_py()] for i in keep_posts], k=k,
        cold_start=u_mat[cold[0]] if cold else None)
    return {"day": day.isoformat(), "vectors_as_of": (day - dt.timedelta(days=1)).isoformat(), **out}
