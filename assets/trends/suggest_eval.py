"""Evaluating hashtag suggestions: hide each held-out post's hashtags, suggest from its text alone, measure
hit@k (a hidden tag among the top k), against a most-popular baseline in the same run.

Split: ``train_share`` of the posts is what the platform knew (its posts are the neighbours, its tag
counts and co-occurrences the statistics); the other posts with at least one hashtag are the test drafts,
their text stripped of ``#tags``. ``split="random"`` (default) draws the known posts at random;
``split="time"`` takes the earliest ones, which on a stream of successive events (CrisisLex) means the
drafts are mostly about an event whose tags were never seen: a cold-start test, not a suggestion test. Trending scores for a draft in hour h are the trend
scores of hour h-1 (from :mod:`assets.trends.logic`, which reads only data up to each hour). Ranking is
:func:`socialpulse.hashtags.rank`, the function the API serves.
"""

from __future__ import annotations

import datetime as dt
import random
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence

import numpy as np

from assets.content.embeddings import post_document
from assets.content.evaluation import top_k
from assets.trends.logic import HOUR, hour_start, hourly_counts, trend_scores
from socialpulse.hashtags import (
    NEIGHBOURS,
    cooccurrence_scores,
    neighbour_votes,
    popularity_shares,
    rank,
    tag_statistics,
)
from socialpulse.tags import normalise_tags, strip_tags

Progress = Callable[[str], None] | None


def hit_at(suggested: Sequence[str], hidden: set[str], k: int) -> bool:
    return bool(set(list(suggested)[:k]) & hidden)


def split_records(records: list[dict], *, train_share: float = 0.8, max_test: int = 2000, split: str = "random",
                  seed: int = 7) -> tuple[list[dict], list[dict]]:
    """(the known posts, the test drafts) of :func:`suggestion_eval`'s split, sorted by ``created_at``: the
    drafts are the held-out posts with at least one hashtag (at most ``max_test``, drawn with ``seed``). Every
    evaluation on the same records and arguments gets the same split, so methods compare on the same drafts."""
    if split not in ("random", "time"):
        raise ValueError(f"split must be 'random' or 'time', not {split!r}")
    rng = random.Random(seed)
    records = sorted(records, key=lambda r: r["created_at"])
    cut = int(len(records) * train_share)
    if split == "time":
        train, later = records[:cut], records[cut:]
    else:
        order = list(range(len(records)))
        rng.shuffle(order)
        known = set(order[:cut])
        train = [r for i, r in enumerate(records) if i in known]
        later = [r for i, r in enumerate(records) if i not in known]
    test = [r for r in later if normalise_tags(r.get("hashtags"))]
    if not train or not test:
        raise ValueError("need posts with hashtags both before and after the split")
    if len(test) > max_test:
        test = sorted(rng.sample(test, max_test), key=lambda r: r["created_at"])
    return train, test


def text_of(r: dict) -> str:
    """A record's words: ``text``, else ``caption``."""
    return r.get("text") if r.get("text") is not None else r.get("caption") or ""


def known_embeddings(encoder, train: Sequence[dict]) -> np.ndarray:
    """The known posts embedded the way the search index embeds them (text without ``#tags``, plus tags)."""
    return encoder.encode([post_document(strip_tags(text_of(r)), normalise_tags(r.get("hashtags"))) for r in train])


def semantic_votes(drafts: np.ndarray, known: np.ndarray,
                   known_tags: Sequence[Sequence[str]]) -> list[tuple[dict[str, float], float]]:
    """Per draft embedding: its :data:`NEIGHBOURS` nearest known posts' votes for their tags, and the cosine of
    the nearest one (how alike the draft's closest known post is)."""
    nearest = top_k(drafts, known, NEIGHBOURS)
    sims = np.take_along_axis(drafts @ known.T, nearest, axis=1) if len(known) <= 50_000 else None
    out = []
    for i in range(len(drafts)):
        row_sims = sims[i] if sims is not None else np.array([float(drafts[i] @ known[j]) for j in nearest[i]])
        out.append((neighbour_votes((s, known_tags[j]) for s, j in zip(row_sims, nearest[i])),
                    float(max(row_sims, default=0.0))))
    return out


def suggestion_eval(records: list[dict], encoder, *, k: int = 5, train_share: float = 0.8, max_test: int = 2000,
                    split: str = "random", seed: int = 7, progress: Progress = None) -> dict:
    """Hit@k of the suggestions (semantic only; all sources; all sources with one tag already chosen) and
    of the most-popular baseline, on held-out posts of a stream of ``created_at``, ``text`` (or
    ``caption``) and ``hashtags`` records (split by :func:`split_records`)."""
    train, test = split_records(records, train_share=train_share, max_test=max_test, split=split, seed=seed)
    records = sorted(records, key=lambda r: r["created_at"])
    counts, pairs = tag_statistics(train)
    popular = [t for t, _ in counts.most_common(k)]
    popularity = popularity_shares(counts)

    t0 = time.perf_counter()
    if progress:
        progress(f"embedding {len(train)} known posts and {len(test)} drafts")
    known = known_embeddings(encoder, train)
    drafts = encoder.encode([strip_tags(text_of(r)) for r in test])
    embed_s = time.perf_counter() - t0
    votes = semantic_votes(drafts, known, [normalise_tags(r.get("hashtags")) for r in train])

    # trend scores per hour, from counts over the whole stream: a score at hour h reads hours <= h only
    flags = trend_scores(hourly_counts(records))
    trending_at: dict[dt.datetime, dict[str, float]] = defaultdict(dict)
    for f in flags:
        trending_at[f.hour][f.tag] = f.score

    hits = Counter()
    evaluated = Counter()
    for i, r in enumerate(test):
        hidden = set(normalise_tags(r.get("hashtags")))
        semantic = votes[i][0]
        trending = trending_at.get(hour_start(r["created_at"]) - HOUR, {})
        evaluated["most_popular"] += 1
        hits["most_popular"] += hit_at(popular, hidden, k)
        evaluated["semantic"] += 1
        hits["semantic"] += hit_at([s.tag for s in rank(semantic=semantic, popularity=popularity, limit=k)], hidden, k)
        evaluated["all_sources"] += 1
        hits["all_sources"] += hit_at([s.tag for s in rank(semantic=semantic, trending=trending, popularity=popularity,
                                                           limit=k)], hidden, k)
        tags = normalise_tags(r.get("hashtags"))
        if len(tags) >= 2:  # the author chose the first tag: suggest the rest
            chosen, rest = tags[:1], set(tags[1:])
            cooc = cooccurrence_scores(chosen, pairs, counts)
            evaluated["one_chosen"] += 1
            hits["one_chosen"] += hit_at([s.tag for s in rank(semantic=semantic, cooccurrence=cooc, trending=trending,
                                                              popularity=popularity, chosen=chosen, limit=k)], rest, k)
            evaluated["one_chosen_most_popular"] += 1
            hits["one_chosen_most_popular"] += hit_at(
                [t for t, _ in counts.most_common(k + 1) if t not in chosen], rest, k)
    return {
        "k": k, "split": split, "known_posts": len(train), "drafts": len(test), "tags_known": len(counts),
        f"hit_at_{k}": {m: round(hits[m] / evaluated[m], 4) for m in evaluated},
        "drafts_per_setting": dict(evaluated), "embed_seconds": round(embed_s, 1),
    }
