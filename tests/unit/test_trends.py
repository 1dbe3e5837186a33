"""Trending topics core (assets.trends.logic) on synthetic streams, evaluate() by hand, and the CLI on the sample."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from click.testing import CliRunner

from assets.trends.logic import (
    hourly_totals,
    HOUR,
    Cooccurrence,
    Topic,
    TrendFlag,
    evaluate,
    group_topics,
    hourly_counts,
    replay,
    trend_scores,
)
from socialpulse.loaders import CRISISLEX_SAMPLE
from cli.trends import trends

T0 = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)
BURST_HOUR = 30
BURST_START = T0 + BURST_HOUR * HOUR + dt.timedelta(minutes=10)
CRISISLEX_EVENTS = {
    "2012_Sandy_Hurricane", "2013_Queensland_Floods", "2013_Boston_Bombings",
    "2013_West_Texas_Explosion", "2013_Oklahoma_Tornado", "2013_Alberta_Floods",
}


def _post(ts: dt.datetime, tags: list[str], author: str | None, event: str | None = None) -> dict:
    return {"created_at": ts, "hashtags": tags, "author_id": author, "event": event}


def _stream(hours: int = 48, *, burst: bool = True, extra: list[dict] | None = None) -> list[dict]:
    """A steady tag (5-7 distinct authors every hour), a little noise, and a planted co-occurring burst."""
    posts = []
    n = 0
    for h in range(hours):
        base = T0 + h * HOUR
        for i in range((5, 6, 7, 6)[h % 4]):
            n += 1
            posts.append(_post(base + dt.timedelta(minutes=i * 7), ["steady"], f"u{n}"))
        posts.append(_post(base + dt.timedelta(minutes=50), [f"noise{h % 5}"], f"n{h}"))
        if burst and h >= BURST_HOUR:
            k = 30 if h == BURST_HOUR else 12
            for i in range(k):
                tags = ["quake", "aftershock"] if i % 3 else ["quake"]
                ts = BURST_START + (h - BURST_HOUR) * HOUR + dt.timedelta(seconds=90 * i)
                posts.append(_post(ts, tags, f"b{h}-{i}"))
    posts += extra or []
    posts.sort(key=lambda p: p["created_at"])
    return posts


def test_planted_burst_is_flagged_within_an_hour_and_grouped():
    topics = replay(_stream())
    quake = [t for t in topics if "quake" in t.tags]
    assert len(quake) == 1
    t = quake[0]
    assert set(t.tags) == {"quake", "aftershock"}
    assert t.label == "#quake #aftershock"
    assert t.first_flag_hour == T0 + BURST_HOUR * HOUR
    # the flag is known at the end of the flagged hour
    assert (t.first_flag_hour + HOUR - BURST_START) <= HOUR


def test_steady_tag_is_never_flagged():
    records = _stream(burst=False)
    hourly = hourly_counts(records)
    after_warmup = [T0 + h * HOUR for h in range(24, 48)]
    assert not [f for f in trend_scores(hourly, hours=after_warmup) if f.tag == "steady"]
    topics = replay(records, warmup_hours=24)
    assert not [t for t in topics if "steady" in t.tags]


def test_one_author_posting_a_tag_50_times_is_not_flagged():
    ts = T0 + 40 * HOUR
    spam = [_post(ts + dt.timedelta(seconds=30 * i), ["buynow"], "spammer") for i in range(50)]
    hourly = hourly_counts(_stream(extra=spam))
    stat = hourly[("buynow", ts)]
    assert (stat.posts, stat.authors, stat.count) == (50, 1, 1)
    assert not [f for f in trend_scores(hourly) if f.tag == "buynow"]
    # the same posts without authors fall back to post counts (CrisisLex) and do trend
    anon = [dict(p, author_id=None) for p in spam]
    assert [f.tag for f in trend_scores(hourly_counts(anon))] == ["buynow"]
    # the bronze placeholder author of CrisisLex counts as unknown, not as one author
    assert hourly_counts([dict(p, author_id="cl-anonymous") for p in spam])[("buynow", ts)].count == 50


def test_brand_new_tag_with_two_posts_is_not_flagged():
    ts = T0 + 40 * HOUR
    new = [_post(ts + dt.timedelta(minutes=i), ["newtag"], f"x{i}") for i in range(2)]
    records = _stream(extra=new)
    assert not [f for f in trend_scores(hourly_counts(records)) if f.tag == "newtag"]
    assert not [t for t in replay(records) if "newtag" in t.tags]


def test_scores_use_the_tag_baseline_and_floor():
    h = T0 + 30 * HOUR
    hourly = hourly_counts([_post(h - k * HOUR, ["a"], f"u{k}-{i}") for k in range(1, 25) for i in range(2)])
    hourly.update(hourly_counts([_post(h, ["a"], f"v{i}") for i in range(10)]))
    (flag,) = trend_scores(hourly, hours=[h])
    assert flag.baseline == pytest.approx(2.0)
    assert flag.score == pytest.approx((10 - 2) / (2 + 1.0) ** 0.5)
    assert trend_scores(hourly, hours=[h], threshold=5.0) == []
    assert trend_scores(hourly, hours=[h], min_count=11) == []


def test_replay_is_online_and_matches_offline_scores():
    records = _stream()
    online = sorted((f for t in replay(records) for f in t.flags), key=lambda f: (f.hour, -f.score, f.tag))
    assert online == trend_scores(hourly_counts(records), totals=hourly_totals(records))
    with pytest.raises(ValueError, match="sorted"):
        replay(list(reversed(records)))


def test_unrelated_bursts_in_the_same_hour_are_separate_topics():
    ts = BURST_START
    concert = [_post(ts + dt.timedelta(seconds=60 * i), ["concert", "tour"], f"c{i}") for i in range(20)]
    topics = replay(_stream(extra=concert))
    labels = sorted(t.label for t in topics if t.first_flag_hour == T0 + BURST_HOUR * HOUR)
    assert labels == ["#concert #tour", "#quake #aftershock"]


def test_group_topics_joins_adjacent_hours_and_co_trending_tags():
    co = Cooccurrence()
    for _ in range(5):
        co.add_post(["a", "b"])
    co.add_post(["c"])
    h = T0 + 5 * HOUR
    flags = [
        TrendFlag("a", h, 9, 9, 0.0, 9.0),
        TrendFlag("c", h, 4, 4, 0.0, 4.0),
        TrendFlag("b", h + HOUR, 5, 5, 0.0, 5.0),  # next hour, co-occurs with a
        TrendFlag("a", h + 20 * HOUR, 9, 9, 0.0, 9.0),  # long after: a new topic
    ]
    topics = group_topics(flags, co)
    assert [(t.label, t.first_flag_hour) for t in topics] == [
        ("#a #b", h), ("#c", h), ("#a", h + 20 * HOUR),
    ]


def test_evaluate_by_hand():
    base = dt.datetime(2024, 3, 1, tzinfo=dt.timezone.utc)

    def at(hours: float) -> dt.datetime:
        return base + dt.timedelta(hours=hours)

    records = (
        [_post(at(0), [], None, "A")]  # event A starts at 00:00
        + [_post(at(12.2), ["a"], None, "A") for _ in range(5)]
        + [_post(at(14.5), ["x"], None, "A") for _ in range(4)] + [_post(at(14.6), ["x"], None, "B")]
        + [_post(at(2), [], None, "B")]  # event B starts at 02:00
        + [_post(at(20.1), ["m"], None, "B") for _ in range(3)] + [_post(at(20.2), ["m"], None, "A") for _ in range(2)]
        + [_post(at(21), ["m"], None, "A") for _ in range(9)]  # outside m's flag window: ignored
        + [_post(at(5), [], None, "C")]  # event C: never flagged
    )
    records.sort(key=lambda r: r["created_at"])

    def topic(tag: str, hour: int) -> Topic:
        h = at(hour)
        flag = TrendFlag(tag, h, 5, 5, 0.0, 5.0)
        return Topic(topic_id=f"t-{tag}", first_flag_hour=h, last_flag_hour=h, flags=[flag])

    out = evaluate(records, [topic("a", 12), topic("x", 14), topic("m", 20)])
    json.dumps(out)  # JSON-able
    assert out["events"]["A"]["delay_hours"] == 13.0  # end of hour 12 minus the first post at 00:00
    assert out["events"]["A"]["topics"] == 2  # "x" is exactly 0.8 pure
    assert out["events"]["B"]["detected"] is False  # "m" is 0.6 B within its window
    assert out["events"]["C"]["detected"] is False
    assert out["recall"] == pytest.approx(1 / 3, abs=1e-4)
    assert out["precision"] == pytest.approx(2 / 3, abs=1e-4)
    assert out["median_delay_hours"] == 13.0
    m = next(t for t in out["topics"] if t["topic_id"] == "t-m")
    assert (m["posts"], m["majority_event"], m["purity"], m["event"]) == (5, "B", 0.6, None)


def test_cli_eval_on_the_vendored_sample():
    result = CliRunner().invoke(trends, ["eval", "--input", str(CRISISLEX_SAMPLE), "--no-topics", "--no-embeddings"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert set(out["events"]) == CRISISLEX_EVENTS
    assert all(isinstance(e["detected"], bool) for e in out["events"].values())
    assert 0.0 <= out["recall"] <= 1.0
    assert out["input"]["records"] == 3000
    assert "topics" not in out


def test_cli_extracts_hashtags_from_text_when_missing(tmp_path):
    path = tmp_path / "stream.jsonl"
    lines = [
        {"created_at": (T0 + dt.timedelta(minutes=i)).isoformat(), "text": f"big #Flood here {i}", "event": "E"}
        for i in range(10)
    ]
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\nnot json\n")
    result = CliRunner().invoke(trends, ["eval", "--input", str(path)])  # with embeddings (the default)
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["input"] == {"path": str(path), "lines": 11, "records": 10, "skipped": 1}
    assert out["recall"] == 1.0
    # the label reads the posts: their distinctive word ("here" is a stop word), then the tag
    assert out["topics"][0]["label"] == "big (#flood)"
    assert out["topics"][0]["headline"].startswith("big #Flood here")


def test_a_platform_wide_evening_peak_is_not_a_burst_but_a_share_jump_is():
    import math

    records = []
    for h in range(72):  # three days; the platform's volume peaks at 1.85x its mean at 20:00
        n = int(300 * (1 + 0.85 * math.cos(2 * math.pi * (h % 24 - 20) / 24)))
        share = 10 if h != 66 else 3  # #daily is 1 post in 10, except at 18:00 on day 3: 1 in 3
        for i in range(n):
            records.append({"created_at": T0 + h * HOUR + dt.timedelta(seconds=i),
                            "hashtags": ["daily"] if i % share == 0 else [f"other{i}"], "author_id": f"u{h}-{i}"})
    hourly, totals = hourly_counts(records), hourly_totals(records)
    day3 = [T0 + h * HOUR for h in range(48, 72)]
    # a sensitive threshold (2 sigma), so that the plain mean's evening flags show
    by_share = {f.hour for f in trend_scores(hourly, totals=totals, hours=day3, threshold=2.0) if f.tag == "daily"}
    by_mean = {f.hour for f in trend_scores(hourly, hours=day3, threshold=2.0) if f.tag == "daily"}
    assert by_share == {T0 + 66 * HOUR}  # only the real jump in share
    assert len(by_mean) > 3  # a plain mean flags every evening
