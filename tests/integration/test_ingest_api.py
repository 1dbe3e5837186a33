"""The ingest API against the real embedded Redis: events and posts land in the streams exactly once,
and every refusal is a JSON 4xx that leaves nothing behind (no stream entry, no media file)."""

from __future__ import annotations

import hashlib
import json
import sys
import types
from pathlib import Path

import pytest
import redis
from fastapi.testclient import TestClient

from serving.app import create_app
from socialpulse.ingest import EVENTS_STREAM, POSTS_STREAM, USERS_STREAM, utc_now
from socialpulse.media import local_path
from socialpulse.settings import Settings
from tests.tokens import bearer

MP4 = b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2" + bytes(range(256)) * 4
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 200


@pytest.fixture
def api_settings(redis_settings) -> Settings:
    """The real Redis, with this test's own database, lake and media store."""
    return redis_settings(max_upload_bytes=4096, max_event_batch=5)


@pytest.fixture
def client(api_settings):
    with TestClient(create_app(api_settings), headers=bearer(api_settings, "u1")) as c:
        yield c


@pytest.fixture
def r(api_settings):
    client = redis.Redis.from_url(api_settings.redis, decode_responses=True)
    yield client
    client.close()


def events(*ids, **kw):
    return [{"event_id": i, "event_type": "view", "user_id": "u1", "post_id": "p1", "watch_time_s": 3.0, **kw} for i in ids]


def media_files(settings: Settings) -> list[Path]:
    return [p for p in Path(settings.media).rglob("*") if p.is_file()]


def post_json(**kw) -> str:
    return json.dumps({"post_id": "p1", "author_id": "u1", "kind": "video", "caption": "hi #dance", "duration_s": 15, **kw})


def multipart_body(post: str, media: bytes, boundary: str = "sp-boundary") -> tuple[bytes, str]:
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="post"\r\n\r\n{post}\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="media"; filename="clip.mp4"\r\n'
        "Content-Type: video/mp4\r\n\r\n"
    ).encode() + media + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


@pytest.mark.integration
def test_events_are_accepted_once(client, r):
    batch = events("e1", "e2") + [
        {"event_id": "c1", "event_type": "comment", "user_id": "u1", "post_id": "p1", "text": "wow"},
        {"event_id": "f1", "event_type": "follow", "user_id": "u1", "target_user_id": "u2"},
    ]
    res = client.post("/v1/events", json={"events": batch})
    assert res.status_code == 202 and res.json() == {"accepted": 4, "duplicates": 0}
    assert r.xlen(EVENTS_STREAM) == 4
    # a retried request adds nothing; a partly new one adds only the new events
    assert client.post("/v1/events", json={"events": batch}).json() == {"accepted": 0, "duplicates": 4}
    assert client.post("/v1/events", json={"events": events("e1", "e3")}).json() == {"accepted": 1, "duplicates": 1}
    assert r.xlen(EVENTS_STREAM) == 5
    entry_id, fields = r.xrange(EVENTS_STREAM)[0]
    assert fields["id"] == "e1"
    payload = json.loads(fields["payload"])
    assert payload["event_id"] == "e1" and payload["created_at"]  # server time filled in
    assert r.ttl(f"ingest:seen:{EVENTS_STREAM}:e1") > 0


@pytest.mark.integration
def test_malformed_events_are_refused_and_nothing_is_enqueued(client, r):
    res = client.post("/v1/events", json={"events": events("ok1") + [{"event_id": "bad", "event_type": "view", "user_id": "u1", "post_id": "p1"}]})
    assert res.status_code == 422
    body = res.json()
    assert body["error"] == "events[1]: watch_time_s is required for view events"
    assert body["detail"] == [{"loc": ["body", "events", 1], "msg": "watch_time_s is required for view events"}]
    res = client.post("/v1/events", json={"events": events("x", watch_time_s=-2)})
    assert res.status_code == 422 and res.json()["detail"][0]["loc"] == ["body", "events", 0, "watch_time_s"]
    res = client.post("/v1/events", json={"events": []})
    assert res.status_code == 422 and "at least 1 item" in res.json()["error"]
    res = client.post("/v1/events", content=b"{not json", headers={"content-type": "application/json"})
    assert res.status_code == 400 and res.json()["error"].startswith("request body is not valid JSON")
    res = client.post("/v1/events", content=b'{"events": [{"watch_time_s": NaN}]}', headers={"content-type": "application/json"})
    assert res.status_code == 400 and "NaN is not a valid JSON number" in res.json()["error"]
    res = client.post("/v1/events", json={"events": events(*[f"e{i}" for i in range(6)])})
    assert res.status_code == 413 and "batch of 6 events exceeds the limit of 5" in res.json()["error"]
    res = client.post("/v1/events", content=b"events", headers={"content-type": "text/plain"})
    assert res.status_code == 415 and res.json() == {"error": "expected Content-Type application/json, got text/plain"}
    res = client.post("/v1/events", content=b"x" * (2 * 1024 * 1024), headers={"content-type": "application/json"})
    assert res.status_code == 413 and "exceeds the limit" in res.json()["error"]
    assert r.xlen(EVENTS_STREAM) == 0
    assert r.keys("ingest:seen:*") == []


@pytest.mark.integration
def test_users_are_enqueued_once_and_an_implausible_birth_year_is_a_clear_422(client, r, api_settings):
    client.headers.update(bearer(api_settings, "u7"))
    too_young = utc_now().year - 12
    res = client.post("/v1/users", json={"user_id": "u7", "handle": "kid", "birth_year": too_young})
    assert res.status_code == 422
    assert res.json()["error"] == (f"birth_year: birth_year must be between 1900 and {too_young - 1} "
                                   f"(users must be at least 13), got {too_young}")
    assert client.post("/v1/users", json={"user_id": "u7", "handle": "kid", "birth_year": 1899}).status_code == 422
    assert r.xlen(USERS_STREAM) == 0
    user = {"user_id": "u7", "handle": "maya", "birth_year": 2004, "created_at": "2026-03-01T10:00:00+00:00"}
    assert client.post("/v1/users", json=user).json() == {"user_id": "u7", "duplicate": False}
    assert client.post("/v1/users", json=user).json() == {"user_id": "u7", "duplicate": True}
    # a later profile change of the same user is a new record; without a birth year is fine
    later = {"user_id": "u7", "handle": "maya", "country": "GB", "created_at": "2026-03-02T10:00:00+00:00"}
    assert client.post("/v1/users", json=later).json() == {"user_id": "u7", "duplicate": False}
    payloads = [json.loads(fields["payload"]) for _, fields in r.xrange(USERS_STREAM)]
    assert [(p.get("birth_year"), p.get("country")) for p in payloads] == [(2004, None), (None, "GB")]


@pytest.mark.integration
def test_video_upload_is_stored_once_and_enqueued(client, r, api_settings):
    res = client.post("/v1/posts", data={"post": post_json()}, files={"media": ("clip.mp4", MP4, "video/mp4")})
    assert res.status_code == 202, res.text
    body = res.json()
    assert body["post_id"] == "p1" and body["duplicate"] is False
    media = body["media"]
    # the client learns what it sent, never where the server keeps it
    assert media == {"content_type": "video/mp4", "size": len(MP4), "sha256": hashlib.sha256(MP4).hexdigest()}
    (entry_id, fields), = r.xrange(POSTS_STREAM)
    payload = json.loads(fields["payload"])
    assert fields["id"] == "p1" and payload["media"]["sha256"] == media["sha256"] and payload["hashtags"] == []
    stored = local_path(payload["media"]["uri"])  # the stream record knows the file
    assert stored.read_bytes() == MP4 and media_files(api_settings) == [stored]
    # the retry (streamed this time, no Content-Length) stores nothing new and enqueues nothing
    body_bytes, ctype = multipart_body(post_json(), MP4)
    res = client.post("/v1/posts", content=iter([body_bytes[:50], body_bytes[50:]]), headers={"content-type": ctype})
    assert res.status_code == 202 and res.json()["duplicate"] is True and res.json()["media"] == media
    assert r.xlen(POSTS_STREAM) == 1 and len(media_files(api_settings)) == 1


@pytest.mark.integration
def test_post_field_rules(client, r, api_settings):
    res = _multipart_fields(client, {"post": post_json(post_id="t1", kind="text", duration_s=None)})
    assert res.status_code == 202 and res.json() == {"post_id": "t1", "media": None, "duplicate": False}
    cases = [
        ({"post": post_json(duration_s=700)}, {"media": ("a.mp4", MP4)}, 422, "post.duration_s: Input should be less than or equal to 600"),
        ({"post": post_json()}, None, 422, "a video post requires a 'media' file"),
        ({"post": post_json(post_id="t2", kind="text", duration_s=None)}, {"media": ("a.png", PNG)}, 422, "text posts take no 'media' file"),
        ({"post": "{oops"}, {"media": ("a.mp4", MP4)}, 400, "form field 'post' is not valid JSON"),
        ({}, {"media": ("a.mp4", MP4)}, 422, "the first form field must be 'post' (JSON of the post), found 'media'"),
        ({"post": post_json(), "extra": "1"}, None, 422, "unexpected form field 'extra'"),
        ({"post": post_json(post_id="p9", kind="image", duration_s=None)}, {"media": ("a.png", b"")}, 400, "the media file is empty"),
    ]
    for data, files, status, message in cases:
        res = client.post("/v1/posts", data=data, files=files) if files else _multipart_fields(client, data)
        assert res.status_code == status, (message, res.text)
        assert message in res.json()["error"], res.json()
    res = client.post("/v1/posts", data={"post": post_json()})  # urlencoded, not multipart
    assert res.status_code == 415 and "expected Content-Type multipart/form-data" in res.json()["error"]
    assert r.xlen(POSTS_STREAM) == 1 and media_files(api_settings) == []


def _multipart_fields(client, fields: dict):
    boundary = "f-boundary"
    body = b"".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode() for k, v in fields.items()
    ) + f"--{boundary}--\r\n".encode()
    return client.post("/v1/posts", content=body, headers={"content-type": f"multipart/form-data; boundary={boundary}"})


@pytest.mark.integration
def test_oversize_and_wrong_type_uploads_leave_nothing(client, r, api_settings):
    # refused up front from Content-Length, before the body is read
    res = client.post("/v1/posts", data={"post": post_json()}, files={"media": ("big.mp4", MP4 + b"\x00" * 200_000)})
    assert res.status_code == 413 and "exceeds the upload limit of 4096 bytes" in res.json()["error"]
    # streamed without Content-Length: refused as soon as the limit is passed
    body, ctype = multipart_body(post_json(), MP4 + b"\x00" * 5000)
    res = client.post("/v1/posts", content=(body[i : i + 1000] for i in range(0, len(body), 1000)), headers={"content-type": ctype})
    assert res.status_code == 413 and res.json() == {"error": "upload exceeds the limit of 4096 bytes (SOCIALPULSE_MAX_UPLOAD_BYTES)"}
    res = client.post("/v1/posts", data={"post": post_json()}, files={"media": ("a.mp4", PNG, "video/mp4")})
    assert res.status_code == 415 and res.json()["error"] == "the file is image/png, but the post is declared as video"
    res = client.post("/v1/posts", data={"post": post_json()}, files={"media": ("a.mp4", b"<html>" * 20)})
    assert res.status_code == 415 and "unrecognised media format" in res.json()["error"]
    assert media_files(api_settings) == []  # no stored file, no temporary leftover
    assert r.xlen(POSTS_STREAM) == 0


@pytest.mark.integration
def test_a_post_refused_after_its_media_leaves_no_file(client, r, api_settings):
    body, ctype = multipart_body(post_json(), MP4)
    body = body.replace(b"--sp-boundary--", b'--sp-boundary\r\nContent-Disposition: form-data; name="extra"\r\n\r\n'
                                             b"x\r\n--sp-boundary--")
    res = client.post("/v1/posts", content=body, headers={"content-type": ctype})
    assert res.status_code == 422 and res.json()["error"] == "unexpected form field 'extra' after 'media'"
    assert media_files(api_settings) == [] and r.xlen(POSTS_STREAM) == 0


@pytest.mark.integration
def test_readyz_checks_every_store(stack, tmp_path):
    with TestClient(create_app(stack.model_copy(update={"media_uri": str(tmp_path / "media")}))) as client:
        res = client.get("/readyz")
    assert res.status_code == 200, res.text
    body = res.json()
    assert body["status"] == "ready"
    assert {name: c["ok"] for name, c in body["checks"].items()} == {
        "postgres": True, "redis": True, "media": True, "mlflow": True, "feast_online": True, "auth": True,
    }


# --- post stats: the feature store is stubbed; the moderation gate is the real Redis --------------------


@pytest.fixture
def stats_client(redis_settings, monkeypatch):
    calls = {}

    def get_post_stats(settings, post_id):
        calls["post_id"] = post_id
        if post_id == "down":
            raise redis.exceptions.ConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")
        if post_id == "boom":
            raise RuntimeError("secret internals")
        return None if post_id == "unknown" else {"views_7d": 10, "likes_7d": 2, "ctr": 0.2}

    class FeatureStoreNotReady(RuntimeError):
        pass

    def get_post_stats_or_not_ready(settings, post_id):
        if post_id == "fresh":
            raise FeatureStoreNotReady("feature service post_stats_v1 is not registered yet")
        return get_post_stats(settings, post_id)

    fake = types.ModuleType("socialpulse.features")
    fake.get_post_stats = get_post_stats_or_not_ready
    fake.FeatureStoreNotReady = FeatureStoreNotReady
    monkeypatch.setitem(sys.modules, "socialpulse.features", fake)
    settings = redis_settings()
    with TestClient(create_app(settings, warm=False)) as c:
        yield c, calls, redis.Redis.from_url(settings.redis)


def test_post_stats(stats_client):
    client, calls, _ = stats_client
    res = client.get("/v1/posts/p1/stats")
    assert res.status_code == 200 and res.json() == {
        "post_id": "p1", "stats": {"views_7d": 10, "likes_7d": 2, "ctr": 0.2}, "restricted": False,
    }
    assert calls["post_id"] == "p1"
    res = client.get("/v1/posts/unknown/stats")
    assert res.status_code == 404 and res.json() == {"error": "no stats for post unknown"}
    res = client.get("/v1/posts/fresh/stats")
    assert res.status_code == 503 and res.json()["error"].startswith("post stats are not available yet: feature service")
    res = client.get("/v1/posts/down/stats", headers={"x-request-id": "req-41"})
    assert res.status_code == 503 and res.headers["retry-after"] == "5"
    assert res.json() == {"error": "the feature store is unreachable; retry in a few seconds", "request_id": "req-41"}
    res = client.get("/v1/posts/bad%20id/stats")
    assert res.status_code == 422 and res.json()["detail"][0]["loc"] == ["path", "post_id"]
    res = client.get("/v1/posts/boom/stats", headers={"x-request-id": "req-42"})
    assert res.status_code == 500 and res.json() == {"error": "internal error", "request_id": "req-42"}
    assert "secret" not in res.text and "Traceback" not in res.text


def test_post_stats_honour_moderation(stats_client):
    from socialpulse.moderation import REDIS_ACTIONS_KEY

    client, calls, r = stats_client
    r.hset(REDIS_ACTIONS_KEY, mapping={"p-removed": "remove", "p-limited": "limit", "p-review": "review"})
    res = client.get("/v1/posts/p-removed/stats")
    assert res.status_code == 404 and res.json() == {"error": "post p-removed is not available (removed by moderation)"}
    assert calls.get("post_id") != "p-removed"  # the feature store is not even asked
    assert client.get("/v1/posts/p-limited/stats").json()["restricted"] is True
    assert client.get("/v1/posts/p-review/stats").json()["restricted"] is True
    assert client.get("/v1/posts/p-ok/stats").json()["restricted"] is False
