"""The feed ranker: a LightGBM LambdaRank model over a fixed feature vector per (user, candidate post).

The same :data:`FEATURES`, in the same order, are built by the training-set asset (point in time, through
Feast) and by the serving tier (from the materialized online copy), so a model trained on one scores the
other. Missing values are NaN: LightGBM routes them down its learned missing-value branch.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from socialpulse import boosters

#: post engagement features of Feast's feed_ranking_v1 service (feature view post_engagement)
POST_FEATURES = ("views_7d", "unique_viewers_7d", "avg_watch_time_s_7d", "engagement_rate_7d", "views_1d", "likes_1d")
#: the viewing user's engagement features of feed_ranking_v1 (feature view user_engagement)
USER_FEATURES = ("views_given_7d", "likes_given_7d", "watch_time_s_7d")
#: features of the (user, post) pair, computed at request time
PAIR_FEATURES = ("sim_interest", "follows_author", "age_hours")
FEATURES = PAIR_FEATURES + POST_FEATURES + USER_FEATURES

META_FILE = "ranker.json"

#: LambdaRank settings: small trees, at most NUM_ROUNDS rounds with early stopping on the validation groups;
#: one thread and a fixed seed make a retrain on the same data give the same model. The round cap is the
#: serving budget: scoring 500 candidates costs about 0.02 ms per tree on one core (100 trees ~2 ms, p99
#: ~3.5 ms; the goal is 5 ms). Uncapped, the full-scale model used 291 trees and scored in 8.4 ms at p99
#: (bench/results/feed.json of 2026-12-01). A learning rate of 0.1 instead lost 0.05 nDCG@10 on the planted
#: log of tests/unit/test_ranking_logeval.py (0.296 against 0.343 on its time split), so it stays at 0.05
DEFAULT_PARAMS: dict = {
    "objective": "lambdarank",
    "metric": "ndcg",
    "eval_at": [10],
    "learning_rate": 0.05,
    "num_leaves": 31,
    "min_data_in_leaf": 20,
    "feature_fraction": 0.9,
    "bagging_fraction": 0.8,
    "bagging_freq": 1,
    "lambdarank_truncation_level": 20,
    "num_threads": 1,
    "seed": 7,
    "deterministic": True,
    "verbose": -1,
}
NUM_ROUNDS = 100
EARLY_STOPPING = 20
MAX_GRADE = 4


def relevance_grade(completion: np.ndarray, liked: np.ndarray, commented: np.ndarray, shared: np.ndarray,
                    followed: np.ndarray) -> np.ndarray:
    """Graded relevance of an impression from the engagement that followed it (0-4, the best one wins):
    a share or a follow of the creator 4, a like or a comment 3, watched to >= 80 % 2, to >= 40 % 1;
    a short watch (or no view at all) is 0, the negative."""
    c = np.nan_to_num(np.asarray(completion, dtype=np.float64), nan=0.0)
    grade = np.where(c >= 0.8, 2, np.where(c >= 0.4, 1, 0))
    grade = np.where(np.asarray(liked, bool) | np.asarray(commented, bool), 3, grade)
    grade = np.where(np.asarray(shared, bool) | np.asarray(followed, bool), 4, grade)
    return grade.astype(np.int32)


def group_sizes(request_ids: Sequence) -> np.ndarray:
    """Sizes of consecutive runs of equal request ids (LightGBM's ``group``); rows must be sorted by request."""
    ids = np.asarray(request_ids, dtype=object)
    if ids.size == 0:
        return np.zeros(0, np.int64)
    change = np.flatnonzero(ids[1:] != ids[:-1]) + 1
    return np.diff(np.r_[0, change, ids.size]).astype(np.int64)


def heuristic_scores(X: np.ndarray) -> np.ndarray:
    """The no-model fallback (and the untrained platform's ranking): interest similarity, then follows,
    popularity and completion; used when no champion is registered or it cannot be loaded."""
    col = {name: i for i, name in enumerate(FEATURES)}
    x = np.nan_to_num(np.asarray(X, dtype=np.float64), nan=0.0)
    return (x[:, col["sim_interest"]] + 0.3 * x[:, col["follows_author"]]
            + 0.05 * np.log1p(x[:, col["views_7d"]]) + 0.2 * np.clip(x[:, col["engagement_rate_7d"]], 0, 1)
            - 0.002 * x[:, col["age_hours"]])


@dataclass
class Ranker:
    """A trained LambdaRank booster with the feature names it expects and its evaluation."""

    booster: object  # lightgbm.Booster
    features: tuple[str, ...] = FEATURES
    version: str = ""
    metrics: dict = field(default_factory=dict)

    @classmethod
    def train(cls, X: np.ndarray, y: np.ndarray, groups: np.ndarray, X_val: np.ndarray | None = None,
              y_val: np.ndarray | None = None, groups_val: np.ndarray | None = None,
              params: Mapping | None = None, num_rounds: int = NUM_ROUNDS) -> "Ranker":
        import lightgbm as lgb

        if len(X) == 0 or int(np.sum(groups)) != len(X):
            raise ValueError(f"training needs rows grouped by request: {len(X)} rows, groups sum to {int(np.sum(groups))}")
        if not np.any(np.asarray(y) > 0):
            raise ValueError("training labels hold no positive grade: nothing to learn a ranking from")
        p = {**DEFAULT_PARAMS, **(params or {})}
        train_set = lgb.Dataset(np.asarray(X, np.float64), label=y, group=groups, feature_name=list(FEATURES),
                                free_raw_data=False)
        valid, callbacks = [], []
        if X_val is not None and len(X_val):
            valid = [lgb.Dataset(np.asarray(X_val, np.float64), label=y_val, group=groups_val, reference=train_set)]
            callbacks = [lgb.early_stopping(EARLY_STOPPING, verbose=False)]
        booster = lgb.train(p, train_set, num_boost_round=num_rounds, valid_sets=valid, callbacks=callbacks)
        text = booster.model_to_string()
        return cls(booster=booster, version=hashlib.sha256(text.encode()).hexdigest()[:12])

    def score(self, X: np.ndarray) -> np.ndarray:
        if len(X) == 0:
            return np.zeros(0)
        return np.asarray(self.booster.predict(np.asarray(X, np.float64), num_threads=1), dtype=np.float64)

    def save(self, folder: str | Path) -> Path:
        return boosters.save(folder, self.booster, META_FILE,
                             {"features": list(self.features), "version": self.version, "metrics": self.metrics})

    @classmethod
    def load(cls, folder: str | Path) -> "Ranker":
        booster, meta = boosters.load(folder, META_FILE, FEATURES, "ranker")
        return cls(booster=booster, features=tuple(meta["features"]), version=meta["version"], metrics=meta.get("metrics", {}))

    def importance(self) -> dict[str, float]:
        gains = self.booster.feature_importance(importance_type="gain")
        return {name: float(g) for name, g in zip(self.features, gains)}
