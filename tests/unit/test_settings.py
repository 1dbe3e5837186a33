import pytest
from pydantic import ValidationError

from socialpulse.settings import Settings


def test_embedded_defaults_live_under_the_state_folder(tmp_path):
    s = Settings(home=tmp_path)
    assert s.lake == str(tmp_path / "lake")
    assert s.table_uri("bronze", "posts") == f"{tmp_path}/lake/bronze/posts"
    assert s.postgres.startswith("postgresql://postgres@127.0.0.1:")
    assert s.redis == f"redis://127.0.0.1:{s.redis_port}/0"


def test_external_urls_replace_the_embedded_ones(monkeypatch):
    monkeypatch.setenv("SOCIALPULSE_REDIS_URL", "redis://cache.internal:6379/2")
    monkeypatch.setenv("SOCIALPULSE_LAKE_URI", "s3://lake")
    s = Settings()
    assert s.redis == "redis://cache.internal:6379/2"
    assert s.table_uri("bronze", "posts") == "s3://lake/bronze/posts"


def test_production_refuses_embedded_defaults(monkeypatch):
    monkeypatch.setenv("SOCIALPULSE_ENV", "production")
    monkeypatch.setenv("SOCIALPULSE_REDIS_URL", "redis://cache:6379/0")
    with pytest.raises(ValidationError, match="SOCIALPULSE_POSTGRES_DSN"):
        Settings()
