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


def materialize_all(
    settings: Settings, start: dt.date, end: dt.date, progress: Callable[[str], None] | None = None
) -> dict:
    """Run the daily refresh job for every day in [start, end], then the unpartitioned assets."""
    quiet_warnings()
    from orchestration.definitions import defs

    progress = progress or (lambda _m: None)
    instance = _instance(settings)
    summary: dict = {"partitions": {}, "failed": []}
    t_all = time.perf_counter()
    daily = defs.resolve_job_def("daily_refresh_job")
    for day in days_between(start, end):
        t0 = time.perf_counter()
        result = daily.execute_in_process(
            partition_key=day.isoformat(), instance=instance, raise_on_error=False, run_config=QUIET
        )
        secs = round(time.perf_counter() - t0, 2)
        summary["partitions"][day.isoformat()] = {"success": result.success, "seconds": secs}
        progress(f"daily_refresh_job {day}: {'ok' if result.success else 'FAILED'} in {secs}s (run {result.run_id})")
        if not result.success:
            summary["failed"].append({"job": "daily_refresh_job", "partition": day.isoformat(), "run_id": result.run_id})
    t0 = time.perf_counter()
    dims = defs.resolve_job_def("dimensions_refresh_job").execute_in_process(
        instance=instance, raise_on_error=False, run_config=QUIET
    )
    summary["dimensions"] = {"success": dims.success, "seconds": round(time.perf_counter() - t0, 2)}
    progress(f"dimensions_refresh_job: {'ok' if dims.success else 'FAILED'} (run {dims.run_id})")
    if not dims.success:
        summary["failed"].append({"job": "dimensions_refresh_job", "run_id": dims.run_id})
    summary["seconds"] = round(time.perf_counter() - t_all, 2)
    return summary


def run_demo(settings: Settings, *, users: int, posts: int, days: int, start_ui: bool, echo, progress) -> dict:
    from socialpulse.loaders import load_crisislex, load_hatexplain
    from socialpulse.services.manager import services_up
    from socialpulse.synthetic import load_synthetic

    samples = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data", "samples")
    echo("1/5 starting the embedded services")
    services_up(settings, echo=progress)
    echo(f"2/5 loading a synthetic world ({users} users, {posts} posts, {days} days) and the real-data samples")
    today = dt.datetime.now(dt.timezone.utc).date()
    # the synthetic world ends yesterday: today's partition belongs to live API events, never replaced
    start = today - dt.timedelta(days=days)
    loaded = load_synthetic(settings, users=users, posts=posts, days=days, seed=7, start=start, progress=progress)
    report_bronze_loaded(settings, loaded, "synthetic")
    report_bronze_loaded(settings, load_hatexplain(settings, os.path.join(samples, "hatexplain"), progress=progress), "hatexplain")
    report_bronze_loaded(
        settings, load_crisislex(settings, os.path.join(samples, "crisislex_t6", "stream.jsonl"), progress=progress), "crisislex"
    )
    echo(f"3/5 materializing every asset for {start} .. {today}")
    summary = materialize_all(settings, start, today, progress=progress)
    if summary["failed"]:
        raise RuntimeError(f"materialization failed: {summary['failed']} (see the runs in the Dagster UI)")
    api_url = f"http://{settings.api_host}:{settings.api_port}"
    if start_ui:
        echo("4/5 starting the API and the Dagster UI")
        services_up(settings, ["api", "dagster"], echo=progress)
    echo("5/5 ready")
    sample_post = _busiest_post(settings, today - dt.timedelta(days=1))
    lines = [
        "",
        f"  API            {api_url}/docs   (health: {api_url}/readyz)",
        f"  post stats     {api_url}/v1/posts/{sample_post}/stats" if sample_post else "",
        f"  Dagster UI     http://127.0.0.1:{settings.dagster_port}",
        f"  MLflow UI      {settings.mlflow}",
        f"  Postgres       psql {settings.postgres}   (schemas bronze, metrics, staging, marts)",
        f"  Delta lake     {settings.lake}",
        "  stop           socialpulse services down",
    ]
    echo("\n".join(line for line in lines if line))
    return summary


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
