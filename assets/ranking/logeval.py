"""The feed's candidate + ranking pipeline, trained and evaluated on any user-item-time interaction log.

Pure functions: files in, a JSON-ready dict out. ``socialpulse ranking eval`` (cli/ranking.py) is the door.

Input
    ``movielens``: tab-separated ``user, item, rating, timestamp`` (unix seconds), no header (ml-100k's
    ``u.data``); the rating is checked to be a number, and every rated item counts as one interaction of
    weight 1 (relevance is binary). ``csv``: a header with ``user_id,item_id,timestamp`` and optionally
    ``weight`` (default 1; an empty cell is 1); timestamps are unix seconds or ISO-8601 (UTC when no offset).
    Repeated rows of one (user, item) become one *pair*: weights summed, time = its first interaction.

Split
    ``random``: each user's pairs are shuffled (seeded) and ``ratio`` of them, rounded, go to train;
    ``time``: each user's earliest ``ratio`` go to train (every test time >= every train time of that user).
    A user with one pair keeps it in train (no test); one with two or more keeps at least one on each side.
    ``--train/--test`` files give the split instead.

Training (train only; the test pairs are never read)
    Each user's train pairs are split again, the way the test was split off (``random``: at random; ``time``
    and explicit files: chronologically): :data:`LABEL_SHARE` of them is the *label period*, the rest the
    *history*. Splitting the same way matters: the model is trained on features of the history and scores
    features of the whole train set, which must look alike. After a chronological cut the latest stretch of
    a history is thinned out exactly as the train set's is after a time split, while after a random split it
    is not (a model trained on thinned recent counts and scored on full ones ranks worse than popularity).
    From the history: item vectors (a truncated SVD of the user x item weight matrix, L2-normalised),
    interest vectors (:func:`assets.content.embeddings.interest_vectors`), popularity and recency. Candidates per user come from the sources ``interest`` (nearest items by cosine), ``popular``
    (most pairs in the history's latest stretch) and ``fresh`` (latest first interaction), merged by
    :func:`socialpulse.ranking.rerank.merge_candidates` to :data:`CANDIDATES`; a candidate is a positive when
    the user interacted with it in the label period. One group per user; ~10 % of the groups validate (early
    stopping) the LambdaRank :class:`socialpulse.ranking.model.Ranker`.

Features (the platform's :data:`socialpulse.ranking.model.FEATURES`, in its order; a log has no follows, watch
time or likes, so those columns are NaN, which LightGBM reads as missing). As of the context's cutoff (its
latest pair):
    sim_interest         cosine of the user's interest vector and the item vector
    age_hours            hours since the item's first interaction
    views_7d / views_1d  summed weight of the item's pairs that started in the last 7 days / 1 day
    unique_viewers_7d    users whose first interaction with the item falls in the last 7 days
    views_given_7d       the user's pairs that started in the last 7 days
The counts are relative to their mean (over catalogue items; over users with a pair): the history holds fewer
pairs than the whole train set, and a model trained on one scores the other. A "day" is a calendar day, or,
for a log longer than the platform's 28-day interest window, 1/28 of its span (see :func:`feature_day_s`).

Evaluation (full ranking)
    The same features recomputed from the whole train set; for each test user the model scores every catalogue
    item (an item with a train interaction) the user has not interacted with in train, and the best
    ``max(ks)`` are its list. Relevant: the user's test items (grade 1), less those outside the catalogue or
    already in the user's train (counted in ``data``). Baselines in the same run: ``most_popular`` (train pairs
    per item) and ``interest_only`` (the cosine alone). ``candidate_recall@200``: per user, the share of the
    relevant items the merged candidate sources (from the whole train set) hold, averaged over users.
"""

from __future__ import annotations

import csv
import datetime as dt
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from assets.content.embeddings import INTEREST_WINDOW_DAYS, cold_start_vector, interest_vectors, normalise
from socialpulse.ranking.metrics import evaluate
from socialpulse.ranking.model import FEATURES, Ranker, group_sizes
from socialpulse.ranking.rerank import merge_candidates

FORMATS = ("movielens", "csv")
SPLITS = ("random", "time")
CSV_COLUMNS = ("user_id", "item_id", "timestamp")
MOVIELENS_FIELDS = ("user", "item", "rating", "timestamp")
METRICS = ("ndcg", "map", "precision", "recall")

#: merged candidates per user, and how many each source offers before the merge
CANDIDATES = 200
PER_SOURCE = 200
#: the latest share of each user's train pairs that labels the training set
LABEL_SHARE = 0.2
#: share of the training groups (users) held out for early stopping; none below MIN_VAL_GROUPS groups
VAL_SHARE = 0.1
MIN_VAL_GROUPS = 10
#: the ``popular`` source counts the pairs of this latest share of the history (a log has no natural window)
POPULAR_STRETCH = 0.1
#: item vectors: at most this many SVD dimensions
MAX_DIM = 64
DAY_S = 86_400.0
#: rows scored at once in the full ranking (users per batch = this // catalogue size, at least 1)
SCORE_BATCH_ROWS = 250_000

COL = {name: i for i, name in enumerate(FEATURES)}

PROTOCOL = (
    "full ranking: each test user's list ranks every catalogue item (an item with at least one train "
    "interaction) the user has not interacted with in train; relevance is binary (1 for each item the user "
    "interacted with in test; repeated user-item rows are one pair, test items outside the catalogue or already "
    "in the user's train are not counted); metrics are socialpulse.ranking.metrics.evaluate averaged over the "
    "users with a relevant item. The model is trained on train only: each user's train pairs are split again "
    "the way the test was split (random, or chronologically for time and explicit splits) into history (80%) "
    "and label period (20%); features come from the history, labels from the label period. Baselines "
    "most_popular (train pairs per item) and interest_only (cosine of the train interest vector) rank the same "
    "items in the same run."
)


class LogError(ValueError):
    """A log that cannot be read or split; the message names the file, the line and the value."""


# --- loading -----------------------------------------------------------------------------------------------
@dataclass
class Log:
    """Rows of one file, as read."""

    path: str
    user: list[str]
    item: list[str]
    ts: np.ndarray  # unix seconds, float64
    weight: np.ndarray  # float64, >= 0


def _number(path: Path, line: int, name: str, text: str, *, minimum: float | None = None) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not math.isfinite(value) or (minimum is not None and value < minimum):
        bound = f" >= {minimum:g}" if minimum is not None else ""
        raise LogError(f"{path} line {line}: {name} {text!r} is not a finite number{bound}")
    return value


def parse_timestamp(text: str, *, iso: bool = True) -> float:
    """Unix seconds from ``text``: a number, or (``iso``) an ISO-8601 date-time, UTC when it has no offset.
    Raises ValueError."""
    text = text.strip()
    try:
        value = float(text)
    except ValueError:
        if not iso:
            raise
        when = dt.datetime.fromisoformat(text)
        if when.tzinfo is None:
            when = when.replace(tzinfo=dt.timezone.utc)
        value = when.timestamp()
    if not math.isfinite(value):
        raise ValueError(text)
    return value


def _timestamp(path: Path, line: int, text: str, *, iso: bool) -> float:
    try:
        return parse_timestamp(text, iso=iso)
    except ValueError:
        kind = "unix seconds or ISO-8601" if iso else "unix seconds"
        raise LogError(f"{path} line {line}: timestamp {text!r} is not {kind}") from None


def _ids(path: Path, line: int, user: str, item: str) -> None:
    if not user or not item:
        raise LogError(f"{path} line {line}: empty {'user' if not user else 'item'} id")


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    if not path.is_file():
        raise LogError(f"{path}: no such file")
    try:
        with path.open(encoding="utf-8", newline="") as f:
            yield from enumerate(f, 1)
    except UnicodeDecodeError as exc:
        raise LogError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def _log(path: Path, users: list, items: list, ts: list, weights: list) -> Log:
    if not users:
        raise LogError(f"{path}: no interactions")
    return Log(str(path), users, items, np.asarray(ts, np.float64), np.asarray(weights, np.float64))


def read_movielens(path: str | Path) -> Log:
    """``user<TAB>item<TAB>rating<TAB>timestamp`` lines (ml-100k's u.data); blank lines are skipped."""
    path = Path(path)
    users, items, ts = [], [], []
    for line, raw in _lines(path):
        text = raw.rstrip("\r\n")
        if not text.strip():
            continue
        fields = [f.strip() for f in text.split("\t")]
        if len(fields) != len(MOVIELENS_FIELDS):
            raise LogError(f"{path} line {line}: expected {len(MOVIELENS_FIELDS)} tab-separated fields "
                           f"({', '.join(MOVIELENS_FIELDS)}), got {len(fields)}: {text[:80]!r}")
        user, item, rating, stamp = fields
        _ids(path, line, user, item)
        _number(path, line, "rating", rating)
        ts.append(_timestamp(path, line, stamp, iso=False))
        users.append(user)
        items.append(item)
    return _log(path, users, items, ts, [1.0] * len(users))


def read_csv(path: str | Path) -> Log:
    """A CSV with a header naming ``user_id``, ``item_id``, ``timestamp`` and optionally ``weight`` (any order,
    other columns ignored); blank lines are skipped."""
    path = Path(path)
    reader = csv.reader(line for _, line in _lines(path))
    header = next(reader, None)
    if header is None:
        raise LogError(f"{path}: empty file (expected a header with {','.join(CSV_COLUMNS)})")
    header = [h.strip() for h in header]
    missing = [c for c in CSV_COLUMNS if c not in header]
    if missing:
        raise LogError(f"{path} line 1: header lacks column(s) {', '.join(missing)} (expected "
                       f"{','.join(CSV_COLUMNS)}[,weight]; found {','.join(header)!r})")
    iu, ii, it = (header.index(c) for c in CSV_COLUMNS)
    iw = header.index("weight") if "weight" in header else None
    users, items, ts, weights = [], [], [], []
    for row in reader:
        line = reader.line_num
        if not row or not any(cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            raise LogError(f"{path} line {line}: expected {len(header)} comma-separated fields like the header, "
                           f"got {len(row)}: {','.join(row)[:80]!r}")
        user, item = row[iu].strip(), row[ii].strip()
        _ids(path, line, user, item)
        ts.append(_timestamp(path, line, row[it], iso=True))
        cell = row[iw].strip() if iw is not None else ""
        weights.append(_number(path, line, "weight", cell, minimum=0.0) if cell else 1.0)
        users.append(user)
        items.append(item)
    return _log(path, users, items, ts, weights)


def read_log(path: str | Path, fmt: str) -> Log:
    if fmt not in FORMATS:
        raise LogError(f"unknown format {fmt!r}: one of {', '.join(FORMATS)}")
    return read_movielens(path) if fmt == "movielens" else read_csv(path)


# --- pairs and splits --------------------------------------------------------------------------------------
@dataclass
class Pairs:
    """Unique (user, item) pairs as integer codes, sorted by user then item."""

    user: np.ndarray  # int64
    item: np.ndarray  # int64
    ts: np.ndarray  # first interaction, unix seconds
    weight: np.ndarray  # summed weight

    def __len__(self) -> int:
        return len(self.user)

    def take(self, mask: np.ndarray) -> "Pairs":
        return Pairs(self.user[mask], self.item[mask], self.ts[mask], self.weight[mask])


def _codes(values: Sequence[str], index: dict[str, int]) -> np.ndarray:
    return np.fromiter((index.get(v, -1) for v in values), dtype=np.int64, count=len(values))


def to_pairs(log: Log, user_index: dict[str, int], item_index: dict[str, int]) -> Pairs:
    """The log's rows as pairs (rows whose user or item is not indexed are left out)."""
    u, i = _codes(log.user, user_index), _codes(log.item, item_index)
    ok = (u >= 0) & (i >= 0)
    u, i, ts, w = u[ok], i[ok], log.ts[ok], log.weight[ok]
    n = max(len(item_index), 1)
    key = u * n + i
    order = np.lexsort((ts, key))
    key, ts, w = key[order], ts[order], w[order]
    starts = np.r_[0, np.flatnonzero(np.diff(key)) + 1] if len(key) else np.zeros(0, np.int64)
    first = key[starts]
    weight = np.add.reduceat(w, starts) if len(key) else np.zeros(0)
    return Pairs(first // n, first % n, ts[starts], weight)


def train_counts(n: np.ndarray, ratio: float) -> np.ndarray:
    """Pairs that go to train of users with ``n`` pairs: ``ratio * n`` rounded half up, at least one on each
    side for n >= 2; a user with one pair keeps it in train."""
    n = np.asarray(n, np.int64)
    k = np.clip(np.floor(ratio * n + 0.5).astype(np.int64), 1, np.maximum(n - 1, 1))
    return np.where(n < 2, n, k)


def split_mask(pairs: Pairs, method: str, ratio: float, seed: int) -> np.ndarray:
    """True for the pairs that go to train: per user, ``train_counts`` of them, drawn at random (``random``)
    or the earliest (``time``; equal times are ordered at random). Deterministic for a seed."""
    if method not in SPLITS:
        raise LogError(f"unknown split {method!r}: one of {', '.join(SPLITS)}")
    if not 0.0 < ratio < 1.0:
        raise LogError(f"ratio {ratio} must be between 0 and 1 (exclusive)")
    tie = np.random.default_rng(seed).random(len(pairs))
    keys = (tie, pairs.user) if method == "random" else (tie, pairs.ts, pairs.user)
    order = np.lexsort(keys)
    users = pairs.user[order]
    starts = np.r_[0, np.flatnonzero(np.diff(users)) + 1] if len(users) else np.zeros(0, np.int64)
    counts = np.diff(np.r_[starts, len(users)])
    rank = np.arange(len(users)) - np.repeat(starts, counts)
    mask = np.zeros(len(pairs), bool)
    mask[order] = rank < np.repeat(train_counts(counts, ratio), counts)
    return mask


# --- features and candidates ---------------------------------------------------------------------------------
@dataclass
class Context:
    """What features and candidates are computed from: a set of pairs, as of its latest time (``cutoff``)."""

    seen: object  # scipy CSR (users x items), True where the user has a pair
    catalogue: np.ndarray  # bool per item: it has a pair here
    item_vecs: np.ndarray  # (items, dim), unit norm (zero outside the catalogue)
    user_vecs: np.ndarray  # (users, dim), unit norm; the cold-start vector for users without pairs
    item_feats: np.ndarray  # (items, len(FEATURES)): the item columns filled, the others NaN
    views_given: np.ndarray  # per user: pairs started in the last 7 days
    popularity: np.ndarray  # per item: pairs
    popular_order: np.ndarray  # catalogue items, most pairs in the latest stretch first
    fresh_order: np.ndarray  # catalogue items, latest first interaction first
    cutoff: float
    dim: int


def item_vectors(pairs: Pairs, n_users: int, n_items: int, seed: int) -> np.ndarray:
    """Item vectors from a truncated SVD of the (user x item) weight matrix (item rows of V * sigma),
    L2-normalised; at most :data:`MAX_DIM` dimensions, fewer for small catalogues."""
    from scipy import sparse
    from sklearn.decomposition import TruncatedSVD

    m = sparse.csr_matrix((pairs.weight, (pairs.user, pairs.item)), shape=(n_users, n_items))
    dim = max(1, min(MAX_DIM, n_users - 1, n_items - 1))
    if min(n_users, n_items) < 2:
        return normalise(np.asarray(m.sum(axis=0), np.float64).reshape(n_items, 1)).astype(np.float32)
    svd = TruncatedSVD(n_components=dim, algorithm="randomized", n_iter=7, random_state=seed)
    svd.fit(m)
    return normalise(svd.components_.T * svd.singular_values_).astype(np.float32)


def feature_day_s(pairs: Pairs) -> float:
    """Length of the "day" of the 7-day and 1-day feature windows: a calendar day, or, for a log spanning more
    than the platform's interest window (:data:`INTEREST_WINDOW_DAYS`, 28 days), 1/28 of its span, so the
    windows keep the share of history they have on the platform (a 7-month MovieLens log would otherwise have
    almost no item with a pair in its last calendar week, and no popularity signal)."""
    span = float(pairs.ts.max() - pairs.ts.min()) if len(pairs) else 0.0
    return max(DAY_S, span / INTEREST_WINDOW_DAYS)


def _relative(counts: np.ndarray, among: np.ndarray) -> np.ndarray:
    """``counts`` over their mean among the ``among`` entries (1 = average; all 0 when that mean is 0)."""
    counts = np.asarray(counts, np.float64)
    mean = counts[among].mean() if among.any() else 0.0
    return counts / mean if mean > 0 else np.zeros_like(counts)


def build_context(pairs: Pairs, n_users: int, n_items: int, seed: int, day_s: float = DAY_S) -> Context:
    from scipy import sparse

    u, i, ts, w = pairs.user, pairs.item, pairs.ts, pairs.weight
    cutoff = float(ts.max())
    vecs = item_vectors(pairs, n_users, n_items, seed)
    index = {k: k for k in range(n_items)}
    users, uvecs, _ = interest_vectors(u, i, w, index, vecs)
    user_vecs = np.tile(cold_start_vector(i, w, index, vecs), (n_users, 1))
    user_vecs[np.asarray(users, np.int64)] = uvecs
    popularity = np.bincount(i, minlength=n_items).astype(np.float64)
    catalogue = popularity > 0
    first = np.full(n_items, np.inf)
    np.minimum.at(first, i, ts)
    week, day = ts > cutoff - 7 * day_s, ts > cutoff - day_s
    feats = np.full((n_items, len(FEATURES)), np.nan)
    feats[:, COL["age_hours"]] = np.where(catalogue, (cutoff - first) / 3600.0, np.nan)
    feats[:, COL["views_7d"]] = _relative(np.bincount(i[week], weights=w[week], minlength=n_items), catalogue)
    feats[:, COL["unique_viewers_7d"]] = _relative(np.bincount(i[week], minlength=n_items), catalogue)
    feats[:, COL["views_1d"]] = _relative(np.bincount(i[day], weights=w[day], minlength=n_items), catalogue)
    active = np.bincount(u, minlength=n_users) > 0
    # the popular source: pairs in the latest POPULAR_STRETCH of the history, ties by all-time pairs
    stretch = ts >= np.quantile(ts, 1.0 - POPULAR_STRETCH)
    recent = np.bincount(i[stretch], minlength=n_items)
    items = np.flatnonzero(catalogue)
    return Context(
        seen=sparse.csr_matrix((np.ones(len(u), bool), (u, i)), shape=(n_users, n_items)),
        catalogue=catalogue, item_vecs=vecs, user_vecs=user_vecs, item_feats=feats,
        views_given=_relative(np.bincount(u[week], minlength=n_users), active), popularity=popularity,
        popular_order=items[np.lexsort((items, -popularity[items], -recent[items]))],
        fresh_order=items[np.lexsort((items, -first[items]))],
        cutoff=cutoff, dim=vecs.shape[1],
    )


def features(ctx: Context, users: np.ndarray, items: np.ndarray, sim: np.ndarray | None = None) -> np.ndarray:
    """The ``(n, len(FEATURES))`` matrix of the pairs ``(users[j], items[j])`` (``sim``: their cosines, when
    already computed)."""
    X = ctx.item_feats[items]
    X[:, COL["sim_interest"]] = np.einsum("ij,ij->i", ctx.user_vecs[users], ctx.item_vecs[items]) if sim is None else sim
    X[:, COL["views_given_7d"]] = ctx.views_given[users]
    return X


def _batches(users: np.ndarray, n_items: int) -> Iterator[np.ndarray]:
    step = max(1, SCORE_BATCH_ROWS // max(n_items, 1))
    for s in range(0, len(users), step):
        yield users[s:s + step]


def _unseen_scores(ctx: Context, batch: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """``scores`` (batch x items) with -inf where an item is outside the catalogue or seen by the user."""
    scores = np.array(scores, dtype=np.float64)
    scores[:, ~ctx.catalogue] = -np.inf
    scores[ctx.seen[batch].toarray()] = -np.inf
    return scores


def _best(scores: np.ndarray, k: int) -> list[list[int]]:
    """Per row, the indices of the ``k`` best finite scores, best first (ties: lower index first)."""
    k = min(k, scores.shape[1])
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    top = np.take_along_axis(scores, part, axis=1)
    order = np.lexsort((part, -top), axis=1)
    part, top = np.take_along_axis(part, order, axis=1), np.take_along_axis(top, order, axis=1)
    return [row[np.isfinite(s)].tolist() for row, s in zip(part, top)]


def _first_unseen(order: np.ndarray, seen: set[int], n: int) -> list[int]:
    out: list[int] = []
    for item in order[:n + len(seen)].tolist():
        if item not in seen:
            out.append(item)
            if len(out) == n:
                break
    return out


def candidates(ctx: Context, users: np.ndarray) -> dict[int, list[int]]:
    """Per user, the merged sources ``interest``, ``popular`` and ``fresh`` (unseen catalogue items), at most
    :data:`CANDIDATES`, in merge order."""
    out: dict[int, list[int]] = {}
    for batch in _batches(np.asarray(users, np.int64), ctx.item_vecs.shape[0]):
        near = _best(_unseen_scores(ctx, batch, ctx.user_vecs[batch] @ ctx.item_vecs.T), PER_SOURCE)
        for u, interest in zip(batch.tolist(), near):
            seen = set(ctx.seen.indices[ctx.seen.indptr[u]:ctx.seen.indptr[u + 1]].tolist())
            merged = merge_candidates({"interest": interest,
                                       "popular": _first_unseen(ctx.popular_order, seen, PER_SOURCE),
                                       "fresh": _first_unseen(ctx.fresh_order, seen, PER_SOURCE)}, CANDIDATES)
            out[u] = [c.post_id for c in merged]
    return out


# --- training ----------------------------------------------------------------------------------------------
def train_ranker(train: Pairs, n_users: int, n_items: int, seed: int, day_s: float = DAY_S,
                 label_split: str = "time", progress: Callable[[str], None] | None = None) -> tuple[Ranker, dict]:
    """The LambdaRank ranker trained on ``train`` alone (history / label period per user, see the module)."""
    say = progress or (lambda _m: None)
    hist_mask = split_mask(train, label_split, 1.0 - LABEL_SHARE, seed)
    hist, label = train.take(hist_mask), train.take(~hist_mask)
    if len(label) == 0:
        raise LogError("no user has two or more train interactions: nothing to label a training set with")
    ctx = build_context(hist, n_users, n_items, seed, day_s)
    label_users = np.unique(label.user)
    cands = candidates(ctx, label_users)
    positives: dict[int, set[int]] = {}
    for u, i in zip(label.user.tolist(), label.item.tolist()):
        positives.setdefault(u, set()).add(i)
    rows_u, rows_i, y, groups_without = [], [], [], 0
    for u in label_users.tolist():
        items = cands[u]
        hits = [1 if i in positives[u] else 0 for i in items]
        if not any(hits):
            groups_without += 1
            continue
        rows_u += [u] * len(items)
        rows_i += items
        y += hits
    if not y:
        raise LogError("no user's label-period items are among their candidates: nothing to train on")
    rows_u, rows_i, y = np.asarray(rows_u, np.int64), np.asarray(rows_i, np.int64), np.asarray(y, np.int32)
    X = features(ctx, rows_u, rows_i)
    group_users = np.unique(rows_u)
    rng = np.random.default_rng(seed)
    n_val = int(round(VAL_SHARE * len(group_users))) if len(group_users) >= MIN_VAL_GROUPS else 0
    val = np.isin(rows_u, rng.permutation(group_users)[:n_val])
    say(f"training set: {len(y)} candidate rows of {len(group_users)} users ({int(y.sum())} positives; "
        f"{groups_without} users without a positive candidate left out), {n_val} users validate")
    ranker = Ranker.train(X[~val], y[~val], group_sizes(rows_u[~val]),
                          X[val] if n_val else None, y[val] if n_val else None,
                          group_sizes(rows_u[val]) if n_val else None)
    info = {
        "label_split": label_split, "label_share": LABEL_SHARE, "history_pairs": len(hist), "label_pairs": len(label),
        "groups": int(len(group_users)), "validation_groups": n_val, "groups_without_positive": groups_without,
        "rows": int(len(y)), "positives": int(y.sum()), "trees": int(ranker.booster.num_trees()),
        "version": ranker.version, "item_vector_dim": ctx.dim,
        "gain": {k: round(v, 1) for k, v in ranker.importance().items() if v > 0},
    }
    say(f"trained {info['trees']} trees (version {ranker.version})")
    return ranker, info


# --- evaluation --------------------------------------------------------------------------------------------
def rank_all(ctx: Context, users: np.ndarray, score: Callable[[np.ndarray], np.ndarray], k: int,
             progress: Callable[[str], None] | None = None, name: str = "") -> dict[int, list[int]]:
    """Per user, the ``k`` best unseen catalogue items by ``score(batch) -> (batch x items)``."""
    out: dict[int, list[int]] = {}
    done, t0 = 0, time.perf_counter()
    for batch in _batches(np.asarray(users, np.int64), ctx.item_vecs.shape[0]):
        out.update(zip(batch.tolist(), _best(_unseen_scores(ctx, batch, score(batch)), k)))
        done += len(batch)
        if progress and (time.perf_counter() - t0 > 10 or done == len(users)):
            progress(f"{name}: ranked {done}/{len(users)} users")
            t0 = time.perf_counter()
    return out


def model_scores(ctx: Context, ranker: Ranker) -> Callable[[np.ndarray], np.ndarray]:
    """Scores of every item for a batch of users: one feature row per (user, item)."""
    n = ctx.item_vecs.shape[0]
    items = np.arange(n)

    def score(batch: np.ndarray) -> np.ndarray:
        sim = (ctx.user_vecs[batch] @ ctx.item_vecs.T).ravel()
        X = features(ctx, np.repeat(batch, n), np.tile(items, len(batch)), sim)
        return ranker.score(X).reshape(len(batch), n)

    return score


def evaluate_split(train: Pairs, test: Pairs, n_users: int, n_items: int, ks: Sequence[int], seed: int,
                   label_split: str = "time", progress: Callable[[str], None] | None = None) -> dict:
    """Train on ``train``, rank for the users of ``test``, score the model and both baselines."""
    say = progress or (lambda _m: None)
    t0 = time.perf_counter()
    day_s = feature_day_s(train)
    ranker, info = train_ranker(train, n_users, n_items, seed, day_s, label_split, progress)
    info["feature_day_s"] = day_s
    t_train = time.perf_counter() - t0
    t0 = time.perf_counter()
    ctx = build_context(train, n_users, n_items, seed, day_s)
    in_catalogue = ctx.catalogue[test.item]
    already = np.asarray(ctx.seen[test.user, test.item]).ravel() if len(test) else np.zeros(0, bool)
    keep = in_catalogue & ~already
    relevant: dict[int, dict[int, int]] = {}
    for u, i in zip(test.user[keep].tolist(), test.item[keep].tolist()):
        relevant.setdefault(u, {})[i] = 1
    users = np.asarray(sorted(relevant), np.int64)
    if len(users) == 0:
        raise LogError("no test interaction is with a train item the user has not seen: nothing to rank for")
    kmax = max(ks)
    say(f"ranking {int(ctx.catalogue.sum())} catalogue items for {len(users)} test users")
    lists = {
        "model": rank_all(ctx, users, model_scores(ctx, ranker), kmax, progress, "model"),
        "most_popular": rank_all(ctx, users, lambda b: np.broadcast_to(ctx.popularity, (len(b), n_items)), kmax),
        "interest_only": rank_all(ctx, users, lambda b: ctx.user_vecs[b] @ ctx.item_vecs.T, kmax),
    }
    cands = candidates(ctx, users)
    recall = [len(set(cands[u]) & relevant[u].keys()) / len(relevant[u]) for u in users.tolist()]
    out = {name: evaluate(ranked, relevant, ks, METRICS) for name, ranked in lists.items()}
    out["candidate_recall@200"] = float(np.mean(recall))
    out["ranker"] = info
    out["excluded_test_pairs"] = {"item_not_in_train": int((~in_catalogue).sum()),
                                  "already_in_users_train": int((in_catalogue & already).sum())}
    out["timing"] = {"train": t_train, "evaluate": time.perf_counter() - t0}
    return out


def parse_ks(text: str) -> tuple[int, ...]:
    """``"10,20"`` -> ``(10, 20)``: positive integers, sorted, without repeats."""
    try:
        ks = sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError:
        raise LogError(f"--k {text!r}: expected comma-separated positive integers such as 10,20") from None
    if not ks or ks[0] < 1:
        raise LogError(f"--k {text!r}: expected comma-separated positive integers such as 10,20")
    return tuple(ks)


def log_eval(*, fmt: str, interactions: str | Path | None = None, train: str | Path | None = None,
             test: str | Path | None = None, split: str = "random", ratio: float = 0.75,
             ks: Sequence[int] = (10, 20), seed: int = 7, progress: Callable[[str], None] | None = None) -> dict:
    """Read, split, train, evaluate: the JSON-ready result of ``socialpulse ranking eval``."""
    say = progress or (lambda _m: None)
    if (interactions is None) == (train is None and test is None) or (train is None) != (test is None):
        raise LogError("give either --interactions FILE, or both --train FILE and --test FILE")
    t0 = time.perf_counter()
    if interactions is not None:
        logs = [read_log(interactions, fmt)]
        split_info = {"method": split, "ratio": ratio, "seed": seed, "interactions": str(interactions)}
    else:
        logs = [read_log(train, fmt), read_log(test, fmt)]
        split_info = {"method": "explicit", "train": str(train), "test": str(test), "seed": seed}
    for log in logs:
        say(f"read {len(log.user)} rows from {log.path}")
    user_index = {u: n for n, u in enumerate(dict.fromkeys(u for log in logs for u in log.user))}
    item_index = {i: n for n, i in enumerate(dict.fromkeys(i for log in logs for i in log.item))}
    pairs = [to_pairs(log, user_index, item_index) for log in logs]
    if interactions is not None:
        mask = split_mask(pairs[0], split, ratio, seed)
        train_p, test_p = pairs[0].take(mask), pairs[0].take(~mask)
    else:
        train_p, test_p = pairs
    t_load = time.perf_counter() - t0
    say(f"{len(train_p)} train and {len(test_p)} test user-item pairs ({split_info['method']} split)")
    result = evaluate_split(train_p, test_p, len(user_index), len(item_index), ks, seed,
                            split if interactions is not None else "time", progress)
    return {
        "protocol": PROTOCOL,
        "split": split_info,
        "data": {
            "users": len(user_index),
            "items": int(np.unique(train_p.item).size),
            "train_rows": len(train_p),
            "test_rows": len(test_p),
            "input_rows": sum(len(log.user) for log in logs),
            "rows_are": "unique user-item pairs (repeated rows merged: weights summed, first time kept)",
            "test_users_evaluated": result["model"]["users"],
            "excluded_test_pairs": result["excluded_test_pairs"],
        },
        "model": result["model"],
        "most_popular": result["most_popular"],
        "interest_only": result["interest_only"],
        "candidate_recall@200": result["candidate_recall@200"],
        "ranker": result["ranker"],
        "timing_s": {"load": round(t_load, 2), "train": round(result["timing"]["train"], 2),
                     "evaluate": round(result["timing"]["evaluate"], 2)},
    }
