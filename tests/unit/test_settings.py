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


#: a production configuration that passes every check (external stores over TLS, an identity provider, keys)
PRODUCTION = dict(env="production", lake_uri="s3://l", media_uri="/m", storage_sse="aws:kms", storage_sse_kms_key_id="k",
                  postgres_dsn="postgresql://h/db?sslmode=verify-full", redis_url="rediss://h:6380/0",
                  spark_remote="sc://h:1", mlflow_tracking_uri="https://h", notifications_provider="webpush",
                  webpush_vapid_private_key="k", auth_jwks_url="https://id.example/jwks.json",
                  auth_issuer="https://id.example/", audit_key="s3cret")


def test_a_complete_production_configuration_starts():
    assert Settings(**PRODUCTION).env == "production"


@pytest.mark.parametrize("change, refusal", [
    ({"auth_jwks_url": None}, "development signing key"),
    ({"auth_signing_key": "/keys/dev-signing-key.pem"}, "development signing key"),
    ({"auth_issuer": "socialpulse-dev"}, "development issuer"),
    ({"audit_key": None}, "SOCIALPULSE_AUDIT_KEY"),
    ({"postgres_dsn": "postgresql://h/db"}, "sslmode=verify-full"),
    ({"postgres_dsn": "postgresql://h/db?sslmode=require"}, "sslmode=verify-full"),
    ({"redis_url": "redis://h:6379/0"}, "rediss://"),
    ({"mlflow_tracking_uri": "http://h"}, "https://"),
])
def test_production_refuses_dev_keys_and_unencrypted_connections(change, refusal):
    with pytest.raises(ValidationError, match=refusal):
        Settings(**{**PRODUCTION, **change})


def test_ca_bundles_reach_the_clients_through_their_urls(tmp_path):
    s = Settings(postgres_dsn="postgresql://h/db?sslmode=verify-full", postgres_sslrootcert=tmp_path / "ca.pem",
                 redis_url="rediss://h:6380/0", redis_ssl_ca_certs=tmp_path / "ca.pem")
    assert s.postgres == f"postgresql://h/db?sslmode=verify-full&sslrootcert={tmp_path}/ca.pem"
    assert s.redis == f"rediss://h:6380/0?ssl_ca_certs={tmp_path}/ca.pem"
    import redis

    assert redis.Redis.from_url(s.redis).connection_pool.connection_kwargs["ssl_ca_certs"] == f"{tmp_path}/ca.pem"


def test_object_storage_writes_ask_for_server_side_encryption(tmp_path):
    from socialpulse.runtime import prepare_process
    from socialpulse.settings import storage_encryption_env

    with pytest.raises(ValidationError, match="KMS_KEY_ID"):
        Settings(storage_sse="aws:kms")
    kms = Settings(home=tmp_path, storage_sse="aws:kms", storage_sse_kms_key_id="alias/lake")
    assert storage_encryption_env(kms) == {"AWS_SERVER_SIDE_ENCRYPTION": "aws:kms", "AWS_SSE_KMS_KEY_ID": "alias/lake"}
    env: dict[str, str] = {}
    prepare_process(kms, env)  # every process the platform starts: delta-rs' object store reads these
    assert env["AWS_SERVER_SIDE_ENCRYPTION"] == "aws:kms" and env["AWS_SSE_KMS_KEY_ID"] == "alias/lake"
    assert storage_encryption_env(Settings()) == {}
    with pytest.raises(ValidationError, match="needs SOCIALPULSE_STORAGE_SSE"):
        Settings(**{**PRODUCTION, "storage_sse": "none"})
