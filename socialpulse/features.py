"""The Feast feature store: config built from settings, apply, materialization and online reads.

Used by the assets (apply, materialize) and by the serving API (online reads), so nothing here imports
deltalake, dagster, dbt or pyspark: the offline store is DuckDB over Delta (it honours the Delta log) and
the online store is Redis. Definitions live in ``feature_repo/`` in Feast's template style; ``apply_repo``
loads them and points their sources at the lake of the given settings.
"""

from __future__ import annotations

import datetime as dt
import importlib
import sys
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from feast import FeatureStore, RepoConfig

from socialpulse.settings import Settings

PROJECT = "socialpulse"
FEATURE_REPO = Path(__file__).resolve().parents[1] / "feature_repo"

POST_STATS_SERVICE = "post_stats_v1"
USER_STATS_SERVICE = "user_stats_v1"
FEED_RANKING_SERVICE = "feed_ranking_v1"
#: feature views materialized into Redis, and the gold table each one reads
ONLINE_VIEWS = ("post_engagement", "user_engagement")

_lock = threading.Lock()
_stores: dict[tuple[str, bool], FeatureStore] = {}


# --- configuration ----------------------------------------------------------------------------------
def redis_connection_string(redis_url: str) -> str:
    """Feast's ``host:port,db=N[,password=..][,ssl=true]`` form of a ``redis://`` / ``rediss://`` URL."""
    url = urlparse(redis_url)
    if url.scheme not in ("redis", "rediss"):
        raise ValueError(f"unsupported Redis URL scheme {url.scheme!r} in {redis_url!r}")
    parts = [f"{url.hostname or 'localhost'}:{url.port or 6379}"]
    db = (url.path or "/0").lstrip("/") or "0"
    parts.append(f"db={int(db)}")
    if url.username and url.username != "default":
        parts.append(f"username={unquote(url.username)}")
    if url.password:
        parts.append(f"password={unquote(url.password)}")
    if url.scheme == "rediss":
        parts.append("ssl=true")
    return ",".join(parts)


def repo_config(settings: Settings, *, skip_dedup: bool = False) -> RepoConfig:
    """The Feast RepoConfig of the project, from settings (no feature_store.yaml to keep in sync).

    ``skip_dedup`` makes Redis writes replace rows whose event timestamp is not newer than the stored
    one; ``materialize`` uses it only when no later window has been materialized (see there).
    """
    state = Path(settings.feast_repo_state)
    state.mkdir(parents=True, exist_ok=True)
    return RepoConfig(
        project=PROJECT,
        provider="local",
        registry={"registry_type": "file", "path": str(state / "registry.db"), "cache_ttl_seconds": 60},
        offline_store={"type": "duckdb"},
        online_store={
            "type": "redis",
            "connection_string": redis_connection_string(settings.redis),
            "skip_dedup": skip_dedup,
        },
        entity_key_serialization_version=3,
        repo_path=str(FEATURE_REPO),
    )


def feature_store(settings: Settings, *, skip_dedup: bool = False) -> FeatureStore:
    """One FeatureStore per settings (cached: the registry and Redis client are reused across reads)."""
    key = (settings.model_dump_json(), skip_dedup)
    store = _stores.get(key)
    if store is None:
        with _lock:
            store = _stores.get(key)
            if store is None:
                store = FeatureStore(config=repo_config(settings, skip_dedup=skip_dedup))
                _stores[key] = store
    return store


def clear_cache() -> None:
    _stores.clear()


def ensure_duckdb_delta() -> None:
    """Install DuckDB's delta extension from its wheel once (DuckDB would try to download it offline)."""
    import duckdb

    con = duckdb.connect()
    try:
        row = con.sql("SELECT installed FROM duckdb_extensions() WHERE extension_name = 'delta'").fetchall()
        if not (row and row[0][0]):
            import duckdb_extensions

            duckdb_extensions.import_extension("delta", con=con)
    finally:
        con.close()


# --- definitions ------------------------------------------------------------------------------------
def load_definitions(settings: Settings, repo_path: Path = FEATURE_REPO) -> list[Any]:
    """Import the definition modules of the Feast repo (honouring .feastignore) and return its objects.

    Modules are imported fresh, as ``feast apply`` would (the repo folder on sys.path, one top-level
    module per file). File sources tagged with ``lake_layer``/``lake_table`` are pointed at the lake of
    ``settings``, so one repo serves any environment.
    """
    from feast import Entity, FeatureService, FeatureView
    from feast.data_source import DataSource
    from feast.infra.offline_stores.file_source import FileSource
    from feast.repo_operations import get_repo_files

    repo_path = Path(repo_path).resolve()
    files = get_repo_files(repo_path)
    names = [f.stem for f in files]
    for name, module in list(sys.modules.items()):
        file = getattr(module, "__file__", None)
        if file and Path(file).resolve().parent == repo_path:
            del sys.modules[name]
    sys.path.insert(0, str(repo_path))
    try:
        modules = [importlib.import_module(name) for name in names]
    finally:
        sys.path.remove(str(repo_path))

    objects: list[Any] = []
    for module in modules:
        for obj in vars(module).values():
            if isinstance(obj, (Entity, DataSource, FeatureView, FeatureService)) and not any(
                obj is seen for seen in objects
            ):
                objects.append(obj)
    for obj in objects:
        if isinstance(obj, FileSource) and {"lake_layer", "lake_table"} <= set(obj.tags):
            obj.file_options.uri = settings.table_uri(obj.tags["lake_layer"], obj.tags["lake_table"])
    return objects


def apply_repo(settings: Settings, repo_path: Path = FEATURE_REPO) -> dict[str, list[str]]:
    """Register the repo's entities, sources, feature views and services; return their names by kind."""
    objects = load_definitions(settings, repo_path)
    store = feature_store(settings)
    store.apply(objects)
    for other in _stores_for(settings):
        other.refresh_registry()
    summary: dict[str, list[str]] = {}
    for obj in objects:
        summary.setdefault(type(obj).__name__, []).append(obj.name)
    return summary


def _stores_for(settings: Settings) -> Iterable[FeatureStore]:
    prefix = settings.model_dump_json()
    return [s for (k, _), s in list(_stores.items()) if k == prefix]


# --- materialization --------------------------------------------------------------------------------
def _utc(ts: dt.datetime) -> dt.datetime:
    return ts.replace(tzinfo=dt.timezone.utc) if ts.tzinfo is None else ts.astimezone(dt.timezone.utc)


def _rows_in_window(path: str, key: str, ts_field: str, start: dt.datetime, end: dt.datetime) -> int:
    """Entities the window holds in the Delta table (what materialization writes: the latest row of each)."""
    import duckdb

    con = duckdb.connect()
    try:
        con.execute("LOAD delta")
        sql = (
            f"SELECT count(DISTINCT {key}) FROM delta_scan(?) "
            f"WHERE {ts_field} BETWEEN ?::TIMESTAMPTZ AND ?::TIMESTAMPTZ"
        )
        return int(con.execute(sql, [path, start.isoformat(), end.isoformat()]).fetchone()[0])
    finally:
        con.close()


def materialize(
    settings: Settings,
    start: dt.datetime,
    end: dt.datetime,
    feature_views: Iterable[str] = ONLINE_VIEWS,
) -> dict[str, dict[str, Any]]:
    """Materialize the feature views for the window [start, end] into Redis; return per-view metadata.

    Redis keeps, per entity, the row with the newest event timestamp and by default skips a row whose
    timestamp is not newer. A recomputed day keeps its feature_ts (the end of that day), so a corrected
    partition would never reach Redis. When no later window has been materialized for a view (the usual
    daily run, or a rerun of the latest day), rows are written unconditionally; when a later window is
    already online (a backfill of an older day), the timestamp check stays on, so a backfill never
    replaces newer values.
    """
    ensure_duckdb_delta()
    start, end = _utc(start), _utc(end)
    store = feature_store(settings)
    store.refresh_registry()
    out: dict[str, dict[str, Any]] = {}
    for name in feature_views:
        view = store.get_feature_view(name)
        latest_end = view.most_recent_end_time
        overwrite = latest_end is None or _utc(latest_end) <= end
        writer = feature_store(settings, skip_dedup=overwrite)
        writer.refresh_registry()
        writer.materialize(start_date=start, end_date=end, feature_views=[name])
        source = view.batch_source
        key = view.entity_columns[0].name if view.entity_columns else view.join_keys[0]
        out[name] = {
            "rows": _rows_in_window(source.path, key, source.timestamp_field, start, end),
            "source": source.path,
            "start": start.isoformat(),
            "end": end.isoformat(),
            "overwrite": overwrite,
        }
    store.refresh_registry()
    return out


# --- online reads (serving) -------------------------------------------------------------------------
class FeatureStoreNotReady(RuntimeError):
    """The feature service is not registered yet (the repo was never applied / materialized)."""


def _service(store: FeatureStore, service: str):
    from feast.errors import FeatureServiceNotFoundException

    try:
        return store.get_feature_service(service, allow_cache=True)
    except FeatureServiceNotFoundException:
        # the registry may have been applied by another process since it was cached
        store.refresh_registry()
        try:
            return store.get_feature_service(service, allow_cache=True)
        except FeatureServiceNotFoundException:
            raise FeatureStoreNotReady(
                f"feature service {service} is not registered yet: materialize the feast/online assets "
                "(socialpulse materialize, or the daily_refresh_job in Dagster)"
            ) from None


def _online(settings: Settings, service: str, entity_row: dict[str, Any]) -> dict[str, Any] | None:
    store = feature_store(settings)
    response = store.get_online_features(features=_service(store, service), entity_rows=[entity_row]).to_dict()
    values = {name: column[0] for name, column in response.items() if name not in entity_row}
    if all(v is None for v in values.values()):
        return None
    return values


def get_post_stats(settings: Settings, post_id: str) -> dict[str, Any] | None:
    """Online engagement counters of a post (``post_stats_v1``); None for an unknown post."""
    return _online(settings, POST_STATS_SERVICE, {"post_id": post_id})


def get_user_features(settings: Settings, user_id: str) -> dict[str, Any] | None:
    """Online engagement features of a user (``user_stats_v1``); None for an unknown user."""
    return _online(settings, USER_STATS_SERVICE, {"user_id": user_id})


def get_feed_ranking_features(settings: Settings, user_id: str, post_ids: list[str]) -> list[dict[str, Any]]:
    """``feed_ranking_v1`` features for (user, candidate post) pairs, one dict per post, in order."""
    if not post_ids:
        return []
    store = feature_store(settings)
    response = store.get_online_features(
        features=store.get_feature_service(FEED_RANKING_SERVICE, allow_cache=True),
        entity_rows=[{"post_id": p, "user_id": user_id} for p in post_ids],
    ).to_dict()
    return [{name: column[i] for name, column in response.items()} for i in range(len(post_ids))]


def historical_feed_features(settings: Settings, entity_df) -> "Any":
    """``feed_ranking_v1`` features point in time for ``entity_df`` (pandas: ``user_id``, ``post_id``,
    ``event_timestamp`` UTC, plus any columns to carry): each row gets, per feature view, the latest row whose
    ``feature_ts`` is at or before its ``event_timestamp`` and within the view's TTL, never a later one.
    Returns a pandas DataFrame with the entity columns and the features (nulls where no row qualifies)."""
    ensure_duckdb_delta()
    store = feature_store(settings)
    job = store.get_historical_features(entity_df=entity_df, features=_service(store, FEED_RANKING_SERVICE))
    return job.to_df()
