"""The drain lands stream entries in bronze Delta exactly once, through crashes, retries and bad records."""

from __future__ import annotations

import collections
import datetime as dt
import json

import pytest
import redis
from fastapi.testclient import TestClient

from serving.app import create_app
from socialpulse import drain, lake
from socialpulse.contracts import BRONZE
from socialpulse.drain import DrainBusy, drain_all, drain_stream, entry_version, stream_backlog
from socialpulse.ingest import EVENTS_STREAM, IMPRESSIONS_STREAM, POSTS_STREAM, USERS_STREAM, EventIn, enqueue_events
from socialpulse.settings import Settings
from tests.tokens import bearer

MP4 = b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2" + bytes(range(256))
T0 = dt.datetime(2026, 3, 1, 23, 59, 59, tzinfo=dt.timezone.utc)


@pytest.fixture
def settings(redis_settings) -> Settings:
    return redis_settings(drain_batch_size=3)


@pytest.fixture
def r(settings):
    client = redis.Redis.from_url(settings.redis)
    yield client
    client.close()


def ids(settings, table: str, column: str) -> list:
    return lake.read(BRONZE[table], settings=settings).column(column).to_pylist()


def make_events(n: int, *, comments_every: int = 3) -> list[EventIn]:
    out = []
    for i in range(n):
        at = T0 + dt.timedelta(seconds=i)  # crosses midnight: two event_date partitions
        if i % comments_every == 0:
            e = {"event_type": "comment", "post_id": "p1", "text": f"comment {i}"}
        else:
            e = {"event_type": "view", "post_id": "p1", "watch_time_s": float(i)}
        out.append(EventIn.model_validate({"event_id": f"e{i}", "user_id": f"u{i % 2}", "created_at": at, **e}))
    return out


def pending(r, stream: str) -> int:
    return r.xpending(stream, drain.GROUP)["pending"]


def test_entry_version_orders_like_the_stream():
    assert entry_version("1700000000000-0") == 1_700_000_000_000_000_000
    assert entry_version("1700000000000-7") < entry_version("1700000000001-0")
    with pytest.raises(ValueError, match="sequence"):
        entry_version("1-1000000")


@pytest.mark.integration
def test_api_then_drain_lands_exactly_the_expected_rows(settings, r):
    with TestClient(create_app(settings), headers=bearer(settings, "u1")) as client:
        as_u2 = bearer(settings, "u2")
        mine = [{"event_id": "v1", "event_type": "view", "user_id": "u1", "post_id": "p1", "watch_time_s": 7.5}]
        theirs = [
            {"event_id": "v2", "event_type": "view", "user_id": "u2", "post_id": "p1", "watch_time_s": 0},
            {"event_id": "l1", "event_type": "like", "user_id": "u2", "post_id": "p1"},
            {"event_id": "c1", "event_type": "comment", "user_id": "u2", "post_id": "p1", "text": "so good"},
            {"event_id": "f1", "event_type": "follow", "user_id": "u2", "target_user_id": "u1"},
        ]
        assert client.post("/v1/events", json={"events": mine}).json() == {"accepted": 1, "duplicates": 0}
        assert client.post("/v1/events", headers=as_u2, json={"events": theirs}).json() == {"accepted": 4, "duplicates": 0}
        assert client.post("/v1/events", headers=as_u2, json={"events": theirs}).json() == {"accepted": 0, "duplicates": 4}
        video = {"post_id": "p1", "author_id": "u1", "kind": "video", "caption": "hi", "hashtags": ["#Dance"], "duration_s": 12}
        res = client.post("/v1/posts", data={"post": json.dumps(video)}, files={"media": ("clip.mp4", MP4, "video/mp4")})
        assert res.status_code == 202, res.text
        sha = res.json()["media"]["sha256"]
        assert client.post("/v1/posts", data={"post": json.dumps(video)}, files={"media": ("c.mp4", MP4)}).json()["duplicate"]
        signup = {"user_id": "u1", "handle": "maya", "country": "US", "birth_year": 2004,
                  "created_at": "2026-03-01T10:00:00+00:00"}
        assert client.post("/v1/users", json=signup).json() == {"user_id": "u1", "duplicate": False}
        assert client.post("/v1/users", json=signup).json() == {"user_id": "u1", "duplicate": True}
    assert stream_backlog(r) == {EVENTS_STREAM: 5, POSTS_STREAM: 1, IMPRESSIONS_STREAM: 0, USERS_STREAM: 1}

    result = drain_all(settings, r)
    assert result.rows == {"interactions": 5, "comments": 1, "follows": 1, "posts": 1, "media": 1, "users": 1}
    assert result.dead_letters == 0 and result.acked == 7 and result.skipped_already_committed == 0
    assert stream_backlog(r) == {EVENTS_STREAM: 0, POSTS_STREAM: 0, IMPRESSIONS_STREAM: 0, USERS_STREAM: 0}
    users = lake.read(BRONZE["users"], settings=settings).to_pylist()
    assert [(u["user_id"], u["country"], u["birth_year"]) for u in users] == [("u1", "US", 2004)]
    assert sorted(ids(settings, "interactions", "event_id")) == ["c1", "f1", "l1", "v1", "v2"]
    assert ids(settings, "comments", "text") == ["so good"]
    follows = lake.read(BRONZE["follows"], settings=settings).to_pylist()
    assert [(f["follower_id"], f["followee_id"], f["action"]) for f in follows] == [("u2", "u1", "follow")]
    post = lake.read(BRONZE["posts"], settings=settings).to_pylist()[0]
    assert post["hashtags"] == ["dance"] and post["media_uri"].endswith(f"{sha}.mp4")
    assert ids(settings, "media", "sha256") == [sha]
    # nothing left: a second drain writes nothing and commits nothing
    again = drain_all(settings, r)
    assert again.batches == 0 and again.total_rows == 0
    assert len(ids(settings, "interactions", "event_id")) == 5


@pytest.mark.integration
def test_crash_between_commit_and_ack_is_exactly_once(settings, r, monkeypatch):
    events = make_events(8)
    assert enqueue_events(r, events, ttl=60) == (8, 0)
    real_ack = drain._ack
    calls = []

    def crash_on_second_batch(client, stream, entry_ids):
        calls.append(list(entry_ids))
        if len(calls) == 2:
            raise RuntimeError("killed between the Delta commit and XACK")
        real_ack(client, stream, entry_ids)

    monkeypatch.setattr(drain, "_ack", crash_on_second_batch)
    with pytest.raises(RuntimeError, match="between the Delta commit and XACK"):
        drain_stream(settings, r, EVENTS_STREAM)
    # batch 1 acked; batch 2 committed to Delta but still pending in Redis; batch 3 never read
    assert len(ids(settings, "interactions", "event_id")) == 6
    assert pending(r, EVENTS_STREAM) == 3 and stream_backlog(r)[EVENTS_STREAM] == 5

    monkeypatch.setattr(drain, "_ack", real_ack)
    result = drain_stream(settings, r, EVENTS_STREAM, consumer="drain-2")  # another consumer claims them
    assert result.skipped_already_committed == 3  # batch 2: already in Delta, only acknowledged
    assert result.rows == {"interactions": 2, "comments": 1}  # batch 3 (e6 comment, e7 view), written once
    assert result.acked == 5 and pending(r, EVENTS_STREAM) == 0 and stream_backlog(r)[EVENTS_STREAM] == 0

    landed = ids(settings, "interactions", "event_id")
    assert sorted(landed) == sorted(e.event_id for e in events)  # nothing lost
    assert len(landed) == len(set(landed))  # nothing twice
    comments = ids(settings, "comments", "comment_id")
    assert sorted(comments) == ["e0", "e3", "e6"] and len(comments) == len(set(comments))
    days = collections.Counter(lake.read(BRONZE["interactions"], settings=settings).column("event_date").to_pylist())
    assert days == {dt.date(2026, 3, 1): 1, dt.date(2026, 3, 2): 7}
    # and a retried POST of the same ids after the drain adds nothing either
    assert enqueue_events(r, events, ttl=60) == (0, 8)
    assert drain_stream(settings, r, EVENTS_STREAM).total_rows == 0


@pytest.mark.integration
def test_crash_between_table_commits(settings, r, monkeypatch):
    enqueue_events(r, make_events(3, comments_every=1), ttl=60)  # 3 comments: interactions + comments rows
    real_append = lake.append

    def append_then_crash(contract, rows, **kw):
        if contract.name == "comments":
            raise OSError("disk full while committing comments")
        return real_append(contract, rows, **kw)

    monkeypatch.setattr(drain.lake, "append", append_then_crash)
    with pytest.raises(OSError):
        drain_stream(settings, r, EVENTS_STREAM)
    assert len(ids(settings, "interactions", "event_id")) == 3 and ids(settings, "comments", "comment_id") == []
    monkeypatch.setattr(drain.lake, "append", real_append)
    result = drain_stream(settings, r, EVENTS_STREAM)
    assert result.rows == {"comments": 3}  # interactions were already committed: skipped, not rewritten
    assert sorted(ids(settings, "interactions", "event_id")) == ["e0", "e1", "e2"]
    assert sorted(ids(settings, "comments", "comment_id")) == ["e0", "e1", "e2"]


@pytest.mark.integration
def test_bad_records_go_to_dead_letter_exactly_once_and_are_acked(settings, r, monkeypatch):
    enqueue_events(r, make_events(2), ttl=60)
    # raw entries that never went through the API's validation
    no_user = {"event_id": "raw1", "event_type": "view", "post_id": "p1", "watch_time_s": 1.0, "created_at": T0.isoformat()}
    r.xadd(EVENTS_STREAM, {"id": "raw1", "payload": json.dumps(no_user)})
    r.xadd(EVENTS_STREAM, {"id": "raw2", "payload": "{not json"})
    r.xadd(EVENTS_STREAM, {"id": "raw3"})
    bad_type = {"event_id": "raw4", "event_type": "poke", "user_id": "u1", "post_id": "p1", "created_at": T0.isoformat()}
    r.xadd(EVENTS_STREAM, {"id": "raw4", "payload": json.dumps(bad_type)})
    enqueue_events(r, [EventIn.model_validate({"event_id": "last", "event_type": "like", "user_id": "u1", "post_id": "p1"})], ttl=60)
    audio = {"post_id": "p9", "author_id": "u1", "kind": "audio", "hashtags": [], "created_at": T0.isoformat(), "media": None}
    r.xadd(POSTS_STREAM, {"id": "p9", "payload": json.dumps(audio)})

    real_ack = drain._ack

    def crash(*a):
        raise RuntimeError("crash before ack")

    monkeypatch.setattr(drain, "_ack", crash)
    with pytest.raises(RuntimeError):
        drain_all(settings, r)
    monkeypatch.setattr(drain, "_ack", real_ack)
    first = drain_all(settings, r)
    second = drain_all(settings, r)
    assert second.batches == 0

    rows = lake.read(BRONZE["dead_letter"], settings=settings).to_pylist()
    assert len(rows) == 5 and len({row["record_id"] for row in rows}) == 5  # exactly once despite the crash
    reasons = sorted(row["reason"] for row in rows)
    assert any(x == "interactions.user_id: 1 null value(s) in a required column" for x in reasons), reasons
    assert any(x.startswith("payload is not valid JSON") for x in reasons)
    assert any(x.startswith("stream entry has no 'payload' field") for x in reasons)
    assert any(x.startswith("interactions.event_type: 1 value(s) outside") and "'poke'" in x for x in reasons)
    assert any(x.startswith("posts.kind: 1 value(s) outside") for x in reasons)
    raw1 = next(row for row in rows if "user_id" in row["reason"])
    assert json.loads(raw1["payload"]) == no_user and raw1["source"] == EVENTS_STREAM and raw1["target_table"] == "interactions"
    # the good records around them landed; every entry is acknowledged
    assert sorted(ids(settings, "interactions", "event_id")) == ["e0", "e1", "last"]
    assert ids(settings, "posts", "post_id") == []
    assert pending(r, EVENTS_STREAM) == 0 and pending(r, POSTS_STREAM) == 0
    assert stream_backlog(r) == {EVENTS_STREAM: 0, POSTS_STREAM: 0, IMPRESSIONS_STREAM: 0, USERS_STREAM: 0}
    # the crashed run committed batch 1 (e0, e1 and raw1's dead letter) but acknowledged nothing;
    # the rerun skipped those three, wrote the other four dead letters and acknowledged all 8 entries
    assert first.acked == 8 and first.dead_letters == 4 and first.skipped_already_committed == 3


@pytest.mark.integration
def test_max_records_backlog_and_single_drainer(settings, r):
    enqueue_events(r, make_events(5), ttl=60)
    assert stream_backlog(r)[EVENTS_STREAM] == 5
    part = drain_stream(settings, r, EVENTS_STREAM, max_records=2)
    assert part.acked == 2 and part.rows["interactions"] == 2
    assert stream_backlog(r)[EVENTS_STREAM] == 3
    lock = r.lock(f"drain:lock:{EVENTS_STREAM}", timeout=30)
    assert lock.acquire(blocking=False)
    try:
        with pytest.raises(DrainBusy, match="another drain is working ingest:events"):
            drain_stream(settings, r, EVENTS_STREAM)
    finally:
        lock.release()
    rest = drain_stream(settings, r, EVENTS_STREAM)
    assert rest.acked == 3 and rest.batches == 1
    assert len(ids(settings, "interactions", "event_id")) == 5
    # one commit per table per batch, each recording its app transaction
    assert lake.committed_version(BRONZE["interactions"], f"drain:{EVENTS_STREAM}:interactions", settings=settings) == entry_version(rest.last_entry_id)

    # a drain killed while holding the lock never releases it: the next one waits for the lock to expire
    late_events = [e.model_copy(update={"event_id": f"late-{e.event_id}"}) for e in make_events(2)]
    assert enqueue_events(r, late_events, ttl=60) == (2, 0)
    assert r.lock(f"drain:lock:{EVENTS_STREAM}", timeout=2).acquire(blocking=False)  # its holder "dies"
    with pytest.raises(DrainBusy, match="after waiting 0.5 s"):
        drain_stream(settings, r, EVENTS_STREAM, wait_s=0.5)
    late = drain_stream(settings, r, EVENTS_STREAM, wait_s=10)
    assert late.acked == 2 and len(ids(settings, "interactions", "event_id")) == 7
