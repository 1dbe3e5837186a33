"""One ConfigurableResource per external system. ``build_resources`` is the one place that picks
local (embedded) versus production stores: it reads the typed settings, which read the environment."""

from __future__ import annotations

from contextlib import contextmanager

import dagster as dg
from pydantic import PrivateAttr

from socialpulse.settings import Settings, get_settings


class LakeResource(dg.ConfigurableResource):
    """The Delta lake root (local folder or object-store URI)."""

    root: str

    def table_uri(self, layer: str, name: str) -> str:
        return f"{self.root.rstrip('/')}/{layer}/{name}"


class PostgresResource(dg.ConfigurableResource):
    """Postgres (pgvector, serving tables, metrics, dbt)."""

    dsn: str

    @contextmanager
    def connect(self, autocommit: bool = False):
        import psycopg

        with psycopg.connect(self.dsn, autocommit=autocommit, connect_timeout=5) as conn:
            yield conn


class RedisResource(dg.ConfigurableResource):
    """Redis: ingest streams and the Feast online store."""

    url: str

    def client(self):
        import redis

        return redis.Redis.from_url(self.url, decode_responses=False)


class SparkResource(dg.ConfigurableResource):
    """A Spark Connect endpoint (Sail locally, a Spark 4 cluster in production)."""

    remote: str
    _session = PrivateAttr(default=None)

    def session(self):
        """The session, after checking that the server answers (a clear error at once, not minutes of
        client retries, when Spark Connect is down)."""
        from socialpulse.spark import SparkUnavailable, probe, spark_session

        try:
            if self._session is None:
                self._session = spark_session(self.remote)
            else:
                probe(self.remote)
        except SparkUnavailable as exc:  # the run fails with this as its headline, not a stack of gRPC retries
            raise dg.Failure(description=str(exc), allow_retries=True) from None
        return self._session


class MLflowResource(dg.ConfigurableResource):
    """MLflow tracking server and model registry."""

    tracking_uri: str

    def client(self):
        import mlflow

        mlflow.set_tracking_uri(self.tracking_uri)
        return mlflow.MlflowClient(self.tracking_uri)

    def ping(self) -> bool:
        import urllib.request

        with urllib.request.urlopen(self.tracking_uri.rstrip("/") + "/health", timeout=3) as r:
            return r.status == 200


class SettingsResource(dg.ConfigurableResource):
    """The typed settings object, for pure functions that take ``Settings``."""

    def get(self) -> Settings:
        return get_settings()


def build_resources(settings: Settings | None = None) -> dict:
    s = settings or get_settings()
    return {
        "lake": LakeResource(root=s.lake),
        "postgres": PostgresResource(dsn=s.postgres),
        "redis": RedisResource(url=s.redis),
        "spark": SparkResource(remote=s.spark),
        "mlflow": MLflowResource(tracking_uri=s.mlflow),
        "settings": SettingsResource(),
    }
