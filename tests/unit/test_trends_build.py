"""The pure steps behind the trends assets and API: score rows from hourly term rows, the validity counts,
co-occurrence rows, the served window syntax and the synthetic burst evaluation."""

from __future__ import annotations

import datetime as dt

import pytest

from assets.trends.build import cooccurrence_rows, score_rows, split_cooccurrence, trend_violations
from assets.trends.evaluation import burst_eval
from socialpulse.hashtags import tag_statistics
from socialpulse.trends_store import window_hours

UTC = dt.timezone.utc
D = dt.date(2026, 5, 2)
H = dt.datetime(2026, 5, 2, tzinfo=UTC)


def _row(term, hour, effective, kind="hashtag", removed=0):
    return {"term": term, "kind": kind, "hour": hour, "posts": effective + removed, "authors": effective,
            "anonymous": 0, "removed": removed, "effective": effective, "views": 3, "likes": 1, "shares": 0,
            "comments": 0}


def test_score_rows_score_only_the_day_and_scale_by_yesterdays_cycle():
    rows = [_row("steady", H - dt.timedelta(hours=k), 2) for k in range(1, 25)]  # the day before
    rows += [_row("steady", H, 2), _row("burst", H + dt.timedelta(hours=3), 9), _row("news", H, 9, kind="keyword")]
    # the platform: 20 posts an hour, but yesterday at 00:00 twice as busy as the window's mean
    rows += [_row("*", H - dt.timedelta(hours=k), 20, kind="all") for k in range(1, 24)]
    rows += [_row("*", H - dt.timedelta(hours=24), 40, kind="all")]
    out = {(r["tag"], r["hour"]): r for r in score_rows(rows, D, now=H)}
    assert set(out) == {("steady", H), ("burst", H + dt.timedelta(hours=3))}  # keyword rows and yesterday left out
    steady = out[("steady", H)]
    assert steady["baseline"] == pytest.approx(2 * 40 / (40 + 23 * 20) * 24) and not steady["flagged"]
    burst = out[("burst", H + dt.timedelta(hours=3))]
    assert burst["flagged"] and burst["baseline"] == 0 and burst["score"] == 9.0 and burst["views"] == 3
    assert trend_violations(list(out.values()), D) == {
        "outside_day": 0, "duplicate_tag_hours": 0, "flag_below_rules": 0, "negative_counts": 0,
        "effective_above_posts": 0}


def test_trend_violations_count_each_kind_of_broken_row():
    good = {"tag": "a", "hour": H, "effective": 5, "posts": 5, "removed": 0, "score": 5.0, "flagged": True}
    bad = [
        good,
        {**good},  # duplicate
        {**good, "tag": "b", "hour": H - dt.timedelta(hours=1)},  # the day before
        {**good, "tag": "c", "effective": 1},  # flagged under min_count
        {**good, "tag": "d", "removed": 2},  # removed counted as effective
    ]
    assert trend_violations(bad, D) == {"outside_day": 1, "duplicate_tag_hours": 1, "flag_below_rules": 1,
                                        "negative_counts": 0, "effective_above_posts": 1}


def test_cooccurrence_rows_keep_the_top_partners_and_round_trip():
    posts = [["a", "b"], ["#A", "b", "c"], ["a", "c"], ["a", "b"], ["d"], []]
    counts, pairs = tag_statistics(posts, top_pairs=1)
    assert counts == {"a": 4, "b": 3, "c": 2, "d": 1}
    assert pairs["a"] == {"b": 3} and pairs["c"] == {"a": 2}
    rows = cooccurrence_rows(posts, D, now=H, top_pairs=1)
    back_counts, back_pairs = split_cooccurrence(rows)
    assert back_counts == counts and ("a", "b", 3) in back_pairs and len(back_pairs) == 3


@pytest.mark.parametrize("text, hours", [("1h", 1), ("24h", 24), ("7d", 168), (" 2D ", 48)])
def test_window_hours_accepts_hours_and_days(text, hours):
    assert window_hours(text) == hours


@pytest.mark.parametrize("text", ["0h", "169h", "8d", "h", "1w", "-1h", "1.5h", "", None])
def test_window_hours_rejects_anything_else(text):
    with pytest.raises(ValueError, match="between 1h and 7d"):
        window_hours(text)


def test_burst_eval_scores_recall_delay_topics_and_false_flags():
    d2 = D + dt.timedelta(days=1)
    bursts = [{"hashtag": "pasta", "day": D, "multiplier": 6.0}, {"hashtag": "goal", "day": d2, "multiplier": 8.0},
              {"hashtag": "later", "day": D + dt.timedelta(days=9), "multiplier": 5.0}]
    scores = [
        {"tag": "pasta", "hour": H + dt.timedelta(hours=5), "flagged": True},
        {"tag": "pasta", "hour": H + dt.timedelta(hours=2), "flagged": True},
        {"tag": "goal", "hour": H + dt.timedelta(hours=26), "flagged": False},
        {"tag": "noise", "hour": H + dt.timedelta(hours=30), "flagged": True},
        {"tag": "pasta", "hour": H + dt.timedelta(hours=30), "flagged": True},  # the day after its burst
    ]
    topics = [{"tags": ["pasta", "food"], "first_flag_hour": H + dt.timedelta(hours=2),
               "last_flag_hour": H + dt.timedelta(hours=5)}]
    out = burst_eval(scores, bursts, topics)
    assert out["bursts_in_scored_days"] == 2 and out["recall"] == 0.5  # the burst on an unscored day is left out
    pasta = out["bursts"][0]
    assert pasta["detected"] and pasta["delay_hours"] == 3.0 and pasta["in_topic"]
    assert out["median_delay_hours"] == 3.0
    assert out["false_flag_tag_days"] == 2 and out["scored_tag_days"] == 4 and out["false_flag_share"] == 0.5


def test_nothing_trends_on_the_platforms_first_day():
    rows = [_row("new", H + dt.timedelta(hours=2), 9), _row("*", H + dt.timedelta(hours=2), 30, kind="all")]
    first = score_rows(rows, D, now=H)
    assert len(first) == 1 and first[0]["score"] == 9.0 and not first[0]["flagged"]
    # with a day of history (even a quiet one) the same hour trends
    later = score_rows(rows + [_row("*", H - dt.timedelta(hours=5), 30, kind="all")], D, now=H)
    assert later[0]["flagged"]
