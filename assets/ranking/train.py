"""Train, evaluate and register the feed ranker from the training set (called by the asset and the CLI).

Split by time (:func:`assets.ranking.training.time_split`): the last training day is the held-out test,
the day before validation. On the test impressions, per feed request, the model is scored beside
- ``most_popular``: the post's 7-day views (the popularity baseline),
- ``interest_only``: cosine of the user's interest vector and the post (the vector-only ablation),
- ``logged_order``: the order the logging policy served (what the feed did before this model),
and candidate generation is scored by the Recall@200 of the merged sources, rebuilt as of the test day.
"""

from __future__ import annotations

import datetime as dt
import random
import time
from collections.abc import Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from assets.ranking.tables import FEED_TRAINING_SET
from assets.ranking.training import CANDIDATES_K, candidate_recall, evaluate_rankings, nearest_posts, time_split
from socialpulse import lake
from socialpulse.model_registry import champion_or_none
from socialpulse.ranking.model import FEATURES, POST_FEATURES, Ranker, group_sizes
from socialpulse.ranking.feed import CANDIDATES
from socialpulse.ranking.rerank import merge_candidates
from socialpulse.settings import Settings


class NotEnoughData(RuntimeError):
    """The training set cannot support a time-based split or holds no positive label."""


def training_days(settings: Settings, days: int) -> list[dt.date]:
    t = lake.read(FEED_TRAINING_SET, settings=settings, columns=["event_date"])
    if t.num_rows == 0:
        return []
    found = sorted(set(pc.unique(t["event_date"]).to_pylist()))
    return found[-days:]


def _read(settings: Settings, days: list[dt.date]) -> pa.Table:
    t = lake.read(FEED_TRAINING_SET, settings=settings, filters=[("event_date", "in", days)])
    return t.sort_by([("request_id", "ascending"), ("position", "ascending")])


def _matrix(t: pa.Table) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    X = np.column_stack([t[n].to_numpy(zero_copy_only=False).astype(np.float64) for n in FEATURES])
    return X, t["grade"].to_numpy(zero_copy_only=False), group_sizes(t["request_id"].to_pylist())


#: candidate recall is estimated on at most this many test users (a seeded sample): exact neighbours over a
#: million posts cost a 512 x posts matrix product per 512 users
RECALL_USERS = 5000


def candidate_generation_recall(settings: Settings, test: pa.Table, day: dt.date, k: int = CANDIDATES_K,
                                max_users: int = RECALL_USERS) -> dict:
    """Recall@k of the merged candidate sources rebuilt as of the start of ``day`` for the users of its
    impressions, against the posts they engaged with (grade >= 1); the serving path's sources and sizes:
    interest neighbours (exact here, HNSW online), each global pool's head and its posts nearest to the user (popular from
    the previous day's engagement, fresh; trending is left out: trend scores are not kept as of a past hour),
    and followed creators' recent posts. Also the recall of the interest neighbours alone."""
    from assets.content.embeddings import to_matrix
    from assets.content.tables import POST_EMBEDDINGS
    from assets.engagement.spark_features import POST_ENGAGEMENT
    from assets.ranking.assets import _follows_before, _interest_as_of
    from assets.ranking.state import FOLLOWING_POSTS, feature_map, global_lists
    from socialpulse.ranking.feed import K_INTEREST, PER_SOURCE, pool_picks

    start = dt.datetime.combine(day, dt.time(), dt.timezone.utc)
    emb = lake.read(POST_EMBEDDINGS, settings=settings, columns=["post_id", "author_id", "embedding", "created_at"],
                    filters=[("event_date", "<=", day)])
    emb = emb.filter(pc.less(emb["created_at"], pa.scalar(start, emb["created_at"].type)))
    if emb.num_rows == 0:
        return {f"candidate_recall@{k}": 0.0, "users": 0}
    emb = emb.sort_by([("created_at", "descending")])
    ids = emb["post_id"].to_pylist()
    row_of = {p: i for i, p in enumerate(ids)}
    matrix = to_matrix(emb["embedding"])
    emb = emb.drop_columns(["embedding"])  # the matrix holds them now (1.5 GB each at a million posts)
    pa.default_memory_pool().release_unused()
    interest, cold = _interest_as_of(settings, day - dt.timedelta(days=1))
    positives: dict[str, set[str]] = {}
    for u, p, g in zip(test["user_id"].to_pylist(), test["post_id"].to_pylist(), test["grade"].to_pylist()):
        if g >= 1:
            positives.setdefault(u, set()).add(p)
    users = sorted(positives)
    sampled = len(users) > max_users
    if sampled:
        users = sorted(random.Random(day.toordinal()).sample(users, max_users))
    dim = matrix.shape[1]
    uvec = np.stack([interest.get(u, cold if cold is not None else np.zeros(dim, np.float32)) for u in users])
    nearest = nearest_posts(uvec, matrix, ids, K_INTEREST)
    eng = lake.read(POST_ENGAGEMENT.uri(settings), filters=[("event_date", "=", day - dt.timedelta(days=1))])
    posts = [{"post_id": p, "created_at": c.isoformat(), "hashtags": []}
             for p, c in zip(ids, emb["created_at"].to_pylist())]
    pools = {name: pool for name, pool in global_lists(posts, feature_map(eng, "post_id", POST_FEATURES), {}).items()
             if pool}
    pool_rows = {name: np.fromiter((row_of[p] for p in pool), np.int64) for name, pool in pools.items()}
    follows = _follows_before(settings, start)
    by_author: dict[str, list[str]] = {}
    for p, a in zip(ids, emb["author_id"].to_pylist()):
        by_author.setdefault(a, []).append(p)
    followed: dict[str, list[str]] = {}
    for u, a in follows:
        followed.setdefault(u, []).extend(by_author.get(a, [])[:FOLLOWING_POSTS])
    candidates = {}
    for i, (u, near) in enumerate(zip(users, nearest)):
        sources = {"following": followed.get(u, [])[:PER_SOURCE], "interest": near}
        for name, pool in pools.items():
            sources[name] = pool_picks(pool, (matrix[pool_rows[name]] @ uvec[i]).tolist(), PER_SOURCE)
        candidates[u] = [c.post_id for c in merge_candidates(sources, CANDIDATES)]
    interest_alone = {u: near for u, near in zip(users, nearest)}
    return {f"candidate_recall@{k}": round(candidate_recall(users, positives, candidates, k), 4),
            f"candidate_recall@{CANDIDATES}": round(candidate_recall(users, positives, candidates, CANDIDATES), 4),
            f"interest_recall@{k}": round(candidate_recall(users, positives, interest_alone, k), 4),
            "users": len(users), "users_sampled": sampled, "posts_indexed": len(ids)}


def train_and_register(settings: Settings, *, register: bool = True, log: Callable[[str], None] = print,
                       days: int | None = None) -> dict:
    """Train on the training set's last ``days`` days (setting ``feed_training_days``), evaluate on its last
    day, and (``register``) log to MLflow and promote when the held-out nDCG@10 beats the champion's."""
    from socialpulse.ranking import registry

    all_days = training_days(settings, days or settings.feed_training_days)
    try:
        split = time_split(all_days)
    except ValueError as exc:
        raise NotEnoughData(f"{exc}: materialize more days of lake/gold/feed_training_set first") from None
    t0 = time.perf_counter()
    train, val, test = (_read(settings, split[name]) for name in ("train", "validation", "test"))
    X, y, g = _matrix(train)
    Xv, yv, gv = _matrix(val)
    Xt, yt, _ = _matrix(test)
    t_read = time.perf_counter() - t0
    log(f"ranker: train {len(X)} impressions / {len(g)} requests ({split['train'][0]}..{split['train'][-1]}), "
        f"validation {len(Xv)}, test {len(Xt)} ({split['test'][0]})")
    t1 = time.perf_counter()
    try:
        ranker = Ranker.train(X, y, g, Xv, yv, gv)
    except ValueError as exc:
        raise NotEnoughData(str(exc)) from None
    t_train = time.perf_counter() - t1
    t2 = time.perf_counter()
    scores = ranker.score(Xt)
    t_score = (time.perf_counter() - t2) / max(len(Xt), 1) * 500 * 1000
    col = {n: i for i, n in enumerate(FEATURES)}
    positions = test["position"].to_numpy(zero_copy_only=False).astype(np.float64)
    systems = {
        "model": scores,
        "most_popular": np.nan_to_num(Xt[:, col["views_7d"]], nan=0.0),
        "interest_only": np.nan_to_num(Xt[:, col["sim_interest"]], nan=-2.0),
        # what the logging policy served, in its order; sampled (unshown) posts after everything it showed
        "logged_order": np.where(positions < 0, -1e9, -positions),
    }
    champion = champion_or_none(lambda: registry.load_champion(settings.mlflow, settings.model_cache), log,
                                "ranker") if register else None
    if champion is not None:
        systems["champion"] = champion.score(Xt)
    evaluation = evaluate_rankings(test["request_id"].to_pylist(), test["post_id"].to_pylist(), yt, systems)
    if champion is not None:
        evaluation["champion"]["version"] = champion.version
    evaluation["candidates"] = candidate_generation_recall(settings, test, split["test"][0])
    evaluation["split"] = {k: [d.isoformat() for d in v] for k, v in split.items()}
    evaluation["rows"] = {"train": len(X), "validation": len(Xv), "test": len(Xt)}
    evaluation["timing_s"] = {"read": round(t_read, 2), "train": round(t_train, 2),
                              "score_500_ms": round(t_score, 3)}
    evaluation["trees"] = ranker.booster.num_trees()
    evaluation["importance_gain"] = {k: round(v, 1) for k, v in ranker.importance().items()}
    ranker.metrics = evaluation["model"]
    m = evaluation["model"]
    log(f"ranker {ranker.version}: ndcg@10 {m['ndcg@10']:.4f} (most popular {evaluation['most_popular']['ndcg@10']:.4f}, "
        f"interest only {evaluation['interest_only']['ndcg@10']:.4f}); candidate recall@{CANDIDATES_K} "
        f"{evaluation['candidates'][f'candidate_recall@{CANDIDATES_K}']}")
    out = {"model_version": ranker.version, "evaluation": evaluation, "ndcg@10": m["ndcg@10"], "map@10": m["map@10"],
           "recall@10": m["recall@10"], "train_s": round(t_train, 2), "train_rows": len(X), "test_rows": len(Xt),
           "candidate_recall@200": evaluation["candidates"][f"candidate_recall@{CANDIDATES_K}"]}
    for name in ("most_popular", "interest_only", "logged_order"):
        out[f"{name}_ndcg@10"] = evaluation[name]["ndcg@10"]
    if register:
        reg = registry.log_and_promote(settings.mlflow, ranker, evaluation=evaluation,
                                       params={"days": len(all_days), "features": list(FEATURES), "post_features": list(POST_FEATURES)})
        out.update({"registered_version": reg["version"], "promoted": reg["promoted"],
                    "champion_version": reg["champion_version"]})
        log(f"ranker: registered version {reg['version']}, promoted={reg['promoted']} "
            f"(champion {reg['champion_version']}, previous held-out ndcg@10 {reg['previous_gate']})")
    out["ranker"] = ranker
    return out
