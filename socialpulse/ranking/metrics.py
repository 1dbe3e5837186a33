"""Offline ranking metrics at K: nDCG (graded), MAP, precision and recall (binary), averaged over users.

Conventions (stated once, used everywhere):
- ``ranked`` is the list a system returned for one user, best first; ``relevant`` maps each relevant item of
  that user to its grade (> 0). Items graded 0 are not relevant.
- nDCG@K uses the exponential gain ``2**grade - 1`` and a log2 discount; the ideal ordering sorts all the
  user's relevant items by grade, so nDCG is 1 only when the top K is the best possible.
- AP@K divides by ``min(K, |relevant|)`` (the usual MAP@K), so a user with 3 relevant items found at ranks
  1-3 scores 1.
- recall@K divides by ``|relevant|``; precision@K by K.
- Users without any relevant item are skipped (they carry no signal) and counted in ``users_skipped``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np


def dcg(grades: Sequence[float]) -> float:
    g = np.asarray(grades, dtype=np.float64)
    if g.size == 0:
        return 0.0
    return float(np.sum((np.power(2.0, g) - 1.0) / np.log2(np.arange(2, g.size + 2))))


def ndcg_at_k(ranked: Sequence, relevant: Mapping, k: int) -> float:
    ideal = dcg(sorted(relevant.values(), reverse=True)[:k])
    if ideal <= 0:
        return 0.0
    return dcg([relevant.get(item, 0.0) for item in ranked[:k]]) / ideal


def average_precision_at_k(ranked: Sequence, relevant: Mapping, k: int) -> float:
    hits, total = 0, 0.0
    for i, item in enumerate(ranked[:k]):
        if relevant.get(item, 0) > 0:
            hits += 1
            total += hits / (i + 1)
    n = min(k, sum(1 for g in relevant.values() if g > 0))
    return total / n if n else 0.0


def recall_at_k(ranked: Sequence, relevant: Mapping, k: int) -> float:
    n = sum(1 for g in relevant.values() if g > 0)
    return sum(1 for item in ranked[:k] if relevant.get(item, 0) > 0) / n if n else 0.0


def precision_at_k(ranked: Sequence, relevant: Mapping, k: int) -> float:
    return sum(1 for item in ranked[:k] if relevant.get(item, 0) > 0) / k


METRICS = {"ndcg": ndcg_at_k, "map": average_precision_at_k, "precision": precision_at_k, "recall": recall_at_k}


def evaluate(ranked: Mapping[str, Sequence], relevant: Mapping[str, Mapping], ks: Sequence[int] = (10,),
             metrics: Sequence[str] = ("ndcg", "map", "precision", "recall")) -> dict[str, float]:
    """Mean of each ``metric@k`` over the users of ``relevant`` that have a relevant item; a user missing
    from ``ranked`` counts as an empty list (zero), never as skipped."""
    users = [u for u, rel in relevant.items() if any(g > 0 for g in rel.values())]
    out: dict[str, float] = {}
    for name in metrics:
        fn = METRICS[name]
        for k in ks:
            values = [fn(list(ranked.get(u, ())), relevant[u], k) for u in users]
            out[f"{name}@{k}"] = float(np.mean(values)) if values else 0.0
    out["users"] = len(users)
    out["users_skipped"] = len(relevant) - len(users)
    return out
