"""Identity and abuse on the real Redis: every write takes its user from the token, ids cannot be taken from
another user, and the rate limits answer 429 with Retry-After."""

from __future__ import annotations

import json

import pytest
import redis
from fastapi.testclient import TestClient

from serving.app import create_app
from socialpulse.auth import TokenVerifier
from socialpulse.ingest import EVENTS_STREAM, POSTS_STREAM, USERS_STREAM
from tests.tokens import bearer

pytestmark = pytest.mark.integration


def _api(settings):
    with TestClient(create_app(settings, warm=False)) as client:
        yield client, settings, redis.Redis.from_url(settings.redis, decode_responses=True)


@pytest.fixture
def api(redis_settings):
    yield from _api(redis_settings())


@pytest.fixture
def limited(redis_settings):
    yield from _api(redis_settings(rate_limit_ingest_per_min=3, rate_limit_uploads_per_min=2,
                                   rate_limit_reads_per_min=4, rate_limit_ip_factor=2))


def view(event_id: str, **kw) -> dict:
    return {"event_id": event_id, "event_type": "view", "post_id": "p1", "watch_time_s": 2.0, **kw}


def payloads(r, stream: str) -> list[dict]:
    return [json.loads(fields["payload"]) for _, fields in r.xrange(stream)]


def test_writes_and_personal_reads_need_a_valid_token(api):
    client, settings, r = api
    calls = [("post", "/v1/events", {"json": {"events": [view("e1")]}}),
             ("post", "/v1/users", {"json": {"handle": "maya"}}),
             ("post", "/v1/posts", {"files": {"post": (None, json.dumps({"post_id": "p1", "kind": "text",
                                                                           "caption": "hi"}))}}),
             ("get", "/v1/feed", {}), ("get", "/v1/notifications", {}), ("get", "/v1/creators/u1/analytics", {})]
    for method, path, kw in calls:
        for headers, reason in (({}, "authentication required"), ({"Authorization": "Bearer nope"}, "malformed"),
                                ({"Authorization": "Basic dTE6cHc="}, "authentication required")):
            res = getattr(client, method)(path, headers=headers, **kw)
            assert res.status_code == 401, (path, res.text)
            assert reason in res.json()["error"] and res.headers["www-authenticate"] == "Bearer"
    assert r.xlen(EVENTS_STREAM) == r.xlen(USERS_STREAM) == r.xlen(POSTS_STREAM) == 0


def test_the_user_comes_from_the_token_and_no_client_acts_as_another(api):
    client, settings, r = api
    as_u1 = bearer(settings, "u1")
    res = client.post("/v1/events", headers=as_u1, json={"events": [view("e1"), view("e2", user_id="u2")]})
    assert res.status_code == 403 and "events[1].user_id is 'u2' but the token is user 'u1'" in res.json()["error"]
    assert r.xlen(EVENTS_STREAM) == 0  # all or nothing
    assert client.post("/v1/events", headers=as_u1, json={"events": [view("e1"), view("e2", user_id="u1")]}).json() \
        == {"accepted": 2, "duplicates": 0}
    assert [p["user_id"] for p in payloads(r, EVENTS_STREAM)] == ["u1", "u1"]
    # a follow of oneself is still refused once the user is filled in
    res = client.post("/v1/events", headers=as_u1, json={"events": [
        {"event_id": "f1", "event_type": "follow", "target_user_id": "u1"}]})
    assert res.status_code == 422 and "cannot follow themselves" in res.json()["error"]

    post = {"post_id": "p9", "kind": "text", "caption": "mine"}
    res = client.post("/v1/posts", headers=as_u1, files={"post": (None, json.dumps({**post, "author_id": "u2"}))})
    assert res.status_code == 403 and "post.author_id is 'u2'" in res.json()["error"]
    assert client.post("/v1/posts", headers=as_u1, files={"post": (None, json.dumps(post))}).json()["duplicate"] is False
    assert [p["author_id"] for p in payloads(r, POSTS_STREAM)] == ["u1"]

    res = client.post("/v1/users", headers=as_u1, json={"user_id": "u2", "handle": "x"})
    assert res.status_code == 403
    assert client.post("/v1/users", headers=as_u1, json={"handle": "maya"}).json()["user_id"] == "u1"


def test_an_id_another_user_holds_is_a_409_and_nothing_is_enqueued(api):
    client, settings, r = api
    as_u1, as_u2 = bearer(settings, "u1"), bearer(settings, "u2")
    post = json.dumps({"post_id": "p-taken", "kind": "text", "caption": "first"})
    assert client.post("/v1/posts", headers=as_u1, files={"post": (None, post)}).json()["duplicate"] is False
    res = client.post("/v1/posts", headers=as_u2, files={"post": (None, post)})
    assert res.status_code == 409 and res.json()["ids"] == ["p-taken"]
    assert client.post("/v1/posts", headers=as_u1, files={"post": (None, post)}).json()["duplicate"] is True
    assert r.xlen(POSTS_STREAM) == 1 and r.get("ingest:seen:ingest:posts:p-taken") == "u1"

    assert client.post("/v1/events", headers=as_u1, json={"events": [view("e-taken")]}).status_code == 202
    res = client.post("/v1/events", headers=as_u2, json={"events": [view("e-new"), view("e-taken")]})
    assert res.status_code == 409 and res.json()["ids"] == ["e-taken"]
    assert [p["event_id"] for p in payloads(r, EVENTS_STREAM)] == ["e-taken"]  # e-new was not enqueued either


def test_rate_limits_answer_429_with_retry_after_per_token_and_per_ip(limited):
    client, settings, r = limited
    as_u1, as_u2 = bearer(settings, "u1"), bearer(settings, "u2")
    codes = [client.post("/v1/events", headers=as_u1, json={"events": [view(f"a{i}")]}).status_code for i in range(4)]
    assert codes == [202, 202, 202, 429]
    res = client.post("/v1/events", headers=as_u1, json={"events": [view("a9")]})
    assert res.status_code == 429 and res.json()["budget"] == "ingest"
    assert 1 <= int(res.headers["retry-after"]) <= 20  # 60 s / 3 requests: the next one in at most 20 s
    assert r.xlen(EVENTS_STREAM) == 3  # a refused request enqueues nothing
    # another token has its own budget, until the shared client IP's (2 x 3 a minute) is spent
    assert [client.post("/v1/events", headers=as_u2, json={"events": [view(f"b{i}")]}).status_code
            for i in range(4)] == [202, 202, 202, 429]
    assert client.post("/v1/events", headers=bearer(settings, "u3"), json={"events": [view("c1")]}).status_code == 429
    # budgets are separate: uploads and reads are not spent by ingest
    post = json.dumps({"post_id": "p-rl", "kind": "text", "caption": "hi"})
    assert client.post("/v1/posts", headers=as_u1, files={"post": (None, post)}).status_code == 202
    # anonymous public reads are limited per IP (4 x 2 a minute)
    reads = [client.get("/v1/search", params={"q": ""}).status_code for _ in range(9)]  # 400: no store asked
    assert 429 not in reads[:8] and reads[8] == 429
    assert {k.split(":")[1] for k in r.keys("ratelimit:*")} == {"ingest", "uploads", "reads"}


def test_without_redis_the_limits_fail_open_and_ingest_says_its_queue_is_down(redis_settings):
    settings = redis_settings(rate_limit_reads_per_min=1).model_copy(update={"redis_url": "redis://127.0.0.1:9/0"})
    with TestClient(create_app(settings, warm=False)) as client:
        headers = bearer(settings, "u1")
        assert client.post("/v1/events", headers=headers, json={"events": [view("e1")]}).status_code == 503
        # reads that need no Redis keep being served (the limiter does not take the API down with it)
        assert all(client.get("/.well-known/jwks.json").status_code == 200 for _ in range(3))


def test_the_published_jwks_verifies_the_platforms_tokens(api):
    client, settings, _ = api
    keys = client.get("/.well-known/jwks.json").json()["keys"]
    assert [k["kty"] for k in keys] == ["RSA"] and "d" not in keys[0]  # the public half only
    assert TokenVerifier(settings).verify(bearer(settings, "u5")["Authorization"].split()[1]).user_id == "u5"
    external = settings.model_copy(update={"auth_jwks_url": "https://id.example/jwks.json",
                                           "auth_issuer": "https://id.example/"})
    with TestClient(create_app(external, warm=False)) as other:
        res = other.get("/.well-known/jwks.json")
        assert res.status_code == 404 and "https://id.example/jwks.json" in res.json()["error"]


def test_a_closed_accounts_tokens_are_refused_even_without_rate_limits(redis_settings):
    from socialpulse.auth import close_account

    settings = redis_settings(rate_limit_ingest_per_min=0, rate_limit_reads_per_min=0)
    with TestClient(create_app(settings, warm=False)) as client:
        r = redis.Redis.from_url(settings.redis, decode_responses=True)
        as_u1, as_u2 = bearer(settings, "u1"), bearer(settings, "u2")
        assert client.post("/v1/events", headers=as_u1, json={"events": [view("e1")]}).status_code == 202
        close_account(r, settings, "u1")
        res = client.post("/v1/events", headers=as_u1, json={"events": [view("e2")]})
        assert res.status_code == 403 and "account is closed" in res.json()["error"]
        assert client.get("/v1/search", headers=as_u1, params={"q": ""}).status_code == 403
        assert r.xlen(EVENTS_STREAM) == 1
        # the marker names the account by its pseudonym only; other users and anonymous reads go on
        assert all("u1" not in k for k in r.keys("auth:erased:*"))
        assert client.post("/v1/events", headers=as_u2, json={"events": [view("e3")]}).status_code == 202
        assert client.get("/v1/search", params={"q": ""}).status_code == 400
