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
#: load shedding: at most this many requests wait for a pooled Postgres connection; one more is answered
#: 503 "busy" at once (with a short Retry-After) instead of queueing for seconds behind the others
PG_POOL_MAX_WAITING = 32
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
        self._ranker: RankerHolder | None = None

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
                    max_waiting=PG_POOL_MAX_WAITING,
                    # autocommit: the tier only reads, and a transaction cost each request two more round
                    # trips (BEGIN before its statement, COMMIT when the connection went back)
                    kwargs={"connect_timeout": 3, "autocommit": True},
                    check=self._check_pg,
                    configure=_configure_pg,
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
    def ranker(self) -> "RankerHolder":
        with self._lock:
            if self._ranker is None:
                self._ranker = RankerHolder(self.settings)
            return self._ranker

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


def _configure_pg(conn) -> None:
    from socialpulse.vectors import configure_session

    configure_session(conn)


class RankerHolder:
    """The champion feed ranker, loaded from the MLflow registry off the request path and re-checked every
    :data:`RANKER_CHECK_S` seconds. ``get()`` never blocks on MLflow: until a champion is loaded (none
    registered, MLflow down) it returns None and the feed ranks with the heuristic, saying so."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self._ranker = None
        self._checked = float("-inf")
        self._loading = threading.Lock()
        self.error: str | None = None

    def _refresh(self) -> None:
        from socialpulse.model_registry import RegistryUnavailable
        from socialpulse.ranking import registry

        try:
            info = registry.champion_info(self.settings.mlflow)
            if info is None:
                self.error = "no champion feed ranker is registered yet"
            elif self._ranker is None or info["model_version"] != self._ranker.version:
                self._ranker = registry.load_champion(self.settings.mlflow, self.settings.model_cache)
                self.error = None
            else:
                self.error = None
        except (RegistryUnavailable, OSError, ValueError, LookupError) as exc:
            self.error = f"the model registry is unavailable ({type(exc).__name__})"
        except Exception as exc:  # noqa: BLE001 - a broken registry must never break the feed
            self.error = f"the champion ranker could not be loaded ({type(exc).__name__})"
        finally:
            self._loading.release()

    def get(self):
        import time

        now = time.monotonic()
        if now - self._checked >= RANKER_CHECK_S and self._loading.acquire(blocking=False):
            self._checked = now
            threading.Thread(target=self._refresh, name="ranker-refresh", daemon=True).start()
        return self._ranker

    def load_now(self):
        """Load (or re-check) synchronously: used at startup and by tests."""
        self._loading.acquire()
        self._checked = __import__("time").monotonic()
        self._refresh()
        return self._ranker


#: how often the API asks the registry whether the champion changed
RANKER_CHECK_S = 60.0


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
