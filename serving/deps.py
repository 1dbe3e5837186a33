"""Typed dependencies: the settings and the store clients, created once per app (lazily, then cached)."""

from __future__ import annotations

import threading
from typing import Annotated

import redis
from fastapi import Depends, Request
from psycopg_pool import ConnectionPool
from redis.backoff import ExponentialWithJitterBackoff
from redis.retry import Retry

from socialpulse.settings import Settings

#: a read waits at most this long for a Postgres connection before it is a 503
PG_POOL_TIMEOUT_S = 5
#: the pool gives up one reconnection attempt after this long (it then starts a fresh one on the next
#: request), so a Postgres that comes back is used within seconds, not after a long exponential backoff
PG_RECONNECT_TIMEOUT_S = 3
#: Redis commands retry a dropped connection twice, briefly: a restarted Redis is reconnected at once,
#: and a stopped one is reported in well under a second (redis-py's default backoff waits up to 14 s)
REDIS_RETRY = Retry(ExponentialWithJitterBackoff(base=0.05, cap=0.5), retries=2)
_ENCODER_LOAD = threading.Lock()


class Stores:
    """The app's store clients. Nothing connects until first use; ``close`` releases everything."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self._lock = threading.Lock()
        self._redis: redis.Redis | None = None
        self._pg: ConnectionPool | None = None
        self._encoder = None

    @property
    def redis(self) -> redis.Redis:
        with self._lock:
            if self._redis is None:
                self._redis = redis.Redis.from_url(
                    self.settings.redis,
                    socket_connect_timeout=2,
                    socket_timeout=5,
                    health_check_interval=30,
                    retry=REDIS_RETRY,
                )
            return self._redis

    @property
    def pg_pool(self) -> ConnectionPool:
        with self._lock:
            if self._pg is None:
                self._pg = ConnectionPool(
                    self.settings.postgres,
                    min_size=0,
                    max_size=10,
                    timeout=PG_POOL_TIMEOUT_S,
                    kwargs={"connect_timeout": 3},
                    check=self._check_pg,
                    reconnect_timeout=PG_RECONNECT_TIMEOUT_S,
                    open=True,
                    name="serving",
                )
            return self._pg

    def _check_pg(self, conn) -> None:
        """Checked before each checkout: a connection Postgres dropped (a restart) is never handed out.
        On the first dead one, every idle connection is checked at once: after a restart they are all
        dead, and the pool would otherwise pause between discarding them one checkout at a time."""
        try:
            ConnectionPool.check_connection(conn)
        except Exception:
            if self._pg is not None:
                self._pg.check()
            raise

    @property
    def query_encoder(self) -> "QueryEncoder":
        with self._lock:
            if self._encoder is None:
                self._encoder = QueryEncoder()
            return self._encoder

    def close(self) -> None:
        with self._lock:
            if self._redis is not None:
                self._redis.close()
                self._redis = None
            if self._pg is not None:
                self._pg.close()
                self._pg = None


class QueryEncoder:
    """The MiniLM encoder the search index was built with, for query texts. Loaded on first use (torch is
    imported then, not at app start); calls are serialised because the fast tokenizer is not thread-safe,
    and one short query takes milliseconds."""

    def __init__(self):
        from socialpulse.encoder import TextEncoder

        # loaded here, one load at a time in the process: transformers' lazy imports are not thread-safe
        # (a warm-up thread and a request loading at once got "cannot import name 'AutoModel'")
        with _ENCODER_LOAD:
            self._encoder = TextEncoder(batch_size=1, max_length=64).load()
        self._lock = threading.Lock()

    @property
    def version(self) -> str:
        return self._encoder.version

    def encode(self, text: str):
        with self._lock:
            return self._encoder.encode([text])[0]


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_stores(request: Request) -> Stores:
    stores = getattr(request.app.state, "stores", None)
    if stores is None:  # app used without its lifespan (e.g. a TestClient outside ``with``)
        stores = request.app.state.stores = Stores(request.app.state.settings)
    return stores


def get_redis(stores: Annotated[Stores, Depends(get_stores)]) -> redis.Redis:
    return stores.redis


def get_pg_pool(stores: Annotated[Stores, Depends(get_stores)]) -> ConnectionPool:
    return stores.pg_pool


SettingsDep = Annotated[Settings, Depends(get_settings)]
StoresDep = Annotated[Stores, Depends(get_stores)]
RedisDep = Annotated[redis.Redis, Depends(get_redis)]
PgPoolDep = Annotated[ConnectionPool, Depends(get_pg_pool)]
