"""Dagster wrappers of the virality model: nightly training (gated into MLflow's ``champion``) and hourly
predictions for posts younger than 48 hours (``virality.predictions`` in Postgres)."""

import dagster as dg

from assets.common import bronze_key, lane
from orchestration.resources import PostgresResource, SettingsResource

GROUP = "virality"
OWNERS = ["team:ml"]
MODEL_KEY = dg.AssetKey(["mlflow", "virality", "virality_model"])
PREDICTIONS_KEY = dg.AssetKey(["postgres", "virality", "predictions"])
SOURCES = [bronze_key("posts"), bronze_key("interactions"), bronze_key("follows")]


def _scalars(result: dict) -> dict:
    return {k: v for k, v in result.items() if isinstance(v, (int, float, str, bool))}


@dg.asset(
    key=MODEL_KEY,
    deps=SOURCES,
    description="LightGBM model of P(top decile of 7-day reach) from a post's first hours, its creator's history "
    "and its content; time split by post creation, evaluated beside the Szabo-Huberman extrapolation of early "
    "views (AUC, precision at the top decile, calibration), promoted to champion only when its held-out AUC at "
    "6 h beats the champion's.",
    group_name=GROUP,
    kinds={"lightgbm", "mlflow"},
    owners=OWNERS,
    # a young platform (no post with a complete 7-day window yet) has nothing to learn from: the run succeeds
    # without a materialization and predictions wait for a champion
    output_required=False,
)
def virality_model(context: dg.AssetExecutionContext, settings: SettingsResource):
    from assets.virality.run import NotEnoughData, train_and_register

    try:
        result = train_and_register(settings.get(), log=context.log.info)
    except NotEnoughData as exc:
        context.log.warning(f"virality model not trained: {exc}")
        return
    yield dg.MaterializeResult(metadata={**_scalars(result),
                                         "evaluation": dg.MetadataValue.json(result["evaluation"])})


@dg.asset(
    key=PREDICTIONS_KEY,
    deps=[MODEL_KEY, *SOURCES],
    description="virality.predictions: the champion's probability that each post younger than 48 h reaches the top "
    "decile of 7-day reach, at the latest observation hour it has passed (1, 2, 3, 6, 12, 24, 48 h).",
    group_name=GROUP,
    kinds={"postgres", "lightgbm"},
    owners=OWNERS,
    output_required=False,
)
def virality_predictions(context: dg.AssetExecutionContext, settings: SettingsResource, postgres: PostgresResource):
    from assets.virality.run import score_young_posts

    try:
        with postgres.connect() as conn:
            result = score_young_posts(settings.get(), conn, log=context.log.info)
    except LookupError as exc:  # no champion yet
        context.log.warning(f"no virality predictions: {exc}")
        return
    yield dg.MaterializeResult(metadata={**_scalars(result), "dagster/row_count": result["scored"]})


virality_training_job = dg.define_asset_job(
    "virality_training_job", selection=dg.AssetSelection.assets(virality_model),
    description="Retrain the virality model and promote it if it beats the champion.", tags=lane("training"))
virality_predictions_job = dg.define_asset_job(
    "virality_predictions_job", selection=dg.AssetSelection.assets(virality_predictions),
    description="Score posts younger than 48 h with the virality champion.", tags=lane("analytics"),
    executor_def=dg.in_process_executor)

virality_training_schedule = dg.ScheduleDefinition(
    name="virality_training_schedule", cron_schedule="30 2 * * *", job=virality_training_job,
    execution_timezone="UTC", default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Retrain the virality model every night on the posts whose 7-day window has closed.")
virality_predictions_schedule = dg.ScheduleDefinition(
    name="virality_predictions_schedule", cron_schedule="7 * * * *", job=virality_predictions_job,
    execution_timezone="UTC", default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Refresh the predictions of posts younger than 48 h every hour.")

ASSETS = [virality_model, virality_predictions]
JOBS = [virality_training_job, virality_predictions_job]
SCHEDULES = [virality_training_schedule, virality_predictions_schedule]
