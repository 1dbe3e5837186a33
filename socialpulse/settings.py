"""One typed settings object, read from environment variables (prefix ``SOCIALPULSE_``).

Every store has an embedded default under the state folder and an external URL/DSN setting. When the
URL/DSN of a store is set, the embedded service for it is not started and the URL is used as is.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

#: the probability at which a virality prediction reads "likely viral" (the API's flag, the author's notification)
LIKELY_VIRAL = 0.5

MiB = 1024 * 1024


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SOCIALPULSE_", extra="ignore")

    env: Literal["local", "production"] = "local"
    home: Path = Field(default=Path(".socialpulse"), description="state folder for every embedded service")

    # external stores: when set, the embedded service is not started
    lake_uri: str | None = Field(default=None, description="Delta lake root (local path or s3:// URI)")
    media_uri: str | None = Field(default=None, description="media store root (local path)")
    postgres_dsn: str | None = None
    redis_url: str | None = None
    spark_remote: str | None = Field(default=None, description="Spark Connect URL, e.g. sc://host:15002")
    mlflow_tracking_uri: str | None = None

    # embedded service ports (127.0.0.1 only)
    postgres_port: int = 55432
    redis_port: int = 56379
    spark_port: int = 50051
    mlflow_port: int = 5050
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    api_workers: int = Field(default=1, ge=1, le=64, description="uvicorn worker processes of the embedded API: one "
                             "Python process serves at most ~50 feed requests/s (about 19 ms of CPU each), so a "
                             "machine that serves more runs one per core (the feed bench runs 2 on its 2 cores)")
    dagster_port: int = 3000

    postgres_db: str = "socialpulse"
    postgres_shared_buffers: str = Field(
        default="2GB", pattern=r"^[0-9]+(kB|MB|GB)$",
        description="the embedded Postgres's buffer cache, for the pages every feed request walks (the 1M-post "
                    "world's HNSW index is 1.9 GB; with 256MB each request re-read ~7k index pages from the OS). 4GB "
                    "held the whole index but, beside the 18 GB the full-scale ranker training took, the 24 GB "
                    "machine ran out of memory. Memory is touched only as used")
    partitions_start: str = Field(default="2026-01-01", description="first UTC day of the daily partitions")
    dbt_docs_dir: Path | None = Field(default=None, description="where `dbt docs generate` writes the dbt docs "
                                      "site the API serves at /analytics/dbt-docs/ (default: $HOME/dbt-docs)")
    max_upload_bytes: int = 150 * MiB
    max_event_batch: int = 1000
    drain_batch_size: int = 5000
    # automation: how often the Dagster sensors look for work and the intraday refresh runs (the live test
    # tier shortens both; read when the code location loads)
    sensor_interval_s: int = Field(default=5, ge=1, description="seconds between ticks of the ingest, "
                                   "moderation and content sensors")
    intraday_refresh_cron: str = Field(default="*/15 * * * *", description="when today's partition of the "
                                       "shared daily assets (engagement features, Feast, exports) is refreshed")
    ingest_dedupe_ttl_s: int = 7 * 24 * 3600
    # the For You feed
    feed_state_cron: str = Field(default="*/10 * * * *", description="when the feed's serving state (candidate "
                                 "lists, packed post features, per-user state) is rebuilt into Redis")
    feed_training_days: int = Field(default=14, ge=3, description="days of impressions the ranker trains on "
                                    "(the last is held out as the test split, the one before as validation)")
    # notifications (socialpulse/notifications.py)
    notifications_provider: Literal["recording", "webpush"] = Field(
        default="recording", description="how notifications are pushed: recording (the embedded default: recorded "
        "in Postgres notifications.deliveries) or webpush (Web Push with VAPID through pywebpush)")
    webpush_vapid_private_key: str | None = Field(default=None, description="the VAPID private key (a PEM file's "
                                                  "path, or the base64url DER/raw key) the webpush provider signs with")
    webpush_vapid_subject: str = Field(default="mailto:notifications@socialpulse.invalid", pattern=r"^(mailto:|https://)",
                                       description="the VAPID 'sub' claim: a contact for push services")
    notifications_viral_probability: float = Field(default=LIKELY_VIRAL, ge=0, le=1, description="a post is 'predicted to go "
                                                   "viral' (and its author told) at this virality probability")
    notifications_digest_window_s: int = Field(default=3600, ge=60, description="a digest batches one window of a "
                                               "user's new followers (for users who chose digests)")
    notifications_max_age_h: int = Field(default=48, ge=1, description="facts older than this are not notified "
                                         "(a backfill never floods anyone)")
    notifications_interval_s: int = Field(default=30, ge=1, description="seconds between ticks of the "
                                          "notification delivery sensor")

    # captions, alt-text and hashtag suggestions (assets/captions)
    captions_generator: Literal["grounded", "llama-cpp", "openai", "hf"] = Field(
        default="grounded", description="who writes caption and hashtag suggestions: grounded (composed from what was "
        "detected), llama-cpp (the embedded llama.cpp server with the shipped Gemma 3 270M GGUF), openai (any "
        "OpenAI-compatible chat server: TGI, vLLM, llama.cpp; production's Llama-3-8B + LoRA) or hf (a causal LM by path, "
        "with an optional LoRA adapter). Alt-text is always grounded")
    captions_llm_url: str | None = Field(default=None, description="the OpenAI-compatible server's base URL (openai)")
    captions_llm_model: str | None = Field(default=None, description="the model name the server serves (openai)")
    captions_llm_api_key: SecretStr | None = Field(default=None, description="the server's API key, if it asks for one")
    captions_hf_model_path: Path | None = Field(default=None, description="a causal LM folder (hf)")
    captions_hf_adapter_path: Path | None = Field(default=None, description="a LoRA adapter folder merged into it (hf)")
    captions_max_tokens: int = Field(default=64, ge=8, le=1024, description="generated tokens per post at most")
    captions_timeout_s: float = Field(default=20.0, gt=0, description="one generation request's timeout; then the "
                                      "grounded output stands in")
    captions_batch_size: int = Field(default=16, ge=1, le=512, description="posts per generation batch")
    # identity (socialpulse/auth.py): OAuth2 bearer tokens (JWT)
    auth_issuer: str = Field(default="socialpulse-dev", description="the 'iss' every token must carry (production: "
                             "the identity provider's issuer URL)")
    auth_audience: str = Field(default="socialpulse-api", description="the 'aud' every token must carry")
    auth_jwks_url: str | None = Field(default=None, description="the identity provider's JWKS URL (production); "
                                      "unset: tokens are verified against the embedded signer's key")
    auth_signing_key: Path | None = Field(default=None, description="a PEM private key the platform signs its own "
                                          "tokens with (default: a development key generated under HOME/auth/)")
    audit_key: SecretStr | None = Field(default=None, description="the key the audit log pseudonymises user and post "
                                        "ids with (default: one generated under HOME/auth/; production must set it)")
    auth_token_ttl_s: int = Field(default=24 * 3600, ge=60, description="lifetime of tokens the embedded signer issues")
    # rate limits (serving/ratelimit.py): requests per minute per token and per client IP, by budget; 0 = no limit
    rate_limit_ingest_per_min: int = Field(default=120, ge=0, description="event batches and profile writes per token")
    rate_limit_uploads_per_min: int = Field(default=30, ge=0, description="posts (with media) per token")
    rate_limit_reads_per_min: int = Field(default=600, ge=0, description="reads per token (anonymous reads: per IP)")
    rate_limit_ip_factor: int = Field(default=10, ge=1, description="a client IP's budget is this many tokens' worth "
                                      "(many users share an IP behind a NAT)")
    # encryption in transit (deploy/SECURITY.md): enforced in production
    postgres_sslrootcert: Path | None = Field(default=None, description="CA bundle the Postgres server certificate "
                                              "is verified against (with sslmode=verify-full in the DSN)")
    redis_ssl_ca_certs: Path | None = Field(default=None, description="CA bundle a rediss:// server certificate is "
                                            "verified against")
    # encryption at rest of what is written to S3-compatible storage (deploy/SECURITY.md)
    storage_sse: Literal["none", "AES256", "aws:kms"] = Field(
        default="none", description="server-side encryption every object written to S3-compatible storage (the lake "
        "and media, through object_store) asks for; production refuses an s3:// lake or media store without it")
    storage_sse_kms_key_id: str | None = Field(default=None, description="the KMS key of storage_sse=aws:kms")

    @model_validator(mode="after")
    def _refuse_unsafe_production(self) -> "Settings":
        if self.env == "production":
            missing = [
                name
                for name in ("lake_uri", "media_uri", "postgres_dsn", "redis_url", "spark_remote", "mlflow_tracking_uri")
                if getattr(self, name) is None
            ]
            if missing:
                raise ValueError(
                    "SOCIALPULSE_ENV=production refuses embedded defaults; set "
                    + ", ".join("SOCIALPULSE_" + m.upper() for m in missing)
                )
            if self.notifications_provider == "recording":
                raise ValueError("SOCIALPULSE_ENV=production refuses the recording notification provider; set "
                                 "SOCIALPULSE_NOTIFICATIONS_PROVIDER=webpush and SOCIALPULSE_WEBPUSH_VAPID_PRIVATE_KEY")
            if self.auth_jwks_url is None:
                raise ValueError("SOCIALPULSE_ENV=production refuses the embedded development signing key; set "
                                 "SOCIALPULSE_AUTH_JWKS_URL (and SOCIALPULSE_AUTH_ISSUER) to the identity provider's")
            if self.auth_signing_key is not None and self.auth_signing_key.name == "dev-signing-key.pem":
                raise ValueError("SOCIALPULSE_ENV=production refuses the development signing key "
                                 f"({self.auth_signing_key}); production tokens come from the identity provider")
            if self.auth_issuer == "socialpulse-dev":
                raise ValueError("SOCIALPULSE_ENV=production refuses the development issuer 'socialpulse-dev'; set "
                                 "SOCIALPULSE_AUTH_ISSUER to the identity provider's issuer")
            if self.audit_key is None:
                raise ValueError("SOCIALPULSE_ENV=production needs SOCIALPULSE_AUDIT_KEY (the audit log's "
                                 "pseudonymisation key, from the secret store)")
            insecure = production_transport_problems(self)
            if insecure:
                raise ValueError("SOCIALPULSE_ENV=production refuses unencrypted connections: " + "; ".join(insecure))
        if self.captions_generator == "openai" and not (self.captions_llm_url and self.captions_llm_model):
            raise ValueError("SOCIALPULSE_CAPTIONS_GENERATOR=openai needs SOCIALPULSE_CAPTIONS_LLM_URL and "
                             "SOCIALPULSE_CAPTIONS_LLM_MODEL")
        if self.captions_generator == "hf" and self.captions_hf_model_path is None:
            raise ValueError("SOCIALPULSE_CAPTIONS_GENERATOR=hf needs SOCIALPULSE_CAPTIONS_HF_MODEL_PATH")
        if self.storage_sse == "aws:kms" and not self.storage_sse_kms_key_id:
            raise ValueError("SOCIALPULSE_STORAGE_SSE=aws:kms needs SOCIALPULSE_STORAGE_SSE_KMS_KEY_ID")
        if self.notifications_provider == "webpush" and not self.webpush_vapid_private_key:
            raise ValueError("SOCIALPULSE_NOTIFICATIONS_PROVIDER=webpush needs SOCIALPULSE_WEBPUSH_VAPID_PRIVATE_KEY")
        return self

    # --- resolved locations -------------------------------------------------------------------
    @property
    def home_abs(self) -> Path:
        return self.home.expanduser().resolve()

    @property
    def lake(self) -> str:
        return self.lake_uri or str(self.home_abs / "lake")

    @property
    def media(self) -> str:
        return self.media_uri or str(self.home_abs / "media")

    @property
    def postgres(self) -> str:
        dsn = self.postgres_dsn or f"postgresql://postgres@127.0.0.1:{self.postgres_port}/{self.postgres_db}"
        return _with_query(dsn, "sslrootcert", self.postgres_sslrootcert)

    @property
    def redis(self) -> str:
        return _with_query(self.redis_url or f"redis://127.0.0.1:{self.redis_port}/0", "ssl_ca_certs",
                           self.redis_ssl_ca_certs)

    @property
    def spark(self) -> str:
        return self.spark_remote or f"sc://127.0.0.1:{self.spark_port}"

    @property
    def mlflow(self) -> str:
        return self.mlflow_tracking_uri or f"http://127.0.0.1:{self.mlflow_port}"

    @property
    def dagster_home(self) -> Path:
        return self.home_abs / "dagster"

    @property
    def model_cache(self) -> Path:
        """Where serving keeps downloaded registry models (one folder per registered version)."""
        return self.home_abs / "models"

    @property
    def dbt_docs(self) -> Path:
        return (self.dbt_docs_dir or self.home / "dbt-docs").expanduser().resolve()

    @property
    def feast_repo_state(self) -> Path:
        return self.home_abs / "feast"

    def table_uri(self, layer: str, name: str) -> str:
        return f"{self.lake.rstrip('/')}/{layer}/{name}"


def _with_query(url: str, name: str, value: Path | None) -> str:
    """``url`` with ``name=value`` added to its query (unless unset or already there): a CA bundle setting
    reaches libpq (``sslrootcert``) and redis-py (``ssl_ca_certs``) through the URL every client is built from."""
    if value is None or f"{name}=" in url:
        return url
    return f"{url}{'&' if '?' in url else '?'}{name}={value}"


#: sslmode values that encrypt and verify the Postgres server (libpq)
VERIFIED_SSLMODES = ("verify-full", "verify-ca")


def production_transport_problems(settings: Settings) -> list[str]:
    """What in the store URLs would travel unencrypted or unverified (production refuses to start with any)."""
    from urllib.parse import parse_qs, urlsplit

    problems = []
    if settings.postgres_dsn is not None:
        mode = parse_qs(urlsplit(settings.postgres_dsn).query).get("sslmode", [""])[0]
        if mode not in VERIFIED_SSLMODES:
            problems.append(f"SOCIALPULSE_POSTGRES_DSN needs sslmode=verify-full (got {mode or 'none'})")
    if settings.redis_url is not None and not settings.redis_url.startswith("rediss://"):
        problems.append("SOCIALPULSE_REDIS_URL needs the rediss:// (TLS) scheme")
    if settings.mlflow_tracking_uri is not None and settings.mlflow_tracking_uri.startswith("http://"):
        problems.append("SOCIALPULSE_MLFLOW_TRACKING_URI needs https://")
    for name in ("lake_uri", "media_uri"):
        if (getattr(settings, name) or "").startswith("s3://") and settings.storage_sse == "none":
            problems.append(f"SOCIALPULSE_{name.upper()} on s3:// needs SOCIALPULSE_STORAGE_SSE (AES256 or aws:kms)")
    return problems


def storage_encryption_env(settings: Settings) -> dict[str, str]:
    """The object_store (delta-rs) variables that make every S3 write ask for server-side encryption."""
    if settings.storage_sse == "none":
        return {}
    env = {"AWS_SERVER_SIDE_ENCRYPTION": settings.storage_sse}
    if settings.storage_sse_kms_key_id:
        env["AWS_SSE_KMS_KEY_ID"] = settings.storage_sse_kms_key_id
    return env


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
