"""Training sets and offline evaluation of the feed ranker (pure: Arrow / numpy / pandas in and out).

- :func:`pair_features` computes the request-time features of (user, post) pairs as of a cutoff (the user's
  interest vector of the day before, whether they followed the creator before, the post's age);
- :func:`assemble` lays the Feast point-in-time features beside them in :data:`FEATURES` order;
- :func:`time_split` splits days into train / validation / test by time;
- :func:`evaluate_rankings` scores the model and the ablations on the held-out impressions, per request.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence

import numpy as np
import pyarrow as pa

from socialpulse.ranking import metrics
from socialpulse.ranking.model import FEATURES, POST_FEATURES, USER_FEATURES, relevance_grade

#: the metrics the ranker is judged and gated on (held-out split, per feed request)
EVAL_KS = (10,)
EVAL_METRICS = ("ndcg", "map", "recall")
CANDIDATES_K = 200


def pair_features(labels: pa.Table, interest: Mapping[str, np.ndarray], cold_start: np.ndarray | None,
                  post_vectors: Mapping[str, np.ndarray], follows: set[tuple[str, str]]) -> dict[str, np.ndarray]:
    """``sim_interest`` (cosine of the user's interest vector, the cold-start one when they have none, with
    the post's vector; NaN when either is unknown), ``follows_author`` (0/1) and ``age_hours`` (hours from the
    post's creation to serving) for each row of ``labels``."""
    users = labels["user_id"].to_pylist()
    posts = labels["post_id"].to_pylist()
    authors = labels["author_id"].to_pylist()
    n = len(users)
    sim = np.full(n, np.nan)
    for i, (u, p) in enumerate(zip(users, posts)):
        uv = interest.get(u, cold_start)
        pv = post_vectors.get(p)
        if uv is not None and pv is not None:
            sim[i] = float(np.dot(uv, pv))
    follows_author = np.fromiter(((u, a) in follows for u, a in zip(users, authors)), dtype=np.float64, count=n)
    served = labels["served_at"].cast(pa.int64()).to_numpy(zero_copy_only=False)
    created = labels["post_created_at"].cast(pa.int64()).to_numpy(zero_copy_only=False)
    age_h = np.maximum(served - created, 0) / 3.6e9
    return {"sim_interest": sim, "follows_author": follows_author, "age_hours": age_h}


def assemble(pair: Mapping[str, np.ndarray], historical) -> np.ndarray:
    """The ``(n, len(FEATURES))`` matrix: pair features, then the Feast point-in-time features (``historical``
    is the DataFrame :func:`socialpulse.features.historical_feed_features` returned, in the same row order)."""
    cols = []
    for name in FEATURES:
        if name in pair:
            cols.append(np.asarray(pair[name], dtype=np.float64))
        elif name in POST_FEATURES or name in USER_FEATURES:
            cols.append(historical[name].astype("float64").to_numpy() if name in historical else np.full(len(historical), np.nan))
        else:
            raise KeyError(f"no source for feature {name!r}")
    return np.column_stack(cols) if cols else np.zeros((0, len(FEATURES)))


def grades(labels: pa.Table) -> np.ndarray:
    return relevance_grade(labels["completion"].to_numpy(zero_copy_only=False),
                           labels["liked"].to_numpy(zero_copy_only=False), labels["commented"].to_numpy(zero_copy_only=False),
                           labels["shared"].to_numpy(zero_copy_only=False), labels["followed"].to_numpy(zero_copy_only=False))


def time_split(days: Sequence[dt.date]) -> dict[str, list[dt.date]]:
    """By time, never at random: the last day is the held-out test split, the day before it validation
    (early stopping), every earlier day training. Needs at least three days."""
    days = sorted(set(days))
    if len(days) < 3:
        raise ValueError(f"a time-based split needs at least 3 days of impressions, got {len(days)}: "
                         f"{[d.isoformat() for d in days]}")
    return {"train": days[:-2], "validation": [days[-2]], "test": [days[-1]]}


def per_request(request_ids: Sequence[str], post_ids: Sequence[str], y: np.ndarray,
                scores: np.ndarray) -> tuple[dict[str, list[str]], dict[str, dict[str, int]]]:
    """(ranked posts per request by ``scores``, graded relevant posts per request)."""
    ranked: dict[str, list[tuple[float, str]]] = {}
    relevant: dict[str, dict[str, int]] = {}
    for r, p, g, s in zip(request_ids, post_ids, y, scores):
        ranked.setdefault(r, []).append((-float(s), p))
        rel = relevant.setdefault(r, {})
        if g > 0:
            rel[p] = max(int(g), rel.get(p, 0))
    return {r: [p for _, p in sorted(v)] for r, v in ranked.items()}, relevant


def evaluate_rankings(request_ids: Sequence[str], post_ids: Sequence[str], y: np.ndarray,
                      systems: Mapping[str, np.ndarray], ks: Sequence[int] = EVAL_KS) -> dict[str, dict[str, float]]:
    """Each system's ``ndcg/map/recall@K`` re-ranking the impressions of every held-out request (requests
    without a positive are skipped, as :func:`socialpulse.ranking.metrics.evaluate` says)."""
    out = {}
    for name, scores in systems.items():
        ranked, relevant = per_request(request_ids, post_ids, y, scores)
        out[name] = metrics.evaluate(ranked, relevant, ks, EVAL_METRICS)
    return out


def candidate_recall(user_ids: Sequence[str], positives: Mapping[str, set[str]], candidates: Mapping[str, Sequence[str]],
                     k: int = CANDIDATES_K) -> float:
    """Share of the users' positively graded test posts that their first ``k`` merged candidates contain
    (micro-averaged over posts)."""
    hit = total = 0
    for u in user_ids:
        pos = positives.get(u, set())
        if not pos:
            continue
        cands = set(list(candidates.get(u, ()))[:k])
        hit += len(pos & cands)
        total += len(pos)
    return hit / total if total else 0.0


#: values in one block of :func:`nearest_posts` (64M: 256 MB of similarities, 512 MB of indices)
NEAREST_BLOCK = 1 << 26


def nearest_posts(user_vectors: np.ndarray, post_matrix: np.ndarray, post_ids: Sequence[str], k: int) -> list[list[str]]:
    """Exact top-``k`` posts by dot product per user (the offline twin of the pgvector candidate source)."""
    if len(post_ids) == 0:
        return [[] for _ in range(len(user_vectors))]
    n = len(post_ids)
    k = min(k, n)
    ids = np.asarray(post_ids, dtype=object)
    post_matrix = np.asarray(post_matrix, np.float32)
    user_vectors = np.asarray(user_vectors, np.float32)
    # users per batch: the batch's similarity block (float32) and argpartition's index block (int64) stay
    # near NEAREST_BLOCK values each (512 users over a million posts held 2 GB of sims and 4 GB of indices)
    batch = max(1, NEAREST_BLOCK // n)
    out: list[list[str]] = []
    for start in range(0, len(user_vectors), batch):
        sims = user_vectors[start:start + batch] @ post_matrix.T
        top = np.argpartition(sims, n - k, axis=1)[:, n - k:]
        for row, idx in zip(sims, top):
            out.append(ids[idx[np.argsort(-row[idx], kind="stable")]].tolist())
        del sims, top
    return out


def cluster_recovery(feeds: Mapping[str, Sequence[str]], user_cluster: Mapping[str, int],
                     post_cluster: Mapping[str, int], servable: Sequence[str], k: int = 10) -> dict[str, float]:
    """How much of each user's top ``k`` lies in their planted interest cluster, against chance (the share
    of servable posts in that cluster: what a random feed would give), averaged over users with a feed."""
    counts: dict[int, int] = {}
    for p in servable:
        c = post_cluster.get(p)
        if c is not None:
            counts[c] = counts.get(c, 0) + 1
    total = sum(counts.values())
    shares, chances = [], []
    for u, posts in feeds.items():
        c = user_cluster.get(u)
        top = [p for p in list(posts)[:k] if p in post_cluster]
        if c is None or not top or not total:
            continue
        shares.append(sum(1 for p in top if post_cluster[p] == c) / len(top))
        chances.append(counts.get(c, 0) / total)
    share = float(np.mean(shares)) if shares else 0.0
    chance = float(np.mean(chances)) if chances else 0.0
    return {"in_cluster_share@10": round(share, 4), "chance": round(chance, 4),
            "lift": round(share / chance, 2) if chance else 0.0, "users": len(shares)}


#: sampled negatives per request (at most; never more than the request's logged impressions)
NEGATIVES_PER_REQUEST = 10
NEGATIVE_POOL_DAYS = 7
SAMPLED = "sampled"


def sample_negatives(labels: pa.Table, pool: pa.Table, day: dt.date, per_request: int = NEGATIVES_PER_REQUEST,
                     pool_days: int = NEGATIVE_POOL_DAYS, seed: int = 7) -> pa.Table:
    """Unshown posts as grade-0 rows of each request: a ranker trained only on what the logging policy showed
    never sees the candidates it will face at serving time (posts far from the user's interests), and learns
    nothing about them. Per request, up to ``per_request`` posts drawn uniformly from ``pool`` (post_id,
    author_id, created_at) among those made in the ``pool_days`` before the request started and not shown
    in it; same columns as ``labels``, ``source`` = :data:`SAMPLED`, position -1. Deterministic per day."""
    if labels.num_rows == 0 or pool.num_rows == 0:
        return labels.schema.empty_table()
    rng = np.random.default_rng([seed, day.toordinal()])
    created = pool["created_at"].cast(pa.int64()).to_numpy(zero_copy_only=False)
    order = np.argsort(created, kind="stable")
    created = created[order]
    pool_ids = np.asarray(pool["post_id"].to_pylist(), dtype=object)[order]
    pool_authors = np.asarray(pool["author_id"].to_pylist(), dtype=object)[order]
    window_us = pool_days * 86_400 * 1_000_000
    by_request: dict[str, dict] = {}
    served = labels["served_at"].cast(pa.int64()).to_numpy(zero_copy_only=False)
    for i, (r, u, p, mv) in enumerate(zip(labels["request_id"].to_pylist(), labels["user_id"].to_pylist(),
                                          labels["post_id"].to_pylist(), labels["model_version"].to_pylist())):
        req = by_request.setdefault(r, {"user": u, "shown": set(), "start": served[i], "n": 0})
        req["shown"].add(p)
        req["start"] = min(req["start"], served[i])
        req["n"] += 1
    rows: dict[str, list] = {name: [] for name in labels.column_names}
    for r, req in by_request.items():
        lo, hi = np.searchsorted(created, [req["start"] - window_us, req["start"]])
        if hi <= lo:
            continue
        want = min(per_request, req["n"], hi - lo)
        picks = rng.choice(np.arange(lo, hi), size=min(hi - lo, want * 2), replace=False)
        picked = [j for j in picks if pool_ids[j] not in req["shown"]][:want]
        for k, j in enumerate(picked):
            rows["impression_id"].append(f"neg:{r}:{k}")
            rows["request_id"].append(r)
            rows["user_id"].append(req["user"])
            rows["post_id"].append(pool_ids[j])
            rows["author_id"].append(pool_authors[j])
            rows["position"].append(-1)
            rows["source"].append(SAMPLED)
            rows["model_version"].append(SAMPLED)
            rows["served_at"].append(int(req["start"]))
            rows["post_created_at"].append(int(created[j]))
            rows["completion"].append(0.0)
            for flag in ("liked", "commented", "shared", "followed"):
                rows[flag].append(False)
    arrays = []
    for f in labels.schema:
        values = rows[f.name]
        if pa.types.is_timestamp(f.type):
            arrays.append(pa.array(values, pa.int64()).cast(f.type))
        else:
            arrays.append(pa.array(values, f.type))
    return pa.Table.from_arrays(arrays, schema=labels.schema)
