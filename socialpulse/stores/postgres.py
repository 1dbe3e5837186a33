"""Postgres: connections, the one-off database bootstrap, and capability probes."""

from __future__ import annotations

from contextlib import contextmanager
from urllib.parse import urlsplit, urlunsplit

import psycopg

from socialpulse.settings import Settings

EXTENSIONS = ("vector", "pg_trgm")


def _with_db(dsn: str, db: str) -> str:
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path="/" + db))


@contextmanager
def connect(settings: Settings, *, autocommit: bool = False, dsn: str | None = None):
    with psycopg.connect(dsn or settings.postgres, autocommit=autocommit, connect_timeout=5) as conn:
        yield conn


def bootstrap_database(settings: Settings) -> None:
    """Create the project database and its extensions if missing (idempotent)."""
    if settings.postgres_dsn is None:
        admin = _with_db(settings.postgres, "postgres")
        with psycopg.connect(admin, autocommit=True, connect_timeout=5) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (settings.postgres_db,)).fetchone()
            if not exists:
                conn.execute(f'CREATE DATABASE "{settings.postgres_db}"')
    with connect(settings, autocommit=True) as conn:
        for ext in EXTENSIONS:
            conn.execute(f"CREATE EXTENSION IF NOT EXISTS {ext}")


def has_extension(conn: psycopg.Connection, name: str) -> bool:
    """Whether an extension is installed in this database, or available to install."""
    row = conn.execute("SELECT 1 FROM pg_available_extensions WHERE name = %s", (name,)).fetchone()
    return row is not None


def relation_exists(conn: psycopg.Connection, name: str) -> bool:
    """Whether a table or index (``schema.name``) exists: readers answer "not built yet" instead of failing."""
    return conn.execute("SELECT to_regclass(%s)", (name,)).fetchone()[0] is not None
