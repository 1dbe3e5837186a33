"""The `socialpulse` command line: services, loaders, materialization, benchmarks and the demo."""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
import time
from pathlib import Path

import click

from socialpulse.settings import get_settings

REPO_ROOT = Path(__file__).resolve().parents[1]
SAMPLES = REPO_ROOT / "data" / "samples"

for _k, _v in {
    "HF_HUB_OFFLINE": "1",
    "GX_ANALYTICS_ENABLED": "false",
    "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
    "SPARK_LOCAL_IP": "127.0.0.1",
    "DAGSTER_DISABLE_TELEMETRY": "1",
}.items():
    os.environ.setdefault(_k, _v)


def _progress(msg: str) -> None:
    click.echo(f"  {msg}", err=True)


def _fail(msg: str) -> None:
    click.echo(f"error: {msg}", err=True)
    sys.exit(1)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """SocialPulse: the data and ML platform behind a short-video social app.

    Settings come from SOCIALPULSE_* environment variables (see README); state lives in
    SOCIALPULSE_HOME (default .socialpulse/).
    """


# --- services ----------------------------------------------------------------------------------
@main.group()
def services() -> None:
    """Start, stop and inspect the embedded services (Postgres, Redis, Spark Connect, MLflow)."""


@services.command("up")
@click.argument("names", nargs=-1)
def services_up_cmd(names: tuple[str, ...]) -> None:
    """Start NAMES (default: every store); already-running services are left alone."""
    from socialpulse.services.manager import ServiceError, services_up

    try:
        statuses = services_up(get_settings(), list(names) or None, echo=_progress)
    except ServiceError as exc:
        _fail(str(exc))
    _print_status(statuses)


@services.command("down")
@click.argument("names", nargs=-1)
def services_down_cmd(names: tuple[str, ...]) -> None:
    """Stop NAMES (default: everything this state folder started), by the PIDs recorded at start."""
    from socialpulse.services.manager import services_down

    _print_status(services_down(get_settings(), list(names) or None))


@services.command("status")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
def services_status_cmd(as_json: bool) -> None:
    """Say what runs where."""
    from socialpulse.services.manager import services_status

    statuses = services_status(get_settings())
    if as_json:
        click.echo(json.dumps([s.__dict__ for s in statuses], indent=2))
    else:
        _print_status(statuses)


def _print_status(statuses) -> None:
    for s in statuses:
        pid = f"pid {s.pid}" if s.pid else ""
        click.echo(f"{s.name:<9} {s.state:<9} {s.url:<55} {pid} {s.detail}".rstrip())


# --- loaders -----------------------------------------------------------------------------------
@main.group()
def load() -> None:
    """Write bronze Delta tables from a synthetic world or real data sets."""


@load.command("synthetic")
@click.option("--users", default=2_000, show_default=True, help="number of users")
@click.option("--posts", default=20_000, show_default=True, help="number of posts")
@click.option("--days", default=14, show_default=True, help="days of activity, ending today (UTC)")
@click.option("--seed", default=7, show_default=True, help="random seed: the same seed gives the same world")
@click.option("--start", type=click.DateTime(["%Y-%m-%d"]), default=None, help="first day (default: today - days)")
def load_synthetic_cmd(users: int, posts: int, days: int, seed: int, start) -> None:
    """A deterministic synthetic world with planted structure (interest clusters, creator quality,
    hashtag bursts, toxic posts from HateXplain)."""
    from socialpulse.synthetic import load_synthetic

    t0 = time.perf_counter()
    counts = load_synthetic(
        get_settings(), users=users, posts=posts, days=days, seed=seed,
        start=start.date() if start else None, progress=_progress,
    )
    click.echo(json.dumps({"rows": counts, "seconds": round(time.perf_counter() - t0, 1)}))


@load.command("hatexplain")
@click.argument("path", type=click.Path(exists=True, path_type=Path), default=SAMPLES / "hatexplain")
def load_hatexplain_cmd(path: Path) -> None:
    """Load HateXplain (a folder of train/val/test.jsonl, or one file) as text posts + reference labels."""
    from socialpulse.loaders import load_hatexplain

    click.echo(json.dumps(load_hatexplain(get_settings(), path, progress=_progress)))


@load.command("crisislex")
@click.argument("path", type=click.Path(exists=True, path_type=Path), default=SAMPLES / "crisislex_t6" / "stream.jsonl")
def load_crisislex_cmd(path: Path) -> None:
    """Load CrisisLex T6 (stream.jsonl) as time-stamped text posts + reference event labels."""
    from socialpulse.loaders import load_crisislex

    click.echo(json.dumps(load_crisislex(get_settings(), path, progress=_progress)))


# --- pipelines ---------------------------------------------------------------------------------
@main.command("drain")
def drain_cmd() -> None:
    """Drain the ingest streams into bronze once (what the Dagster sensor's runs do)."""
    from socialpulse.drain import drain_all

    click.echo(str(drain_all(get_settings())))


@main.command("materialize")
@click.option("--start", type=click.DateTime(["%Y-%m-%d"]), default=None, help="first partition (default: --days back)")
@click.option("--end", type=click.DateTime(["%Y-%m-%d"]), default=None, help="last partition (default: today UTC)")
@click.option("--days", default=14, show_default=True, help="how many days back when --start is not given")
def materialize_cmd(start, end, days: int) -> None:
    """Materialize the whole asset graph: every daily partition in the range, then the unpartitioned
    assets. Runs go to the local Dagster instance, so they show in the Dagster UI."""
    from orchestration.runner import materialize_all

    end_d = end.date() if end else dt.datetime.now(dt.timezone.utc).date()
    start_d = start.date() if start else end_d - dt.timedelta(days=days - 1)
    if start_d > end_d:
        _fail(f"--start {start_d} is after --end {end_d}")
    summary = materialize_all(get_settings(), start_d, end_d, progress=_progress)
    click.echo(json.dumps(summary, indent=2))


# --- benchmarks --------------------------------------------------------------------------------
#: kept in step with bench.BENCHES (bench is not imported here, so `socialpulse --help` stays fast)
BENCH_NAMES = ("build", "ingest", "moderation", "search", "trends")


@main.command("bench")
@click.argument("name", type=click.Choice(list(BENCH_NAMES)))
@click.option("--scale", type=click.Choice(["small", "full"]), default="small", show_default=True,
              help="build: small = 10k users / 100k posts / 1M interactions, full adds 100k / 1M / 10M; "
              "ingest and moderation: small = a short run, full = longer runs and more items; trends: small = the "
              "1M-interaction world, full = the 10M one")
@click.option("--out", type=click.Path(path_type=Path), default=None, help="results file (default bench/results/NAME.json)")
def bench_cmd(name: str, scale: str, out: Path | None) -> None:
    """Run benchmark NAME and write its figures to bench/results/NAME.json."""
    from bench import run_benchmark

    result = run_benchmark(name, scale, out or REPO_ROOT / "bench" / "results" / f"{name}.json", progress=_progress)
    click.echo(json.dumps(result, indent=2))


# --- demo --------------------------------------------------------------------------------------
@main.command("demo")
@click.option("--users", default=2_000, show_default=True)
@click.option("--posts", default=20_000, show_default=True)
@click.option("--days", default=7, show_default=True)
@click.option("--no-ui", is_flag=True, help="do not start the API and the Dagster UI")
def demo_cmd(users: int, posts: int, days: int, no_ui: bool) -> None:
    """Bring the platform up on embedded defaults, load data, materialize every asset, start the API and
    the Dagster UI, and print where to look."""
    from orchestration.runner import run_demo

    try:
        run_demo(get_settings(), users=users, posts=posts, days=days, start_ui=not no_ui, echo=click.echo,
                 progress=_progress)
    except Exception as exc:  # noqa: BLE001 - the CLI's job is a clear message
        _fail(f"{type(exc).__name__}: {exc}")


# --- domain command groups ---------------------------------------------------------------------
from socialpulse.trends_cli import trends  # noqa: E402 - registered after main is defined
from socialpulse.moderation_cli import moderation  # noqa: E402
from socialpulse.search_cli import search  # noqa: E402

main.add_command(trends)
main.add_command(moderation)
main.add_command(search)


if __name__ == "__main__":
    main()
