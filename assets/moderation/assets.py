"""Dagster wrappers: the text model (trained, evaluated, registered), then per UTC day the moderation
scores (silver), decisions (gold) and their copy in the serving stores (Postgres + Redis).

New uploads are moderated as they land: ``moderation_sensor`` fires on every bronze posts materialization
(stream drains and batch loads) and runs ``moderation_job`` for the days that received posts. Scoring is
incremental within a day (only new or changed posts, or posts scored by an older model), so the live path
and a full backfill (``moderation_job`` over every partition) share one code path.
"""

import datetime as dt
import functools
import json
from pathlib import Path

import dagster as dg

from assets.common import (
    SENSOR_INTERVAL_S,
    active_run,
    blocking_result,
    bronze_key,
    daily_backfill,
    daily_partitions,
    day_table,
    lane,
    partition_day,
)
from orchestration.resources import MLflowResource, PostgresResource, RedisResource, SettingsResource
from socialpulse import lake
from socialpulse.settings import Settings

GROUP = "moderation"
OWNERS = ["team:trust-safety"]

TEXT_MODEL_KEY = dg.AssetKey(["mlflow", "moderation", "text_model"])
SCORES_KEY = dg.AssetKey(["lake", "silver", "moderation_scores"])
DECISIONS_KEY = dg.AssetKey(["lake", "gold", "moderation_decisions"])
SERVING_KEY = dg.AssetKey(["postgres", "moderation", "decisions"])
REVIEW_LABELS_KEY = dg.AssetKey(["lake", "silver", "moderation_review_labels"])


class TextModelConfig(dg.Config):
    finetune_epochs: int = 0  # 0: frozen MiniLM + logistic head; >0: fine-tune the encoder (GPU advised)
    device: str = "cpu"
    max_train_rows: int | None = None  # cap for quick runs; None trains on the whole train split


def hatexplain_splits(settings: Settings) -> dict[str, tuple[list[str], list[str]]]:
    """HateXplain texts and labels per split, from the reference table ``socialpulse load hatexplain`` writes."""
    uri = settings.table_uri("reference", "hatexplain")
    if lake.open_table(uri) is None:
        raise dg.Failure(
            description="no HateXplain reference table: run `socialpulse load hatexplain PATH` first "
            "(the vendored sample is data/samples/hatexplain)"
        )
    table = lake.read(uri, columns=["split", "text", "label"]).to_pylist()
    out: dict[str, tuple[list[str], list[str]]] = {}
    for split in ("train", "val", "test"):
        rows = [r for r in table if r["split"] == split]
        if not rows:
            raise dg.Failure(description=f"HateXplain split {split!r} is empty: load all three splits")
        out[split] = ([r["text"] for r in rows], [r["label"] for r in rows])
    return out


def review_labels_table(settings: Settings):
    """The reviewers' labels (empty when none were copied yet), in the contract's shape."""
    from assets.moderation.tables import MODERATION_REVIEW_LABELS

    table = lake.read(MODERATION_REVIEW_LABELS, settings=settings)
    return lake.with_missing_columns(MODERATION_REVIEW_LABELS, table)


@dg.asset(
    key=REVIEW_LABELS_KEY,
    description="Moderators' decisions from Postgres moderation.reviews as text-model labels (the latest review "
    "per post, the text the model read, the decision mapped to hatespeech/offensive/normal).",
    group_name=GROUP,
    kinds={"delta", "postgres"},
    owners=OWNERS,
)
def moderation_review_labels(context: dg.AssetExecutionContext, settings: SettingsResource,
                             postgres: PostgresResource) -> dg.MaterializeResult:
    from assets.moderation.labels import label_rows, read_reviews
    from assets.moderation.tables import MODERATION_REVIEW_LABELS

    s = settings.get()
    with postgres.connect() as conn:
        reviews = read_reviews(conn)
    rows = label_rows(reviews)
    lake.overwrite(MODERATION_REVIEW_LABELS, rows, settings=s)  # a deleted post's label goes with its review
    counts = {f"label_{k}": v for k, v in _label_counts(rows.column("label").to_pylist()).items()}
    context.log.info(f"{len(reviews)} reviewed posts, {rows.num_rows} labels")
    return dg.MaterializeResult(metadata={"reviewed_posts": len(reviews), "rows": rows.num_rows, **counts})


def _label_counts(values) -> dict[str, int]:
    from assets.moderation.text import CLASSES

    return {c: sum(1 for v in values if v == c) for c in CLASSES}


@dg.asset(
    key=TEXT_MODEL_KEY,
    deps=[REVIEW_LABELS_KEY],
    description="HateXplain text classifier (MiniLM + head): trained on train plus the moderators' review labels, "
    "selected on val, reported on test beside alt-profanity-check and the paper; promoted to `champion` only "
    "when it beats it on val.",
    group_name=GROUP,
    kinds={"mlflow", "pytorch"},
    owners=["team:ml"],
)
def text_model(context: dg.AssetExecutionContext, config: TextModelConfig, settings: SettingsResource,
               mlflow: MLflowResource) -> dg.MaterializeResult:
    from assets.moderation.registry import log_and_register
    from assets.moderation.text import (
        classification_metrics,
        evaluation_table,
        finetune_text_moderator,
        train_text_moderator,
    )

    s = settings.get()
    splits = hatexplain_splits(s)
    train_x, train_y = splits["train"]
    if config.max_train_rows:
        train_x, train_y = train_x[: config.max_train_rows], train_y[: config.max_train_rows]
    val_x, val_y = splits["val"]
    test_x, test_y = splits["test"]
    # the reviewers' labels join the training split only: val and test stay HateXplain's
    from assets.moderation.labels import training_rows

    train_x, train_y, reviewed = training_rows(train_x, train_y, review_labels_table(s), [*val_x, *test_x])
    context.log.info(f"training on {len(train_x)} texts ({reviewed} from moderators' reviews), selecting on "
                     f"{len(val_x)}, reporting on {len(test_x)}")
    if config.finetune_epochs > 0:
        model, report = finetune_text_moderator(train_x, train_y, val_x, val_y, epochs=config.finetune_epochs,
                                                device=config.device, progress=context.log.info)
    else:
        model, report = train_text_moderator(train_x, train_y, val_x, val_y, progress=context.log.info)
    val = classification_metrics(val_y, model.predict_proba(val_x))
    test = classification_metrics(test_y, model.predict_proba(test_x))
    evaluation = evaluation_table(model, test_x, test_y)
    params = {"kind": "finetuned" if config.finetune_epochs else "frozen", "train_rows": len(train_x),
              "review_labels": reviewed,
              **{k: v for k, v in report.items() if isinstance(v, (str, int, float, bool))}}
    reg = log_and_register(mlflow.tracking_uri, model, val_metrics=val, test_metrics=test, params=params,
                           evaluation=evaluation)
    context.log.info(f"registered: {reg}")
    return dg.MaterializeResult(
        metadata={
            "model_version": model.version,
            "train_rows": len(train_x),
            "review_labels": reviewed,
            "registry_version": dg.MetadataValue.text(str(reg["version"])),
            "promoted": reg["promoted"],
            "champion_version": dg.MetadataValue.text(str(reg["champion_version"])),
            "val_macro_f1": val["macro_f1"],
            "test_macro_f1": test["macro_f1"],
            "test_accuracy": test["accuracy"],
            "test_auroc": dg.MetadataValue.float(test["auroc"] or float("nan")),
            "evaluation": dg.MetadataValue.json(json.loads(json.dumps(evaluation, default=float))),
        }
    )


@functools.lru_cache(maxsize=2)
def _champion(tracking_uri: str, cache_dir: str):
    from assets.moderation.registry import load_champion

    return load_champion(tracking_uri, cache_dir=Path(cache_dir))


@functools.lru_cache(maxsize=1)
def _analyser():
    from assets.moderation.media import MediaAnalyser

    return MediaAnalyser()


def _read_media(uri: str) -> bytes:
    from socialpulse.media import local_path

    try:
        path = local_path(uri)
    except ValueError as exc:
        raise OSError(str(exc)) from None
    return path.read_bytes()


def bronze_posts_day(settings: Settings, day: dt.date, version: int | None = None):
    """(latest row per post of the day's bronze posts, the Delta version read). Scores record the version
    so their check compares against the same snapshot while the live path keeps appending posts."""
    from assets.warehouse.export import latest_per_key
    from socialpulse.contracts import POSTS

    delta = lake.open_table(lake.table_uri(POSTS, settings))
    if delta is None:
        return POSTS.schema.empty_table(), None
    if version is not None:
        delta.load_as_version(version)
    rows = delta.to_pyarrow_table(filters=[("event_date", "=", day)])
    return latest_per_key(rows.select(POSTS.schema.names).cast(POSTS.schema), ("post_id",)), delta.version()


def bronze_posts_version_meta(version: int | None) -> dict:
    """Materialization metadata naming the bronze posts snapshot an asset read (see :func:`bronze_posts_read_by`)."""
    return {"bronze_posts_version": dg.MetadataValue.int(-1 if version is None else version)}


def bronze_posts_read_by(context: dg.AssetCheckExecutionContext, key: dg.AssetKey, settings: Settings,
                         day: dt.date):
    """(the day's bronze posts as of the snapshot the latest materialization of ``key`` read, that version or -1).
    A check compares an asset with the posts it saw: posts the live path lands in between are the next run's
    work, not a violation."""
    records = context.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=key, asset_partitions=[context.partition_key]), limit=1).records
    meta = records[0].asset_materialization.metadata if records else {}
    version = meta["bronze_posts_version"].value if "bronze_posts_version" in meta else None
    posts, _ = bronze_posts_day(settings, day, None if version is None or version < 0 else version)
    return posts, -1 if version is None else version


@dg.asset(
    key=SCORES_KEY,
    deps=[bronze_key("posts"), bronze_key("media"), TEXT_MODEL_KEY],
    description="Per post of the day: text-model probabilities for caption, OCR text and transcript, NSFW per "
    "image / video frame (1 fps), and the media's OCR text and transcript (incremental within the day).",
    partitions_def=daily_partitions,
    backfill_policy=daily_backfill,
    group_name=GROUP,
    kinds={"delta", "pytorch", "onnx"},
    owners=OWNERS,
)
def moderation_scores(context: dg.AssetExecutionContext, settings: SettingsResource,
                      mlflow: MLflowResource) -> dg.MaterializeResult:
    from assets.moderation.scoring import media_model_version, score_posts, still_valid, value_counts
    from assets.moderation.tables import MEDIA_STATUS, MODERATION_SCORES
    s = settings.get()
    day = partition_day(context)
    posts, bronze_version = bronze_posts_day(s, day)
    try:
        model = _champion(mlflow.tracking_uri, str(s.home_abs / "models"))
    except LookupError as exc:
        raise dg.Failure(description=f"{exc}; materialize {TEXT_MODEL_KEY.to_user_string()} first") from None
    media_version = media_model_version(_analyser().versions)
    existing = day_table(MODERATION_SCORES, s, day)
    kept, todo = still_valid(existing, posts, model.version, media_version)
    context.log.info(f"{day}: {posts.num_rows} posts, {kept.num_rows} already scored, {todo.num_rows} to score")
    scored = score_posts(todo, text_model=model, analyser_factory=_analyser, read_media=_read_media,
                         media_version=media_version, progress=context.log.info)
    import pyarrow as pa

    rows = pa.concat_tables([kept.select(MODERATION_SCORES.schema.names).cast(MODERATION_SCORES.schema), scored])
    lake.replace_partitions(MODERATION_SCORES, rows, [day], settings=s)
    status = value_counts(rows, "media_status", MEDIA_STATUS)
    return dg.MaterializeResult(
        metadata={
            "rows": rows.num_rows,
            "scored_now": scored.num_rows,
            **bronze_posts_version_meta(bronze_version),
            "kept": kept.num_rows,
            "text_model_version": model.version,
            "media_model_version": media_version,
            **{f"media_{k}": v for k, v in status.items()},
        }
    )


@dg.asset(
    key=DECISIONS_KEY,
    deps=[SCORES_KEY],
    description="Per post of the day: allow / limit / review / remove with reasons, from the scores and the "
    "thresholds in assets/moderation/policy.toml (re-deciding needs no rescoring).",
    partitions_def=daily_partitions,
    backfill_policy=daily_backfill,
    group_name=GROUP,
    kinds={"delta"},
    owners=OWNERS,
)
def moderation_decisions(context: dg.AssetExecutionContext, settings: SettingsResource) -> dg.MaterializeResult:
    from assets.moderation.policy import ACTIONS, load_policy
    from assets.moderation.scoring import decide_rows, value_counts
    from assets.moderation.tables import MODERATION_DECISIONS, MODERATION_SCORES

    s = settings.get()
    day = partition_day(context)
    policy = load_policy()
    scores = day_table(MODERATION_SCORES, s, day)
    decisions = decide_rows(scores, policy)
    lake.replace_partitions(MODERATION_DECISIONS, decisions, [day], settings=s)
    counts = value_counts(decisions, "action", ACTIONS)
    return dg.MaterializeResult(metadata={"rows": decisions.num_rows, "policy_version": policy.version, **counts})


@dg.asset(
    key=SERVING_KEY,
    deps=[DECISIONS_KEY],
    description="The day's decisions in Postgres moderation.decisions (+ review_queue) and the Redis gate "
    "that feed, search and trends filter with.",
    partitions_def=daily_partitions,
    backfill_policy=daily_backfill,
    group_name=GROUP,
    kinds={"postgres", "redis"},
    owners=OWNERS,
)
def serving_decisions(context: dg.AssetExecutionContext, settings: SettingsResource, postgres: PostgresResource,
                      redis: RedisResource) -> dg.MaterializeResult:
    from assets.moderation.publish import publish_day
    from assets.moderation.tables import MODERATION_DECISIONS

    s = settings.get()
    day = partition_day(context)
    decisions = day_table(MODERATION_DECISIONS, s, day)
    decisions = decisions.select(MODERATION_DECISIONS.schema.names).cast(MODERATION_DECISIONS.schema)
    posts, _ = bronze_posts_day(s, day)  # what reviewers see of the posts not plainly allowed
    with postgres.connect() as conn:
        counts = publish_day(conn, redis.client(), decisions, day, posts)
    return dg.MaterializeResult(metadata=counts)


# --- blocking checks ------------------------------------------------------------------------------------


@dg.asset_check(asset=SCORES_KEY, name="scores_valid", blocking=True, partitions_def=daily_partitions,
                description="Blocking: every post of the day is scored once; probabilities and NSFW lie in [0, 1].")
def scores_valid(context: dg.AssetCheckExecutionContext, settings: SettingsResource) -> dg.AssetCheckResult:
    from assets.moderation.scoring import score_violations
    from assets.moderation.tables import MODERATION_SCORES

    s, day = settings.get(), partition_day(context)
    scores = day_table(MODERATION_SCORES, s, day)
    posts, version = bronze_posts_read_by(context, SCORES_KEY, s, day)
    return blocking_result(score_violations(scores, posts.column("post_id").to_pylist()), context, rows=scores.num_rows,
                   bronze_posts_version=version)


@dg.asset_check(asset=DECISIONS_KEY, name="decisions_valid", blocking=True, partitions_def=daily_partitions,
                description="Blocking: every scored post has one decision, a known action, and reasons unless allowed.")
def decisions_valid(context: dg.AssetCheckExecutionContext, settings: SettingsResource) -> dg.AssetCheckResult:
    from assets.moderation.scoring import decision_violations
    from assets.moderation.tables import MODERATION_DECISIONS, MODERATION_SCORES

    s, day = settings.get(), partition_day(context)
    decisions = day_table(MODERATION_DECISIONS, s, day)
    scored = day_table(MODERATION_SCORES, s, day).column("post_id").to_pylist()
    return blocking_result(decision_violations(decisions, scored), context, rows=decisions.num_rows)


@dg.asset_check(asset=SERVING_KEY, name="serving_matches_lake", blocking=True, partitions_def=daily_partitions,
                description="Blocking: Postgres holds exactly the day's lake decisions (as the model's or, reviewed, "
                "as a moderator's) and every review item is queued (or resolved).")
def serving_matches_lake(context: dg.AssetCheckExecutionContext, settings: SettingsResource,
                         postgres: PostgresResource) -> dg.AssetCheckResult:
    from assets.moderation.tables import MODERATION_DECISIONS

    s, day = settings.get(), partition_day(context)
    lake_rows = day_table(MODERATION_DECISIONS, s, day)
    ids = lake_rows.column("post_id").to_pylist()
    review_ids = [p for p, a in zip(ids, lake_rows.column("action").to_pylist()) if a == "review"]
    with postgres.connect() as conn:
        # live rows (the worker's, posts not yet in the lake) are the next run's to confirm: count the record;
        # a reviewed post's row is the moderator's and counts when its post is in the lake
        pg_rows = conn.execute(
            "SELECT count(*) FROM moderation.decisions WHERE event_date = %s AND (source = 'asset' OR "
            "(source = 'review' AND post_id = ANY(%s)))", (day, ids)).fetchone()[0]
        queued = conn.execute("SELECT count(*) FROM moderation.review_queue WHERE post_id = ANY(%s)",
                              (review_ids,)).fetchone()[0]
    return blocking_result({"row_mismatch": abs(pg_rows - lake_rows.num_rows),
                            "review_not_queued": len(review_ids) - queued},
                   context, lake_rows=lake_rows.num_rows, postgres_rows=pg_rows)


CHECKS = [scores_valid, decisions_valid, serving_matches_lake]

DAILY_ASSETS = [moderation_scores, moderation_decisions, serving_decisions]

moderation_job = dg.define_asset_job(
    "moderation_job",
    selection=dg.AssetSelection.assets(*DAILY_ASSETS),
    partitions_def=daily_partitions,
    description="Moderate one UTC day: score new posts, decide, publish to Postgres and Redis.",
    tags=lane("moderation"),
    # one process per run: models load once and the live path does not pay a process start per step
    executor_def=dg.in_process_executor,
)
review_labels_job = dg.define_asset_job(
    "review_labels_job",
    selection=dg.AssetSelection.assets(moderation_review_labels),
    description="Copy the moderators' decisions into the text model's review labels (Delta).",
    tags=lane("training"),
)
# daily, ahead of any training run of the day (text_model_job reads the labels it finds)
review_labels_schedule = dg.ScheduleDefinition(
    job=review_labels_job, cron_schedule="10 0 * * *", execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Refresh the review labels daily, so each training run sees the reviews of the day before.")
text_model_job = dg.define_asset_job(
    "text_model_job",
    selection=dg.AssetSelection.assets(text_model),
    description="Train, evaluate and register the text moderation model (promoted only if it wins on val).",
    tags=lane("training"),
)


@dg.sensor(
    job=moderation_job,
    minimum_interval_seconds=SENSOR_INTERVAL_S,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Moderate new posts as they land: a new bronze posts materialization (a stream drain or a "
    "batch load) runs moderation_job for today (UTC), one run at a time; earlier days are caught by the "
    "daily schedule and by backfills.",
)
def moderation_sensor(context: dg.SensorEvaluationContext):
    records = context.instance.fetch_materializations(bronze_key("posts"), limit=1).records
    latest = records[0] if records else None
    if latest is None or latest.storage_id <= int(context.cursor or 0):
        return dg.SkipReason("no new posts since the last moderation run")
    day = dt.datetime.now(dt.timezone.utc).date().isoformat()
    active = active_run(context.instance, moderation_job.name, day)
    if active:  # the cursor stays put: the next tick catches these posts once the running day is done
        return dg.SkipReason(f"new posts wait for moderation run {active.run_id} to finish")
    context.update_cursor(str(latest.storage_id))
    return dg.RunRequest(partition_key=day, run_key=f"moderation-{day}-{latest.storage_id}")


moderation_daily_schedule = dg.build_schedule_from_partitioned_job(
    moderation_job, hour_of_day=0, minute_of_hour=20, default_status=dg.DefaultScheduleStatus.RUNNING
)
