"""Test tiers: unit (pure functions), definitions, integration (real embedded services), e2e.

The ``stack`` fixture starts the real embedded services once per test session in a temporary state
folder on free 127.0.0.1 ports, and stops them by the PIDs it started.
"""

from __future__ import annotations

import itertools
import os
import shutil
import tempfile
from pathlib import Path

import pytest

from socialpulse.runtime import OFFLINE_DEFAULTS
from tests.tokens import bearer

# the offline defaults before any test imports transformers, dbt, GX or Spark
for _k, _v in OFFLINE_DEFAULTS.items():
    os.environ.setdefault(_k, _v)


@pytest.fixture(scope="session")
def state_folder():
    """``state_folder(name)``: a fresh state folder for embedded services, removed at the end of the session.

    Not under pytest's temporary root: run as root, embedded Postgres runs as its own user and must traverse
    the path to its data folder for as long as it runs, and every pytest session that starts on the machine
    resets that root to mode 0700 (a second session would shut this one's Postgres down)."""
    made: list[Path] = []

    def make(name: str) -> Path:
        made.append(Path(tempfile.mkdtemp(prefix=f"socialpulse-{name}-")))
        return made[-1]

    yield make
    for folder in made:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def stack(state_folder):
    """Settings pointing at freshly started embedded Postgres, Redis, Spark Connect (Sail) and MLflow."""
    from socialpulse import settings as settings_mod
    from socialpulse.services import services_down, services_up
    from socialpulse.services.manager import isolated_env

    home = state_folder("stack")
    env = isolated_env(home)
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    settings_mod.get_settings.cache_clear()
    settings = settings_mod.get_settings()
    (home / "dagster").mkdir(exist_ok=True)
    try:
        services_up(settings)
        yield settings
    finally:
        from socialpulse.spark import stop_sessions

        stop_sessions()
        services_down(settings)
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        settings_mod.get_settings.cache_clear()


@pytest.fixture(scope="session")
def own_stores(stack, state_folder):
    """``with own_stores(name, redis_db=None) as settings``: Settings on the session's servers with a state
    folder (lake, media), a Postgres database ``<name>_test`` and, when given, a flushed Redis database of
    their own, so a module's synthetic world never reaches other modules' results."""
    import contextlib

    import psycopg

    from socialpulse import settings as settings_mod

    @contextlib.contextmanager
    def make(name: str, redis_db: int | None = None):
        home = state_folder(name)
        with psycopg.connect(stack.postgres, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name}_test")
            conn.execute(f"CREATE DATABASE {name}_test")
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("SOCIALPULSE_HOME", str(home))
            mp.setenv("SOCIALPULSE_POSTGRES_DB", f"{name}_test")
            if redis_db is not None:
                mp.setenv("SOCIALPULSE_REDIS_URL", f"redis://127.0.0.1:{stack.redis_port}/{redis_db}")
            settings_mod.get_settings.cache_clear()
            settings = settings_mod.get_settings()
            if redis_db is not None:
                import redis

                redis.Redis.from_url(settings.redis).flushdb()
            try:
                yield settings
            finally:
                settings_mod.get_settings.cache_clear()

    return make


@pytest.fixture(scope="session")
def materialize(stack):
    """``materialize(assets, day, checks=(), settings=None)``: run Dagster assets (and their checks) for one
    daily partition (``day`` None: unpartitioned assets) in process on the ``stack`` (or ``settings``); fails
    the test on a failed step or check; returns each asset's materialization metadata by the last part of
    its key."""
    import dagster as dg

    from orchestration.resources import build_resources

    def run(assets_, day, checks=(), settings=None):
        result = dg.materialize([*assets_, *checks], resources=build_resources(settings or stack),
                                partition_key=day.isoformat() if day else None, raise_on_error=False)
        assert result.success, [e.message for e in result.all_events if e.is_failure]
        for ev in result.get_asset_check_evaluations():
            assert ev.passed, (ev.check_name, ev.metadata)
        return {e.asset_key.path[-1]: {k: v.value for k, v in e.event_specific_data.materialization.metadata.items()}
                for e in result.get_asset_materialization_events()}

    return run


@pytest.fixture
def local_settings(tmp_path, monkeypatch):
    """Settings with a fresh state folder and no services (for lake-only tests)."""
    from socialpulse import settings as settings_mod

    monkeypatch.setenv("SOCIALPULSE_HOME", str(tmp_path / "home"))
    settings_mod.get_settings.cache_clear()
    yield settings_mod.get_settings()
    settings_mod.get_settings.cache_clear()


@pytest.fixture(scope="session")
def redis_only(state_folder):
    """A real embedded Redis started alone, for paths that need no other store (ingest, drain)."""
    from socialpulse.services import services_down, services_up
    from socialpulse.settings import Settings

    from socialpulse.services.manager import free_port

    # Postgres on a port nothing listens on: a path that writes there by the way (the drain's follower
    # notifications) must not reach a Postgres another process runs on the default port
    settings = Settings(home=state_folder("redis"), redis_port=free_port(), postgres_port=free_port())
    services_up(settings, ["redis"])
    try:
        yield settings
    finally:
        services_down(settings, ["redis"])


_redis_dbs = itertools.cycle(range(1, 16))


@pytest.fixture
def redis_settings(redis_only, tmp_path):
    """Factory of Settings on the real Redis with this test's own (flushed) database, lake and media store."""
    import redis

    def make(**overrides):
        settings = redis_only.model_copy(update={
            "redis_url": f"redis://127.0.0.1:{redis_only.redis_port}/{next(_redis_dbs)}",
            "lake_uri": str(tmp_path / "lake"),
            "media_uri": str(tmp_path / "media"),
            **overrides,
        })
        redis.Redis.from_url(settings.redis).flushdb()
        return settings

    return make


@pytest.fixture(scope="session")
def auth_headers():
    """``auth_headers(settings, user_id, role='user')``: see :func:`bearer`."""
    return bearer
