"""Ingest models: each rule refuses with a precise message; row builders make contract-valid rows."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from pydantic import ValidationError

from socialpulse.contracts import BRONZE, ContractError, conform
from socialpulse.ingest import (
    USERS_STREAM,
    EventBatch,
    EventIn,
    MediaObject,
    PostIn,
    UserIn,
    event_rows,
    payload_rows,
    post_payload,
    post_rows,
    utc_now,
)

NOW = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.timezone.utc)


def view(**kw):
    return {"event_id": "e-1", "event_type": "view", "user_id": "u1", "post_id": "p1", "watch_time_s": 12.5, **kw}


def errors(exc: ValidationError) -> str:
    return "\n".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"event_id": ""}, "event_id: String should have at least 1 character"),
        ({"event_id": "x" * 65}, "event_id: String should have at most 64 characters"),
        ({"event_id": "bad id!"}, "event_id: String should match pattern"),
        ({"event_type": "poke"}, "event_type: Input should be 'view', 'like', 'share', 'comment', 'not_interested', 'follow', 'unfollow' or 'block'"),
        ({"post_id": None}, "post_id is required for view events"),
        ({"watch_time_s": None}, "watch_time_s is required for view events"),
        ({"watch_time_s": -1}, "watch_time_s: Input should be greater than or equal to 0"),
        ({"watch_time_s": 3600.5}, "watch_time_s: Input should be less than or equal to 3600"),
        ({"watch_time_s": float("nan")}, "watch_time_s: Input should be a finite number"),
        ({"text": "hi"}, "text is only allowed for comment events, not view"),
        ({"target_user_id": "u2"}, "target_user_id is not allowed for view events"),
        ({"created_at": "2026-03-01T12:00:00"}, "created_at: Input should have timezone info"),
        ({"colour": "red"}, "colour: Extra inputs are not permitted"),
    ],
)
def test_event_rules(fields, message):
    with pytest.raises(ValidationError) as exc:
        EventIn.model_validate(view(**fields))
    assert message in errors(exc.value)


def test_event_type_specific_rules():
    like = {"event_id": "e2", "event_type": "like", "user_id": "u1", "post_id": "p1"}
    assert EventIn.model_validate(like).watch_time_s is None
    with pytest.raises(ValidationError, match="watch_time_s is only allowed for view events, not like"):
        EventIn.model_validate({**like, "watch_time_s": 3})
    comment = {**like, "event_type": "comment"}
    with pytest.raises(ValidationError, match="text is required for comment events"):
        EventIn.model_validate(comment)
    with pytest.raises(ValidationError, match="String should have at most 2000 characters"):
        EventIn.model_validate({**comment, "text": "x" * 2001})
    with pytest.raises(ValidationError, match="text of a comment must not be blank"):
        EventIn.model_validate({**comment, "text": "   "})
    follow = {"event_id": "e3", "event_type": "follow", "user_id": "u1"}
    with pytest.raises(ValidationError, match="target_user_id is required for follow events"):
        EventIn.model_validate(follow)
    with pytest.raises(ValidationError, match="target_user_id must differ from user_id"):
        EventIn.model_validate({**follow, "target_user_id": "u1"})
    with pytest.raises(ValidationError, match="post_id is not allowed for follow events"):
        EventIn.model_validate({**follow, "target_user_id": "u2", "post_id": "p1"})


def test_created_at_defaults_to_server_time_and_refuses_the_future():
    before = dt.datetime.now(dt.timezone.utc)
    e = EventIn.model_validate(view())
    assert before <= e.created_at <= dt.datetime.now(dt.timezone.utc)
    soon = dt.datetime.now(dt.timezone.utc) + dt.timedelta(minutes=4)
    assert EventIn.model_validate(view(created_at=soon.isoformat())).created_at == soon
    later = dt.datetime.now(dt.timezone.utc) + dt.timedelta(minutes=6)
    with pytest.raises(ValidationError, match="is more than 5 minutes in the future"):
        EventIn.model_validate(view(created_at=later.isoformat()))
    # other zones are normalised to UTC
    e = EventIn.model_validate(view(created_at="2026-03-01T14:00:00+02:00"))
    assert e.created_at == NOW and e.created_at.utcoffset() == dt.timedelta(0)


def test_batch_size_limits():
    with pytest.raises(ValidationError, match="List should have at least 1 item"):
        EventBatch.model_validate({"events": []}, context={"max_events": 2})
    events = [view(event_id=f"e{i}") for i in range(3)]
    with pytest.raises(ValidationError, match="at most 2 events per batch, got 3"):
        EventBatch.model_validate({"events": events}, context={"max_events": 2})
    assert len(EventBatch.model_validate({"events": events[:2]}, context={"max_events": 2}).events) == 2


def video(**kw):
    return {"post_id": "p1", "author_id": "u1", "kind": "video", "caption": "hi", "duration_s": 15, **kw}


def test_post_rules():
    post = PostIn.model_validate(video(hashtags=["#Dance", "dance", " #FYP ", "＃ＣＡＦÉ", "Cafe\u0301", "new_york"]))
    assert post.hashtags == ["dance", "fyp", "café", "new_york"]  # the one rule of socialpulse.tags
    cases = [
        (video(duration_s=None), "duration_s is required for video posts"),
        (video(duration_s=0), "duration_s: Input should be greater than 0"),
        (video(duration_s=601), "duration_s: Input should be less than or equal to 600"),
        (video(kind="image"), "duration_s is only allowed for video posts, not image"),
        (video(caption="x" * 2201), "caption: String should have at most 2200 characters"),
        (video(hashtags=[f"t{i}" for i in range(31)]), "hashtags: List should have at most 30 items"),
        (video(hashtags=["#"]), "hashtags[0] is empty"),
        (video(hashtags=["ok", "x" * 101]), "hashtags[1] has 101 characters; at most 100 allowed"),
        (video(hashtags=["two words"]), "hashtags[0] has a space: a hashtag is one word of letters, digits and"),
        (video(hashtags=["ok", "🔥"]), "hashtags[1] has '🔥' (U+1F525)"),
        (video(hashtags=["a#b"]), "hashtags[0] has an inner '#'"),
        (video(hashtags=["___"]), "hashtags[0] has no letter or digit"),
        (video(kind="audio"), "kind: Input should be 'video', 'image' or 'text'"),
        (video(language="not a language"), "language: String should match pattern"),
        ({"post_id": "p2", "author_id": "u1", "kind": "text"}, "caption is required for text posts"),
    ]
    for fields, message in cases:
        with pytest.raises(ValidationError) as exc:
            PostIn.model_validate(fields)
        assert message in errors(exc.value), (fields, errors(exc.value))


def test_event_rows_fit_the_bronze_contracts():
    comment = EventIn.model_validate(
        {"event_id": "c1", "event_type": "comment", "user_id": "u1", "post_id": "p1", "text": "nice", "created_at": NOW}
    )
    rows = event_rows(comment)
    assert set(rows) == {"interactions", "comments"}
    assert rows["comments"][0]["comment_id"] == "c1"
    follow = EventIn.model_validate(
        {"event_id": "f1", "event_type": "unfollow", "user_id": "u1", "target_user_id": "u2", "created_at": NOW}
    )
    frows = event_rows(follow)
    assert frows["follows"][0] == {
        "event_id": "f1", "follower_id": "u1", "followee_id": "u2", "action": "unfollow",
        "created_at": NOW, "event_date": NOW.date(),
    }
    # the drain builds the same rows from the JSON payload read back from the stream
    assert event_rows(json.loads(comment.model_dump_json(exclude_none=True))) == rows
    for table, table_rows in {**rows, **frows}.items():
        assert conform(BRONZE[table], table_rows).num_rows == 1


def test_post_rows_with_and_without_media():
    post = PostIn.model_validate(video(hashtags=["a"], created_at=NOW))
    media = MediaObject(uri="file:///m/ab/abc.mp4", key="ab/abc.mp4", content_type="video/mp4", size=10, sha256="ab" * 32)
    rows = post_rows(post, media)
    assert rows["posts"][0]["media_uri"] == media.uri and rows["posts"][0]["event_date"] == NOW.date()
    assert rows["media"][0]["size_bytes"] == 10 and rows["media"][0]["media_id"].startswith("p1:")
    assert post_rows(json.loads(post_payload(post, media)), json.loads(post_payload(post, media))["media"]) == rows
    text = PostIn.model_validate({"post_id": "p2", "author_id": "u1", "kind": "text", "caption": "hello"})
    assert set(post_rows(text)) == {"posts"}
    for table, table_rows in rows.items():
        assert conform(BRONZE[table], table_rows).num_rows == 1


def test_raw_payloads_fail_the_contract_with_a_reason():
    rows = event_rows({"event_id": "x", "event_type": "view", "post_id": "p", "created_at": NOW.isoformat()})
    with pytest.raises(ContractError, match="interactions.user_id: 1 null value"):
        conform(BRONZE["interactions"], rows["interactions"])
    with pytest.raises(ContractError, match="cannot parse 'yesterday'"):
        event_rows({"event_id": "x", "created_at": "yesterday"})
    with pytest.raises(ContractError, match="has no time zone"):
        event_rows({"event_id": "x", "created_at": "2026-03-01T00:00:00"})


def test_feed_feedback_events_block_and_not_interested():
    """not_interested targets a post, block a creator; a block lands in interactions but not in follows
    (it is not a follow-graph change the analysts count)."""
    ni = EventIn.model_validate({"event_id": "e-9", "event_type": "not_interested", "user_id": "u1", "post_id": "p1"})
    rows = event_rows(ni)
    assert set(rows) == {"interactions"}
    conform(BRONZE["interactions"], rows["interactions"])
    with pytest.raises(ValidationError) as exc:
        EventIn.model_validate({"event_id": "e-9", "event_type": "not_interested", "user_id": "u1"})
    assert "post_id is required for not_interested events" in errors(exc.value)
    block = EventIn.model_validate({"event_id": "e-10", "event_type": "block", "user_id": "u1", "target_user_id": "u2"})
    rows = event_rows(block)
    assert set(rows) == {"interactions"} and rows["interactions"][0]["target_user_id"] == "u2"
    with pytest.raises(ValidationError) as exc:
        EventIn.model_validate({"event_id": "e-11", "event_type": "block", "user_id": "u1", "post_id": "p1"})
    assert "target_user_id is required for block events" in errors(exc.value)


def test_impression_rows_fit_the_bronze_contract():
    from socialpulse.ingest import IMPRESSIONS_STREAM, ImpressionIn, impression_items, payload_rows

    imp = ImpressionIn(impression_id="r1:0", request_id="r1", user_id="u1", post_id="p1", position=0,
                       source="interest", model_version="ranker-3", score=0.5, served_at=NOW)
    [(record_id, payload)] = impression_items([imp])
    assert record_id == "r1:0"
    rows = payload_rows(IMPRESSIONS_STREAM, json.loads(payload))
    table = conform(BRONZE["impressions"], rows["impressions"])
    assert table.num_rows == 1 and table["event_date"][0].as_py() == NOW.date()
    with pytest.raises(ContractError, match="impressions.served_at: .* has no time zone"):
        payload_rows(IMPRESSIONS_STREAM, {**json.loads(payload), "served_at": "2026-03-01T12:00:00"})


def user(**kw):
    return {"user_id": "u1", "handle": "maya_2", "country": "US", "language": "en", "birth_year": 2004, **kw}


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"birth_year": 1899}, "birth_year must be between 1900 and"),
        ({"birth_year": utc_now().year - 12}, f"and {utc_now().year - 13} (users must be at least 13), got "
                                              f"{utc_now().year - 12}"),
        ({"birth_year": "soon"}, "birth_year: Input should be a valid integer"),
        ({"country": "usa"}, "country: String should match pattern"),
        ({"handle": "no spaces"}, "handle: String should match pattern"),
        ({"age": 20}, "age: Extra inputs are not permitted"),
    ],
)
def test_user_rules_refuse_with_a_precise_message(fields, message):
    with pytest.raises(ValidationError) as exc:
        UserIn.model_validate(user(**fields))
    assert message in errors(exc.value)


def test_user_rows_fit_the_bronze_contract_with_or_without_a_birth_year():
    oldest = UserIn.model_validate(user(birth_year=1900, created_at=NOW))
    youngest = UserIn.model_validate(user(user_id="u2", birth_year=utc_now().year - 13, created_at=NOW))
    undeclared = UserIn.model_validate({"user_id": "u3", "handle": "anon", "created_at": NOW})
    # what the drain reads back from the stream: the JSON the API enqueued
    rows = [r for u in (oldest, youngest, undeclared)
            for r in payload_rows(USERS_STREAM, json.loads(u.model_dump_json(exclude_none=True)))["users"]]
    table = conform(BRONZE["users"], rows)
    assert table["birth_year"].to_pylist() == [1900, utc_now().year - 13, None]
    assert table["is_creator"].to_pylist() == [False] * 3 and table["created_at"][0].as_py() == NOW
    # a retry repeats the change's id; a later change of the same user is a new record
    assert oldest.record_id == UserIn.model_validate(user(birth_year=1900, created_at=NOW)).record_id
    assert oldest.record_id != UserIn.model_validate(user(created_at=NOW + dt.timedelta(days=1))).record_id
