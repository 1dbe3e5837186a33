"""The embedded services really run, answer, and are managed idempotently."""

import socket
import urllib.request

import psycopg
import pytest
import redis

from socialpulse.services.manager import Redis, ServiceError, services_status, services_up
from socialpulse.settings import Settings

pytestmark = pytest.mark.integration


def test_every_store_is_running_and_answers(stack):
    by_name = {s.name: s for s in services_status(stack)}
    for name in ("postgres", "redis", "spark", "mlflow"):
        assert by_name[name].state == "running", by_name[name]
        assert by_name[name].pid
    with psycopg.connect(stack.postgres) as conn:
        exts = {r[0] for r in conn.execute("SELECT extname FROM pg_extension")}
    assert {"vector", "pg_trgm"} <= exts
    assert redis.Redis.from_url(stack.redis).ping()
    with urllib.request.urlopen(stack.mlflow + "/health", timeout=5) as r:
        assert r.status == 200


def test_spark_connect_runs_a_query(stack):
    from socialpulse.spark import spark_session

    spark = spark_session(stack.spark)
    assert spark.sql("SELECT 40 + 2 AS x").collect()[0]["x"] == 42


def test_up_is_idempotent(stack):
    before = {s.name: s.pid for s in services_status(stack)}
    services_up(stack)
    after = {s.name: s.pid for s in services_status(stack)}
    assert before == after


def test_a_taken_port_gives_a_clear_error(tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(1)
        port = sock.getsockname()[1]
        s = Settings(home=tmp_path, redis_port=port)
        with pytest.raises(ServiceError, match=f"port 127.0.0.1:{port} is already taken"):
            Redis(s).start()


def test_an_external_url_replaces_the_embedded_service(tmp_path):
    s = Settings(home=tmp_path, redis_url="redis://redis.example.internal:6379/0")
    st = Redis(s).start()
    assert st.state == "external" and st.url == "redis://redis.example.internal:6379/0"
    assert not (tmp_path / "run" / "redis.pid").exists()
