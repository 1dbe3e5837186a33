"""Clients never see internals: with every store unreachable, each 503 and /readyz name the store in product
terms and carry the request id and a Retry-After, but no host, port, file path or exception text; the
detail is in the server log under that request id."""

from __future__ import annotations

import logging
import re

import pytest
from fastapi.testclient import TestClient

from serving import deps
from serving.app import create_app
from serving.errors import RETRY_AFTER_S
from socialpulse.services.manager import free_port
from socialpulse.settings import Settings
from tests.tokens import bearer

#: exception class names and traceback markers (our own messages never contain them)
CLASS_NAME = re.compile(r"\b[A-Za-z]*(Error|Exception|Timeout|Refused)\b|Errno|Traceback")


def assert_no_internals(text: str, settings: Settings, tmp_path) -> None:
    for port in (settings.postgres_port, settings.redis_port, settings.mlflow_port):
        assert str(port) not in text, text
    for secret in ("127.0.0.1", "localhost", "file:", str(tmp_path), "/tmp", settings.media):
        assert secret not in text, (secret, text)
    assert not CLASS_NAME.search(text), text


@pytest.fixture
def down(tmp_path, monkeypatch):
    """An app whose stores all refuse connections (free ports nobody listens on; the media root is a file)."""
    monkeypatch.setattr(deps, "PG_POOL_TIMEOUT_S", 1)  # the pool's wait, not the point of this test
    (tmp_path / "media-is-a-file").write_text("")
    settings = Settings(home=tmp_path / "home", postgres_port=free_port(), redis_port=free_port(),
                        mlflow_port=free_port(), media_uri=str(tmp_path / "media-is-a-file"))
    with TestClient(create_app(settings, warm=False), headers=bearer(settings, "u1")) as client:
        yield client, settings


def test_readyz_reports_failures_without_internals(down, tmp_path, caplog):
    client, settings = down
    with caplog.at_level(logging.WARNING, logger="serving"):
        res = client.get("/readyz", headers={"x-request-id": "ready-1"})
    assert res.status_code == 503 and res.headers["retry-after"] == str(RETRY_AFTER_S)
    body = res.json()
    assert body["request_id"] == "ready-1" and body["status"] == "unavailable"
    assert {name: (c["ok"], c["detail"]) for name, c in body["checks"].items()} == {
        "postgres": (False, "unavailable"), "redis": (False, "unavailable"), "media": (False, "not writable"),
        "mlflow": (False, "unavailable"), "feast_online": (False, "unavailable"), "auth": (True, "ok"),
    }
    assert all(c["ms"] >= 0 for c in body["checks"].values())
    assert body["error"] == ("not ready: postgres (unavailable); redis (unavailable); media (not writable); "
                             "mlflow (unavailable); feast_online (unavailable)")
    assert_no_internals(res.text, settings, tmp_path)
    # the detail is logged under the request id
    logged = [r.getMessage() for r in caplog.records if "ready-1" in r.getMessage()]
    assert any(f"127.0.0.1:{settings.redis_port}" in m for m in logged), logged
    assert any("postgres" in m and str(settings.postgres_port) in m for m in logged), logged


STORE_READS = [
    ("get", "/v1/search?q=street+food", None, "the search index is unreachable"),
    ("get", "/v1/trends", None, "the trends store is unreachable"),
    ("get", "/v1/posts/p1/moderation", None, "the moderation store is unreachable"),
    ("get", "/v1/posts/p1/similar", None, "the moderation store is unreachable"),  # the Redis gate comes first
    ("get", "/v1/posts/p1/stats", None, "the moderation store is unreachable"),
    ("post", "/v1/hashtags/suggest", {"json": {"text": "street food in the rain"}}, "the search index is unreachable"),
    ("post", "/v1/events", {"json": {"events": [{"event_id": "e1", "event_type": "like", "user_id": "u1",
                                                  "post_id": "p1"}]}}, "the ingest queue is unreachable"),
    ("post", "/v1/posts", {"files": {"post": (None, '{"post_id": "t1", "author_id": "u1", "kind": "text", '
                                                    '"caption": "hello"}')}}, "the ingest queue is unreachable"),
]


@pytest.mark.parametrize("method, url, kwargs, message", STORE_READS, ids=[r[1] for r in STORE_READS])
def test_unreachable_stores_are_503_without_internals(down, tmp_path, caplog, method, url, kwargs, message):
    client, settings = down
    with caplog.at_level(logging.WARNING, logger="serving"):
        res = getattr(client, method)(url, headers={"x-request-id": "rid-7"}, **(kwargs or {}))
    assert res.status_code == 503, res.text
    assert res.headers["retry-after"] == str(RETRY_AFTER_S)
    assert res.json() == {"error": f"{message}; retry in a few seconds", "request_id": "rid-7"}
    assert_no_internals(res.text, settings, tmp_path)
    # the server log keeps the cause (its class and text), under the id the client was given
    logged = [r.getMessage() for r in caplog.records if "request_id=rid-7" in r.getMessage()]
    assert logged and CLASS_NAME.search(logged[-1]), logged


def test_an_upload_stores_nothing_when_the_queue_is_unreachable(down, tmp_path):
    client, settings = down
    media_root = tmp_path / "media"
    with TestClient(create_app(settings.model_copy(update={"media_uri": str(media_root)}), warm=False),
                    headers=bearer(settings, "u1")) as c:
        res = c.post("/v1/posts", files={
            "post": (None, '{"post_id": "v1", "author_id": "u1", "kind": "image"}'),
            "media": ("a.png", b"\x89PNG\r\n\x1a\n" + b"\x00" * 200, "image/png"),
        })
    assert res.status_code == 503 and res.headers["retry-after"] == str(RETRY_AFTER_S)
    assert_no_internals(res.text, settings, tmp_path)
    assert [p for p in media_root.rglob("*") if p.is_file()] == []


def test_moderation_reasons_name_unanalysable_media_by_code_only():
    from serving.api.routes.posts import public_reason

    assert public_reason("media could not be analysed: unreadable: No such file or directory "
                         "(file:///srv/socialpulse/media/ab/ab12.png)") == "media could not be analysed: unreadable"
    assert public_reason("media could not be analysed: corrupt_image: cannot decode JPEG image: broken data "
                         "stream when reading image file") == "media could not be analysed: corrupt_image"
    assert public_reason("media could not be analysed: empty") == "media could not be analysed: empty"
    reason = "hate speech in caption: 0.91 >= 0.85"
    assert public_reason(reason) == reason


def test_a_request_beyond_the_pool_queue_is_shed_at_once_as_busy():
    """Load shedding: with the pool's wait queue full, one more request is a 503 "busy" with a 1 s
    Retry-After at once, not a wait of the pool timeout (a real pool, whose store never answers)."""
    import asyncio
    import threading
    import time

    from psycopg_pool import ConnectionPool, PoolTimeout

    from serving.errors import BUSY_RETRY_AFTER_S, StoreBusy, call_store

    pool = ConnectionPool(f"postgresql://postgres@127.0.0.1:{free_port()}/x", min_size=0, max_size=1, max_waiting=1,
                          timeout=3, reconnect_timeout=1, kwargs={"connect_timeout": 1}, open=True)
    try:
        waiting = threading.Thread(target=lambda: pytest.raises(PoolTimeout, pool.getconn), daemon=True)
        waiting.start()
        deadline = time.monotonic() + 2
        while pool.get_stats().get("requests_waiting", 0) < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert pool.get_stats().get("requests_waiting") == 1

        def take():
            with pool.connection():
                pass

        t0 = time.monotonic()
        with pytest.raises(StoreBusy) as shed:
            asyncio.run(call_store("feed", take))
        assert time.monotonic() - t0 < 1.0
        assert shed.value.status_code == 503 and shed.value.headers == {"Retry-After": str(BUSY_RETRY_AFTER_S)}
        assert shed.value.message == "the feed is busy; retry in a second"
        waiting.join(5)
    finally:
        pool.close()
