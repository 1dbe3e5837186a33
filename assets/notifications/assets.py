"""Thin Dagster wrappers over :mod:`socialpulse.notifications`: the outbox fed from derived data (daily, in
the shared refresh: today's partition every 15 minutes) and the delivery of due notifications (a sensor that
launches a run only when something is due, one run at a time in its own lane)."""

import datetime as dt

import dagster as dg

from assets.common import active_run, bronze_key, daily_backfill, daily_partitions, day_table, lane, partition_day
from orchestration.resources import PostgresResource, SettingsResource
from socialpulse import notifications
from socialpulse.contracts import FOLLOWS, POSTS
from socialpulse.settings import get_settings

GROUP = "notifications"
OWNERS = ["team:data-eng"]


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


@dg.asset(
    key=["postgres", "notifications", "from_assets"],
    deps=[["postgres", "metrics", "post_metrics_daily"], ["postgres", "metrics", "creator_metrics_daily"],
          ["postgres", "trends", "hashtag_scores"], ["postgres", "virality", "predictions"], bronze_key("posts"),
          bronze_key("follows")],
    partitions_def=daily_partitions,
    backfill_policy=daily_backfill,
    group_name=GROUP,
    kinds={"postgres", "delta"},
    owners=OWNERS,
    description="notifications.outbox rows derived for one UTC day: view and follower milestones, posts predicted "
    "to go viral, creators' trending hashtags, new followers (the live drain's backstop); each fact once.",
)
def notifications_from_assets(context: dg.AssetExecutionContext, settings: SettingsResource,
                              postgres: PostgresResource) -> dg.MaterializeResult:
    """Enqueue one day's notifications from the metrics, trends and virality tables (dedupe keys make a
    re-run enqueue nothing new; a day older than the notification age enqueues only what is still fresh)."""
    s, day = settings.get(), partition_day(context)
    posts = day_table(POSTS, s, day).select(["post_id", "author_id", "hashtags"]).to_pylist()
    follows = day_table(FOLLOWS, s, day).to_pylist()
    with postgres.connect() as conn:
        items = notifications.asset_items(conn, day, posts, follows, _now(), s)
        new = notifications.enqueue(conn, items)
    per_kind = {k: sum(1 for i in items if i.kind == k) for k in notifications.KINDS}
    context.log.info(f"{day}: {len(items)} notifications derived, {new} new: {per_kind}")
    return dg.MaterializeResult(metadata={"derived": len(items), "enqueued": new,
                                          "per_kind": dg.MetadataValue.json(per_kind)})


@dg.op(description="Push the due notifications through the configured provider, each at most once.")
def deliver_notifications(context: dg.OpExecutionContext, settings: SettingsResource):
    result = notifications.deliver(settings.get())
    context.log.info(f"delivery: {result}")
    return result.delivered


@dg.job(
    description="Deliver due notifications (launched by notification_delivery_sensor when any are due).",
    tags={"dagster/max_runtime": "600", **lane("notifications")},
    executor_def=dg.in_process_executor,
)
def notification_delivery_job():
    deliver_notifications()


@dg.sensor(
    job=notification_delivery_job,
    minimum_interval_seconds=get_settings().notifications_interval_s,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Launch a delivery run when notifications are due (one at a time).",
)
def notification_delivery_sensor(context: dg.SensorEvaluationContext, settings: SettingsResource,
                                 postgres: PostgresResource):
    s = settings.get()
    with postgres.connect(autocommit=True) as conn:
        due = notifications.due_count(conn, _now(), s.notifications_digest_window_s)
    if not due:
        return dg.SkipReason("no notification is due")
    active = active_run(context.instance, notification_delivery_job.name)
    if active:
        return dg.SkipReason(f"{due} due; delivery run {active.run_id} still active")
    return dg.RunRequest(tags={"socialpulse/due": str(due)})
