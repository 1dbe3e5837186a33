"""Trend detection on the synthetic world: the planted bursts (``meta/synthetic_bursts``: a hashtag whose
volume jumps x5-10 for one day) against what the platform's own assets flagged (``lake/gold/trend_scores``
and ``lake/gold/trending_topics``). Reads the lake only; the truth is read here and nowhere else.
"""

from __future__ import annotations

import datetime as dt
import statistics
from collections import defaultdict
from collections.abc import Iterable, Mapping

UTC = dt.timezone.utc


def burst_eval(scores: Iterable[Mapping], bursts: Iterable[Mapping], topics: Iterable[Mapping] = ()) -> dict:
    """Per planted burst: flagged on its day or not, the first flagged hour and the delay from the start of
    the day (hours, to the end of that hour), and whether a topic of that day holds the tag. Overall: burst
    recall, median delay, and the false flags: flagged (tag, day) pairs that are not a planted burst, as a
    count and as a share of all scored (tag, day) pairs."""
    bursts = list(bursts)
    planted = {(b["hashtag"], b["day"]) for b in bursts}
    first_flag: dict[tuple[str, dt.date], dt.datetime] = {}
    scored: set[tuple[str, dt.date]] = set()
    days = set()
    for r in scores:
        hour = r["hour"].astimezone(UTC)
        key = (r["tag"], hour.date())
        days.add(hour.date())
        scored.add(key)
        if r["flagged"] and (key not in first_flag or hour < first_flag[key]):
            first_flag[key] = hour
    topic_tags: dict[dt.date, set[str]] = defaultdict(set)
    for t in topics:
        for h in (t["first_flag_hour"], t["last_flag_hour"]):
            topic_tags[h.astimezone(UTC).date()].update(t["tags"])
    rows, delays = [], []
    for b in sorted(bursts, key=lambda b: (b["day"], b["hashtag"])):
        key = (b["hashtag"], b["day"])
        first = first_flag.get(key)
        delay = None
        if first is not None:
            delay = (first + dt.timedelta(hours=1) - dt.datetime.combine(b["day"], dt.time(), UTC)).total_seconds() / 3600
            delays.append(delay)
        rows.append({"hashtag": b["hashtag"], "day": b["day"].isoformat(), "multiplier": b["multiplier"],
                     "scored": key in scored, "detected": first is not None,
                     "first_flag_hour": first.isoformat() if first else None, "delay_hours": delay,
                     "in_topic": b["hashtag"] in topic_tags.get(b["day"], set())})
    in_range = [b for b in rows if dt.date.fromisoformat(b["day"]) in days]
    false = sorted(k for k in first_flag if k not in planted)
    return {
        "bursts": rows,
        "bursts_in_scored_days": len(in_range),
        "recall": round(sum(b["detected"] for b in in_range) / len(in_range), 4) if in_range else None,
        "median_delay_hours": round(statistics.median(delays), 2) if delays else None,
        "false_flag_tag_days": len(false),
        "scored_tag_days": len(scored),
        "false_flag_share": round(len(false) / len(scored), 4) if scored else None,
        "false_flags": [{"tag": t, "day": d.isoformat(), "first_flag_hour": first_flag[(t, d)].isoformat()}
                        for t, d in false[:50]],
    }


def synthetic_trends_eval(settings) -> dict:
    """:func:`burst_eval` over every day the trends assets scored, against the synthetic world's bursts."""
    from assets.trends.tables import TREND_SCORES, TRENDING_TOPICS
    from socialpulse import lake

    truth = lake.open_table(settings.table_uri("meta", "synthetic_bursts"))
    if truth is None:
        raise LookupError("no synthetic world in the lake: run `socialpulse load synthetic` (or `make demo`) first")
    scores = lake.read(TREND_SCORES, settings=settings, columns=["tag", "hour", "flagged"])
    if scores.num_rows == 0:
        raise LookupError("no trend scores yet: run `socialpulse trends run` for the world's days first")
    topics = lake.read(TRENDING_TOPICS, settings=settings, columns=["tags", "first_flag_hour", "last_flag_hour"])
    return burst_eval(scores.to_pylist(), truth.to_pyarrow_table().to_pylist(), topics.to_pylist())
