"""Thin Dagster wrappers over :mod:`assets.privacy.run`: the privacy job (one run per request: an export or a
deletion) and the sensor that launches it for every pending request (run key = request id) and hands a
request whose run died to a new run (which resumes after its finished steps)."""

import dagster as dg

from assets.common import lane
from orchestration.resources import PostgresResource, SettingsResource
from socialpulse import privacy
from socialpulse.settings import get_settings

GROUP = "privacy"


class PrivacyRequestConfig(dg.Config):
    request_id: str


@dg.op(description="Carry out one privacy request (export archive, or deletion from every store), resuming "
       "after its finished steps.")
def process_privacy_request(context: dg.OpExecutionContext, config: PrivacyRequestConfig,
                            settings: SettingsResource) -> dict:
    from assets.privacy.run import run_request

    result = run_request(settings.get(), config.request_id)
    # counts and durations only: never the user's ids (run logs outlive the deletion)
    context.log.info(f"privacy request {config.request_id}: {result.get('status')} "
                     f"steps={result.get('steps_done')}")
    return {"status": result.get("status"), "steps": result.get("steps_done")}


@dg.job(
    description="Export or delete one user's data (launched by privacy_request_sensor, one run per request).",
    tags={"dagster/max_runtime": "3600", **lane("privacy")},
    executor_def=dg.in_process_executor,
)
def privacy_job():
    process_privacy_request()


def run_request_for(row: dict) -> dg.RunRequest:
    """The run of a request: keyed by its id (a retry of a stale running request by its attempt number)."""
    rid = row["request_id"]
    key = rid if row["status"] == "pending" and not row["attempts"] else f"{rid}:{row['attempts']}"
    return dg.RunRequest(
        run_key=key,
        run_config={"ops": {"process_privacy_request": {"config": {"request_id": rid}}}},
        tags={privacy.RUN_TAG: rid, "socialpulse/privacy_kind": row["kind"]},
    )


@dg.sensor(
    job=privacy_job,
    minimum_interval_seconds=get_settings().sensor_interval_s,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Launch a privacy run for every pending export or deletion request (and resume stale ones).",
)
def privacy_request_sensor(context: dg.SensorEvaluationContext, postgres: PostgresResource):
    with postgres.connect(autocommit=True) as conn:
        rows = privacy.to_run(conn)
    if not rows:
        return dg.SkipReason("no privacy request is waiting")
    active = {r.tags.get(privacy.RUN_TAG) for r in context.instance.get_runs(
        filters=dg.RunsFilter(job_name=privacy_job.name, statuses=[
            dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING,
            dg.DagsterRunStatus.STARTED]))}
    return [run_request_for(r) for r in rows if r["request_id"] not in active] or dg.SkipReason(
        "every waiting request has a run")
