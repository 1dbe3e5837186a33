"""Pure steps behind the trends assets (no Dagster, no I/O): hourly term rows -> trend scores, flags and posts
-> topics, posts -> hashtag co-occurrence rows. The Dagster layer only reads and writes tables around them.

The scoring and grouping are those of :mod:`assets.trends.logic`, the code ``socialpulse trends eval``
replays, so what the evaluation measures is what the platform serves.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence

import numpy as np

from assets.trends.logic import (
    DEFAULTS,
    HOUR,
    HourStat,
    Topic,
    TopicTracker,
    TrendFlag,
    hour_start,
    trend_scores,
)
from socialpulse.hashtags import tag_statistics

UTC = dt.timezone.utc
#: days of posts the hashtag co-occurrence statistics cover, and the partners kept per tag
COOCCURRENCE_DAYS = 28
TOP_PAIRS = 50
ENGAGEMENT = ("views", "likes", "shares", "comments")


def day_hours(day: dt.date) -> list[dt.datetime]:
    start = dt.datetime.combine(day, dt.time(), UTC)
    return [start + i * HOUR for i in range(24)]


def score_rows(term_rows: Iterable[Mapping], day: dt.date, *, now: dt.datetime,
               params: Mapping | None = None) -> list[dict]:
    """Trend score rows for every hashtag with posts in an hour of ``day``, from the hourly term rows of
    ``day`` and the day before (the baseline reaches back 24 hours): hashtag rows are scored against the
    ``all`` rows (effective posts per hour, removed ones left out); keyword rows are ignored. On the
    platform's first day (no rows the day before) nothing is flagged: every tag would be new."""
    p = {**DEFAULTS, **(params or {})}
    hourly: dict[tuple[str, dt.datetime], HourStat] = {}
    extra: dict[tuple[str, dt.datetime], Mapping] = {}
    totals: dict[dt.datetime, int] = {}
    for r in term_rows:
        if r["kind"] == "all":
            totals[hour_start(r["hour"])] = int(r["effective"])
        if r["kind"] != "hashtag":
            continue
        key = (r["term"], hour_start(r["hour"]))
        hourly[key] = HourStat(posts=int(r["posts"]), authors=int(r["authors"]), anonymous=int(r["anonymous"]))
        extra[key] = r
    hours = day_hours(day)
    scored = trend_scores(hourly, baseline_hours=p["baseline_hours"], threshold=p["threshold"],
                          min_count=p["min_count"], floor=p["floor"], hours=hours, include_all=True,
                          totals=totals or None)
    # the platform's first day (nothing posted the day before): every tag is new, none is a trend yet
    warm = any(h < hours[0] for h in totals) or any(h < hours[0] for _, h in hourly)
    out = []
    for f in scored:
        if f.count == 0 and f.posts == 0:
            continue
        r = extra[(f.tag, f.hour)]
        out.append({
            "tag": f.tag, "hour": f.hour, "effective": f.count, "posts": f.posts, "removed": int(r.get("removed") or 0),
            "baseline": f.baseline, "score": f.score, "flagged": f.flagged and warm,
            **{k: int(r.get(k) or 0) for k in ENGAGEMENT}, "computed_at": now, "event_date": day,
        })
    return out


def flags_from_rows(rows: Iterable[Mapping]) -> list[TrendFlag]:
    """Trend flags back from stored score rows (flagged ones only)."""
    return [TrendFlag(tag=r["tag"], hour=hour_start(r["hour"]), count=int(r["effective"]), posts=int(r["posts"]),
                      baseline=float(r["baseline"]), score=float(r["score"]))
            for r in rows if r["flagged"]]


def detect_topics(posts: Sequence[Mapping], flags: Sequence[TrendFlag], day: dt.date, *,
                  vectors_of: Callable[[list], Sequence[np.ndarray | None]] | None = None,
                  params: Mapping | None = None) -> list[Topic]:
    """Topics with a flag on ``day``: the hours of the day before and of ``day`` go through the replay's
    :class:`TopicTracker` in order (posts = the servable posts of those days, with ``created_at``,
    ``hashtags`` and ``caption``/``text``), so a topic that began the evening before keeps its id."""
    p = {**DEFAULTS, **(params or {})}
    tracker = TopicTracker(cooc_hours=p["cooc_hours"], min_similarity=p["min_similarity"], min_pair=p["min_pair"],
                           min_cosine=p["min_cosine"], gap_hours=p["gap_hours"], vectors_of=vectors_of)
    by_hour: dict[dt.datetime, list] = defaultdict(list)
    for r in posts:
        by_hour[hour_start(r["created_at"])].append(r)
    flags_by_hour: dict[dt.datetime, list[TrendFlag]] = defaultdict(list)
    for f in flags:
        flags_by_hour[f.hour].append(f)
    for h in day_hours(day - dt.timedelta(days=1)) + day_hours(day):
        tracker.hour(h, by_hour.get(h, []), flags_by_hour.get(h, []))
    start = dt.datetime.combine(day, dt.time(), UTC)
    return [t for t in tracker.finish() if t.last_flag_hour >= start]


def topic_rows(topics: Iterable[Topic], day: dt.date, *, now: dt.datetime) -> list[dict]:
    return [{
        "topic_id": t.topic_id, "label": t.label, "headline": t.headline, "tags": list(t.tags),
        "keywords": list(t.keywords), "first_flag_hour": t.first_flag_hour, "last_flag_hour": t.last_flag_hour,
        "peak_score": float(t.peak_score), "flags": len(t.flags), "posts": t.described_posts, "computed_at": now,
        "event_date": day,
    } for t in topics]


def cooccurrence_rows(hashtag_lists: Iterable[Sequence[str]], day: dt.date, *, now: dt.datetime,
                      top_pairs: int = TOP_PAIRS) -> list[dict]:
    """Per tag one row ``other = ''`` with its post count, and one row per kept partner tag."""
    counts, pairs = tag_statistics(hashtag_lists, top_pairs=top_pairs)
    rows = [{"tag": t, "other": "", "posts": int(n), "computed_at": now, "event_date": day} for t, n in counts.items()]
    rows += [{"tag": t, "other": o, "posts": int(n), "computed_at": now, "event_date": day}
             for t, partners in pairs.items() for o, n in partners.items()]
    return rows


def split_cooccurrence(rows: Iterable[Mapping]) -> tuple[dict[str, int], list[tuple[str, str, int]]]:
    """(posts per tag, (tag, other, posts with both)) from :func:`cooccurrence_rows` rows."""
    counts, pairs = {}, []
    for r in rows:
        if r["other"] == "":
            counts[r["tag"]] = int(r["posts"])
        else:
            pairs.append((r["tag"], r["other"], int(r["posts"])))
    return counts, pairs


def trend_violations(score_rows_: Sequence[Mapping], day: dt.date) -> dict[str, int]:
    """Counts of broken score rows: outside the day, duplicated (tag, hour), flagged below the rules,
    negative counts or removed posts counted as effective."""
    start = dt.datetime.combine(day, dt.time(), UTC)
    seen, dup = set(), 0
    for r in score_rows_:
        k = (r["tag"], r["hour"])
        dup += k in seen
        seen.add(k)
    return {
        "outside_day": sum(1 for r in score_rows_ if not (start <= r["hour"] < start + dt.timedelta(days=1))),
        "duplicate_tag_hours": dup,
        "flag_below_rules": sum(1 for r in score_rows_ if r["flagged"] and (
            r["effective"] < DEFAULTS["min_count"] or r["score"] < DEFAULTS["threshold"])),
        "negative_counts": sum(1 for r in score_rows_ if min(r["effective"], r["posts"], r["removed"]) < 0),
        "effective_above_posts": sum(1 for r in score_rows_ if r["effective"] + r["removed"] > r["posts"]),
    }
