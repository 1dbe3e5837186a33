"""Faults against the real stores, on a private Postgres and Redis (their own state folder and free ports),
so stopping one disturbs no other test: the API answers 503 with Retry-After while a store is down, leaves
no orphan media, and serves again once the store is back, in the same app instance, with every id
accepted exactly once."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg
import pytest
import redis
from fastapi.testclient import TestClient

from serving.app import create_app
from serving.errors import RETRY_AFTER_S
from socialpulse import moderation, trends_store, vectors
from socialpulse.ingest import EVENTS_STREAM, POSTS_STREAM
from socialpulse.services import services_down, services_up
from socialpulse.services.manager import SERVICES, free_port, port_open
from socialpulse.settings import Settings
from tests.tokens import bearer

pytestmark = pytest.mark.integration

PNG_A = b"\x89PNG\r\n\x1a\n" + b"\x0a" * 300
PNG_B = b"\x89PNG\r\n\x1a\n" + b"\x0b" * 300
#: time the API gets to serve again once a store is back
RECOVERY_S = 15


@pytest.fixture(scope="module")
def private(state_folder):
    """A private embedded Postgres and Redis; stopped by the PIDs this fixture started."""
    home = state_folder("faults")
    settings = Settings(home=home, postgres_port=free_port(), redis_port=free_port(), mlflow_port=free_port(),
                        spark_port=free_port())
    try:
        services_up(settings, ["postgres", "redis"])
        yield settings
    finally:
        services_down(settings, ["postgres", "redis"])


def assert_unavailable(res, store: str, settings: Settings) -> None:
    assert res.status_code == 503, res.text
    assert res.headers["retry-after"] == str(RETRY_AFTER_S)
    body = res.json()
    assert body["error"] == f"the {store} is unreachable; retry in a few seconds" and body["request_id"]
    # the request id is random hex: a port's digits can turn up in it by chance (CI saw 36491 in one)
    said = json.dumps({k: v for k, v in body.items() if k != "request_id"})
    for internal in (str(settings.postgres_port), str(settings.redis_port), "127.0.0.1", str(settings.home_abs),
                     "Error", "Timeout"):
        assert internal not in said, (internal, res.text)


def events(*ids):
    return {"events": [{"event_id": i, "event_type": "like", "user_id": "u1", "post_id": "p1"} for i in ids]}


def upload(client, post_id: str, data: bytes):
    post = json.dumps({"post_id": post_id, "author_id": "u1", "kind": "image", "caption": "fault test"})
    return client.post("/v1/posts", files={"post": (None, post), "media": ("a.png", data, "image/png")})


def media_files(root: Path) -> list[str]:
    return sorted(p.name for p in root.rglob("*") if p.is_file())


def stream_ids(r: redis.Redis, stream: str) -> list[str]:
    return [fields[b"id"].decode() for _, fields in r.xrange(stream)]


def test_redis_stopped_ingest_is_503_and_the_retry_is_accepted_once(private, tmp_path):
    settings = private.model_copy(update={"media_uri": str(tmp_path / "media")})
    media_root = tmp_path / "media"
    r = redis.Redis.from_url(settings.redis)
    r.flushdb()
    name = {data: f"{hashlib.sha256(data).hexdigest()}.png" for data in (PNG_A, PNG_B)}
    with TestClient(create_app(settings, warm=False), headers=bearer(settings, "u1")) as client:
        # accepted before the fault: must survive it
        assert client.post("/v1/events", json=events("e0")).json() == {"accepted": 1, "duplicates": 0}
        assert upload(client, "p0", PNG_A).status_code == 202
        services_down(settings, ["redis"])
        try:
            assert_unavailable(client.post("/v1/events", json=events("e0", "e1", "e2")), "ingest queue", settings)
            # new bytes: stored by this request, then removed (nothing refers to them)
            assert_unavailable(upload(client, "p1", PNG_B), "ingest queue", settings)
            # bytes an accepted post shares: kept
            assert_unavailable(upload(client, "p2", PNG_A), "ingest queue", settings)
            assert media_files(media_root) == [name[PNG_A]]
            assert_unavailable(client.get("/v1/posts/p0/stats"), "moderation store", settings)
        finally:
            services_up(settings, ["redis"])

        # the same app, the clients retry with the same ids
        deadline = time.monotonic() + RECOVERY_S
        while (res := client.post("/v1/events", json=events("e0", "e1", "e2"))).status_code == 503:
            assert time.monotonic() < deadline, res.text
            time.sleep(0.2)
        assert res.status_code == 202 and res.json() == {"accepted": 2, "duplicates": 1}
        assert client.post("/v1/events", json=events("e0", "e1", "e2")).json() == {"accepted": 0, "duplicates": 3}
        for pid, data in (("p1", PNG_B), ("p2", PNG_A)):
            res = upload(client, pid, data)
            assert res.status_code == 202 and res.json()["duplicate"] is False, res.text
            assert upload(client, pid, data).json()["duplicate"] is True
    assert stream_ids(r, EVENTS_STREAM) == ["e0", "e1", "e2"]  # e0 from before the fault: kept, not repeated
    assert stream_ids(r, POSTS_STREAM) == ["p0", "p1", "p2"]
    assert media_files(media_root) == sorted(name.values())


def stop_postgres(settings: Settings) -> None:
    """Stop the private Postgres. Its smart shutdown (SIGTERM) would wait for the pool's connections to close:
    after 3 s the manager kills it, the harder fault anyway; then wait until its port is free."""
    SERVICES["postgres"](settings).stop(timeout=3)
    deadline = time.monotonic() + 10
    while port_open("127.0.0.1", settings.postgres_port):
        assert time.monotonic() < deadline, "Postgres still listens after it was stopped"
        time.sleep(0.1)


def _seed(settings: Settings, encoder) -> None:
    """The served Postgres tables, with one indexed post (so search and similar posts return a result)."""
    with psycopg.connect(settings.postgres) as conn:
        moderation.ensure_tables(conn)
        trends_store.ensure_tables(conn)
        vectors.ensure_tables(conn)
        day = dt.date.today().isoformat()
        meta = {"post_id": "s1", "author_id": "u1", "author_handle": "ana", "hashtags": ["flood"], "day": day,
                "created_at": f"{day}T09:00:00+00:00", "language": "en", "action": "allow", "content_hash": "h1",
                "embedding_version": encoder.version}
        text = "river flood downtown streets under water"
        vectors.sync_day(conn, settings.postgres, day, [("s1", meta, text, encoder.encode(text))])
        vectors.refresh_directory(conn)
        # a decision whose stored reason holds the media file's location (kept for reviewers, never served)
        conn.execute(
            """INSERT INTO moderation.decisions (post_id, author_id, action, reasons, media_status, policy_version,
                   text_model_version, media_model_version, decided_at, created_at, event_date)
               VALUES ('d1', 'u1', 'review', %s, 'error', 'p1', 't1', 'm1', now(), now(), current_date)""",
            ([f"media could not be analysed: unreadable: No such file or directory "
              f"(file://{settings.media}/ab/ab12.png)"],))


def test_postgres_stopped_reads_are_503_and_200_once_it_is_back(private, tmp_path):
    settings = private.model_copy(update={"media_uri": str(tmp_path / "media")})
    redis.Redis.from_url(settings.redis).flushdb()
    reads = {
        "moderation store": lambda c: c.get("/v1/posts/t1/moderation"),
        "decision": lambda c: c.get("/v1/posts/d1/moderation"),
        "search index": lambda c: c.get("/v1/search", params={"q": "flood downtown"}),
        "similar": lambda c: c.get("/v1/posts/s1/similar"),
        "trends store": lambda c: c.get("/v1/trends", params={"window": "24h"}),
        "suggest": lambda c: c.post("/v1/hashtags/suggest", json={"text": "the river is flooding downtown"}),
    }
    store_of = {"similar": "search index", "suggest": "search index", "decision": "moderation store"}

    def all_reads(client) -> dict:
        # concurrently: the pool holds several connections, all of which Postgres drops when it stops
        with ThreadPoolExecutor(len(reads)) as pool:
            futures = {name: pool.submit(read, client) for name, read in reads.items()}
            return {name: f.result() for name, f in futures.items()}

    with TestClient(create_app(settings, warm=False), headers=bearer(settings, "u1")) as client:
        _seed(settings, client.app.state.stores.query_encoder)
        post = json.dumps({"post_id": "t1", "author_id": "u1", "kind": "text", "caption": "pending post"})
        assert client.post("/v1/posts", files={"post": (None, post)}).status_code == 202
        before = all_reads(client)
        assert {name: res.status_code for name, res in before.items()} == dict.fromkeys(reads, 200), \
            {n: r.text for n, r in before.items()}
        assert before["moderation store"].json()["status"] == "pending"
        assert [p["post_id"] for p in before["search index"].json()["posts"]] == ["s1"]
        decision = before["decision"].json()
        assert decision["action"] == "review" and decision["reasons"] == ["media could not be analysed: unreadable"]
        assert "file:" not in before["decision"].text

        stop_postgres(settings)
        try:
            for name, res in all_reads(client).items():
                assert_unavailable(res, store_of.get(name, name), settings)
        finally:
            services_up(settings, ["postgres"])

        # Postgres answers again: the very next reads are served (the pool drops the connections Postgres
        # closed and reconnects at once, without a restart of the API)
        started = time.monotonic()
        after = all_reads(client)
        assert {name: res.status_code for name, res in after.items()} == dict.fromkeys(reads, 200), \
            {n: r.text for n, r in after.items()}
        assert time.monotonic() - started < RECOVERY_S
        assert after["search index"].json()["posts"] == before["search index"].json()["posts"]
        assert after["moderation store"].json()["status"] == "pending"

        # a restart between two reads: every pooled connection is dead, none may be handed out
        stop_postgres(settings)
        services_up(settings, ["postgres"])
        again = all_reads(client)
        assert {name: res.status_code for name, res in again.items()} == dict.fromkeys(reads, 200), \
            {n: r.text for n, r in again.items()}
