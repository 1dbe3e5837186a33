"""Dagster wrappers: per UTC day, what each post's media shows (silver media_labels, EfficientNet-Lite0), the
generated alt-text, captions and hashtags (gold post_captions), their copy in Postgres captions.post_captions, and
an evaluation (hashtag hit@5 against creators' own tags held back, alt-text coverage and length, the guard's
rejections).

Captions follow moderation: ``captions_sensor`` runs ``captions_job`` for each day whose moderation decisions were
published (moderation scores hold the OCR text and transcript the captions are written from). Labelling is
incremental within a day (only posts not labelled yet, or whose media or model changed).
"""


import datetime as dt
import functools

import dagster as dg
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
from assets.moderation.assets import SCORES_KEY, SERVING_KEY, _read_media, bronze_posts_day
from orchestration.resources import PostgresResource, SettingsResource
from socialpulse import lake

GROUP = "captions"
OWNERS = ["team:ml"]

LABELS_KEY = dg.AssetKey(["lake", "silver", "media_labels"])
CAPTIONS_KEY = dg.AssetKey(["lake", "gold", "post_captions"])
PUBLISH_KEY = dg.AssetKey(["postgres", "captions", "post_captions"])
EVAL_KEY = dg.AssetKey(["lake", "gold", "captions_evaluation"])


@functools.lru_cache(maxsize=1)
def _labeler():
    from assets.captions.labels import ImageLabeler

    return ImageLabeler()


def label_rows(posts: pa.Table, existing: pa.Table, labeler, read_media, day: dt.date, progress=None):
    """(the day's media_labels rows, how many were labelled now): rows still valid (same media, same model) are
    kept; the others are labelled."""
    from assets.captions.labels import label_media
    from assets.captions.tables import MEDIA_LABELS

    version = labeler.version
    valid = {r["post_id"]: r for r in existing.to_pylist()
             if r["model_version"] == version} if existing.num_rows else {}
    now = dt.datetime.now(dt.timezone.utc)
    out, done = [], 0
    for r in posts.select(["post_id", "media_uri"]).to_pylist():
        old = valid.get(r["post_id"])
        if old is not None and old["media_uri"] == r["media_uri"]:
            out.append(old)
            continue
        got = label_media(r["media_uri"], read_media, labeler)
        done += 1
        out.append({"post_id": r["post_id"], "media_uri": r["media_uri"], "media_kind": got.media_kind,
                    "labels": [{"name": n, "prob": p} for n, p in got.labels], "frames": got.frames,
                    "status": got.status, "error": got.error, "model_version": version, "labelled_at": now,
                    "event_date": day})
        if progress and done % 50 == 0:
            progress(f"labelled {done} posts")
    table = pa.Table.from_pylist(out, schema=MEDIA_LABELS.schema) if out else MEDIA_LABELS.schema.empty_table()
    return table, done


@dg.asset(
    key=LABELS_KEY,
    deps=[bronze_key("posts"), bronze_key("media")],
    description="Per post of the day: ImageNet top-5 classes (EfficientNet-Lite0) of its image or of up to 4 "
    "video frames, with the model version and media status (incremental within the day).",
    partitions_def=daily_partitions,
    backfill_policy=daily_backfill,
    group_name=GROUP,
    kinds={"delta", "pytorch"},
    owners=OWNERS,
)
def media_labels(context: dg.AssetExecutionContext, settings: SettingsResource) -> dg.MaterializeResult:
    from assets.captions.tables import LABEL_STATUS, MEDIA_LABELS
    from assets.moderation.scoring import value_counts

    s, day = settings.get(), partition_day(context)
    posts, _ = bronze_posts_day(s, day)
    existing = lake.with_missing_columns(MEDIA_LABELS, day_table(MEDIA_LABELS, s, day))
    rows, done = label_rows(posts, existing, _labeler(), _read_media, day, progress=context.log.info)
    lake.replace_partitions(MEDIA_LABELS, rows, [day], settings=s)
    status = value_counts(rows, "status", LABEL_STATUS)
    return dg.MaterializeResult(metadata={"rows": rows.num_rows, "labelled_now": done, "kept": rows.num_rows - done,
                                          "model_version": _labeler().version,
                                          **{f"status_{k}": v for k, v in status.items()}})


def generate_day(posts: pa.Table, labels: pa.Table, scores: pa.Table, day: dt.date, generator=None,
                 related=None) -> list[dict]:
    """The day's post_captions rows: facts joined (with each post's related tags when ``related`` looks them up),
    alt-text written, the generator's suggestions (default: the grounded generator)."""
    from assets.captions.evaluation import build_facts, caption_rows, with_related_tags
    from assets.captions.grounded import GroundedGenerator, alt_text

    generator = generator or GroundedGenerator()
    facts = build_facts(posts, labels, scores)
    if related is not None and facts:
        facts = with_related_tags(facts, *related(facts))
    suggestions = generator.generate(facts) if facts else []
    versions = set(labels.column("model_version").to_pylist()) if labels.num_rows else set()
    return caption_rows(posts, facts, suggestions, alt_text, ",".join(sorted(versions)) or None, day)


#: related tags looked up per post (the served suggester's ranking)
RELATED_TAGS = 10


def index_related_tags(postgres, log=None):
    """A related-tags lookup through the served hashtag suggester: each post's words (:func:`draft_text`) embedded
    by the content encoder, its nearest indexed posts (never itself) voting for their tags, trends and popularity
    as ``POST /v1/hashtags/suggest`` ranks them. While the search index is missing or was built by another
    encoder, the lookup gives no related tags and says so in the log (the post's own words still give hashtags)."""
    def lookup(facts):
        """(per post: the ranked (tag, score) pairs, per post: its nearest neighbour's cosine)"""
        from assets.captions.evaluation import draft_text
        from assets.content.assets import _encoder
        from socialpulse import trends_store, vectors

        encoder = _encoder()
        with postgres.connect() as conn:
            try:
                indexed = vectors.index_encoder_version(conn)
            except vectors.IndexNotBuilt as exc:
                indexed = exc
            if isinstance(indexed, Exception) or (indexed is not None and indexed != encoder.version):
                if log is not None:
                    log.warning(f"no related tags: {indexed if isinstance(indexed, Exception) else 'the search index was built with encoder ' + indexed + ', not ' + encoder.version}")
                return [[] for _ in facts], None
            vecs = encoder.encode([draft_text(f) for f in facts])
            got = trends_store.suggest_many(conn, vecs, RELATED_TAGS, exclude=[[f.post_id] for f in facts])
        return [[(s["tag"], s["score"]) for s in g["suggestions"]] for g in got], [g["similarity"] for g in got]

    return lookup


def configured_generator(settings, log=None):
    """The generator ``SOCIALPULSE_CAPTIONS_GENERATOR`` names (grounded by default), its every output through the
    quality guard with the text moderation champion as the toxicity check (the guard without it, said in the log,
    while no champion is registered)."""
    from assets.captions.generators import generator_from_settings
    from assets.captions.guard import QualityGuard, moderation_toxicity

    try:
        toxicity = moderation_toxicity(settings)
    except Exception as exc:  # noqa: BLE001 - no champion yet, or MLflow down: the other checks still apply
        toxicity = None
        if log is not None:
            log.warning(f"captions guard without the toxicity check: {type(exc).__name__}: {exc}")
    return generator_from_settings(settings, guard=QualityGuard(toxicity=toxicity))


@dg.asset(
    key=CAPTIONS_KEY,
    deps=[bronze_key("posts"), LABELS_KEY, SCORES_KEY],
    description="Per post of the day: alt-text, caption and hashtag suggestions written from its detected facts "
    "(labels, on-screen text, speech, the creator's words), the generator's version, fallback and rejections.",
    partitions_def=daily_partitions,
    backfill_policy=daily_backfill,
    group_name=GROUP,
    kinds={"delta", "python"},
    owners=OWNERS,
)
def post_captions(context: dg.AssetExecutionContext, settings: SettingsResource,
                  postgres: PostgresResource) -> dg.MaterializeResult:
    from assets.captions.evaluation import alt_text_stats
    from assets.captions.tables import MEDIA_LABELS, POST_CAPTIONS
    from assets.moderation.tables import MODERATION_SCORES

    s, day = settings.get(), partition_day(context)
    posts, version = bronze_posts_day(s, day)
    labels = day_table(MEDIA_LABELS, s, day)
    scores = day_table(MODERATION_SCORES, s, day)
    generator = configured_generator(s, context.log)
    rows = generate_day(posts, labels, scores, day, generator, index_related_tags(postgres, context.log))
    lake.replace_partitions(POST_CAPTIONS, rows, [day], settings=s)
    stats = alt_text_stats(rows)
    return dg.MaterializeResult(metadata={
        "rows": len(rows), "generator": getattr(generator, "version", "?"),
        "fallback": sum(1 for r in rows if r["fallback"]),
        "rejected": sum(len(r["rejected"]) for r in rows),
        "alt_text_coverage": dg.MetadataValue.float(stats["coverage"] if stats["coverage"] is not None else float("nan")),
        "bronze_posts_version": dg.MetadataValue.int(-1 if version is None else version),
    })


@dg.asset(
    key=PUBLISH_KEY,
    deps=[CAPTIONS_KEY],
    description="The day's captions in Postgres captions.post_captions (one row per post, upserted), which the "
    "API serves with every post.",
    partitions_def=daily_partitions,
    backfill_policy=daily_backfill,
    group_name=GROUP,
    kinds={"postgres"},
    owners=OWNERS,
)
def serving_captions(context: dg.AssetExecutionContext, settings: SettingsResource,
                     postgres: PostgresResource) -> dg.MaterializeResult:
    from assets.captions.tables import POST_CAPTIONS
    from socialpulse import captions

    s, day = settings.get(), partition_day(context)
    rows = day_table(POST_CAPTIONS, s, day).to_pylist()
    with postgres.connect() as conn:
        captions.ensure_tables(conn)
        written = captions.upsert(conn, rows)
        dropped = captions.delete_missing(conn, day, [r["post_id"] for r in rows])
    return dg.MaterializeResult(metadata={"rows": written, "deleted": dropped})


@dg.asset(
    key=EVAL_KEY,
    deps=[CAPTIONS_KEY],
    description="The captions evaluation of the day: hashtag hit@5 against creators' own hashtags held back (the "
    "generator beside the existing suggester), alt-text coverage and length, the guard's rejections by reason.",
    partitions_def=daily_partitions,
    backfill_policy=daily_backfill,
    group_name=GROUP,
    kinds={"python"},
    owners=OWNERS,
)
def captions_evaluation(context: dg.AssetExecutionContext, settings: SettingsResource,
                        postgres: PostgresResource) -> dg.MaterializeResult:
    from assets.captions.evaluation import evaluate
    from assets.captions.grounded import alt_text
    from assets.captions.tables import MEDIA_LABELS
    from assets.moderation.tables import MODERATION_SCORES

    s, day = settings.get(), partition_day(context)
    posts, _ = bronze_posts_day(s, day)
    report = evaluate(posts, day_table(MEDIA_LABELS, s, day), day_table(MODERATION_SCORES, s, day),
                      configured_generator(s, context.log), alt_text, related=index_related_tags(postgres, context.log))
    meta = {"generator": report["generator"], "hit_at_5": report["hashtags"]["hit_at_5"],
            "drafts": report["hashtags"]["drafts"], "alt_text": report["alt_text"],
            "rejection_rate": report["guard"]["rejection_rate"], "rejections": report["guard"]["by_reason"]}
    try:  # the existing suggester on the same posts (needs the MiniLM encoder and enough tagged posts)
        from assets.captions.evaluation import existing_suggester_hits
        from assets.content.assets import _encoder

        records = [{"created_at": r["created_at"], "caption": r["caption"], "hashtags": r["hashtags"]}
                   for r in posts.to_pylist()]
        meta["existing_suggester"] = existing_suggester_hits(records, _encoder())["hit_at_5"]
    except (ValueError, ImportError) as exc:
        context.log.info(f"existing suggester not evaluated: {exc}")
    return dg.MaterializeResult(metadata={k: dg.MetadataValue.json(v) if isinstance(v, (dict, list)) else
                                          (dg.MetadataValue.float(float("nan")) if v is None else v)
                                          for k, v in meta.items()})


@dg.asset_check(asset=CAPTIONS_KEY, name="captions_valid", blocking=True, partitions_def=daily_partitions,
                description="Blocking: one row per post of the day; every image and video post has alt-text.")
def captions_valid(context: dg.AssetCheckExecutionContext, settings: SettingsResource) -> dg.AssetCheckResult:
    from assets.captions.tables import POST_CAPTIONS

    s, day = settings.get(), partition_day(context)
    rows = day_table(POST_CAPTIONS, s, day).to_pylist()
    ids = [r["post_id"] for r in rows]
    return blocking_result({"duplicate_posts": len(ids) - len(set(ids)),
                            "media_without_alt_text": sum(1 for r in rows if r["kind"] in ("image", "video")
                                                          and not r["alt_text"])}, context, rows=len(rows))


@dg.asset_check(asset=PUBLISH_KEY, name="captions_serving_matches_lake", blocking=True,
                partitions_def=daily_partitions,
                description="Blocking: Postgres holds exactly the day's lake captions.")
def captions_serving_matches_lake(context: dg.AssetCheckExecutionContext, settings: SettingsResource,
                                  postgres: PostgresResource) -> dg.AssetCheckResult:
    from assets.captions.tables import POST_CAPTIONS
    from socialpulse import captions

    s, day = settings.get(), partition_day(context)
    lake_rows = day_table(POST_CAPTIONS, s, day).num_rows
    with postgres.connect() as conn:
        captions.ensure_tables(conn)
        pg_rows = captions.day_count(conn, day)
    return blocking_result({"row_mismatch": abs(pg_rows - lake_rows)}, context, lake_rows=lake_rows,
                           postgres_rows=pg_rows)


CHECKS = [captions_valid, captions_serving_matches_lake]
DAILY_ASSETS = [media_labels, post_captions, serving_captions, captions_evaluation]

captions_job = dg.define_asset_job(
    "captions_job",
    selection=dg.AssetSelection.assets(media_labels, post_captions, serving_captions),
    partitions_def=daily_partitions,
    description="Caption one UTC day: label new media, write alt-text and suggestions, publish to Postgres.",
    tags=lane("captions"),
    executor_def=dg.in_process_executor,  # the image model loads once per run
)
captions_evaluation_job = dg.define_asset_job(
    "captions_evaluation_job",
    selection=dg.AssetSelection.assets(captions_evaluation),
    partitions_def=daily_partitions,
    description="Evaluate one UTC day's captions (hashtag hit@5, alt-text coverage and length, rejections).",
    tags=lane("captions"),
)


def _captioned_after(instance, day: str, storage_id: int) -> bool:
    """Whether the day's captions were published after the decisions materialization ``storage_id``."""
    latest = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=PUBLISH_KEY, asset_partitions=[day]), limit=1, ascending=False).records
    return bool(latest) and latest[0].storage_id > storage_id


@dg.sensor(
    job=captions_job,
    minimum_interval_seconds=SENSOR_INTERVAL_S,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Keep captions fresh: each new publication of a day's moderation decisions (its scores hold the "
    "OCR text and speech) runs captions_job for that day, one run per day at a time.",
)
def captions_sensor(context: dg.SensorEvaluationContext):
    # a day captioned after its decisions (the demo's own run, say) is not run again
    return runs_per_new_day(context, SERVING_KEY, captions_job.name, "captions", fresh=_captioned_after)


captions_daily_schedule = dg.build_schedule_from_partitioned_job(
    captions_job, hour_of_day=1, minute_of_hour=10, default_status=dg.DefaultScheduleStatus.RUNNING)
captions_evaluation_schedule = dg.build_schedule_from_partitioned_job(
    captions_evaluation_job, hour_of_day=2, minute_of_hour=0, default_status=dg.DefaultScheduleStatus.RUNNING)
