"""Dagster wrappers: post embeddings (Delta) → the vector index (Postgres), user interest (Spark + Delta) →
user vectors (Postgres). The logic lives in :mod:`assets.content.embeddings` and :mod:`socialpulse.vectors`."""

import datetime as dt
import functools

import dagster as dg
import numpy as np
import pyarrow as pa

from assets.common import (
    SENSOR_INTERVAL_S,
    blocking_result,
    bronze_key,
    daily_backfill,
    daily_partitions,
    day_table,
    lane,
    partition_day,
    runs_per_new_day,
)
from assets.moderation.assets import (
    SCORES_KEY,
    SERVING_KEY,
    bronze_posts_day,
    bronze_posts_read_by,
    bronze_posts_version_meta,
)
from orchestration.resources import PostgresResource, SettingsResource, SparkResource
from socialpulse import lake
from socialpulse.settings import Settings
from socialpulse.stores.postgres import relation_exists

GROUP = "content"
OWNERS = ["team:ml"]

EMBEDDINGS_KEY = dg.AssetKey(["lake", "silver", "post_embeddings"])
VECTORS_KEY = dg.AssetKey(["postgres", "search", "post_vectors"])
INTEREST_KEY = dg.AssetKey(["lake", "gold", "user_interest"])
USER_VECTORS_KEY = dg.AssetKey(["postgres", "search", "user_vectors"])


@functools.lru_cache(maxsize=1)
def _encoder():
    from assets.content.embeddings import MAX_TOKENS
    from socialpulse.encoder import TextEncoder

    return TextEncoder(batch_size=64, max_length=MAX_TOKENS)


@dg.asset(
    key=EMBEDDINGS_KEY,
    deps=[bronze_key("posts"), SCORES_KEY],
    description="Per post of the day: the MiniLM vector of its caption, hashtags, OCR text and transcript "
    "(incremental: only new or changed posts, or all of them under a new encoder version).",
    partitions_def=daily_partitions,
    backfill_policy=daily_backfill,
    group_name=GROUP,
    kinds={"delta", "pytorch"},
    owners=OWNERS,
)
def post_embeddings(context: dg.AssetExecutionContext, settings: SettingsResource) -> dg.MaterializeResult:
    from assets.content.embeddings import documents, embedding_version, reuse_index, vectors_column
    from assets.content.tables import POST_EMBEDDINGS
    from assets.moderation.tables import MODERATION_SCORES

    s = settings.get()
    day = partition_day(context)
    posts, bronze_version = bronze_posts_day(s, day)
    media_text = lake.read(MODERATION_SCORES, settings=s, columns=["post_id", "ocr_text", "transcript"],
                           filters=[("event_date", "=", day)])
    docs = documents(posts, media_text)
    encoder = _encoder()
    version = embedding_version(encoder.version)
    existing = day_table(POST_EMBEDDINGS, s, day)
    reuse = reuse_index(docs, existing, version)
    todo = np.flatnonzero(reuse < 0)
    context.log.info(f"{day}: {docs.num_rows} posts, {docs.num_rows - todo.size} embeddings still valid, "
                     f"{todo.size} to embed with {version}")
    vectors = np.zeros((docs.num_rows, encoder.dim), dtype=np.float32)
    if todo.size:
        vectors[todo] = encoder.encode(docs["document"].take(pa.array(todo)).to_pylist(), progress=context.log.info)
    kept = np.flatnonzero(reuse >= 0)
    if kept.size:
        from assets.content.embeddings import to_matrix

        vectors[kept] = to_matrix(existing["embedding"].take(pa.array(reuse[kept])), encoder.dim)
    now = dt.datetime.now(dt.timezone.utc)
    embedded_at = [now] * docs.num_rows
    if kept.size:  # a reused vector keeps the time it was made
        old = existing["embedded_at"].take(pa.array(reuse[kept])).to_pylist()
        for i, t in zip(kept, old):
            embedded_at[i] = t
    rows = docs.drop_columns([]).append_column("encoder_version", pa.array([version] * docs.num_rows, pa.string()))
    rows = rows.append_column("embedding", vectors_column(vectors))
    rows = rows.append_column("embedded_at", pa.array(embedded_at, pa.timestamp("us", tz="UTC")))
    lake.replace_partitions(POST_EMBEDDINGS, rows.select(POST_EMBEDDINGS.schema.names), [day], settings=s)
    with_media = sum(1 for r in media_text.to_pylist() if (r["ocr_text"] or "").strip() or (r["transcript"] or "").strip())
    return dg.MaterializeResult(metadata={
        "rows": docs.num_rows, "embedded_now": int(todo.size), "kept": int(kept.size), "encoder_version": version,
        "posts_with_media_text": with_media, **bronze_posts_version_meta(bronze_version),
    })


def _actions(conn, day: dt.date) -> dict[str, str]:
    """post id -> the current moderation action of the day's posts (asset or live, whichever is newer)."""
    if not relation_exists(conn, "moderation.decisions"):
        return {}
    return dict(conn.execute("SELECT post_id, action FROM moderation.decisions WHERE event_date = %s", (day,)).fetchall())


def _handles(settings: Settings, authors: set[str]) -> dict[str, str]:
    from assets.warehouse.export import latest_per_key
    from socialpulse.contracts import USERS

    users = lake.read(USERS, settings=settings, columns=["user_id", "handle", "created_at"])
    if users.num_rows == 0:
        return {}
    users = latest_per_key(users, ("user_id",))
    return {u: h for u, h in zip(users["user_id"].to_pylist(), users["handle"].to_pylist()) if u in authors}


def index_records(rows: pa.Table, actions: dict[str, str], handles: dict[str, str]) -> list[tuple]:
    """``(post_id, metadata, contents, vector)`` for every embedded post not removed by moderation; a post
    not yet decided is indexed as ``pending`` (never served until its decision lands)."""
    from assets.content.embeddings import to_matrix

    vectors = to_matrix(rows["embedding"])
    out = []
    for i, r in enumerate(rows.drop_columns(["embedding"]).to_pylist()):
        action = actions.get(r["post_id"], "pending")
        if action == "remove":
            continue
        meta = {
            "post_id": r["post_id"], "author_id": r["author_id"], "author_handle": handles.get(r["author_id"]),
            "created_at": r["created_at"].isoformat(), "day": r["event_date"].isoformat(),
            "language": r["language"], "hashtags": r["hashtags"], "action": action,
            "content_hash": r["content_hash"], "embedding_version": r["encoder_version"],
        }
        out.append((r["post_id"], meta, r["document"], vectors[i]))
    return out


@dg.asset(
    key=VECTORS_KEY,
    deps=[EMBEDDINGS_KEY, SERVING_KEY],
    description="The day's post vectors in Postgres search.post_vectors (pgvector HNSW, via timescale-vector) "
    "with author, time, language, hashtags and moderation action; removed and deleted posts dropped.",
    partitions_def=daily_partitions,
    backfill_policy=daily_backfill,
    group_name=GROUP,
    kinds={"postgres"},
    owners=OWNERS,
)
def post_vectors(context: dg.AssetExecutionContext, settings: SettingsResource,
                 postgres: PostgresResource) -> dg.MaterializeResult:
    from assets.content.tables import POST_EMBEDDINGS
    from socialpulse import vectors

    s = settings.get()
    day = partition_day(context)
    rows = day_table(POST_EMBEDDINGS, s, day)
    with postgres.connect() as conn:
        actions = _actions(conn, day)
        records = index_records(rows, actions, _handles(s, set(rows["author_id"].to_pylist())))
        counts = vectors.sync_day(conn, s.postgres, day.isoformat(), records)
        created = vectors.ensure_hnsw(conn)
        directory = vectors.refresh_directory(conn)
    pending = sum(1 for r in records if r[1]["action"] == "pending")
    context.log.info(f"{day}: {counts}; hnsw created now: {created}; directory {directory}")
    return dg.MaterializeResult(metadata={**counts, "indexed": len(records), "pending_moderation": pending,
                                          "removed_not_indexed": rows.num_rows - len(records), **directory})


@dg.asset(
    key=INTEREST_KEY,
    deps=[bronze_key("interactions"), EMBEDDINGS_KEY],
    description="Per user as of the end of the day: the decayed, engagement-weighted mean vector of the posts "
    "they engaged with in the last 28 days (Spark for the weights), plus the cold-start vector.",
    partitions_def=daily_partitions,
    backfill_policy=daily_backfill,
    group_name=GROUP,
    kinds={"spark", "delta"},
    owners=OWNERS,
)
def user_interest(context: dg.AssetExecutionContext, settings: SettingsResource,
                  spark: SparkResource) -> dg.MaterializeResult:
    import pyarrow.compute as pc

    from assets.content.embeddings import (
        COLD_START_USER,
        cold_start_vector,
        embedding_version,
        interest_vectors,
        to_matrix,
        vectors_column,
    )
    from assets.content.spark_interest import engagement_pairs
    from assets.content.tables import POST_EMBEDDINGS, USER_INTEREST

    s = settings.get()
    day = partition_day(context)
    pairs = engagement_pairs(spark.session(), s, day)
    version = embedding_version(_encoder().version)
    emb = lake.read(POST_EMBEDDINGS, settings=s, columns=["post_id", "embedding", "encoder_version"],
                    filters=[("event_date", "<=", day)])
    # only vectors of the current encoder share a space; days not yet re-embedded after an encoder change
    # are left out (and counted) until their backfill runs
    current = pc.equal(emb["encoder_version"], version)
    stale = emb.num_rows - pc.sum(current).as_py() if emb.num_rows else 0
    emb = emb.filter(current)
    if stale:
        context.log.warning(f"{stale} post embeddings of another encoder version left out: backfill content_job")
    post_index = {p: i for i, p in enumerate(emb["post_id"].to_pylist())}
    matrix = to_matrix(emb["embedding"])
    users, vecs, weight = interest_vectors(pairs["user_id"].to_pylist(), pairs["post_id"].to_pylist(),
                                           pairs["weight"].to_numpy(), post_index, matrix)
    per_user = dict(zip(*np.unique(np.asarray(pairs["user_id"].to_pylist(), dtype=object), return_counts=True))) \
        if pairs.num_rows else {}
    cold = cold_start_vector(pairs["post_id"].to_pylist(), pairs["weight"].to_numpy(), post_index, matrix)
    now = dt.datetime.now(dt.timezone.utc)
    n = len(users) + 1
    if not len(matrix):  # no post vector of this encoder yet: nothing to be interested in, not even cold start
        lake.replace_partitions(USER_INTEREST, USER_INTEREST.schema.empty_table(), [day], settings=s)
        return dg.MaterializeResult(metadata={"users": 0, "pairs": pairs.num_rows, "encoder_version": version,
                                              "posts_of_other_versions_left_out": int(stale)})
    rows = pa.table({
        "user_id": pa.array(users + [COLD_START_USER], pa.string()),
        "embedding": vectors_column(np.vstack([vecs, cold[None, :]]) if len(users) else cold[None, :]),
        "cold_start": pa.array([False] * len(users) + [True]),
        "weight": pa.array(list(weight) + [float(pairs["weight"].to_numpy().sum()) if pairs.num_rows else 0.0], pa.float64()),
        "posts": pa.array([int(per_user.get(u, 0)) for u in users] + [len(set(pairs["post_id"].to_pylist()))], pa.int64()),
        "encoder_version": pa.array([version] * n, pa.string()),
        "computed_at": pa.array([now] * n, pa.timestamp("us", tz="UTC")),
        "event_date": pa.array([day] * n, pa.date32()),
    })
    lake.replace_partitions(USER_INTEREST, rows, [day], settings=s)
    return dg.MaterializeResult(metadata={"users": len(users), "pairs": pairs.num_rows, "encoder_version": version,
                                          "posts_of_other_versions_left_out": int(stale)})


@dg.asset(
    key=USER_VECTORS_KEY,
    deps=[INTEREST_KEY],
    description="The day's user interest vectors in Postgres search.user_vectors (a backfill of an older day "
    "never replaces a newer vector); users without one are served the cold-start row.",
    partitions_def=daily_partitions,
    backfill_policy=daily_backfill,
    group_name=GROUP,
    kinds={"postgres"},
    owners=OWNERS,
)
def user_vectors(context: dg.AssetExecutionContext, settings: SettingsResource,
                 postgres: PostgresResource) -> dg.MaterializeResult:
    from assets.content.embeddings import to_matrix
    from assets.content.tables import USER_INTEREST
    from socialpulse import vectors

    s = settings.get()
    day = partition_day(context)
    rows = day_table(USER_INTEREST, s, day)
    matrix = to_matrix(rows["embedding"])
    version = rows["encoder_version"][0].as_py() if rows.num_rows else "none"
    with postgres.connect() as conn:
        n = vectors.upsert_user_vectors(
            conn, zip(rows["user_id"].to_pylist(), matrix, rows["cold_start"].to_pylist(), rows["weight"].to_pylist()),
            day, version)
    return dg.MaterializeResult(metadata={"rows": n})


# --- blocking checks ------------------------------------------------------------------------------------


@dg.asset_check(asset=EMBEDDINGS_KEY, blocking=True, partitions_def=daily_partitions,
                description="Every post of the day embedded once, 384 dims, unit norm, one encoder version.")
def embeddings_valid(context: dg.AssetCheckExecutionContext, settings: SettingsResource) -> dg.AssetCheckResult:
    from assets.content.embeddings import embedding_violations
    from assets.content.tables import POST_EMBEDDINGS

    s = settings.get()
    day = partition_day(context)
    # the posts the asset embedded: uploads landing since are the next run's, not a violation
    posts, version = bronze_posts_read_by(context, EMBEDDINGS_KEY, s, day)
    rows = day_table(POST_EMBEDDINGS, s, day)
    return blocking_result(embedding_violations(rows, posts["post_id"].to_pylist()), context, rows=rows.num_rows,
                           bronze_posts_version=version)


@dg.asset_check(asset=VECTORS_KEY, blocking=True, partitions_def=daily_partitions,
                description="The index holds exactly the day's embedded posts less removed ones, none removed, "
                "with the HNSW index in place.")
def index_matches_lake(context: dg.AssetCheckExecutionContext, settings: SettingsResource,
                       postgres: PostgresResource) -> dg.AssetCheckResult:
    from assets.content.tables import POST_EMBEDDINGS
    from socialpulse import vectors

    s = settings.get()
    day = partition_day(context)
    rows = day_table(POST_EMBEDDINGS, s, day)
    with postgres.connect() as conn:
        actions = _actions(conn, day)
        expected = {p for p in rows["post_id"].to_pylist() if actions.get(p) != "remove"}
        indexed = vectors.day_rows(conn, day.isoformat())
        hnsw = relation_exists(conn, f"{vectors.SCHEMA}.{vectors.INDEX_NAME}")
    return blocking_result({
        "missing": len(expected - set(indexed)), "unexpected": len(set(indexed) - expected),
        "removed_indexed": sum(1 for m in indexed.values() if m.get("action") == "remove"),
        "hnsw_missing": int(not hnsw),
    }, context, indexed=len(indexed))


@dg.asset_check(asset=INTEREST_KEY, blocking=True, partitions_def=daily_partitions,
                description="One row per user, unit-norm 384-dim vectors, exactly one cold-start row.")
def interest_valid(context: dg.AssetCheckExecutionContext, settings: SettingsResource) -> dg.AssetCheckResult:
    from assets.content.embeddings import interest_violations
    from assets.content.tables import USER_INTEREST

    rows = day_table(USER_INTEREST, settings.get(), partition_day(context))
    return blocking_result(interest_violations(rows), context, rows=rows.num_rows)


CHECKS = [embeddings_valid, index_matches_lake, interest_valid]
DAILY_ASSETS = [post_embeddings, post_vectors, user_interest, user_vectors]

content_job = dg.define_asset_job(
    "content_job",
    selection=dg.AssetSelection.assets(post_embeddings, post_vectors),
    partitions_def=daily_partitions,
    description="Embed one UTC day's new or changed posts and bring the vector index up to date.",
    tags=lane("content"),
    executor_def=dg.in_process_executor,  # the encoder loads once per run
)
interest_job = dg.define_asset_job(
    "interest_job",
    selection=dg.AssetSelection.assets(user_interest, user_vectors),
    partitions_def=daily_partitions,
    description="Recompute user interest vectors as of the end of one UTC day and publish them.",
    tags=lane("content"),
    executor_def=dg.in_process_executor,
)


@dg.sensor(
    job=content_job,
    minimum_interval_seconds=SENSOR_INTERVAL_S,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Keep the index fresh: each new materialization of the day's moderation decisions runs "
    "content_job for that day (decided posts become searchable; removed ones leave the index).",
)
def content_sensor(context: dg.SensorEvaluationContext):
    return runs_per_new_day(context, SERVING_KEY, content_job.name, "content")


content_daily_schedule = dg.build_schedule_from_partitioned_job(
    content_job, hour_of_day=0, minute_of_hour=40, default_status=dg.DefaultScheduleStatus.RUNNING)
interest_daily_schedule = dg.build_schedule_from_partitioned_job(
    interest_job, hour_of_day=1, minute_of_hour=0, default_status=dg.DefaultScheduleStatus.RUNNING)
