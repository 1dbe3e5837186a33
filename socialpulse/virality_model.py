"""Virality prediction: will a post reach the top decile of 7-day reach, judged from its first hours?

A post is observed at :data:`OBSERVATION_HOURS` after it was made. Each observation is one row of
:data:`FEATURES`:

- its early signals up to that hour: views, views in the window's second half (acceleration), like, share
  and comment rates, mean watch time and video completion;
- its creator's history as of the post: followers, earlier posts of the last :data:`HISTORY_DAYS` days, the
  mean log first-day views of those made at least a day before;
- its content: kind, length, hashtag count, hour of day (UTC).

The label is whether the post's 7-day reach (unique viewers within 7 days of creation) reaches the top
decile; the decile's threshold is learned on the training posts only. A LightGBM binary model learns
``P(top decile | observation)``; the classic baseline is Szabo and Huberman's log-linear extrapolation of
early views, ``ln N(7 d) = ln N(t) + beta_t`` with Gaussian residuals (``sigma_t``), whose probability of
passing the threshold is measured beside the model in the same run.

Everything here is pure (Arrow in, Arrow/NumPy out; DuckDB for the joins); the assets in
``assets/virality`` read the lake and write Postgres.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa

from socialpulse import boosters
from socialpulse.virality import TOP_SHARE

#: hours after creation at which a post is observed (training rows; predictions snap to the latest one passed)
OBSERVATION_HOURS = (1, 2, 3, 6, 12, 24, 48)
#: the observation the headline figures and the champion gate use
DECISION_HOURS = 6
#: posts older than this get no new prediction (the hourly asset scores younger ones)
SCORING_HORIZON_HOURS = 48
REACH_DAYS = 7
#: a creator's history counts the posts of this many days before the post (what the hourly scorer reads)
HISTORY_DAYS = 30

EARLY_FEATURES = ("observed_hours", "log_views", "log_views_second_half", "like_rate", "share_rate",
                  "comment_rate", "mean_watch_s", "completion")
CREATOR_FEATURES = ("log_creator_followers", "creator_prior_posts", "creator_prior_log_views_24h")
CONTENT_FEATURES = ("kind", "duration_s", "hashtags", "hour_of_day")
FEATURES = EARLY_FEATURES + CREATOR_FEATURES + CONTENT_FEATURES
KINDS = ("video", "image", "text")

PARAMS: dict = {
    "objective": "binary",
    "learning_rate": 0.05,
    "num_leaves": 31,
    "min_data_in_leaf": 50,
    "feature_fraction": 0.9,
    "bagging_fraction": 0.8,
    "bagging_freq": 1,
    "num_threads": 2,
    "seed": 11,
    "deterministic": True,
    "verbose": -1,
}
NUM_ROUNDS = 400
EARLY_STOPPING = 30

META_FILE = "virality.json"


# --- features ----------------------------------------------------------------------------------------------

_SIGNALS_SQL = """
WITH p AS (
    SELECT post_id, author_id, kind, duration_s, coalesce(len(hashtags), 0) AS hashtags, created_at
    FROM posts
),
obs AS (SELECT p.*, o.observed_hours FROM p JOIN observations o USING (post_id)),
ev AS (
    SELECT i.post_id, i.event_type, i.watch_time_s,
           epoch_us(i.created_at - p.created_at) / 3.6e9 AS age_h
    FROM interactions i JOIN p USING (post_id)
    WHERE i.event_type IN ('view', 'like', 'share', 'comment')
      AND i.created_at >= p.created_at AND i.created_at < p.created_at + INTERVAL (max_h) HOUR
),
agg AS (
    SELECT o.post_id, o.observed_hours,
           count(*) FILTER (WHERE e.event_type = 'view') AS views,
           count(*) FILTER (WHERE e.event_type = 'view' AND e.age_h >= o.observed_hours / 2) AS views_second_half,
           count(*) FILTER (WHERE e.event_type = 'like') AS likes,
           count(*) FILTER (WHERE e.event_type = 'share') AS shares,
           count(*) FILTER (WHERE e.event_type = 'comment') AS comments,
           avg(e.watch_time_s) FILTER (WHERE e.event_type = 'view') AS mean_watch_s,
           avg(least(e.watch_time_s / nullif(o.duration_s, 0), 1.0)) FILTER (WHERE e.event_type = 'view') AS completion
    FROM obs o JOIN ev e ON e.post_id = o.post_id AND e.age_h < o.observed_hours
    GROUP BY ALL
),
first_day AS (
    SELECT p.post_id, p.author_id, p.created_at,
           ln(1 + count(e.post_id) FILTER (WHERE e.event_type = 'view' AND e.age_h < 24)) AS log_views_24h
    FROM p LEFT JOIN ev e USING (post_id)
    GROUP BY ALL
),
history AS (
    SELECT post_id,
           count(*) OVER prior AS creator_prior_posts,
           avg(log_views_24h) OVER known AS creator_prior_log_views_24h
    FROM first_day
    WINDOW prior AS (PARTITION BY author_id ORDER BY created_at
                     RANGE BETWEEN INTERVAL (history_days) DAY PRECEDING AND INTERVAL 1 MICROSECOND PRECEDING),
           known AS (PARTITION BY author_id ORDER BY created_at
                     RANGE BETWEEN INTERVAL (history_days) DAY PRECEDING AND INTERVAL 24 HOUR PRECEDING)
),
follow_events AS (
    SELECT followee_id AS author_id, created_at,
           sum(CASE WHEN action = 'follow' THEN 1 ELSE -1 END) OVER (
               PARTITION BY followee_id ORDER BY created_at ROWS UNBOUNDED PRECEDING) AS followers
    FROM follows
),
followers AS (
    SELECT p.post_id, f.followers
    FROM p ASOF LEFT JOIN follow_events f ON p.author_id = f.author_id AND p.created_at > f.created_at
)
SELECT o.post_id, o.author_id, o.created_at AS post_created_at, o.kind AS kind_name,
       CAST(o.observed_hours AS DOUBLE) AS observed_hours,
       coalesce(a.views, 0) AS views,
       ln(1 + coalesce(a.views, 0)) AS log_views,
       ln(1 + coalesce(a.views_second_half, 0)) AS log_views_second_half,
       a.likes / nullif(a.views, 0) AS like_rate,
       a.shares / nullif(a.views, 0) AS share_rate,
       a.comments / nullif(a.views, 0) AS comment_rate,
       a.mean_watch_s, a.completion,
       ln(1 + greatest(coalesce(f.followers, 0), 0)) AS log_creator_followers,
       CAST(coalesce(h.creator_prior_posts, 0) AS DOUBLE) AS creator_prior_posts,
       h.creator_prior_log_views_24h,
       CAST(list_position(['video', 'image', 'text'], o.kind) - 1 AS DOUBLE) AS kind,
       CAST(o.duration_s AS DOUBLE) AS duration_s,
       CAST(o.hashtags AS DOUBLE) AS hashtags,
       CAST(hour(o.created_at AT TIME ZONE 'UTC') AS DOUBLE) AS hour_of_day
FROM obs o
LEFT JOIN agg a ON a.post_id = o.post_id AND a.observed_hours = o.observed_hours
LEFT JOIN history h ON h.post_id = o.post_id
LEFT JOIN followers f ON f.post_id = o.post_id
ORDER BY o.post_id, o.observed_hours
"""

_REACH_SQL = f"""
SELECT p.post_id, count(DISTINCT i.user_id) AS reach_7d
FROM posts p LEFT JOIN interactions i
  ON i.post_id = p.post_id AND i.event_type = 'view'
 AND i.created_at >= p.created_at AND i.created_at < p.created_at + INTERVAL {REACH_DAYS} DAY
GROUP BY p.post_id
"""


def _duck():
    import duckdb

    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    return con


def signals(posts: pa.Table, interactions: pa.Table, follows: pa.Table, observations: pa.Table) -> pa.Table:
    """One row per ``observations`` row (``post_id``, ``observed_hours``) with :data:`FEATURES` and the raw
    ``views`` up to that hour. ``posts`` holds every post the creators' histories should count (not only the
    observed ones); ``interactions`` their view/like/share/comment events; ``follows`` the follow log."""
    con = _duck()
    max_h = float(max(pa.compute.max(observations["observed_hours"]).as_py() or 1, 24))
    con.register("posts", posts.select(["post_id", "author_id", "kind", "duration_s", "hashtags", "created_at"]))
    con.register("interactions", interactions.select(["post_id", "event_type", "watch_time_s", "created_at"]))
    con.register("follows", follows.select(["followee_id", "action", "created_at"]))
    con.register("observations", observations.select(["post_id", "observed_hours"]))
    sql = _SIGNALS_SQL.replace("(max_h)", f"({max_h:.0f})").replace("(history_days)", f"({HISTORY_DAYS})")
    return con.execute(sql).to_arrow_table()


def reach(posts: pa.Table, interactions: pa.Table) -> pa.Table:
    """``post_id``, ``reach_7d``: distinct viewers within :data:`REACH_DAYS` days of the post's creation."""
    con = _duck()
    con.register("posts", posts.select(["post_id", "created_at"]))
    con.register("interactions", interactions.select(["post_id", "user_id", "event_type", "created_at"]))
    return con.execute(_REACH_SQL).to_arrow_table()


def observation_grid(post_ids: Sequence[str], hours: Sequence[int] = OBSERVATION_HOURS) -> pa.Table:
    """Every post at every observation hour (the training rows)."""
    ids = np.repeat(np.asarray(post_ids, dtype=object), len(hours))
    hrs = np.tile(np.asarray(hours, dtype=np.float64), len(post_ids))
    return pa.table({"post_id": pa.array(ids, pa.string()), "observed_hours": pa.array(hrs)})


def snap_hours(age_hours: np.ndarray, hours: Sequence[int] = OBSERVATION_HOURS) -> np.ndarray:
    """The latest observation hour each age has passed (NaN when younger than the first one)."""
    grid = np.asarray(hours, dtype=np.float64)
    idx = np.searchsorted(grid, np.asarray(age_hours, dtype=np.float64), side="right") - 1
    return np.where(idx >= 0, grid[np.clip(idx, 0, None)], np.nan)


def matrix(table: pa.Table) -> np.ndarray:
    return np.column_stack([table[n].to_numpy(zero_copy_only=False).astype(np.float64) for n in FEATURES])


# --- split and labels ----------------------------------------------------------------------------------------

def labelled_posts(posts: pa.Table, data_end: dt.datetime) -> pa.Table:
    """Posts whose whole 7-day window lies before ``data_end`` (only their reach is final)."""
    cutoff = pa.scalar(data_end - dt.timedelta(days=REACH_DAYS), posts["created_at"].type)
    return posts.filter(pa.compute.less_equal(posts["created_at"], cutoff))


def time_split(created_at: np.ndarray, test_share: float = 0.25, validation_share: float = 0.15) -> dict[str, np.ndarray]:
    """Boolean masks by creation time: the latest ``test_share`` of posts is the test set, the
    ``validation_share`` before it validation (early stopping), the rest training."""
    order = np.argsort(created_at, kind="stable")
    n = len(order)
    n_test, n_val = int(round(n * test_share)), int(round(n * validation_share))
    masks = {k: np.zeros(n, bool) for k in ("train", "validation", "test")}
    masks["test"][order[n - n_test:]] = True
    masks["validation"][order[n - n_test - n_val:n - n_test]] = True
    masks["train"][order[:n - n_test - n_val]] = True
    return masks


def top_threshold(reach_7d: np.ndarray, share: float = TOP_SHARE) -> float:
    """The reach a post must exceed to be in the top ``share`` (on the training posts)."""
    return float(np.quantile(np.asarray(reach_7d, np.float64), 1.0 - share))


# --- the baseline ----------------------------------------------------------------------------------------------

@dataclass
class SzaboHuberman:
    """``ln(1 + N_7d) = ln(1 + N_t) + beta_t + eps``, ``eps ~ N(0, sigma_t)``, fitted per observation hour."""

    beta: dict[float, float] = field(default_factory=dict)
    sigma: dict[float, float] = field(default_factory=dict)

    @classmethod
    def fit(cls, hours: np.ndarray, log_views: np.ndarray, log_reach: np.ndarray) -> "SzaboHuberman":
        out = cls()
        for t in np.unique(hours):
            r = log_reach[hours == t] - log_views[hours == t]
            out.beta[float(t)] = float(np.mean(r))
            out.sigma[float(t)] = float(max(np.std(r), 1e-6))
        return out

    def predict_log_reach(self, hours: np.ndarray, log_views: np.ndarray) -> np.ndarray:
        return log_views + np.array([self.beta[float(t)] for t in hours])

    def probability(self, hours: np.ndarray, log_views: np.ndarray, threshold: float) -> np.ndarray:
        """P(N_7d > threshold) under the model's Gaussian residuals."""
        from scipy.stats import norm

        sigma = np.array([self.sigma[float(t)] for t in hours])
        z = (math.log1p(threshold) - self.predict_log_reach(hours, log_views)) / sigma
        return norm.sf(z)


# --- metrics ----------------------------------------------------------------------------------------------

def auc(y: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve (ties count half); NaN when one class is missing."""
    from scipy.stats import rankdata

    y = np.asarray(y, bool)
    pos, neg = int(y.sum()), int((~y).sum())
    if not pos or not neg:
        return float("nan")
    ranks = rankdata(score)
    return float((ranks[y].sum() - pos * (pos + 1) / 2) / (pos * neg))


def precision_at(y: np.ndarray, score: np.ndarray, k: int) -> float:
    k = min(k, len(y))
    if k <= 0:
        return float("nan")
    top = np.argsort(-np.asarray(score), kind="stable")[:k]
    return float(np.mean(np.asarray(y, bool)[top]))


def calibration(y: np.ndarray, p: np.ndarray, bins: int = 10) -> dict:
    """Brier score, expected calibration error over equal-width bins, and the reliability table."""
    y = np.asarray(y, np.float64)
    p = np.clip(np.asarray(p, np.float64), 0.0, 1.0)
    which = np.minimum((p * bins).astype(int), bins - 1)
    table, ece = [], 0.0
    for b in range(bins):
        m = which == b
        if not m.any():
            continue
        mean_p, rate = float(p[m].mean()), float(y[m].mean())
        ece += m.mean() * abs(mean_p - rate)
        table.append({"bin": f"{b / bins:.1f}-{(b + 1) / bins:.1f}", "n": int(m.sum()),
                      "mean_predicted": round(mean_p, 4), "observed_rate": round(rate, 4)})
    return {"brier": round(float(np.mean((p - y) ** 2)), 5), "ece": round(float(ece), 5), "reliability": table}


def evaluate(y: np.ndarray, hours: np.ndarray, systems: Mapping[str, np.ndarray]) -> dict:
    """Per observation hour and system: AUC, precision at the top decile of the hour's posts (k = 10 %),
    precision@100 and calibration; ``systems`` maps a name to probabilities."""
    out: dict = {}
    for t in sorted(set(np.asarray(hours).tolist())):
        m = hours == t
        k = max(1, int(round(TOP_SHARE * m.sum())))
        out[f"{t:g}h"] = {"posts": int(m.sum()), "positives": int(np.asarray(y)[m].sum()), **{
            name: {"auc": round(auc(y[m], p[m]), 4), "precision@10%": round(precision_at(y[m], p[m], k), 4),
                   "precision@100": round(precision_at(y[m], p[m], 100), 4), **calibration(y[m], p[m])}
            for name, p in systems.items()}}
    return out


# --- the model --------------------------------------------------------------------------------------------

@dataclass
class ViralityModel:
    """A LightGBM binary booster over :data:`FEATURES` with the top-decile reach threshold it was trained for."""

    booster: object
    threshold: float
    version: str = ""
    metrics: dict = field(default_factory=dict)

    @classmethod
    def train(cls, X: np.ndarray, y: np.ndarray, X_val: np.ndarray, y_val: np.ndarray, threshold: float,
              params: Mapping | None = None, num_rounds: int = NUM_ROUNDS) -> "ViralityModel":
        import lightgbm as lgb

        y = np.asarray(y, np.float64)
        if len(X) == 0 or y.min() == y.max():
            raise ValueError(f"virality training needs both classes: {len(X)} rows, {int(y.sum())} positive")
        train = lgb.Dataset(np.asarray(X, np.float64), label=y, feature_name=list(FEATURES), free_raw_data=False)
        valid = [lgb.Dataset(np.asarray(X_val, np.float64), label=np.asarray(y_val, np.float64), reference=train)]
        booster = lgb.train({**PARAMS, **(params or {})}, train, num_boost_round=num_rounds, valid_sets=valid,
                            callbacks=[lgb.early_stopping(EARLY_STOPPING, verbose=False)])
        text = booster.model_to_string()
        return cls(booster=booster, threshold=threshold,
                   version=hashlib.sha256(f"{text}{threshold}".encode()).hexdigest()[:12])

    def probability(self, X: np.ndarray) -> np.ndarray:
        if len(X) == 0:
            return np.zeros(0)
        return np.asarray(self.booster.predict(np.asarray(X, np.float64), num_threads=1), dtype=np.float64)

    def save(self, folder: str | Path) -> Path:
        return boosters.save(folder, self.booster, META_FILE, {"features": list(FEATURES), "threshold": self.threshold,
                                                               "version": self.version, "metrics": self.metrics})

    @classmethod
    def load(cls, folder: str | Path) -> "ViralityModel":
        booster, meta = boosters.load(folder, META_FILE, FEATURES, "virality model")
        return cls(booster=booster, threshold=float(meta["threshold"]), version=meta["version"],
                   metrics=meta.get("metrics", {}))

    def importance(self) -> dict[str, float]:
        gains = self.booster.feature_importance(importance_type="gain")
        return {name: round(float(g), 1) for name, g in zip(FEATURES, gains)}


def train_and_evaluate(rows: pa.Table, reach_7d: Mapping[str, int], champion: ViralityModel | None = None) -> dict:
    """Train on the earliest posts of ``rows`` (observations of labelled posts, from :func:`signals`), early-stop
    on the next ones, evaluate on the latest (a time split by post creation): the model beside the
    Szabo-Huberman baseline and, when given, the champion re-scored on the same test posts."""
    ids = rows["post_id"].to_numpy(zero_copy_only=False).astype(object)
    created = rows["post_created_at"].to_numpy(zero_copy_only=False).astype("datetime64[us]").astype(np.int64)
    posts, first, row_post = np.unique(ids, return_index=True, return_inverse=True)
    post_reach = np.array([reach_7d[p] for p in posts], dtype=np.float64)
    post_masks = time_split(created[first])  # whole posts go to one side: all of a post's hours together
    masks = {k: m[row_post] for k, m in post_masks.items()}
    threshold = top_threshold(post_reach[post_masks["train"]])
    r = post_reach[row_post]
    y = r > threshold
    X = matrix(rows)
    hours = rows["observed_hours"].to_numpy(zero_copy_only=False)
    log_views = rows["log_views"].to_numpy(zero_copy_only=False)
    tr, va, te = masks["train"], masks["validation"], masks["test"]
    t0 = time.perf_counter()
    model = ViralityModel.train(X[tr], y[tr], X[va], y[va], threshold)
    train_s = time.perf_counter() - t0
    sh = SzaboHuberman.fit(hours[tr], log_views[tr], np.log1p(r[tr]))
    t1 = time.perf_counter()
    p_model = model.probability(X[te])
    score_s = time.perf_counter() - t1
    systems = {"model": p_model, "szabo_huberman": sh.probability(hours[te], log_views[te], threshold)}
    if champion is not None:
        systems["champion"] = champion.probability(X[te])
    by_hour = evaluate(y[te], hours[te], systems)
    decision = by_hour[f"{DECISION_HOURS}h"]
    evaluation = {
        "by_hour": by_hour,
        "decision_hours": DECISION_HOURS,
        "model": {"auc": decision["model"]["auc"], "precision@10%": decision["model"]["precision@10%"],
                  "brier": decision["model"]["brier"], "ece": decision["model"]["ece"]},
        "szabo_huberman": {"auc": decision["szabo_huberman"]["auc"],
                           "precision@10%": decision["szabo_huberman"]["precision@10%"],
                           "brier": decision["szabo_huberman"]["brier"], "ece": decision["szabo_huberman"]["ece"]},
        "threshold_reach_7d": threshold,
        "posts": {k: int(m.sum()) for k, m in post_masks.items()},
        "rows": {k: int(m.sum()) for k, m in masks.items()},
        "positive_share_test": round(float(y[te].mean()), 4) if te.any() else None,
        "baseline_fit": {"beta": sh.beta, "sigma": sh.sigma},
        "importance_gain": model.importance(),
        "trees": model.booster.num_trees(),
        "timing_s": {"train": round(train_s, 2), "score_per_1k_rows_ms": round(score_s / max(te.sum(), 1) * 1e6, 3)},
    }
    if champion is not None:
        evaluation["champion"] = {"auc": decision["champion"]["auc"], "version": champion.version}
    model.metrics = evaluation["model"]
    return {"model": model, "evaluation": evaluation}


# --- registry -------------------------------------------------------------------------------------------------

MODEL_NAME = "socialpulse-virality"
EXPERIMENT = "virality"
GATE_METRIC = "auc"
GATE_TAG = f"heldout_auc_at_{DECISION_HOURS}h"
REQUIREMENTS = ("mlflow", "numpy", "pandas", "lightgbm")


def _pyfunc():
    import mlflow.pyfunc

    class ViralityPyfunc(mlflow.pyfunc.PythonModel):
        """Input: a DataFrame with the virality features. Output: P(top decile of 7-day reach) per row."""

        def load_context(self, context):
            self.model = ViralityModel.load(context.artifacts["virality"])

        def predict(self, context, model_input, params=None):
            return self.model.probability(model_input[list(FEATURES)].to_numpy())

    return ViralityPyfunc()


def log_and_promote(tracking_uri: str, model: ViralityModel, *, evaluation: Mapping, params: Mapping,
                    force: bool = False) -> dict:
    """Log and register the model; it becomes champion when its held-out AUC at :data:`DECISION_HOURS`
    beats the champion's on the same test posts."""
    import tempfile

    from socialpulse.model_registry import log_register_gate, pinned_requirements

    with tempfile.TemporaryDirectory(prefix="virality-log-") as tmp:
        return log_register_gate(
            tracking_uri, name=MODEL_NAME, experiment=EXPERIMENT, model_version=model.version,
            folder=model.save(Path(tmp) / "virality"), artifact="virality", python_model=_pyfunc(),
            requirements=pinned_requirements(REQUIREMENTS), evaluation=evaluation, params=params,
            gate=evaluation["model"][GATE_METRIC], gate_tag=GATE_TAG,
            champion_gate=(evaluation.get("champion") or {}).get(GATE_METRIC), force=force)


def _find(folder: Path) -> ViralityModel:
    for meta in sorted(Path(folder).rglob(META_FILE), key=lambda p: len(p.parts)):
        return ViralityModel.load(meta.parent)
    raise FileNotFoundError(f"no virality model ({META_FILE}) under {folder}")


def load_champion(tracking_uri: str, cache_dir: Path) -> ViralityModel:
    """The champion (downloaded once per version into ``cache_dir``); LookupError when there is none,
    :class:`~socialpulse.model_registry.RegistryUnavailable` when MLflow does not answer."""
    from socialpulse.model_registry import ALIAS, cached_download, champion_summary

    info = champion_summary(tracking_uri, MODEL_NAME, GATE_TAG)
    if info is None:
        raise LookupError(f"no '{ALIAS}' version of {MODEL_NAME!r} at {tracking_uri} yet: materialize "
                          "ml/virality/virality_model")
    key = f"{info['version']}-{info['model_version'] or 'unknown'}"
    return cached_download(tracking_uri, f"models:/{MODEL_NAME}/{info['version']}", Path(cache_dir) / "virality",
                           key, _find)

