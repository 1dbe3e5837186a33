"""Trends assets on the real stack: a planted burst flags against its own baseline (Spark counts, Delta scores),
a one-author spammer and removed posts never trend, co-trending tags group into one labelled topic (by
co-occurrence and by post vectors), everything lands in Postgres, and the API serves trends and hashtag
suggestions from there."""

from __future__ import annotations

import datetime as dt

import pytest

from socialpulse import lake
from socialpulse.contracts import POSTS

pytestmark = pytest.mark.integration

D = dt.date(2026, 8, 20)
D0 = D - dt.timedelta(days=1)
UTC = dt.timezone.utc
BURST = dt.datetime(2026, 8, 20, 10, tzinfo=UTC)

FLOOD_TEXTS = [
    "river flooding downtown calgary, residents evacuate",
    "the bow river flooding calgary streets, evacuation ordered",
    "calgary evacuation as river flooding reaches downtown",
    "flooding in calgary: the river keeps rising, evacuate now",
    "downtown calgary under water, river flooding and evacuation",
    "evacuation centres open as flooding hits calgary river valley",
    "river flooding closes calgary downtown, evacuate if told",
    "calgary flooding update: evacuation of river neighbourhoods",
]


def _post(pid, author, text, tags, ts):
    return {"post_id": pid, "author_id": author, "kind": "text", "caption": text, "hashtags": tags, "media_uri": None,
            "duration_s": None, "language": "en", "created_at": ts, "event_date": ts.date()}


def _world() -> tuple[list[dict], list[dict], set[str]]:
    day0, day1 = [], []
    # everyday chatter: eight different people an hour, so no test tag is a large share of the platform
    for day, out in ((D0, day0), (D, day1)):
        for h in range(24):
            for i in range(8):
                out.append(_post(f"bg-{day:%d}-{h}-{i}", f"u-bg{h}-{i}", "coffee and a walk", ["dailylife"],
                                 dt.datetime.combine(day, dt.time(h, 30 + i), UTC)))
    # a quiet baseline: #flood and #cooking once every other hour the day before, and in the morning
    for h in range(0, 24, 2):
        t = dt.datetime.combine(D0, dt.time(h), UTC)
        day0.append(_post(f"b-flood-{h}", f"u-b{h}", "rain again today", ["flood"], t))
        day0.append(_post(f"b-cook-{h}", f"u-c{h}", "pasta with garlic and basil", ["cooking"], t + dt.timedelta(minutes=5)))
    for h in list(range(0, 10)) + [20]:
        day1.append(_post(f"m-cook-{h}", f"u-m{h}", "slow cooked beef stew recipe", ["cooking"],
                          dt.datetime.combine(D, dt.time(h), UTC)))
    # the burst at 10:00: eight people write about the flood with #flood #yycflood, five more with #abflood only
    for i, text in enumerate(FLOOD_TEXTS):
        day1.append(_post(f"f-{i}", f"u-f{i}", text, ["flood", "yycflood"], BURST + dt.timedelta(minutes=i)))
    for i, text in enumerate(FLOOD_TEXTS[:5]):
        day1.append(_post(f"a-{i}", f"u-a{i}", text.replace("calgary", "alberta"), ["abflood"],
                          BURST + dt.timedelta(minutes=20 + i)))
    # one spammer posting #spamtag twenty times, and six removed posts pushing #hatetag
    for i in range(20):
        day1.append(_post(f"s-{i}", "u-spam", "buy followers cheap", ["spamtag"], BURST + dt.timedelta(minutes=i)))
    removed = set()
    for i in range(6):
        day1.append(_post(f"h-{i}", f"u-h{i}", "hateful slogan", ["hatetag"], BURST + dt.timedelta(minutes=i)))
        removed.add(f"h-{i}")
    return day0, day1, removed


def _decisions(stack, posts: list[dict], removed: set[str]) -> None:
    """Moderation's outputs: the lake decisions (trends read removals there) and the Postgres serving copy."""
    import psycopg

    from assets.moderation.tables import MODERATION_DECISIONS
    from socialpulse import moderation

    for day in (D0, D):
        rows = [{"post_id": p["post_id"], "author_id": p["author_id"], "action": "remove" if p["post_id"] in removed
                 else "allow", "reasons": [], "hatespeech": None, "offensive": None, "nsfw": None,
                 "media_status": "none", "policy_version": "p", "text_model_version": "t", "media_model_version": "m",
                 "decided_at": p["created_at"], "created_at": p["created_at"], "event_date": day}
                for p in posts if p["event_date"] == day]
        lake.replace_partitions(MODERATION_DECISIONS, rows, [day], settings=stack)
    with psycopg.connect(stack.postgres) as conn:
        moderation.ensure_tables(conn)
        for p in posts:
            conn.execute(
                """INSERT INTO moderation.decisions (post_id, author_id, action, reasons, media_status, policy_version,
                       text_model_version, media_model_version, decided_at, created_at, event_date, source)
                   VALUES (%s, %s, %s, '{}', 'none', 'p', 't', 'm', now(), %s, %s, 'asset')
                   ON CONFLICT (post_id) DO UPDATE SET action = EXCLUDED.action""",
                (p["post_id"], p["author_id"], "remove" if p["post_id"] in removed else "allow", p["created_at"],
                 p["event_date"]))
        conn.commit()


@pytest.fixture(scope="module")
def trends(stack, materialize):
    from assets.content import assets as content_assets
    from assets.trends import assets as trends_assets

    day0, day1, removed = _world()
    lake.replace_partitions(POSTS, day0, [D0], settings=stack)
    lake.replace_partitions(POSTS, day1, [D], settings=stack)
    _decisions(stack, day0 + day1, removed)
    out = {}
    for day in (D0, D):
        materialize([content_assets.post_embeddings, content_assets.post_vectors], day)
        out[day] = materialize(trends_assets.DAILY_ASSETS, day, trends_assets.CHECKS)
    return {"meta": out[D], "removed": removed}


def _scores(stack, day=D) -> dict[tuple[str, int], dict]:
    from assets.trends.tables import TREND_SCORES

    rows = lake.read(TREND_SCORES, settings=stack, filters=[("event_date", "=", day)]).to_pylist()
    return {(r["tag"], r["hour"].hour): r for r in rows}


def test_burst_flags_against_its_own_baseline_and_spam_or_removed_posts_never_do(stack, trends):
    s = _scores(stack)
    flood = s[("flood", 10)]
    # baseline: #flood's mean over the last 24 hours (7 / 24) times the daily cycle (10 posts at 10:00
    # yesterday against a mean of 9 an hour)
    assert flood["flagged"] and flood["effective"] == 8 and flood["baseline"] == pytest.approx(7 / 24 * 10 / 9)
    assert s[("yycflood", 10)]["flagged"] and s[("abflood", 10)]["flagged"]
    # the quiet tags never trend; the spammer counts once; removed posts are counted as removed only
    assert not any(r["flagged"] for (t, _), r in s.items() if t in ("cooking", "dailylife"))
    assert s[("spamtag", 10)]["posts"] == 20 and s[("spamtag", 10)]["effective"] == 1
    assert not s[("spamtag", 10)]["flagged"]
    hate = s[("hatetag", 10)]
    assert (hate["posts"], hate["removed"], hate["effective"], hate["flagged"]) == (6, 6, 0, False)
    assert trends["meta"]["trend_scores"]["tags_flagged"] == 3


def test_co_trending_tags_form_one_labelled_topic(stack, trends):
    from assets.trends.tables import TRENDING_TOPICS

    rows = lake.read(TRENDING_TOPICS, settings=stack, filters=[("event_date", "=", D)]).to_pylist()
    assert len(rows) == 1, [r["label"] for r in rows]
    topic = rows[0]
    # flood + yycflood co-occur; abflood joins through its posts' vectors (never written with the others)
    assert set(topic["tags"]) == {"flood", "yycflood", "abflood"}
    assert topic["first_flag_hour"] == BURST
    words = topic["label"].split(" (")[0].split()
    assert {"river", "flooding", "evacuation", "calgary"} & set(words), topic["label"]
    assert "#flood" in topic["label"] and topic["headline"]
    assert "hateful" not in topic["label"] and "hatetag" not in topic["tags"]


def test_topics_group_by_cooccurrence_alone_without_vectors():
    from assets.trends.build import detect_topics, score_rows
    from assets.trends.logic import hourly_counts, hourly_totals

    day0, day1, removed = _world()
    posts = [p for p in day0 + day1 if p["post_id"] not in removed]
    rows = [{"term": t, "kind": "hashtag", "hour": h, "posts": s.posts, "authors": s.authors, "anonymous": s.anonymous}
            for (t, h), s in hourly_counts(posts).items()]
    rows += [{"term": "*", "kind": "all", "hour": h, "effective": n} for h, n in hourly_totals(posts).items()]
    from assets.trends.build import flags_from_rows

    flags = flags_from_rows(score_rows(rows, D, now=BURST))
    topics = detect_topics(posts, flags, D)
    # without vectors abflood stays apart: co-occurrence alone cannot join it
    assert sorted(sorted(t.tags) for t in topics) == [["abflood"], ["flood", "yycflood"]]


def test_everything_is_published_to_postgres_and_reruns_do_not_duplicate(stack, trends, materialize):
    import psycopg

    from assets.trends import assets as trends_assets

    def counts():
        with psycopg.connect(stack.postgres) as conn:
            out = {t: conn.execute(f"SELECT count(*) FROM trends.{t}").fetchone()[0]
                   for t in ("hashtag_scores", "hashtag_counts", "hashtag_pairs")}
            out["topics"] = conn.execute("SELECT array_agg(label) FROM trends.topics WHERE day = %s", (D,)).fetchone()[0]
            return out

    before = counts()
    assert len(before["topics"]) == 1 and before["hashtag_scores"] > 0
    # flood, yycflood, abflood, cooking, dailylife, spamtag: hatetag's posts were all removed
    assert before["hashtag_counts"] == 6
    materialize(trends_assets.DAILY_ASSETS, D)
    assert counts() == before


@pytest.fixture(scope="module")
def api(stack, trends):
    from fastapi.testclient import TestClient

    from serving.app import create_app

    with TestClient(create_app(stack, warm=False)) as client:
        yield client


def test_trends_endpoint_serves_topics_and_hashtags_of_the_window(api):
    r = api.get("/v1/trends", params={"window": "24h"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["as_of"].startswith("2026-08-21T00:00")  # the end of the latest scored hour (23:00)
    assert [set(t["tags"]) for t in body["topics"]] == [{"flood", "yycflood", "abflood"}]
    assert {h["tag"] for h in body["hashtags"]} == {"flood", "yycflood", "abflood"}
    # the burst was at 10:00; a 6-hour window ending at midnight no longer holds it
    assert api.get("/v1/trends", params={"window": "6h"}).json()["topics"] == []


@pytest.mark.parametrize("window", ["0h", "8d", "soon", "-1h", ""])
def test_trends_rejects_a_malformed_window(api, window):
    r = api.get("/v1/trends", params={"window": window})
    assert r.status_code == 400 and "window must be" in r.json()["error"]


def test_hashtag_suggestions_for_a_draft_with_and_without_chosen_tags(api):
    r = api.post("/v1/hashtags/suggest", json={"text": "the river is flooding near my house, we have to evacuate"})
    assert r.status_code == 200, r.text
    tags = [s["tag"] for s in r.json()["suggestions"]]
    assert tags[0] in {"flood", "yycflood", "abflood"} and "hatetag" not in tags and "spamtag" not in tags[:3]
    r = api.post("/v1/hashtags/suggest", json={"text": "river flooding in town", "hashtags": ["#Flood"], "limit": 3})
    body = r.json()
    assert body["chosen"] == ["flood"] and "flood" not in [s["tag"] for s in body["suggestions"]]
    first = body["suggestions"][0]
    # 8 of the 20 #flood posts also carry #yycflood
    assert first["tag"] == "yycflood" and first["sources"]["cooccurrence"] == pytest.approx(8 / 20)


@pytest.mark.parametrize("payload, message", [
    ({"text": "   "}, "text is empty"),
    ({"text": "x" * 2201}, "at most 2200"),
    ({"text": "ok", "hashtags": ["two words"]}, "hashtags[0] has a space"),
    ({"text": "ok", "limit": 0}, "limit"),
    ({"hashtags": ["a"]}, "text"),
])
def test_suggest_rejects_bad_drafts_with_a_clear_422(api, payload, message):
    r = api.post("/v1/hashtags/suggest", json=payload)
    assert r.status_code == 422 and message in r.text
