"""The `socialpulse` command line: services, loaders, materialization, benchmarks and the demo; the domain
groups (`trends`, `moderation`, `search`, `ranking`) live beside this module."""

from __future__ import annotations

import json
import time
from pathlib import Path

import click

from bench import BENCHES
from cli.auth import auth
from cli.captions import captions
from cli.common import day_range, fail, progress
from cli.moderation import moderation
from cli.notifications import notifications
from cli.ranking import ranking
from cli.search import search
from cli.trends import trends
from cli.warehouse import warehouse
from socialpulse.settings import get_settings

REPO_ROOT = Path(__file__).resolve().parents[1]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """SocialPulse: the data and ML platform behind a short-video social app.

    Settings come from SOCIALPULSE_* environment variables (see README); state lives in
    SOCIALPULSE_HOME (default .socialpulse/).
    """


main.add_command(auth)
main.add_command(captions)
main.add_command(trends)
main.add_command(moderation)
main.add_command(notifications)
main.add_command(search)
main.add_command(ranking)
main.add_command(warehouse)


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
        statuses = services_up(get_settings(), list(names) or None, echo=progress)
    except ServiceError as exc:
        fail(str(exc))
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
        start=start.date() if start else None, progress=progress,
    )
    click.echo(json.dumps({"rows": counts, "seconds": round(time.perf_counter() - t0, 1)}))


@load.command("hatexplain")
@click.argument("path", type=click.Path(exists=True, path_type=Path), required=False)
@click.option("--posts", "post_splits", multiple=True, type=click.Choice(["train", "val", "test"]),
              help="load only these splits as bronze posts (repeatable; default: every split read); the reference "
              "labels always get every split read")
def load_hatexplain_cmd(path: Path | None, post_splits: tuple[str, ...]) -> None:
    """Load HateXplain (a folder of train/val/test.jsonl, or one file; default: the full official split
    vendored in data/hatexplain) as reference labels (what the text model trains on) and text posts (what
    moderation decides on)."""
    from socialpulse.loaders import HATEXPLAIN_DIR, load_hatexplain

    click.echo(json.dumps(load_hatexplain(get_settings(), path or HATEXPLAIN_DIR, progress=progress,
                                          post_splits=post_splits or None)))


@load.command("crisislex")
@click.argument("path", type=click.Path(exists=True, path_type=Path), required=False)
def load_crisislex_cmd(path: Path | None) -> None:
    """Load CrisisLex T6 (stream.jsonl, or its folder; default: the vendored 3,000-tweet sample) as
    time-stamped text posts + reference event labels."""
    from socialpulse.loaders import CRISISLEX_SAMPLE, load_crisislex

    click.echo(json.dumps(load_crisislex(get_settings(), path or CRISISLEX_SAMPLE, progress=progress)))


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

    run_days = day_range(start, end, days)
    summary = materialize_all(get_settings(), run_days[0], run_days[-1], progress=progress)
    click.echo(json.dumps(summary, indent=2))


# --- benchmarks --------------------------------------------------------------------------------
#: the benchmarks `bench NAME` runs: bench.BENCHES is the one list (bench's package imports only light modules)
BENCH_NAMES = BENCHES


@main.command("bench")
@click.argument("name", type=click.Choice(list(BENCH_NAMES)))
@click.option("--scale", type=click.Choice(["dev", "small", "full"]), default="small", show_default=True,
              help="build: small = 10k users / 100k posts / 1M interactions, full adds 100k / 1M / 10M; "
              "ingest and moderation: small = a short run, full = longer runs and more items; trends and feed: small "
              "= the 1M-interaction world, full = the 10M one; analytics: small = the 1M-interaction world, full = the 10M "
              "one; feed only: dev = a 2k-user run of a few minutes for comparing changes")
@click.option("--out", type=click.Path(path_type=Path), default=None, help="results file (default bench/results/NAME.json)")
@click.option("--minutes", type=click.IntRange(min=1), default=None,
              help="soak only: minutes of steady load [small: 2, full: 10]")
@click.option("--rate", type=click.IntRange(min=1), default=None,
              help="soak only: events per second sent to POST /v1/events [default: 5000]")
def bench_cmd(name: str, scale: str, out: Path | None, minutes: int | None, rate: int | None) -> None:
    """Run benchmark NAME and write its figures to bench/results/NAME.json.

    soak: the demo platform with its daemon running, under steady load through the API (events at --rate,
    one image upload a second, search and stats reads) for --minutes; reports accepted vs landed by distinct
    id, event -> Delta and upload -> searchable latency, every service's memory, and failed runs."""
    from bench import run_benchmark

    if name != "soak" and (minutes or rate):
        fail("--minutes and --rate apply to the soak benchmark only")
    overrides = {k: v for k, v in {"minutes": minutes, "rate": rate}.items() if v is not None}
    if scale == "dev" and name != "feed":
        fail("--scale dev applies to the feed benchmark only")
    result = run_benchmark(name, scale, out or REPO_ROOT / "bench" / "results" / f"{name}.json", progress=progress,
                           **overrides)
    click.echo(json.dumps(result, indent=2))


# --- demo --------------------------------------------------------------------------------------
@main.command("demo")
@click.option("--users", default=2_000, show_default=True, help="synthetic users")
@click.option("--posts", default=20_000, show_default=True, help="synthetic posts")
@click.option("--days", default=9, show_default=True, help="days of synthetic activity, ending yesterday (UTC); "
              "the virality model learns from posts whose 7-day window has closed, so it needs 8 or more")
@click.option("--hatexplain", "hatexplain", type=click.Path(exists=True, file_okay=False, path_type=Path),
              default=None, help="HateXplain folder the text model trains on [default: the full vendored split, "
              "data/hatexplain; data/samples/hatexplain trains in seconds, for quick runs such as the live tests]")
@click.option("--no-ui", is_flag=True, help="do not start the API and the Dagster UI")
def demo_cmd(users: int, posts: int, days: int, hatexplain: Path | None, no_ui: bool) -> None:
    """Bring the platform up on embedded defaults, load data, materialize every asset, train the text
    moderation model on the full HateXplain split, start the API, the Dagster UI (with its daemon: sensors and
    schedules keep everything fresh from then on) and the live moderation worker, and print where to look."""
    from orchestration.runner import run_demo

    try:
        run_demo(get_settings(), users=users, posts=posts, days=days, start_ui=not no_ui, echo=click.echo,
                 progress=progress, hatexplain=hatexplain)
    except Exception as exc:  # noqa: BLE001 - the CLI's job is a clear message
        fail(f"{type(exc).__name__}: {exc}")


if __name__ == "__main__":
    main()
