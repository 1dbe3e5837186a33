"""The `socialpulse trends` commands: replay a time-stamped post stream through trend detection and score it.

Registered in ``socialpulse.cli`` with ``main.add_command(trends)``.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import click

from assets.trends.logic import DEFAULTS, evaluate, replay


def read_stream(path: str | Path) -> tuple[list[dict], dict[str, int]]:
    """Read a time-stamped JSONL stream into records for :func:`assets.trends.logic.replay`.

    Each line needs ``created_at`` (ISO 8601; a missing offset is read as UTC); ``hashtags`` (list of
    str) is optional and falls back to the ``#tags`` of ``text``; ``event``, ``on_topic`` and
    ``author_id`` are passed through. Unreadable lines are skipped and counted. Records come back sorted
    by time (stable), as the replay needs.
    """
    from socialpulse.loaders import extract_hashtags

    records: list[dict] = []
    lines = skipped = 0
    with open(path, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            if not line.strip():
                continue
            lines += 1
            try:
                obj = json.loads(line)
                if not isinstance(obj, dict):
                    raise ValueError("not an object")
                ts = dt.datetime.fromisoformat(str(obj["created_at"]).strip().replace("Z", "+00:00"))
                ts = ts.replace(tzinfo=dt.timezone.utc) if ts.tzinfo is None else ts.astimezone(dt.timezone.utc)
                tags = obj.get("hashtags")
                if tags is None:
                    tags = extract_hashtags(str(obj.get("text") or ""))
                elif not isinstance(tags, list):
                    raise ValueError("hashtags must be a list")
            except (ValueError, KeyError, TypeError):
                skipped += 1
                continue
            records.append(
                {
                    "created_at": ts, "hashtags": [str(t) for t in tags], "event": obj.get("event"),
                    "on_topic": obj.get("on_topic"), "author_id": obj.get("author_id"),
                    "text": str(obj.get("text") or obj.get("caption") or ""),
                }
            )
    records.sort(key=lambda r: r["created_at"])
    return records, {"lines": lines, "records": len(records), "skipped": skipped}


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def trends() -> None:
    """Trending topics: hourly hashtag velocity, co-occurrence topics, offline replay and evaluation."""


@trends.command("eval")
@click.option("--input", "input_path", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="time-stamped JSONL (created_at, text, hashtags, event), e.g. CrisisLex stream.jsonl")
@click.option("--baseline-hours", default=DEFAULTS["baseline_hours"], show_default=True, type=click.IntRange(min=1))
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
    import time

    records, counts = read_stream(input_path)
    params = {
        **DEFAULTS, "baseline_hours": baseline_hours, "threshold": threshold, "min_count": min_count,
        "floor": floor, "min_similarity": min_similarity, "min_cosine": min_cosine,
    }
    embed = None
    if embeddings:
        from socialpulse.encoder import TextEncoder

        encoder = TextEncoder(batch_size=64)
        embed = encoder.encode
    t0 = time.perf_counter()
    found = replay(records, **params, embed=embed)
    seconds = time.perf_counter() - t0
    result = evaluate(records, found, purity=purity)
    if not topics:
        result.pop("topics")
    out = {"input": {"path": str(input_path), **counts}, "params": {**params, "embeddings": embeddings},
           "replay_seconds": round(seconds, 2),
           "replay_posts_per_s": round(len(records) / seconds, 1) if seconds > 0 else None, **result}
    text = json.dumps(out, indent=2, sort_keys=False)
    if output:
        output.write_text(text + "\n")
    click.echo(text)


@trends.command("suggest-eval")
@click.option("--input", "input_path", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="time-stamped JSONL (created_at, text, hashtags), e.g. CrisisLex stream.jsonl")
@click.option("--k", default=5, show_default=True, type=click.IntRange(1, 50))
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
    from assets.trends.suggest_eval import suggestion_eval
    from socialpulse.encoder import TextEncoder

    records, counts = read_stream(input_path)
    try:
        result = suggestion_eval(records, TextEncoder(batch_size=64), k=k, train_share=train_share, max_test=max_test, split=split,
                                 progress=lambda m: click.echo(f"  {m}", err=True))
    except ValueError as exc:
        click.echo(f"error: {exc}", err=True)
        raise SystemExit(1) from None
    out = {"input": {"path": str(input_path), **counts}, **result}
    text = json.dumps(out, indent=2)
    if output:
        output.write_text(text + "\n")
    click.echo(text)


def _fail(msg: str) -> None:
    click.echo(f"error: {msg}", err=True)
    raise SystemExit(1)


@trends.command("run")
@click.option("--start", type=click.DateTime(["%Y-%m-%d"]), default=None, help="first day (UTC)")
@click.option("--end", type=click.DateTime(["%Y-%m-%d"]), default=None, help="last day (default: today, UTC)")
@click.option("--days", default=1, show_default=True, type=click.IntRange(min=1), help="days ending at --end")
def run_cmd(start, end, days: int) -> None:
    """Run trends_job for each day through Dagster (hourly counts on Spark, scores, topics, hashtag statistics,
    published to Postgres). The runs show in the Dagster UI; needs the services."""
    from orchestration.runner import days_between, trends_all
    from socialpulse.settings import get_settings

    end_d = end.date() if end else dt.datetime.now(dt.timezone.utc).date()
    start_d = start.date() if start else end_d - dt.timedelta(days=days - 1)
    if start_d > end_d:
        _fail(f"--start {start_d} is after --end {end_d}")
    summary = trends_all(get_settings(), days_between(start_d, end_d), progress=lambda m: click.echo(f"  {m}", err=True))
    click.echo(json.dumps(summary, indent=2))
    if summary["failed"]:
        _fail(f"{len(summary['failed'])} run(s) failed: see the runs in the Dagster UI")


@trends.command("show")
@click.option("--window", default="24h", show_default=True, help="how far back from the latest scored hour: 1h .. 7d")
@click.option("--limit", default=10, show_default=True, type=click.IntRange(1, 100))
def show_cmd(window: str, limit: int) -> None:
    """Print the trending topics and hashtags that GET /v1/trends serves (reads Postgres)."""
    from socialpulse import trends_store
    from socialpulse.stores.postgres import connect
    from socialpulse.settings import get_settings

    try:
        hours = trends_store.window_hours(window)
    except ValueError as exc:
        _fail(str(exc))
    try:
        with connect(get_settings()) as conn:
            out = trends_store.trending(conn, hours, limit)
    except trends_store.TrendsNotBuilt as exc:
        _fail(str(exc))
    click.echo(json.dumps(out, indent=2, default=str))


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
        _fail(str(exc))
    text = json.dumps(out, indent=2, default=str)
    if output:
        output.write_text(text + "\n")
    click.echo(text)
