"""Running the asset graph from the CLI (demo, benchmarks): in-process runs on the local Dagster
instance, so every run also shows in the Dagster UI."""

from __future__ import annotations

import datetime as dt
import os
import time
from collections.abc import Callable

from socialpulse.settings import Settings
from socialpulse.stores.dagster_home import ensure_dagster_home


#: in-process runs log to the console at WARNING; the full event log is in the Dagster UI
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def quiet_warnings() -> None:
    """Dagster's beta/preview/deprecation warnings are for us, not for whoever runs the demo."""
    import warnings

    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", message=".*(beta|preview|deprecated).*")
    try:
        from dagster import BetaWarning, PreviewWarning

        warnings.filterwarnings("ignore", category=BetaWarning)
        warnings.filterwarnings("ignore", category=PreviewWarning)
    except ImportError:  # pragma: no cover
        pass


def _instance(settings: Settings):
    import dagster as dg

    os.environ["DAGSTER_HOME"] = ensure_dagster_home(settings)
    return dg.DagsterInstance.get()


def days_between(start: dt.date, end: dt.date) -> list[dt.date]:
    return [start + dt.timedelta(days=i) for i in range((end - start).days + 1)]


def report_bronze_loaded(settings: Settings, counts: dict[str, int], source: str) -> None:
    """Record a runless materialization of each bronze table a batch loader wrote (lineage in the UI)."""
    import dagster as dg

    from assets.common import bronze_key

    instance = _instance(settings)
    for table, rows in counts.items():
        try:
            key = bronze_key(table)
        except KeyError:
            continue
        if rows:
            instance.report_runless_asset_event(
                dg.AssetMaterialization(asset_key=key, metadata={"rows_written": rows, "source": source})
            )


def _run(defs, name: str, instance, summary: dict, progress, day: dt.date | None = None,
         run_config: dict | None = None) -> dict:
    """Execute job ``name`` in process (one partition when ``day`` is given); record time and outcome."""
    t0 = time.perf_counter()
    result = defs.resolve_job_def(name).execute_in_process(
        partition_key=day.isoformat() if day else None, instance=instance, raise_on_error=False,
        run_config={**QUIET, **(run_config or {})},
    )
    outcome = {"success": result.success, "seconds": round(time.perf_counter() - t0, 2)}
    where = f"{name} {day}" if day else name
    progress(f"{where}: {'ok' if result.success else 'FAILED'} in {outcome['seconds']}s (run {result.run_id})")
    if not result.success:
        summary["failed"].append({"job": name, "run_id": result.run_id, **({"partition": day.isoformat()} if day else {})})
    return outcome


def materialize_all(
    settings: Settings, start: dt.date, end: dt.date, progress: Callable[[str], None] | None = None
) -> dict:
    """Run the unpartitioned assets (dimensions such as bronze.users, which the day's dbt build joins), then the
    daily refresh job for every day in [start, end]."""
    quiet_warnings()
    from orchestration.definitions import defs

    progress = progress or (lambda _m: None)
    instance = _instance(settings)
    summary: dict = {"partitions": {}, "failed": []}
    t_all = time.perf_counter()
    summary["dimensions"] = _run(defs, "dimensions_refresh_job", instance, summary, progress)
    for day in days_between(start, end):
        summary["partitions"][day.isoformat()] = _run(defs, "daily_refresh_job", instance, summary, progress, day)
    summary["seconds"] = round(time.perf_counter() - t_all, 2)
    return summary


def moderate_all(
    settings: Settings, days: list[dt.date], *, train: bool = True, train_config: dict | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict:
    """Train and register the text model (promoted only if it wins on val; ``train_config`` is the
    asset's TextModelConfig), then run moderation_job for each day: scores, decisions, serving copies."""
    quiet_warnings()
    from orchestration.definitions import defs

    progress = progress or (lambda _m: None)
    instance = _instance(settings)
    summary: dict = {"partitions": {}, "failed": []}
    if train:
        config = {"ops": {"mlflow__moderation__text_model": {"config": train_config}}} if train_config else None
        summary["text_model"] = _run(defs, "text_model_job", instance, summary, progress, run_config=config)
        if summary["failed"]:
            return summary
    for day in days:
        summary["partitions"][day.isoformat()] = _run(defs, "moderation_job", instance, summary, progress, day)
    return summary


def index_all(settings: Settings, days: list[dt.date], *, interest: bool = True,
              interest_days: list[dt.date] | None = None, progress: Callable[[str], None] | None = None) -> dict:
    """Run content_job for each day (embed new or changed posts, sync the vector index), then interest_job
    for each day (or for ``interest_days``: user interest vectors as of each day's end). Oldest first."""
    quiet_warnings()
    from orchestration.definitions import defs

    progress = progress or (lambda _m: None)
    instance = _instance(settings)
    summary: dict = {"content": {}, "interest": {}, "failed": []}
    for day in sorted(days):
        summary["content"][day.isoformat()] = _run(defs, "content_job", instance, summary, progress, day)
    if interest and not summary["failed"]:
        for day in sorted(interest_days if interest_days is not None else days):
            summary["interest"][day.isoformat()] = _run(defs, "interest_job", instance, summary, progress, day)
    return summary


def captions_all(settings: Settings, days: list[dt.date], *, evaluate: bool = False,
                 progress: Callable[[str], None] | None = None) -> dict:
    """Run captions_job for each day, oldest first: what each image and frame shows, then alt-text and caption and
    hashtag suggestions from what was detected, then the serving copy (after moderation: its scores hold the
    on-screen text and speech); with ``evaluate``, then captions_evaluation_job for each day (its figures in
    ``summary["evaluation"]``)."""
    quiet_warnings()
    from orchestration.definitions import defs

    progress = progress or (lambda _m: None)
    instance = _instance(settings)
    summary: dict = {"partitions": {}, "failed": []}
    for day in sorted(days):
        summary["partitions"][day.isoformat()] = _run(defs, "captions_job", instance, summary, progress, day)
    if evaluate:
        import dagster as dg

        summary["evaluation"] = {}
        for day in sorted(days):
            if _run(defs, "captions_evaluation_job", instance, summary, progress, day)["success"]:
                record = instance.fetch_materializations(
                    dg.AssetRecordsFilter(asset_key=dg.AssetKey(["lake", "gold", "captions_evaluation"]),
                                          asset_partitions=[day.isoformat()]), limit=1, ascending=False).records
                meta = record[0].asset_materialization.metadata if record else {}
                summary["evaluation"][day.isoformat()] = {k: getattr(v, "value", v) for k, v in meta.items()}
    return summary


def trends_all(settings: Settings, days: list[dt.date], *, stats: bool = True,
               progress: Callable[[str], None] | None = None) -> dict:
    """Run trends_job for each day, oldest first (each day's baselines read the day before), then
    hashtag_stats_job as of the last day (its 28-day window covers the others)."""
    quiet_warnings()
    from orchestration.definitions import defs

    progress = progress or (lambda _m: None)
    instance = _instance(settings)
    summary: dict = {"trends": {}, "failed": []}
    for day in sorted(days):
        summary["trends"][day.isoformat()] = _run(defs, "trends_job", instance, summary, progress, day)
    if stats and days and not summary["failed"]:
        summary["hashtag_stats"] = _run(defs, "hashtag_stats_job", instance, summary, progress, max(days))
    return summary


def feed_all(settings: Settings, days: list[dt.date], *, progress: Callable[[str], None] | None = None) -> dict:
    """Build the feed's training set for each day (oldest first), train and gate the ranker, then publish
    the feed's serving state into Redis."""
    quiet_warnings()
    from orchestration.definitions import defs

    progress = progress or (lambda _m: None)
    instance = _instance(settings)
    summary: dict = {"training_set": {}, "failed": []}
    for day in sorted(days):
        summary["training_set"][day.isoformat()] = _run(defs, "feed_training_job", instance, summary, progress, day)
    if not summary["failed"]:
        summary["ranker"] = _run(defs, "feed_ranker_job", instance, summary, progress)
    summary["state"] = _run(defs, "feed_state_job", instance, summary, progress)
    return summary


def virality_all(settings: Settings, *, progress: Callable[[str], None] | None = None) -> dict:
    """Train and gate the virality model on the posts whose 7-day window has closed (a world of fewer than 8
    days has none: the run succeeds without a model), then score the posts younger than 48 hours."""
    quiet_warnings()
    from orchestration.definitions import defs

    progress = progress or (lambda _m: None)
    instance = _instance(settings)
    summary: dict = {"failed": []}
    summary["model"] = _run(defs, "virality_training_job", instance, summary, progress)
    summary["predictions"] = _run(defs, "virality_predictions_job", instance, summary, progress)
    return summary


def warehouse_docs(settings: Settings, day: dt.date, *, progress: Callable[[str], None] | None = None) -> dict:
    """Build the dbt models for ``day`` (dbt_job), then generate the dbt docs site the API serves."""
    quiet_warnings()
    from assets.warehouse.dbt_assets import generate_docs
    from orchestration.definitions import defs

    progress = progress or (lambda _m: None)
    summary: dict = {"failed": []}
    summary["dbt"] = _run(defs, "dbt_job", _instance(settings), summary, progress, day)
    if not summary["failed"]:
        t0 = time.perf_counter()
        summary["docs"] = {"path": str(generate_docs(settings)), "seconds": round(time.perf_counter() - t0, 2)}
        progress(f"dbt docs generated in {summary['docs']['seconds']}s")
    return summary


#: HateXplain splits the demo loads as posts to moderate. The text model trains on the whole vendored split
#: (the reference table gets train, val and test, as production's ``text_model`` reads them), but only the
#: test split (1,924 posts) becomes posts: `moderation report` then covers the split the model is reported
#: on, without 17,305 more posts for the demo to score.
DEMO_HATEXPLAIN_POSTS = ("test",)


def load_demo_hatexplain(settings: Settings, progress: Callable[[str], None] | None = None,
                         path=None) -> dict[str, int]:
    """The demo's HateXplain: the full vendored split (or the folder ``path``) as the training reference,
    :data:`DEMO_HATEXPLAIN_POSTS` as posts."""
    from socialpulse.loaders import HATEXPLAIN_DIR, load_hatexplain

    return load_hatexplain(settings, path or HATEXPLAIN_DIR, progress=progress, post_splits=DEMO_HATEXPLAIN_POSTS)


def _succeeded(what: str, result: dict) -> dict:
    """A demo step's summary, or a clear stop naming the failed runs to look at."""
    if result["failed"]:
        raise RuntimeError(f"{what} failed: {result['failed']} (see the runs in the Dagster UI)")
    return result


def run_demo(settings: Settings, *, users: int, posts: int, days: int, start_ui: bool, echo, progress,
             hatexplain=None) -> dict:
    from socialpulse.loaders import CRISISLEX_SAMPLE, HATEXPLAIN_DAYS, load_crisislex
    from socialpulse.services.manager import services_up
    from socialpulse.synthetic import load_synthetic

    steps = 12
    echo(f"1/{steps} starting the embedded services")
    services_up(settings, echo=progress)
    echo(f"2/{steps} loading a synthetic world ({users} users, {posts} posts, {days} days), HateXplain and the "
         "CrisisLex sample")
    today = dt.datetime.now(dt.timezone.utc).date()
    # the synthetic world ends yesterday: today's partition belongs to live API events, never replaced
    start = today - dt.timedelta(days=days)
    loaded = load_synthetic(settings, users=users, posts=posts, days=days, seed=7, start=start, progress=progress)
    report_bronze_loaded(settings, loaded, "synthetic")
    report_bronze_loaded(settings, load_demo_hatexplain(settings, progress, hatexplain), "hatexplain")
    report_bronze_loaded(settings, load_crisislex(settings, CRISISLEX_SAMPLE, progress=progress), "crisislex")
    echo(f"3/{steps} materializing every asset for {start} .. {today}")
    summary = _succeeded("materialization", materialize_all(settings, start, today, progress=progress))
    echo(f"4/{steps} training the text moderation model on HateXplain (the production recipe) and moderating every "
         "post (synthetic world and the HateXplain test split)")
    hatexplain_days = sorted(HATEXPLAIN_DAYS[s] for s in DEMO_HATEXPLAIN_POSTS)
    summary["moderation"] = _succeeded(
        "moderation", moderate_all(settings, hatexplain_days + days_between(start, today), progress=progress))
    echo(f"5/{steps} embedding posts into the search index and computing user interest vectors")
    world_days = days_between(start, today)
    # interests as of every day: the feed's training set reads each impression's interest as of the day before
    summary["content"] = _succeeded("indexing", index_all(settings, world_days, progress=progress))
    echo(f"6/{steps} counting hashtags on Spark, scoring trends, grouping topics and hashtag statistics")
    summary["trends"] = _succeeded("trends", trends_all(settings, world_days, progress=progress))
    echo(f"7/{steps} alt-text, caption and hashtag suggestions for every post (what images and frames show, "
         "on-screen text, speech, the creator's words)")
    summary["captions"] = _succeeded("captions", captions_all(settings, world_days, progress=progress))
    echo(f"8/{steps} the For You feed: training set (Spark labels, Feast point in time), LambdaRank ranker (MLflow), "
         "serving state (Redis)")
    # today has no impressions yet
    summary["feed"] = _succeeded("feed", feed_all(settings, world_days[:-1], progress=progress))
    echo(f"9/{steps} the virality model (LightGBM beside the Szabo-Huberman baseline, MLflow) and its predictions "
         "for posts younger than 48 h")
    summary["virality"] = _succeeded("virality", virality_all(settings, progress=progress))
    echo(f"10/{steps} the dbt marts for today (moderation outcomes now published) and the dbt docs site")
    summary["warehouse"] = _succeeded("dbt", warehouse_docs(settings, today, progress=progress))
    api_url = f"http://{settings.api_host}:{settings.api_port}"
    if start_ui:
        echo(f"11/{steps} starting the API, the Dagster UI and the live moderation worker")
        services_up(settings, ["api", "dagster", "moderation"], echo=progress)
    echo(f"{steps}/{steps} ready")
    sample_post = _busiest_post(settings, today - dt.timedelta(days=1))
    from socialpulse.auth import issue_token

    creator, feed_user = _busiest_creator(settings, start, today), _feed_user(settings)
    lines = [
        "",
        f"  API            {api_url}/docs   (health: {api_url}/readyz)",
        "  tokens         socialpulse auth token --user ID [--role moderator|admin]   (writes and personal reads "
        "take Authorization: Bearer <token>)",
        f"  post stats     {api_url}/v1/posts/{sample_post}/stats" if sample_post else "",
        f"  captions       {api_url}/v1/posts/{sample_post}/captions   (alt-text, caption and hashtag suggestions)"
        if sample_post else "",
        f"  dashboard      {api_url}/creators/{creator}#token={issue_token(settings, creator)}   (a creator's charts; "
        f"JSON: {api_url}/v1/creators/{creator}/dashboard with the creator's token)" if creator else "",
        f"  virality       {api_url}/v1/posts/{viral}/virality   (posts younger than 48 h, refreshed hourly)"
        if (viral := _likeliest_viral_post(settings)) else "",
        f"  moderation     {api_url}/v1/posts/{flagged}/moderation" if (flagged := _flagged_post(settings)) else "",
        f"  review queue   {api_url}/moderation/review#token={issue_token(settings, 'moderator-1', 'moderator')}   "
        "(the moderators' page)",
        f"  search         {api_url}/v1/search?q=pasta+recipe   (similar: {api_url}/v1/posts/{sample_post}/similar)"
        if sample_post else f"  search         {api_url}/v1/search?q=pasta+recipe",
        f"  feed           curl -H \"Authorization: Bearer $(socialpulse auth token --user {feed_user})\" "
        f"'{api_url}/v1/feed?limit=10'   (pass next_cursor back as cursor)",
        f"  trends         {api_url}/v1/trends?window=7d   (suggest: POST {api_url}/v1/hashtags/suggest "
        "with {\"text\": \"...\"})",
        f"  Dagster UI     http://127.0.0.1:{settings.dagster_port}",
        f"  MLflow UI      {settings.mlflow}",
        f"  Postgres       psql {settings.postgres}   (schemas bronze, metrics, moderation, search, trends, staging, intermediate, marts)",
        f"  Delta lake     {settings.lake}",
        f"  dbt docs       {api_url}/analytics/dbt-docs/   (marts: README, For analysts)",
        "  stop           socialpulse services down",
    ]
    echo("\n".join(line for line in lines if line))
    return summary


def _busiest_creator(settings: Settings, start: dt.date, today: dt.date) -> str | None:
    """The creator with the most views in the demo's world (the demo's dashboard link)."""
    import psycopg

    from socialpulse import metrics

    try:
        with psycopg.connect(settings.postgres, connect_timeout=5) as conn:
            return metrics.busiest_creator(conn, start, today + dt.timedelta(days=1))
    except (psycopg.Error, metrics.MetricsNotBuilt):
        return None


def _likeliest_viral_post(settings: Settings) -> str | None:
    """The young post the virality champion rates highest (the demo's virality link)."""
    import psycopg

    from socialpulse.stores.postgres import relation_exists
    from socialpulse.virality import TABLE

    try:
        with psycopg.connect(settings.postgres, connect_timeout=5) as conn:
            if not relation_exists(conn, TABLE):
                return None
            row = conn.execute(f"SELECT post_id FROM {TABLE} ORDER BY probability DESC LIMIT 1").fetchone()
    except psycopg.Error:
        return None
    return row[0] if row else None


def _feed_user(settings: Settings) -> str:
    """An active user of the synthetic world (the demo's feed link)."""
    from socialpulse import lake

    try:
        users = lake.read(f"{settings.lake}/meta/synthetic_users", columns=["user_id", "activity"])
    except FileNotFoundError:
        return "u000001"
    if users.num_rows == 0:
        return "u000001"
    acts = users["activity"].to_pylist()
    return users["user_id"][max(range(len(acts)), key=acts.__getitem__)].as_py()


def _flagged_post(settings: Settings) -> str | None:
    """A post the moderation did not simply allow (the demo points at it)."""
    from assets.moderation.tables import MODERATION_DECISIONS
    from socialpulse import lake

    t = lake.read(MODERATION_DECISIONS, settings=settings, columns=["post_id", "action"],
                  filters=[("action", "in", ["remove", "review", "limit"])])
    return t.column("post_id")[0].as_py() if t.num_rows else None


def _busiest_post(settings: Settings, day: dt.date) -> str | None:
    from socialpulse import lake
    from socialpulse.contracts import INTERACTIONS

    import pyarrow.compute as pc

    t = lake.read(INTERACTIONS, settings=settings, columns=["post_id", "event_type"],
                  filters=[("event_date", "=", day), ("event_type", "=", "view")])
    if t.num_rows == 0:
        return None
    counts = pc.value_counts(t["post_id"]).to_pylist()
    return max(counts, key=lambda c: c["counts"])["values"]
