"""The `socialpulse trends` commands: replay a time-stamped post stream through trend detection and score
it, evaluate hashtag suggestions, run the trends assets, show what is served."""

from __future__ import annotations

import time
from pathlib import Path

import click

from assets.trends.logic import DEFAULTS
from cli.common import day_range, emit, fail, progress


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def trends() -> None:
    """Trending topics: hourly hashtag velocity, co-occurrence topics, offline replay and evaluation."""


@trends.command("eval")
@click.option("--input", "input_path", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="time-stamped JSONL (created_at, text, hashtags, event), e.g. CrisisLex stream.jsonl")
@click.option("--baseline-hours", default=DEFAULTS["baseline_hours"], show_default=True, type=click.IntRange(min=1),
              help="hours of a tag's own history its baseline is the mean of")
@click.option("--threshold", default=DEFAULTS["threshold"], show_default=True, type=float, help="z-score to flag")
@click.option("--min-count", default=DEFAULTS["min_count"], show_default=True, type=click.IntRange(min=1),
              help="effective posts a tag needs in the hour")
@click.option("--floor", default=DEFAULTS["floor"], show_default=True, type=click.FloatRange(min=0, min_open=True),
              help="added to the baseline under the square root (damps brand-new tags)")
@click.option("--min-similarity", default=DEFAULTS["min_similarity"], show_default=True, type=float,
              help="co-occurrence overlap to group tags into one topic")
@click.option("--min-cosine", default=DEFAULTS["min_cosine"], show_default=True, type=click.FloatRange(-1, 1),
              help="post-vector cosine to group tags into one topic (with --embeddings)")
@click.option("--embeddings/--no-embeddings", default=True, show_default=True,
              help="embed the posts of flagged tags (MiniLM, as the asset's stored vectors) to group tags by meaning")
@click.option("--purity", default=0.8, show_default=True, type=float, help="event share a topic needs to count")
@click.option("--topics/--no-topics", default=True, show_default=True, help="include the topic list in the output")
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path), default=None, help="also write JSON here")
def eval_cmd(input_path: Path, baseline_hours: int, threshold: float, min_count: int, floor: float,
             min_similarity: float, min_cosine: float, embeddings: bool, purity: float, topics: bool,
             output: Path | None) -> None:
    """Replay INPUT hour by hour through trend detection and print the evaluation against its events as JSON.

    The replay never reads the ``event`` labels; only the scoring afterwards does."""
    from assets.trends.logic import evaluate, replay
    from assets.trends.stream import read_stream

    records, counts = read_stream(input_path)
    params = {
        **DEFAULTS, "baseline_hours": baseline_hours, "threshold": threshold, "min_count": min_count,
        "floor": floor, "min_similarity": min_similarity, "min_cosine": min_cosine,
    }
    embed = None
    if embeddings:
        from socialpulse.encoder import TextEncoder

        embed = TextEncoder(batch_size=64).encode
    t0 = time.perf_counter()
    found = replay(records, **params, embed=embed)
    seconds = time.perf_counter() - t0
    result = evaluate(records, found, purity=purity)
    if not topics:
        result.pop("topics")
    emit({"input": {"path": str(input_path), **counts}, "params": {**params, "embeddings": embeddings},
          "replay_seconds": round(seconds, 2),
          "replay_posts_per_s": round(len(records) / seconds, 1) if seconds > 0 else None, **result}, output)


@trends.command("suggest-eval")
@click.option("--input", "input_path", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="time-stamped JSONL (created_at, text, hashtags), e.g. CrisisLex stream.jsonl")
@click.option("--k", default=5, show_default=True, type=click.IntRange(1, 50), help="suggestions that count (hit@k)")
@click.option("--train-share", default=0.8, show_default=True, type=click.FloatRange(0.1, 0.95),
              help="share of the stream the platform knew; the other posts are the drafts")
@click.option("--max-test", default=2000, show_default=True, type=click.IntRange(min=10),
              help="drafts evaluated (a seeded sample of the later posts with hashtags)")
@click.option("--split", type=click.Choice(["random", "time"]), default="random", show_default=True,
              help="known posts drawn at random, or the earliest ones (a cold-start test on successive events)")
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path), default=None, help="also write JSON here")
def suggest_eval_cmd(input_path: Path, k: int, train_share: float, max_test: int, split: str,
                     output: Path | None) -> None:
    """Hide each held-out post's hashtags, suggest from its text, and print hit@k as JSON: the suggester (text
    only; with trends; with one tag already chosen) against the most-popular baseline, in one run."""
    from assets.trends.stream import read_stream
    from assets.trends.suggest_eval import suggestion_eval
    from socialpulse.encoder import TextEncoder

    records, counts = read_stream(input_path)
    try:
        result = suggestion_eval(records, TextEncoder(batch_size=64), k=k, train_share=train_share,
                                 max_test=max_test, split=split, progress=progress)
    except ValueError as exc:
        fail(str(exc))
    emit({"input": {"path": str(input_path), **counts}, **result}, output)


@trends.command("run")
@click.option("--start", type=click.DateTime(["%Y-%m-%d"]), default=None, help="first day (UTC)")
@click.option("--end", type=click.DateTime(["%Y-%m-%d"]), default=None, help="last day (default: today, UTC)")
@click.option("--days", default=1, show_default=True, type=click.IntRange(min=1), help="days ending at --end")
def run_cmd(start, end, days: int) -> None:
    """Run trends_job for each day through Dagster (hourly counts on Spark, scores, topics, hashtag statistics,
    published to Postgres). The runs show in the Dagster UI; needs the services."""
    from orchestration.runner import trends_all
    from socialpulse.settings import get_settings

    summary = trends_all(get_settings(), day_range(start, end, days), progress=progress)
    emit(summary)
    if summary["failed"]:
        fail(f"{len(summary['failed'])} run(s) failed: see the runs in the Dagster UI")


@trends.command("show")
@click.option("--window", default="24h", show_default=True, help="how far back from the latest scored hour: 1h .. 7d")
@click.option("--limit", default=10, show_default=True, type=click.IntRange(1, 100), help="topics and hashtags to show")
def show_cmd(window: str, limit: int) -> None:
    """Print the trending topics and hashtags that GET /v1/trends serves (reads Postgres)."""
    from socialpulse import trends_store
    from socialpulse.settings import get_settings
    from socialpulse.stores.postgres import connect

    try:
        hours = trends_store.window_hours(window)
    except ValueError as exc:
        fail(str(exc))
    try:
        with connect(get_settings()) as conn:
            out = trends_store.trending(conn, hours, limit)
    except trends_store.TrendsNotBuilt as exc:
        fail(str(exc))
    emit(out)


@trends.command("eval-synthetic")
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path), default=None, help="also write JSON here")
def eval_synthetic_cmd(output: Path | None) -> None:
    """Planted bursts of the synthetic world against the platform's own trend flags and topics (reads the
    lake after `trends run`): burst recall, delay from the day's start, false flags. JSON."""
    from assets.trends.evaluation import synthetic_trends_eval
    from socialpulse.settings import get_settings

    try:
        out = synthetic_trends_eval(get_settings())
    except LookupError as exc:
        fail(str(exc))
    emit(out, output)
